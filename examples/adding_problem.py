"""The adding problem (Hochreiter & Schmidhuber 1997) at T = 100.

Each input step holds a number drawn from U(0, 1) and a marker; exactly two
steps are marked, one in each half, and the target is the sum of their two
numbers. Always answering 1 gives an MSE of 1/6 = 0.167 (the variance of the
sum). Gated cells learn to carry the two numbers across ~50 steps and drive
the MSE far below that; a tanh RNN's gradient vanishes over that distance and
it stays near the baseline.

Besides the learning curves (adding_problem.png), the script writes one page,
adding_problem.html (tinygrad_rnn.study.explore; open it in a browser), with each
layer as initialised and after training: how far back the gradient of the
last-step loss reaches, which input steps the output depends on, what the gates
do, and how truncated BPTT would bias the gradient, before and after.

Run:  python examples/adding_problem.py [--steps 100] [--iterations 2500] [--device cpu|cuda] [--smoke]
"""
import os
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.study import explore
from tinygrad_rnn.study.explore import combine
from tinygrad_rnn.study.explore.tasks import LastStepMSE, last_step_targets
from _common import parser, progress, pyplot, save_figure, start

BASELINE = 1 / 6


def batch(rng, steps, size):
    """Inputs (T, B, 2) and targets (B, 1)."""
    values = rng.uniform(0, 1, (steps, size))
    markers = np.zeros((steps, size))
    first = rng.integers(0, steps // 2, size)
    second = rng.integers(steps // 2, steps, size)
    markers[first, np.arange(size)] = markers[second, np.arange(size)] = 1
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[first, np.arange(size)] + values[second, np.arange(size)])[:, None].astype(np.float32)
    return x, y


class Regressor(nn.Module):
    """A recurrent layer read out by a linear layer at the last step."""

    def __init__(self, layer, hidden, device):
        self.rnn = layer(2, hidden, device=device)
        if isinstance(self.rnn, nn.LSTM):
            nn.init.lstm_forget_bias_(self.rnn, 1.0)
        self.readout = nn.Linear(hidden, 1, device=device)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.readout(out[-1])


def look(name, model, args):
    """The layer's run for the page, on four fixed sequences: the readout's MSE at the last step,
    written as a sum over steps (a 0/1 weight per step in the targets), as study.explore needs."""
    x, y = batch(np.random.default_rng(2024), args.steps, 4)
    targets = last_step_targets(y, args.steps, device=args.device, dtype=tg.float32)
    return explore(model.rnn, tg.tensor(x, device=args.device), LastStepMSE(model.readout), targets, name=name,
                   title=f"Adding problem, T = {args.steps}: before and after training")


def train(name, layer, args, pages):
    tg.manual_seed(args.seed)
    model = Regressor(layer, args.hidden, args.device)
    pages.append(look(f"{name}, as initialised", model, args))
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    curve = []
    for _ in progress(range(args.iterations), desc=f"{name:>8}", leave=False):
        x, y = batch(rng, args.steps, args.batch)
        loss = tg.functional.mse_loss(model(tg.tensor(x, device=args.device)), tg.tensor(y, device=args.device))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
    test_x, test_y = batch(np.random.default_rng(12345), args.steps, 1000)
    with tg.no_grad():
        test = tg.functional.mse_loss(model(tg.tensor(test_x, device=args.device)),
                                      tg.tensor(test_y, device=args.device)).item()
    pages.append(look(f"{name}, trained", model, args))
    return curve, test


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100, help="sequence length T")
    p.add_argument("--iterations", type=int, default=2500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--smoke", action="store_true", help="a few seconds: T = 10, 20 iterations, the same code path")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.iterations, args.batch, args.hidden = 10, 20, 8, 8
    t0 = start(args, f"adding problem, T = {args.steps}")
    layers = {"LSTM": nn.LSTM, "GRU": nn.GRU, "tanh RNN": nn.RNN}
    pages = []
    results = {name: train(name, layer, args, pages) for name, layer in layers.items()}

    print(f"\nheld-out MSE on 1000 sequences (always answering 1: {BASELINE:.3f})")
    for name, (_, test) in results.items():
        verdict = "solved" if test < 0.1 * BASELINE else "not solved"
        print(f"  {name:<9} {test:.4f}  ({test / BASELINE:.1%} of the baseline: {verdict})")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (curve, _) in results.items():
        smooth = np.convolve(curve, np.ones(min(25, len(curve))) / min(25, len(curve)), mode="valid")
        ax.plot(smooth, label=name)
    ax.axhline(BASELINE, color="gray", linestyle="--", label="always 1 (0.167)")
    ax.set(yscale="log", xlabel="iteration", ylabel="training MSE (moving average)",
           title=f"Adding problem, T = {args.steps}")
    ax.legend()
    save_figure(fig, args, "adding_problem.png")
    path = combine(*pages).save(os.path.join(args.out, "adding_problem.html"))
    print(f"page saved to {path} ({os.path.getsize(path) / 1e6:.2f} MB): open it in a browser; each layer as "
          "initialised and trained")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
