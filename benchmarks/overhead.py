"""Per-op overhead of tinygrad_rnn against raw NumPy and PyTorch, on tiny tensors.

On 2x2 float32 tensors the arithmetic costs almost nothing, so what is timed is
the bookkeeping around it: wrapping arrays, recording the graph, walking it
backward, accumulating gradients. Three sections:

1. Per op: for each op, a chain of 1,000 applications (each to the previous
   result; binary ops take a second leaf ``w`` every time), then one backward
   from ``h.sum()``. Reported: forward+backward time / 1,000, in microseconds.
     * tinygrad_rnn : the chain through the public API.
     * NumPy floor  : the same forward in plain NumPy, keeping what backward
                      needs, then the hand-written backward arithmetic: no
                      graph, so this is the floor any NumPy engine sits on.
     * PyTorch      : the same chain through torch (when installed).
   tinygrad/NumPy is the price of the graph on top of the arithmetic (1.0
   would be free); tinygrad/PyTorch below 1.0 means faster than PyTorch.
   The exp chain overflows to inf after a few steps: inf costs the same as a
   finite number, so the timing is unaffected (the warnings are silenced).
2. Headline: 1,000 steps of ``h = tanh(h * w)`` (2,000 ops), forward+backward,
   in microseconds per op, against the target of at most 6 us per op.
3. Scaling: the same chain at 1k, 10k and 100k steps: forward and backward
   time per step (flat per-step time = linear total time) and peak traced
   memory per step (tracemalloc: Python objects and NumPy buffers; it cannot
   see PyTorch's C++ allocations or GPU memory). The 100k chain also shows
   that backward needs no recursion (Python's limit is left at its default).
   A last line times tinygrad_rnn's 100k chain with the garbage collector
   off: the difference is what collecting the graph's Python objects costs.

Every time is the minimum over repeats of ``time.perf_counter`` after a
warm-up run, with the garbage collector on, as in a training loop; the
objects of the imported modules are frozen first (``gc.freeze``), so that
importing PyTorch does not slow the collections of the others. Every run
also checks that the three implementations compute the same gradients.

Run:  python benchmarks/overhead.py [--quick] [--device cpu|cuda] [--json PATH]
"""
import argparse
import os
import platform
import sys
from collections import namedtuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]   # this checkout's tinygrad_rnn, and _harness
import tinygrad_rnn as tg  # noqa: E402
from _harness import best_of, cell, freeze_imports, peak_bytes, table, timer, write_json_atomic  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

NAMES = {"tinygrad": "tinygrad_rnn", "numpy": "NumPy floor", "torch": "PyTorch"}
TARGET_US = 6.0
CHAIN = 1000
LENGTHS = (1000, 10_000, 100_000)
REPEATS = {"default": {"per_op": 30, "headline": 50, 1000: 10, 10_000: 5, 100_000: 3},
           "quick": {"per_op": 3, "headline": 5, 1000: 2, 10_000: 1, 100_000: 1}}

# ----- the ops: one step for tinygrad and torch (same syntax), and the NumPy floor -----
# fwd(h, w) -> (out, what backward needs);  bwd(g, saved, w) -> (grad of h, grad of w or None)
Op = namedtuple("Op", "step fwd bwd w ops_per_step", defaults=(None, 1))

H0 = np.array([[0.5, -0.3], [0.8, 0.1]], np.float32)
W_SMALL = np.array([[1e-3, -1e-3], [2e-3, -2e-3]], np.float32)   # h + w grows slowly
W_SIGN = np.array([[1, -1], [-1, 1]], np.float32)                  # h * w keeps |h|
W_ROT = np.array([[np.cos(0.1), -np.sin(0.1)], [np.sin(0.1), np.cos(0.1)]], np.float32)  # h @ w keeps |h|
W_ONE = np.ones((2, 2), np.float32)                                # tanh(h * w) decays slowly, no denormals


def _reshape(h):
    """Alternate between (2, 2) and (4,), so that every step is a real reshape."""
    return h.reshape(4) if h.ndim == 2 else h.reshape(2, 2)


