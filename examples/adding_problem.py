"""The adding problem (Hochreiter & Schmidhuber 1997) at T = 100.

Each input step holds a number drawn from U(0, 1) and a marker; exactly two
steps are marked, one in each half, and the target is the sum of their two
numbers. Always answering 1 gives an MSE of 1/6 = 0.167 (the variance of the
sum). Gated cells learn to carry the two numbers across ~50 steps and drive
the MSE far below that; a tanh RNN's gradient vanishes over that distance and
it stays near the baseline.

Run:  python examples/adding_problem.py [--steps 100] [--iterations 2500] [--device cpu|cuda]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
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


def train(name, layer, args):
    tg.manual_seed(args.seed)
    model = Regressor(layer, args.hidden, args.device)
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
    return curve, test


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100, help="sequence length T")
    p.add_argument("--iterations", type=int, default=2500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    args = p.parse_args()
    t0 = start(args, f"adding problem, T = {args.steps}")
    layers = {"LSTM": nn.LSTM, "GRU": nn.GRU, "tanh RNN": nn.RNN}
    results = {name: train(name, layer, args) for name, layer in layers.items()}

    print(f"\nheld-out MSE on 1000 sequences (always answering 1: {BASELINE:.3f})")
    for name, (_, test) in results.items():
        verdict = "solved" if test < 0.1 * BASELINE else "not solved"
        print(f"  {name:<9} {test:.4f}  ({test / BASELINE:.1%} of the baseline: {verdict})")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (curve, _) in results.items():
        smooth = np.convolve(curve, np.ones(25) / 25, mode="valid")
        ax.plot(smooth, label=name)
    ax.axhline(BASELINE, color="gray", linestyle="--", label="always 1 (0.167)")
    ax.set(yscale="log", xlabel="iteration", ylabel="training MSE (moving average)",
           title=f"Adding problem, T = {args.steps}")
    ax.legend()
    save_figure(fig, args, "adding_problem.png")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
