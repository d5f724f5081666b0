"""``python -m tinygrad_rnn.study.explore --cell lstm --steps 50 --out bptt.html``

Builds a cell, gives it adding-problem sequences (see :mod:`.tasks`), writes the page.
With ``--train N`` the cell is first explored as initialised, then trained for N
batches and explored again: one page with both runs, to compare before and after.
"""
import argparse
import sys
import time

import numpy as np

from ... import creation, float32, float64, manual_seed
from ...nn import Linear
from . import combine, explore
from .tasks import CELLS, BASELINE_MSE, LastStepMSE, adding_problem, last_step_targets, make_cell, train


def parser():
    p = argparse.ArgumentParser(prog="python -m tinygrad_rnn.study.explore",
                                description="Write one self-contained HTML page that shows backpropagation through "
                                            "time in a recurrent cell on the adding problem.")
    p.add_argument("--cell", default="lstm", choices=list(CELLS),
                   help="; ".join(f"{k}: {v[1]}" for k, v in CELLS.items()))
    p.add_argument("--steps", type=int, default=50, help="sequence length T (default 50)")
    p.add_argument("--hidden", type=int, default=16, help="hidden units H (default 16)")
    p.add_argument("--batch", type=int, default=8, help="sequences shown (default 8)")
    p.add_argument("--train", type=int, default=0, metavar="N",
                   help="train for N batches of 32 after a first look, and show both (default 0: no training)")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate for --train (default 0.01)")
    p.add_argument("--truncate", type=int, default=None, metavar="K", help="mark truncated-BPTT cuts every K steps")
    p.add_argument("--checkpoint", type=int, default=None, metavar="K",
                   help="mark where checkpoint segments of K steps begin")
    p.add_argument("--float32", action="store_true", help="compute in float32 (default float64)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bptt.html", help="the page to write (default bptt.html)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    for flag in ("steps", "hidden", "batch"):
        if getattr(args, flag) < (2 if flag == "steps" else 1):
            raise SystemExit(f"--{flag} must be at least {2 if flag == 'steps' else 1}, got {getattr(args, flag)}")
    if args.train < 0:
        raise SystemExit(f"--train must be >= 0, got {args.train}")
    for flag in ("truncate", "checkpoint"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SystemExit(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    dtype = float32 if args.float32 else float64
    start = time.perf_counter()
    manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    try:
        cell = make_cell(args.cell, 2, args.hidden, args.device, dtype)
    except ValueError as error:
        raise SystemExit(f"--cell {args.cell} --hidden {args.hidden}: {error}") from None
    loss = LastStepMSE(Linear(getattr(cell, "output_size", None) or args.hidden, 1, device=args.device, dtype=dtype))
    x, y = adding_problem(np.random.default_rng(args.seed + 1), args.steps, args.batch)
    x = creation.tensor(x, dtype=dtype, device=args.device)
    targets = last_step_targets(y, args.steps, args.device, dtype)
    title = f"Backpropagation through time: {args.cell}, adding problem, T = {args.steps}"
    look = dict(truncate=args.truncate, checkpoint=args.checkpoint, title=title)
    report = explore(cell, x, loss, targets, name=f"{args.cell}" + (", as initialised" if args.train else ""), **look)
    if args.train:
        curve = train(cell, loss, args.steps, 32, args.train, rng, lr=args.lr, device=args.device, dtype=dtype)
        tail = float(np.mean(curve[-min(50, len(curve)):]))
        print(f"trained {args.train} batches: training MSE {tail:.4f} over the last batches "
              f"(always answering 1: {BASELINE_MSE:.3f})")
        report = combine(report, explore(cell, x, loss, targets, name=f"{args.cell}, after {args.train} batches",
                                         **look))
    path = report.save(args.out)
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s: open it in a browser")
    return 0


if __name__ == "__main__":
    sys.exit(main())