def _sigmoid(h):
    return 0.5 * np.tanh(0.5 * h) + 0.5


def _unary(fn):
    def fwd(h, w):
        y = fn(h)
        return y, y
    return fwd


def _getitem_bwd(g, h, w):
    gh = np.zeros_like(h)
    gh[0:2] = g
    return gh, None


def _mul_tanh_fwd(h, w):
    y = np.tanh(h * w)
    return y, (h, y)


def _mul_tanh_bwd(g, saved, w):
    h, y = saved
    ga = g * (1 - y * y)
    return ga * w, ga * h


OPS = {
    "add": Op(lambda h, w: h + w, lambda h, w: (h + w, None), lambda g, s, w: (g, g), W_SMALL),
    "mul": Op(lambda h, w: h * w, lambda h, w: (h * w, h), lambda g, h, w: (g * w, g * h), W_SIGN),
    "matmul": Op(lambda h, w: h @ w, lambda h, w: (h @ w, h), lambda g, h, w: (g @ w.T, h.T @ g), W_ROT),
    "tanh": Op(lambda h, w: h.tanh(), _unary(np.tanh), lambda g, y, w: (g * (1 - y * y), None)),
    "sigmoid": Op(lambda h, w: h.sigmoid(), _unary(_sigmoid), lambda g, y, w: (g * y * (1 - y), None)),
    "exp": Op(lambda h, w: h.exp(), _unary(np.exp), lambda g, y, w: (g * y, None)),
    "sum": Op(lambda h, w: h.sum(axis=-1, keepdims=True), lambda h, w: (h.sum(axis=-1, keepdims=True), h.shape),
              lambda g, shape, w: (np.broadcast_to(g, shape), None)),
    "reshape": Op(lambda h, w: _reshape(h), lambda h, w: (_reshape(h), h.shape),
                  lambda g, shape, w: (g.reshape(shape), None)),
    "getitem": Op(lambda h, w: h[0:2], lambda h, w: (h[0:2], h), _getitem_bwd),
}
MUL_TANH = Op(lambda h, w: (h * w).tanh(), _mul_tanh_fwd, _mul_tanh_bwd, W_ONE, ops_per_step=2)


# ----- one chain, as a run() for best_of: returns (forward s, backward s, gradients) -----
def synchronize(device):
    """Wait for the GPU's queued work, so that the clock sees it (no-op on cpu)."""
    if device == "cuda":
        tg.backend.array_module("cuda").cuda.get_current_stream().synchronize()
        if torch is not None:
            torch.cuda.synchronize()


def autograd_run(lib, op, n, device):
    """tinygrad_rnn or torch: n steps, then ``h.sum().backward()``; the graph's
    teardown is part of the backward time."""
    leaves = [lib.tensor(a, device=device, requires_grad=True) for a in (H0, op.w) if a is not None]
    h0, w = leaves[0], (leaves[1] if op.w is not None else None)

    def run():
        for t in leaves:
            t.grad = None
        t0 = timer()
        h = h0
        for _ in range(n):
            h = op.step(h, w)
        loss = h.sum()
        synchronize(device)
        t1 = timer()
        loss.backward()
        del h, loss
        synchronize(device)
        t2 = timer()
        return t1 - t0, t2 - t1, [t.grad.detach().cpu().numpy() for t in leaves]
    return run


def floor_run(op, n, device):
    """Plain arrays (NumPy, or CuPy on cuda): forward keeping what backward
    needs, then the hand-written backward, accumulating the gradient of w."""
    xp = tg.backend.array_module(device)
    h0, w = xp.asarray(H0), (xp.asarray(op.w) if op.w is not None else None)

    def run():
        t0 = timer()
        h, saved = h0, []
        for _ in range(n):
            h, s = op.fwd(h, w)
            saved.append(s)
        loss = h.sum()
        synchronize(device)
        t1 = timer()
        g = np.ones_like(h)
        gw = None if w is None else np.zeros_like(w)
        for s in reversed(saved):
            g, dw = op.bwd(g, s, w)
            if gw is not None:
                gw += dw
        grads = [g] if gw is None else [g, gw]
        del saved, h, loss
        synchronize(device)
        t2 = timer()
        return t1 - t0, t2 - t1, [tg.backend.to_device(a, "cpu") for a in grads]
    return run


