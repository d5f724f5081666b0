"""One training step of tg.nn.LSTM / GRU / RNN against hand-written NumPy and PyTorch.

The step, float32, one layer, one direction, zero initial state, x requiring grad:

    output, h_n = layer(x)                  # x (T, B, I)
    loss = sum(h_n[0] * v)                  # v (B, H), fixed random weights
    loss.backward()                         # gradients of x and every parameter

It is timed for three implementations with the same weights and inputs:

* tinygrad_rnn  : ``tg.nn.LSTM`` / ``GRU`` / ``RNN`` (tanh), their hand-tuned kernels, through the public API;
* NumPy ref     : ``benchmarks/numpy_rnn.py``, the same forward and BPTT written out by hand
                  (one input-projection matmul, one recurrent matmul per step each way, weight
                  gradients in one matmul over all steps): about the limit any NumPy framework
                  can reach, so tinygrad/NumPy is the price of the framework (1.0 = free);
* PyTorch       : ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` on the CPU, when torch is importable.

How it is measured:

* every time is the minimum over repeats of ``time.perf_counter``, after one untimed
  warm-up call, with the garbage collector on (collected before each call) and the
  objects of the imported modules frozen (``gc.freeze``); forward and backward are timed
  apart inside each call and "step" is the fastest forward+backward call;
* the three implementations take turns (one call of each per round), so that load from
  other processes falls on all of them alike and the ratios stay meaningful;
* repeats adapt to the cost of a step: as many as fit in a fixed time budget per
  implementation and config, between 2 and 20 (the ``reps`` column, tinygrad/NumPy/PyTorch);
* before any timing, the NumPy reference is CHECKED against tinygrad_rnn (and PyTorch
  when present) in float64 on a small config with the same weights: loss and every
  gradient must agree to 1e-8 relative (max |a - b| / max |b|), or the run aborts;
  every timed float32 step is also compared (a warning above 1e-3 relative);
* "backward vs T" repeats the B=16, I=H=64 config at growing T: a flat per-step time
  means the backward pass is linear in T;
* "cells written as graph ops" times, in one interleaved run per config, the layers of
  cells that have no kernel (the README's LSTM recipe, Peephole, Coupled, MinimalGated,
  and the built-in cells' composed steps, ``fused=False``), whose sequences run as the
  traced step, against the built-in layers and their hand-tuned kernels;
* peak memory is measured in separate, untimed passes, two ways: with ``tracemalloc``
  (NumPy buffers and Python objects, the peak above what existed before the step;
  PyTorch allocates in C++ out of its sight), and as resident memory for all three:
  each implementation runs in a fresh child process (``--rss-child``) with glibc's
  mmap threshold fixed, so that freed buffers go back to the OS, and reports its
  peak RSS during one step (after a warm-up) above its RSS before it.

Run:  python benchmarks/rnn_step.py [--quick] [--kinds lstm,gru,rnn] [--configs 1,4|TxBxIxH,...] [--json PATH]
"""
import argparse
import gc
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]   # this checkout's tinygrad_rnn, _harness and numpy_rnn
import tinygrad_rnn as tg  # noqa: E402
from tinygrad_rnn.nn.kernels import clear_plans  # noqa: E402
from _harness import best_of, cell, freeze_imports, parse_kinds, peak_bytes, table, timer, write_json_atomic  # noqa: E402
from graph_op_cells import LAYERS as GRAPH_OP_LAYERS  # noqa: E402
from numpy_rnn import BACKWARD, FORWARD, Workspace  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

KINDS = ("lstm", "gru", "rnn")
LAYERS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
IMPLS = ("tinygrad", "numpy", "torch")
CONFIGS = [(100, 64, 128, 128), (100, 64, 256, 256), (100, 64, 512, 512),
           (50, 1, 64, 64), (1000, 16, 64, 64), (10_000, 16, 64, 64)]
