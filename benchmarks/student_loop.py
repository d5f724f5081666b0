"""A student's loop: ``h = cell(x[t], h)`` for t = 0..T-1, then one backward, with the
garbage collector on, as a user writes it. Each call of a cell is its own graph node
(a kernel cell's kernel over one step), so this times the engine's bookkeeping per
step and whether it stays linear in T: microseconds per step at T = 1k, 10k and 100k,
and the ratio of the 100k figure to the 1k one (1.0 = exactly linear; the target is
at most 1.3). What could break linearity is the cyclic collector walking an ever
larger graph of Python objects.

Run:  python benchmarks/student_loop.py [--quick] [--kinds rnn,lstm] [--repeats 3]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tinygrad_rnn as tg  # noqa: E402
from _harness import best_of, freeze_imports, table, timer  # noqa: E402

CELLS = {"rnn": tg.nn.RNNCell, "lstm": tg.nn.LSTMCell}
STEPS = {"default": (1_000, 10_000, 100_000), "quick": (100, 1_000)}
BATCH, SIZE = 4, 16


def student_run(kind, steps, seed=0):
    """A function timing one forward loop and one backward over ``steps`` steps."""
    rng = np.random.default_rng(seed)
    cell = CELLS[kind](SIZE, SIZE)
    x = tg.tensor(rng.standard_normal((steps, BATCH, SIZE)).astype(np.float32))

    def run():
        start = timer()
        h = None
        for t in range(steps):
            h = cell(x[t], h)
        loss = (h[0] if isinstance(h, tuple) else h).sum()
        middle = timer()
        loss.backward()
        return middle - start, timer() - middle, cell.weight_hh.grad
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k steps at most (a smoke test)")
    parser.add_argument("--kinds", default="rnn,lstm", help="comma-separated subset of rnn,lstm")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per length (the minimum is shown)")
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    unknown = sorted(set(kinds) - set(CELLS))
    if unknown:
        parser.error(f"--kinds: unknown {unknown}; expected a subset of {sorted(CELLS)}")
    lengths = STEPS["quick" if args.quick else "default"]
    freeze_imports()
    print(f"h = cell(x[t], h), B = {BATCH}, I = H = {SIZE}, float32, forward loop + backward, gc on; "
          f"min of {args.repeats} runs; load average at start {os.getloadavg()[0]:.2f}")
    rows = []
    for kind in kinds:
        per_step = {}
        for steps in lengths:
            times, grad = best_of(student_run(kind, steps), args.repeats if steps < 100_000 else 1)
            if not np.all(np.isfinite(grad.numpy())):
                raise SystemExit(f"{kind}: non-finite weight gradient at T = {steps}")
            per_step[steps] = times["total_s"] / steps * 1e6
            rows.append([kind, f"{steps:,}", f"{times['fwd_s'] / steps * 1e6:.1f}",
                         f"{times['bwd_s'] / steps * 1e6:.1f}", f"{per_step[steps]:.1f}",
                         f"{per_step[steps] / per_step[lengths[0]]:.2f}x"])
    print(table(["cell", "T", "fwd us/step", "bwd us/step", "total us/step", f"vs T={lengths[0]:,}"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