def make_run(impl, op, n, device):
    if impl == "numpy":
        return floor_run(op, n, device)
    return autograd_run(tg if impl == "tinygrad" else torch, op, n, device)


def impls():
    return ("tinygrad", "numpy") + (("torch",) if torch is not None else ())


def time_all(op, n, device, repeats, warmup=1):
    """{implementation: best_of timings} and {implementation: gradients}."""
    times, grads = {}, {}
    for impl in impls():
        times[impl], grads[impl] = best_of(make_run(impl, op, n, device), repeats, warmup)
    return times, grads


def agree(grads):
    """Names of the implementations whose gradients differ from the NumPy floor's."""
    ref = grads["numpy"]
    return [name for name, g in grads.items()
            if not all(np.allclose(a, b, rtol=1e-3, atol=1e-5, equal_nan=True) for a, b in zip(g, ref))]


def us(seconds, count):
    return seconds / count * 1e6


def ratio(a, b):
    return None if a is None or b is None else a / b


# ----- the three sections -----
def per_op(device, repeats):
    results, rows, mismatches = {}, [], []
    with np.errstate(over="ignore", invalid="ignore"):   # the exp chain overflows on purpose
        for name, op in OPS.items():
            times, grads = time_all(op, CHAIN, device, repeats)
            mismatches += [f"{name} ({impl})" for impl in agree(grads)]
            tg_us, np_us, pt_us = (us(times[i]["total_s"], CHAIN) if i in times else None
                                   for i in ("tinygrad", "numpy", "torch"))
            results[name] = {"tinygrad_us": tg_us, "numpy_us": np_us, "torch_us": pt_us,
                             "tinygrad_over_numpy": ratio(tg_us, np_us), "tinygrad_over_torch": ratio(tg_us, pt_us)}
            rows.append([name, cell(tg_us), cell(np_us), cell(pt_us),
                         cell(ratio(tg_us, np_us), ".1f", "x"), cell(ratio(tg_us, pt_us), ".2f", "x")])
    print(f"1. Per op: chains of {CHAIN:,} ops on 2x2 float32, forward+backward, us per op (min of {repeats})\n")
    print(table(["op", "tinygrad", "NumPy floor", "PyTorch", "tg/NumPy", "tg/PyTorch"], rows))
    print("\ngradients: " + ("all implementations agree" if not mismatches
                             else "MISMATCH in " + ", ".join(mismatches)))
    return results, not mismatches


def headline(device, repeats):
    times, grads = time_all(MUL_TANH, CHAIN, device, repeats)
    per_op_us = {impl: us(t["total_s"], CHAIN * MUL_TANH.ops_per_step) for impl, t in times.items()}
    tg_us = per_op_us["tinygrad"]
    print(f"\n2. Headline: {CHAIN:,} x (mul, tanh) on 2x2, forward+backward, us per op (min of {repeats})\n")
    print(table(["implementation", "us/op"], [[NAMES[k], cell(v)] for k, v in per_op_us.items()]))
    print(f"\ntarget <= {TARGET_US:g} us/op: {'MET' if tg_us <= TARGET_US else 'NOT MET'} ({tg_us:.2f} us/op)")
    return {"tinygrad_us_per_op": tg_us, "numpy_us_per_op": per_op_us["numpy"],
            "torch_us_per_op": per_op_us.get("torch"), "target_us_per_op": TARGET_US,
            "meets_target": tg_us <= TARGET_US, "gradients_agree": not agree(grads)}