QUICK_CONFIGS = [(50, 1, 64, 64), (100, 16, 64, 64)]
GRAPH_OP_CONFIGS = [(100, 64, 256, 256), (1000, 16, 64, 64), (200, 8, 32, 32)]
LINEAR_T = {"default": (100, 1000, 10_000), "quick": (100, 500)}   # at B=16, I=H=64
MEMORY_T = {"default": 10_000, "quick": 1000}
BUDGET_S = {"default": 3.0, "quick": 0.2}        # time for the repeats of one implementation and config
MAX_REPEATS = {"default": 20, "quick": 3}
MIN_REPEATS = {"default": 2, "quick": 2}
CHECK_CONFIG = (7, 3, 5, 4)                      # T, B, I, H of the float64 check
CHECK_RTOL = 1e-8
AGREE_RTOL = 1e-3                                # float32 timed steps


# ----- the three implementations of one step -----
# make_* returns run() -> (forward_s, backward_s, result); result(...) gives (loss, {name: grad}).

def make_problem(kind, config, dtype, seed=0, nonlinearity="tanh"):
    """A tinygrad_rnn layer with its default init, an input x and the loss weights v."""
    steps, batch, inputs, hidden = config
    tg.manual_seed(seed)
    extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    layer = getattr(tg.nn, LAYERS[kind])(inputs, hidden, dtype=dtype, **extra)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch, inputs)).astype(dtype)
    v = rng.standard_normal((batch, hidden)).astype(dtype)
    return layer, x, v


def make_tinygrad(layer, x, v):
    weights = tg.Tensor(v)

    def run():
        layer.zero_grad()
        xt = tg.Tensor(x, requires_grad=True)          # wraps x, no copy
        t0 = timer()
        _, state = layer(xt)
        h_n = state[0] if isinstance(state, tuple) else state
        loss = (h_n[0] * weights).sum()
        t1 = timer()
        loss.backward()
        t2 = timer()
        return t1 - t0, t2 - t1, (loss, xt)

    run.layer = layer

    def result(out):
        loss, xt = out
        grads = {name: p.grad.numpy() for name, p in layer.named_parameters()}
        return float(loss.item()), {"x": xt.grad.numpy(), **grads}

    return run, result


def make_numpy(kind, params, x, v, nonlinearity="tanh"):
    extra = (nonlinearity,) if kind == "rnn" else ()
    ws = Workspace()     # this problem's buffers, reused by every call (the gradients returned are fresh arrays)

    def run():
        t0 = timer()
        h_last, cache = FORWARD[kind](x, params, *extra, ws=ws)
        loss = np.sum(h_last * v)
        t1 = timer()
        grads = BACKWARD[kind](cache, v)
        t2 = timer()
        return t1 - t0, t2 - t1, (loss, grads)

    run.workspace = ws
    return run, lambda out: (float(out[0]), out[1])


def make_torch(kind, params, x, v, nonlinearity="tanh"):
    inputs, hidden = x.shape[2], params["weight_hh_l0"].shape[1]
    extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    module = getattr(torch.nn, LAYERS[kind])(inputs, hidden, **extra).to(torch.from_numpy(x).dtype)
    module.load_state_dict({name: torch.from_numpy(np.array(a)) for name, a in params.items()})
    xs, weights = torch.from_numpy(x), torch.from_numpy(v)

    def run():
        module.zero_grad(set_to_none=True)
        xt = xs.detach().requires_grad_()
        t0 = timer()
        _, state = module(xt)
        h_n = state[0] if isinstance(state, tuple) else state
        loss = (h_n[0] * weights).sum()
        t1 = timer()
        loss.backward()
        t2 = timer()
        return t1 - t0, t2 - t1, (loss, xt)

    def result(out):
        loss, xt = out
        grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
        return float(loss.item()), {"x": xt.grad.numpy(), **grads}

    return run, result


def make_all(kind, config, dtype=np.float32, nonlinearity="tanh"):
    """{impl: (run, result)} for the implementations available, all with the same weights."""
    layer, x, v = make_problem(kind, config, dtype, nonlinearity=nonlinearity)
    params = layer.state_dict()
    impls = {"tinygrad": make_tinygrad(layer, x, v), "numpy": make_numpy(kind, params, x, v, nonlinearity)}
    if torch is not None:
        impls["torch"] = make_torch(kind, params, x, v, nonlinearity)
    return impls


