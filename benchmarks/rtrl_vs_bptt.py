"""RTRL against BPTT: time and peak memory of one gradient of an RNN, LSTM and GRU cell.

The gradient, float32, fused cells, B=4 rows, I=8 inputs, hidden size H, T steps:

    loss = sum_t sum(h_t * v_t)             # v fixed random weights (T, B, H)
    d loss / d theta for every parameter of the cell (P numbers in all)

computed two ways by ``tinygrad_rnn.study.rtrl``:

* BPTT : ``bptt_gradients``, the cell unrolled over T steps, then reverse mode over that graph;
* RTRL : ``rtrl_gradients`` (Williams & Zipser 1989), the sensitivities ds_t/dtheta (P, B, S)
         carried forward, one forward-mode product (jvp) of the step per time step.

BPTT stores the graph of all T steps and costs O(H^2) per step; RTRL stores the P x P
identity and the sensitivities, whatever T, and costs O(B*P^2), about H^4, per step. The table shows both, and the ratios.

How it is measured:

* before any timing, RTRL is CHECKED against BPTT in float64 on a small config (T,B,I,H =
  7,3,5,4) for RNN (tanh and relu), LSTM and GRU, fused and composed, with a nonlinear loss
  on every step and on the last state: every parameter's gradient must agree to 1e-10
  relative (max |a - b| / max |b|), or the run aborts; every timed float32 result is also
  compared (a warning above 1e-3 relative);
* every time is the minimum over repeats of ``time.perf_counter``, with the garbage collector
  on (collected before each call) and the imported modules frozen (``gc.freeze``). The
  first call counts as a repeat (a separate warm-up would double the cost of the slowest
  configs); more repeats follow while they fit a time budget per method and config, up to
  a maximum; BPTT and RTRL take turns, so load from other processes falls on both alike;
* peak memory is measured in a separate, untimed pass with ``tracemalloc`` (NumPy buffers
  and Python objects): the peak above what existed before the call.

Run:  python benchmarks/rtrl_vs_bptt.py [--quick] [--kinds rnn,lstm,gru] [--json PATH]
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]   # this checkout's tinygrad_rnn and _harness
import tinygrad_rnn as tg  # noqa: E402
from _harness import best_of, cell, freeze_imports, parse_kinds, peak_bytes, table, timer, write_json_atomic  # noqa: E402
from tinygrad_rnn.study.rtrl import bptt_gradients, rtrl_gradients  # noqa: E402

KINDS = ("rnn", "lstm", "gru")
CELLS = {"rnn": "RNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}
SIZES = {"default": {"H": (8, 16, 32), "T": (50, 200)}, "quick": {"H": (4, 8), "T": (10, 30)}}
BATCH, INPUTS = 4, 8
BUDGET_S = {"default": 2.0, "quick": 0.1}      # time for the repeats of one method and config
MAX_REPEATS = {"default": 10, "quick": 2}
CHECK_CONFIG = (7, 3, 5, 4)                      # T, B, I, H of the float64 check
CHECK_RTOL = 1e-10
AGREE_RTOL = 1e-3                                # float32 timed results


def make_cell(kind, inputs, hidden, dtype, fused=True, nonlinearity="tanh", seed=0):
    tg.manual_seed(seed)
    extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    return getattr(tg.nn, CELLS[kind])(inputs, hidden, fused=fused, dtype=dtype, **extra)


def max_rel_diff(a, b):
    """The largest over parameters of max |a - b| / max |b| (gradients as {name: Tensor})."""
    worst = 0.0
    for name, gb in b.items():
        ga, gb = a[name].numpy(), gb.numpy()
        worst = max(worst, float(np.max(np.abs(ga - gb)) / max(float(np.max(np.abs(gb))), 1e-300)))
    return worst


# ----- sections -----

def check_agreement(kinds):
    """Float64, small config: RTRL against BPTT for every cell form. Aborts on a mismatch."""
    steps, batch, inputs, hidden = CHECK_CONFIG
    rng = np.random.default_rng(1)
    x = tg.tensor(rng.standard_normal((steps, batch, inputs)), dtype=tg.float64)
    y = tg.tensor(rng.standard_normal((steps, batch, hidden)), dtype=tg.float64)

    def step_loss(t, h):
        return ((h - y[t]) ** 2).sum()

    def final_loss(state):
        return sum((s.tanh() * s).sum() for s in (state if isinstance(state, tuple) else (state,)))

    cases = [(k, act) for k in kinds for act in (("tanh", "relu") if k == "rnn" else ("tanh",))]
    print(f"Agreement check (float64, T,B,I,H = {CHECK_CONFIG}, loss on every step and on the last state, "
          f"limit {CHECK_RTOL:g} relative):")
    report = {}
    for kind, act in cases:
        for fused in (True, False):
            label = CELLS[kind] + (f" {act}" if kind == "rnn" else "") + (" fused" if fused else " composed")
            c = make_cell(kind, inputs, hidden, tg.float64, fused, act)
            for p in c.parameters():                      # larger than the default init: livelier dynamics
                p.data *= 2.0
            loss_r, grads_r = rtrl_gradients(c, x, step_loss, final_loss)
            loss_b, grads_b = bptt_gradients(c, x, step_loss, final_loss)
            err = max(max_rel_diff(grads_r, grads_b), abs(loss_r - loss_b) / max(abs(loss_b), 1e-300))
            if not err <= CHECK_RTOL:
                sys.exit(f"ABORT: RTRL and BPTT differ for {label} by {err:.3g} relative (limit {CHECK_RTOL:g}): "
                         "they do not compute the same gradient, so timing them against each other means nothing.")
            report[label] = err
            print(f"  {label:22s} max rel diff {err:.1e}  ok")
    return report


def make_runs(kind, hidden, steps):
    c = make_cell(kind, INPUTS, hidden, tg.float32)
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((steps, BATCH, INPUTS)), dtype=tg.float32)
    v = tg.tensor(rng.standard_normal((steps, BATCH, hidden)), dtype=tg.float32)

    def step_loss(t, h):
        return (h * v[t]).sum()

    def timed(method):
        def run():
            start = timer()
            result = method(c, x, step_loss)
            return timer() - start, 0.0, result
        return run

    params = sum(p.size for p in c.parameters())
    return params, {"bptt": timed(bptt_gradients), "rtrl": timed(rtrl_gradients)}


def time_interleaved(runs, mode):
    """Min time of each run in ``runs`` ({name: run}), taking turns; the first call of each
    counts and sizes its repeats (as many as fit the budget)."""
    best, results, repeats = {}, {}, {}
    for name, run in runs.items():
        times, results[name] = best_of(run, 1, warmup=0)
        best[name] = times["total_s"]
        repeats[name] = int(min(MAX_REPEATS[mode], max(1, BUDGET_S[mode] // max(best[name], 1e-9))))
    for round_ in range(1, max(repeats.values())):
        for name, run in runs.items():
            if round_ < repeats[name]:
                times, results[name] = best_of(run, 1, warmup=0)
                best[name] = min(best[name], times["total_s"])
    return best, repeats, results


def measure(kind, hidden, steps, mode):
    params, runs = make_runs(kind, hidden, steps)
    best, repeats, results = time_interleaved(runs, mode)
    peaks = {name: peak_bytes(run) for name, run in runs.items()}
    return {"kind": kind, "H": hidden, "T": steps, "B": BATCH, "I": INPUTS, "P": params,
            "bptt_ms": 1e3 * best["bptt"], "rtrl_ms": 1e3 * best["rtrl"],
            "rtrl_over_bptt_time": best["rtrl"] / best["bptt"],
            "bptt_peak_bytes": peaks["bptt"], "rtrl_peak_bytes": peaks["rtrl"],
            "rtrl_over_bptt_memory": peaks["rtrl"] / peaks["bptt"],
            "repeats": repeats, "max_rel_diff": max_rel_diff(results["rtrl"][1], results["bptt"][1])}


def print_table(rows):
    def ms(value):
        return cell(value, ".2f" if value < 100 else ".0f")

    headers = ["cell", "H", "P", "T", "reps b/r", "BPTT ms", "RTRL ms", "time x", "BPTT MiB", "RTRL MiB",
               "memory x", "rel diff"]
    body = [[CELLS[r["kind"]], r["H"], r["P"], r["T"], f"{r['repeats']['bptt']}/{r['repeats']['rtrl']}",
             ms(r["bptt_ms"]), ms(r["rtrl_ms"]), cell(r["rtrl_over_bptt_time"], ".1f", "x"),
             cell(r["bptt_peak_bytes"] / 2**20, ".2f"), cell(r["rtrl_peak_bytes"] / 2**20, ".2f"),
             cell(r["rtrl_over_bptt_memory"], ".2f", "x"), cell(r["max_rel_diff"], ".1e")] for r in rows]
    print(f"\nOne gradient, float32, B={BATCH}, I={INPUTS}: time (min over repeats) and peak traced memory; "
          "x = RTRL / BPTT")
    print(table(headers, body))
    for r in rows:
        if not r["max_rel_diff"] <= AGREE_RTOL:
            print(f"  WARNING: {CELLS[r['kind']]} H={r['H']} T={r['T']}: the float32 gradients differ by "
                  f"{r['max_rel_diff']:.2g} relative (more than {AGREE_RTOL:g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke test)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of rnn,lstm,gru")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    args = parser.parse_args(argv)
    kinds = parse_kinds(args.kinds, KINDS)
    mode = "quick" if args.quick else "default"
    began = time.perf_counter()
    freeze_imports()

    print("One gradient of loss = sum_t sum(h_t * v_t) for every cell parameter: BPTT against RTRL")
    print(f"Python {platform.python_version()}, NumPy {np.__version__}, tinygrad_rnn {tg.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}; load average (1, 5, 15 min) at start: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"Times: min over repeats, gc on; repeats fit a {BUDGET_S[mode]:g} s budget per method and config, "
          f"1 to {MAX_REPEATS[mode]}; BPTT and RTRL take turns.\n")
    check = check_agreement(kinds)

    rows = [measure(kind, hidden, steps, mode) for kind in kinds for hidden in SIZES[mode]["H"]
            for steps in SIZES[mode]["T"]]
    print_table(rows)
    elapsed = time.perf_counter() - began
    print(f"\nTotal run time: {elapsed:.0f} s; load average at the end: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        write_json_atomic(args.json, {
            "meta": {"python": platform.python_version(), "numpy": np.__version__, "tinygrad_rnn": tg.__version__,
                     "cpus": os.cpu_count(), "quick": args.quick, "dtype": "float32", "budget_s": BUDGET_S[mode],
                     "max_repeats": MAX_REPEATS[mode], "statistic": "min", "elapsed_s": elapsed},
            "check": {"rtol": CHECK_RTOL, "max_rel_diff": check, "passed": True},
            "agree_rtol": AGREE_RTOL, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