def scaling(device, repeats, trace_upto):
    results, rows = {impl: [] for impl in impls()}, []
    try:
        for n in LENGTHS:
            # A 100k chain warms itself up: its first thousand steps are the warm-up.
            times, _ = time_all(MUL_TANH, n, device, repeats[n], warmup=int(n <= 10_000))
            for impl, t in times.items():
                traced = impl != "torch" and device == "cpu" and n <= trace_upto
                mem = peak_bytes(make_run(impl, MUL_TANH, n, device)) / n if traced else None
                results[impl].append({"steps": n, "fwd_us_per_step": us(t["fwd_s"], n),
                                      "bwd_us_per_step": us(t["bwd_s"], n), "peak_bytes_per_step": mem})
                rows.append([f"{n:,}", NAMES[impl], cell(us(t["fwd_s"], n)), cell(us(t["bwd_s"], n)),
                             cell(mem, ".0f")])
        recursion_ok = True
    except RecursionError:
        recursion_ok = False
    print("\n3. Scaling: h = tanh(h * w) on (2,2), per step (min of "
          + " / ".join(str(repeats[n]) for n in LENGTHS) + " runs)\n")
    print(table(["steps", "implementation", "fwd us/step", "bwd us/step", "peak bytes/step"], rows))
    if trace_upto < LENGTHS[-1]:
        print(f"(--quick traces memory up to {trace_upto:,} steps only)")
    flat = {impl: e[-1]["bwd_us_per_step"] / e[0]["bwd_us_per_step"] for impl, e in results.items() if len(e) > 1}
    print(f"\nbackward us/step at {LENGTHS[-1]:,} over at {LENGTHS[0]:,} steps (1.00 = linear total time): "
          + ", ".join(f"{NAMES[impl]} {r:.2f}" for impl, r in flat.items()))
    print(f"{LENGTHS[-1]:,}-step backward with Python's recursion limit at {sys.getrecursionlimit()}: "
          + ("ok, no RecursionError" if recursion_ok else "FAILED with RecursionError"))
    return results, recursion_ok


def gc_share(device, repeats):
    """tinygrad at the longest chain with the garbage collector off, to show its share."""
    t, _ = best_of(make_run("tinygrad", MUL_TANH, LENGTHS[-1], device), repeats, warmup=0, gc_on=False)
    fwd, bwd = us(t["fwd_s"], LENGTHS[-1]), us(t["bwd_s"], LENGTHS[-1])
    print(f"tinygrad_rnn at {LENGTHS[-1]:,} steps with the garbage collector off: "
          f"fwd {fwd:.2f}, bwd {bwd:.2f} us/step")
    return {"steps": LENGTHS[-1], "fwd_us_per_step": fwd, "bwd_us_per_step": bwd}


def meta(args, torch_note):
    info = {"python": platform.python_version(), "numpy": np.__version__, "tinygrad_rnn": tg.__version__,
            "torch": torch.__version__ if torch is not None else None, "device": args.device,
            "cpu_count": os.cpu_count(), "machine": platform.machine(), "quick": args.quick}
    print("tinygrad_rnn overhead benchmark: " + ", ".join(f"{k} {v}" for k, v in info.items() if v is not None))
    print(torch_note or f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads")
    print()
    return info


def main(argv=None):
    global torch
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke test (under 20 s)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    torch_note = "PyTorch not installed" if torch is None else None
    if args.device == "cuda":
        if not tg.cuda_available():
            print("CUDA is unavailable (no GPU, or CuPy not installed); nothing to measure")
            return 0
        if torch is not None and not torch.cuda.is_available():
            torch, torch_note = None, "PyTorch is installed without CUDA: not compared"
    repeats = REPEATS["quick" if args.quick else "default"]
    freeze_imports()
    out = {"meta": meta(args, torch_note)}
    out["per_op"], per_op_agree = per_op(args.device, repeats["per_op"])
    out["headline"] = headline(args.device, repeats["headline"])
    trace_upto = 10_000 if args.quick else LENGTHS[-1]
    out["scaling"], out["recursion_ok"] = scaling(args.device, repeats, trace_upto)
    out["tinygrad_gc_off"] = gc_share(args.device, repeats[LENGTHS[-1]])
    out["gradients_agree"] = per_op_agree and out["headline"]["gradients_agree"]
    if args.json:
        write_json_atomic(args.json, out)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