def max_rel_diff(a, b):
    """The largest relative difference of the loss and the gradients: max |a - b| / max |b| each."""
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    worst, where = abs(loss_a - loss_b) / max(abs(loss_b), 1e-300), "loss"
    for name, gb in grads_b.items():
        err = float(np.max(np.abs(grads_a[name] - gb)) / max(float(np.max(np.abs(gb))), 1e-300))
        if err > worst:
            worst, where = err, name
    return worst, where


# ----- sections -----

def check_reference(kinds):
    """Float64, small config: the NumPy reference and PyTorch against tinygrad_rnn. Aborts on a mismatch."""
    cases = [(k, "tanh") for k in kinds] + ([("rnn", "relu")] if "rnn" in kinds else [])
    report = {}
    print(f"Reference check (float64, T,B,I,H = {CHECK_CONFIG}, same weights, limit {CHECK_RTOL:g} relative):")
    for kind, act in cases:
        impls = make_all(kind, CHECK_CONFIG, np.float64, act)
        results = {}
        for name, (run, result) in impls.items():
            results[name] = result(run()[2])
        label = kind + ("" if kind != "rnn" else f" ({act})")
        errors = {name: max_rel_diff(results[name], results["tinygrad"]) for name in results if name != "tinygrad"}
        for name, (err, where) in errors.items():
            if not err <= CHECK_RTOL:
                sys.exit(f"ABORT: reference check failed for {label}: {name} differs from tinygrad_rnn in "
                         f"'{where}' by {err:.3g} relative (limit {CHECK_RTOL:g}). The implementations do not "
                         "compute the same step, so timing them against each other would mean nothing.")
        report[label] = {name: err for name, (err, _) in errors.items()}
        print("  " + label.ljust(11) + "  ".join(f"{name}: max rel diff {err:.1e}" for name, (err, _) in errors.items())
              + "  ok")
    return report


def time_interleaved(runs, quick):
    """Min times of each ``run`` in ``runs`` ({name: run}), the implementations taking turns.

    A first, untimed call of each sizes its repeats (as many as fit the budget); then the
    repeats run round-robin, one call of each implementation per round, so that load from
    other processes on the machine falls on all of them alike."""
    mode = "quick" if quick else "default"
    repeats = {}
    for name, run in runs.items():
        start = timer()
        run()
        first = timer() - start
        repeats[name] = int(min(MAX_REPEATS[mode], max(MIN_REPEATS[mode], BUDGET_S[mode] // max(first, 1e-9))))
    best = {name: {"fwd_s": math.inf, "bwd_s": math.inf, "total_s": math.inf} for name in runs}
    outs = {}
    for round_ in range(max(repeats.values())):
        for name, run in runs.items():
            if round_ < repeats[name]:
                times, outs[name] = best_of(run, 1, warmup=0)
                best[name] = {key: min(best[name][key], times[key]) for key in times}
    return {name: {"fwd_ms": 1e3 * b["fwd_s"], "bwd_ms": 1e3 * b["bwd_s"], "step_ms": 1e3 * b["total_s"],
                   "repeats": repeats[name]} for name, b in best.items()}, outs


def time_config(kind, config, quick):
    """Times of every implementation for one kind and config, and how far their results are apart."""
    row = {"kind": kind, "T": config[0], "B": config[1], "I": config[2], "H": config[3], "torch": None}
    impls = make_all(kind, config)
    times, outs = time_interleaved({name: run for name, (run, _) in impls.items()}, quick)
    row.update(times)
    results = {name: impls[name][1](out) for name, out in outs.items()}
    ref = results["tinygrad"]
    row["max_rel_diff"] = max(max_rel_diff(r, ref)[0] for n, r in results.items() if n != "tinygrad")
    step = {n: row[n]["step_ms"] if row[n] else None for n in IMPLS}
    row["tinygrad_over_numpy"] = step["tinygrad"] / step["numpy"]
    row["tinygrad_over_torch"] = step["tinygrad"] / step["torch"] if step["torch"] else None
    return row


def print_kind_table(kind, rows):
    def ms(r, impl, key):
        value = r[impl][key] if r[impl] else None
        return cell(value, ".2f" if value is None or value < 100 else ".0f")

    headers = ["T,B,I,H", "reps tg/np/pt", "tg fwd", "tg bwd", "tg step", "np fwd", "np bwd", "np step",
               "pt step", "tg/np", "tg/pt"]
    body = []
    for r in rows:
        reps = "/".join(str(r[i]["repeats"]) if r[i] else "-" for i in IMPLS)
        body.append([f"{r['T']},{r['B']},{r['I']},{r['H']}", reps, ms(r, "tinygrad", "fwd_ms"),
                     ms(r, "tinygrad", "bwd_ms"), ms(r, "tinygrad", "step_ms"), ms(r, "numpy", "fwd_ms"),
                     ms(r, "numpy", "bwd_ms"), ms(r, "numpy", "step_ms"), ms(r, "torch", "step_ms"),
                     cell(r["tinygrad_over_numpy"], ".2f", "x"), cell(r["tinygrad_over_torch"], ".2f", "x")])
    print(f"\n{LAYERS[kind]}: one training step, ms (tg = tinygrad_rnn, np = NumPy ref, pt = PyTorch)")
    print(table(headers, body))
    for r in rows:
        if not r["max_rel_diff"] <= AGREE_RTOL:
            print(f"  WARNING: at {r['T']},{r['B']},{r['I']},{r['H']} the float32 results differ by "
                  f"{r['max_rel_diff']:.2g} relative (more than {AGREE_RTOL:g})")


def linearity(kinds, rows, quick):
    """Backward time against T at B=16, I=H=64, reusing the timed configs where they match."""
    lengths = LINEAR_T["quick" if quick else "default"]
    done = {(r["kind"], r["T"], r["B"], r["I"], r["H"]): r for r in rows}
    out = []
    for kind in kinds:
        for steps in lengths:
            config = (steps, 16, 64, 64)
            r = done.get((kind, *config)) or time_config(kind, config, quick)
            entry = {"kind": kind, "T": steps}
            for impl in IMPLS:
                bwd = r[impl]["bwd_ms"] if r[impl] else None
                entry[f"{impl}_bwd_ms"] = bwd
                entry[f"{impl}_bwd_us_per_step"] = None if bwd is None else 1e3 * bwd / steps
            out.append(entry)

    print("\nBackward time vs T (B=16, I=H=64): ms, and us per time step (flat per-step time = linear in T)")
    body = []
    for e in out:
        body.append([LAYERS[e["kind"]], e["T"]])
        for impl in IMPLS:
            body[-1] += [cell(e[f"{impl}_bwd_ms"], ".1f"), cell(e[f"{impl}_bwd_us_per_step"], ".1f")]
    print(table(["kind", "T", "tg ms", "tg us/step", "np ms", "np us/step", "pt ms", "pt us/step"], body))
    first, last = lengths[0], lengths[-1]
    print(f"  backward us per step at T={last} / at T={first} (1.00 = exactly linear, {last // first} = quadratic):")
    for kind in kinds:
        short, long = [e for e in out if e["kind"] == kind and e["T"] in (first, last)]
        ratios = [f"{label} {long[f'{impl}_bwd_us_per_step'] / short[f'{impl}_bwd_us_per_step']:.2f}"
                  for impl, label in zip(IMPLS, ("tinygrad_rnn", "NumPy ref", "PyTorch"))
                  if short[f"{impl}_bwd_us_per_step"]]
        print(f"    {LAYERS[kind]:4s}  " + ",  ".join(ratios))
    return out


def memory(quick):
    """Peak memory of one float32 LSTM step at long T: traced (tinygrad_rnn, NumPy reference) and
    resident (all three, each in a fresh child process)."""
    config = (MEMORY_T["quick" if quick else "default"], 16, 64, 64)
    impls = make_all("lstm", config)
    peaks = {name: peak_bytes(impls[name][0]) for name in ("tinygrad", "numpy")}
    del impls
    rss = {name: rss_peak_bytes(name, config) for name in IMPLS if name != "torch" or torch is not None}
    steps = config[0]
    print(f"\nPeak memory of one LSTM step, T,B,I,H = {config} (float32; separate untimed passes):")
    print("  traced: tracemalloc, NumPy buffers and Python objects (PyTorch allocates out of its sight);")
    print("  resident: peak RSS above the RSS before the step, in a fresh process per implementation")
    print("  with glibc's mmap threshold fixed, so freed buffers go back to the OS")
    for name, label in (("tinygrad", "tinygrad_rnn"), ("numpy", "NumPy ref"), ("torch", "PyTorch")):
        traced = f"{peaks[name] / 2**20:8.1f} MiB traced" if name in peaks else f"{'—':>8s}           "
        resident = f"{rss[name] / 2**20:8.1f} MiB resident" if rss.get(name) else "—"
        print(f"  {label:13s} {traced}   {resident}")
    ratio = peaks["tinygrad"] / peaks["numpy"]
    torch_ratio = rss["tinygrad"] / rss["torch"] if rss.get("torch") and rss.get("tinygrad") else None
    print(f"  tinygrad_rnn / NumPy ref (traced): {ratio:.2f}x" +
          (f";  tinygrad_rnn / PyTorch (resident): {torch_ratio:.2f}x" if torch_ratio else ""))
    return {"T": steps, "B": 16, "I": 64, "H": 64, "tinygrad_peak_bytes": peaks["tinygrad"],
            "numpy_peak_bytes": peaks["numpy"], "tinygrad_over_numpy": ratio,
            "resident_peak_bytes": rss, "tinygrad_over_torch_resident": torch_ratio}


def rss_peak_bytes(impl, config):
    """Run ``--rss-child`` in a fresh interpreter; its peak resident bytes for one step (None on failure)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", impl, "--configs", "x".join(map(str, config))]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    return int(lines[-1]) if done.returncode == 0 and lines and lines[-1].isdigit() else None


def _status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def rss_child(impl, config):
    """In a child process: one warm-up step, then the peak RSS of one more step above the RSS before it
    (the kernel's high-water mark is reset in between through /proc/self/clear_refs)."""
    run, _ = make_all("lstm", config)[impl]
    run()
    if impl == "numpy":
        run.workspace.clear()        # its buffers count in the step, as the others' do
    if impl == "tinygrad":
        for layer_cell in run.layer.cells():
            clear_plans(layer_cell)  # likewise the buffers its kernel keeps between calls
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    run()
    print((_status_kib("VmHWM") - before) * 1024)


# ----- cells written as graph ops -----

def graph_op_cells(configs, quick):
    """Layers of cells written only as graph ops (their sequences run as the traced step: the
    README's LSTM recipe, the variants, the README's MinimalGatedCell, and the built-in cells'
    own composed steps) against the built-in layers, which run hand-tuned kernels. All take
    turns in one run per config; each ratio is to the built-in layer named beside it."""
    rows = []
    for config in configs:
        steps, batch, inputs, hidden = config
        rng = np.random.default_rng(0)
        x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
        v = rng.standard_normal((batch, hidden)).astype(np.float32)
        tg.manual_seed(0)
        layers = {f"nn.{LAYERS[kind]} (kernel)": getattr(tg.nn, LAYERS[kind])(inputs, hidden) for kind in KINDS}
        layers.update((name, make(inputs, hidden, tg.float32)) for name, (make, _) in GRAPH_OP_LAYERS.items())
        times, _ = time_interleaved({name: make_tinygrad(layer, x, v)[0] for name, layer in layers.items()}, quick)
        for name, t in times.items():
            reference = f"nn.{LAYERS[GRAPH_OP_LAYERS[name][1]]} (kernel)" if name in GRAPH_OP_LAYERS else None
            rows.append({"T": steps, "B": batch, "I": inputs, "H": hidden, "layer": name, **t,
                         "reference": reference,
                         "over_reference": t["step_ms"] / times[reference]["step_ms"] if reference else None})
    print("\nCells written as graph ops (sequences run as the traced step) against the built-in layers "
          "(hand-tuned kernels), ms per training step and the ratio to the built-in named")
    body = [[f"{r['T']},{r['B']},{r['I']},{r['H']}", r["layer"], r["repeats"], cell(r["fwd_ms"]), cell(r["bwd_ms"]),
             cell(r["step_ms"]), r["reference"] or "", cell(r["over_reference"], ".2f", "x")] for r in rows]
    print(table(["T,B,I,H", "layer", "reps", "fwd", "bwd", "step", "against", "ratio"], body))
    return rows


# ----- command line -----

def parse_configs(text, quick):
    if not text:
        return QUICK_CONFIGS if quick else CONFIGS
    configs = []
    for item in text.split(","):
        item = item.strip()
        if item.isdigit():
            if not 1 <= int(item) <= len(CONFIGS):
                raise SystemExit(f"--configs: index {item} is out of range 1..{len(CONFIGS)}")
            configs.append(CONFIGS[int(item) - 1])
        else:
            parts = item.lower().split("x")
            if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise SystemExit(f"--configs: {item!r} is neither an index 1..{len(CONFIGS)} nor TxBxIxH")
            configs.append(tuple(int(p) for p in parts))
    return configs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small configs and few repeats (a smoke test)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset of lstm,gru,rnn")
    configs_help = "; ".join(f"{i}: {'x'.join(map(str, c))}" for i, c in enumerate(CONFIGS, 1))
    parser.add_argument("--configs", default="", help=f"comma-separated indices or TxBxIxH ({configs_help})")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    parser.add_argument("--rss-child", choices=IMPLS, help=argparse.SUPPRESS)   # used by memory()
    args = parser.parse_args(argv)
    kinds, configs = parse_kinds(args.kinds, KINDS), parse_configs(args.configs, args.quick)
    if args.rss_child:
        return rss_child(args.rss_child, configs[0])
    mode = "quick" if args.quick else "default"
    began = time.perf_counter()
    freeze_imports()

    print("One training step of a single-layer RNN/LSTM/GRU: forward over T steps, loss = sum(h_T * v), "
          "backward (x requires grad)")
    print(f"Python {platform.python_version()}, NumPy {np.__version__}, tinygrad_rnn {tg.__version__}, "
          + (f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else
             "PyTorch absent (pip install torch to add it)") + f", {os.cpu_count()} CPUs, {platform.machine()}")
    print(f"Load average (1, 5, 15 min) at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}: other "
          "processes on these CPUs make the times noisy")
    print(f"Times: min over repeats after 1 warm-up, gc on; repeats fit a {BUDGET_S[mode]:g} s budget per "
          f"implementation and config, {MIN_REPEATS[mode]} to {MAX_REPEATS[mode]}, so the big configs get fewer; "
          "the implementations take turns, one call each per round.")
    if torch is None:
        print("PyTorch is absent: its columns show a dash.")
    print()
    check = check_reference(kinds)

    rows = []
    for kind in kinds:
        kind_rows = [time_config(kind, config, args.quick) for config in configs]
        print_kind_table(kind, kind_rows)
        rows += kind_rows
    linear = linearity(kinds, rows, args.quick)
    graph_ops = graph_op_cells(QUICK_CONFIGS if args.quick else GRAPH_OP_CONFIGS + [c for c in configs
                                                                                    if c not in GRAPH_OP_CONFIGS],
                               args.quick) if set(kinds) == set(KINDS) else None
    mem = memory(args.quick) if "lstm" in kinds else None
    elapsed = time.perf_counter() - began
    print(f"\nTotal run time: {elapsed:.0f} s; load average at the end: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if args.json:
        write_json_atomic(args.json, {
            "meta": {"python": platform.python_version(), "numpy": np.__version__, "tinygrad_rnn": tg.__version__,
                     "torch": torch.__version__ if torch else None, "cpus": os.cpu_count(), "quick": args.quick,
                     "dtype": "float32", "budget_s": BUDGET_S[mode], "max_repeats": MAX_REPEATS[mode],
                     "min_repeats": MIN_REPEATS[mode], "statistic": "min", "elapsed_s": elapsed},
            "check": {"rtol": CHECK_RTOL, "max_rel_diff": check},
            "results": rows, "backward_vs_T": linear, "graph_op_cells": graph_ops, "memory": mem})
    return 0


if __name__ == "__main__":
    sys.exit(main())
