"""A chain or a tree over the same sequence: the adding problem at T = 256.

A recurrent chain reads x_1 .. x_T one step after another, so the first input
reaches the loss through T steps. A recursive network can read the same
sequence with a balanced binary tree over its positions (the inputs at the
leaves, every inner node joining two children): every input then reaches the
root through ceil(log2 T) nodes, 8 instead of 256. The literature argues that
this shorter path helps with long-term dependencies (Goodfellow, Bengio &
Courville 2016, section 10.6). This example measures it on the adding problem
(Hochreiter & Schmidhuber 1997; see examples/adding_problem.py): an LSTM chain
against the binary Tree-LSTM of Tai, Socher & Manning (2015) over the positions
(``NaryTreeLSTM.over_sequence``), with about the same number of parameters, the
same forget-gate bias (1), optimiser and number of training steps.

Reported: the gradient path length; ||dL/dx_t|| by position at initialisation
and after training, which shows whether the gradient of a distant input
vanishes; the first step at which the held-out MSE drops below 0.01; test MSE
and accuracy (|error| < 0.04) against always answering 1 (MSE 1/6 = 0.167).
A short path is not all the task asks for: an inner node has no input of its
own and sees only its two children, through weights shared by every level, so
the tree must learn to pass the two marked numbers up all 8 levels while
damping the other 254 leaves; the chain must learn to carry them across up to
255 steps. The training curves show which of the two is learned first.

Run:  python examples/tree_vs_chain.py [--steps 256] [--iterations 8000] [--smoke] [--device cpu|cuda]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn.tree import NaryTreeLSTM, leaf_depths
from _common import parser, progress, pyplot, save_figure, start
from adding_problem import BASELINE, batch

TOLERANCE = 0.04        # an answer within this of the target counts as correct
SOLVED = 0.01           # held-out MSE below which the task counts as solved


def count(module):
    return sum(p.numel() for p in module.parameters())


class ChainReader(nn.Module):
    """An LSTM over x_1 .. x_T, read out by a linear layer at the last step."""

    def __init__(self, hidden, device):
        self.lstm = nn.LSTM(2, hidden, device=device)
        nn.init.lstm_forget_bias_(self.lstm, 1.0)
        self.readout = nn.Linear(hidden, 1, device=device)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.readout(out[-1])

    @staticmethod
    def path_lengths(steps):
        """Steps from each input to the readout: T - t + 1 for x_t."""
        return np.arange(steps, 0, -1)


class TreeReader(nn.Module):
    """A binary Tree-LSTM over the positions, read out by a linear layer at the root."""

    def __init__(self, hidden, device):
        self.tree = NaryTreeLSTM(2, hidden, device=device)
        state = self.tree.state_dict()
        state["bias"][hidden:2 * hidden] = 1.0            # the forget-gate bias, rows i | f | o | u, as for the LSTM
        self.tree.load_state_dict(state)
        self.readout = nn.Linear(hidden, 1, device=device)

    def forward(self, x):
        _, (h, _) = self.tree.over_sequence(x)
        return self.readout(h)

    @staticmethod
    def path_lengths(steps):
        """Nodes from each leaf to the root, the leaf included: its depth + 1."""
        return leaf_depths(steps) + 1


def matched_hidden(make, budget, device):
    """The hidden size whose model has the parameter count closest to ``budget``."""
    sizes = range(1, 4 * int(np.sqrt(budget)))
    return min(sizes, key=lambda h: abs(count(make(h, device)) - budget))


def input_gradient_norms(model, x, y, device):
    """||dL/dx_t|| for each position t, averaged over the batch: how much each input moves the loss."""
    xt = tg.tensor(x, device=device, requires_grad=True)
    loss = tg.functional.mse_loss(model(xt), tg.tensor(y, device=device))
    model.zero_grad()
    loss.backward()
    return np.sqrt((xt.grad.numpy() ** 2).sum(axis=2)).mean(axis=1)


def evaluate(model, x, y, device):
    with tg.no_grad():
        guess = model(tg.tensor(x, device=device)).numpy()
    return float(np.mean((guess - y) ** 2)), float(np.mean(np.abs(guess - y) < TOLERANCE))


def train(name, model, args, check):
    """Adam with gradient clipping on fresh batches, the held-out MSE checked every --check-every steps;
    the training loss curve, the first step at which the check was below SOLVED (None if never), the wall time."""
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    curve, solved_at, t0 = [], None, time.perf_counter()
    bar = progress(range(1, args.iterations + 1), desc=f"{name:>10}", leave=False)
    for step in bar:
        x, y = batch(rng, args.steps, args.batch)
        loss = tg.functional.mse_loss(model(tg.tensor(x, device=args.device)), tg.tensor(y, device=args.device))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
        if solved_at is None and step % args.check_every == 0:
            mse, _ = evaluate(model, *check, args.device)
            bar.set_postfix(held_out_mse=f"{mse:.4f}")
            solved_at = step if mse < SOLVED else None
    return curve, solved_at, time.perf_counter() - t0


def run(name, make, hidden, args, probe, check, test):
    tg.manual_seed(args.seed)
    model = make(hidden, args.device)
    before = input_gradient_norms(model, *probe, args.device)
    curve, solved_at, seconds = train(name, model, args, check)
    after = input_gradient_norms(model, *probe, args.device)
    mse, accuracy = evaluate(model, *test, args.device)
    return {"model": model, "params": count(model), "hidden": hidden, "before": before, "after": after,
            "curve": curve, "solved_at": solved_at, "seconds": seconds, "mse": mse, "accuracy": accuracy,
            "path": model.path_lengths(args.steps)}


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=256, help="sequence length T")
    p.add_argument("--iterations", type=int, default=8000, help="training steps for each model")
    p.add_argument("--check-every", type=int, default=100, help="steps between checks of the held-out MSE")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=32, help="the LSTM's hidden size; the tree's is matched to it")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--smoke", action="store_true", help="a few seconds: T = 16, tiny sizes, few steps")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.iterations, args.batch, args.hidden, args.test_size, args.check_every = 16, 10, 8, 8, 64, 5
    t0 = start(args, f"chain against tree on the adding problem, T = {args.steps}")
    budget = count(ChainReader(args.hidden, args.device))
    tree_hidden = matched_hidden(TreeReader, budget, args.device)
    probe = batch(np.random.default_rng(args.seed + 1), args.steps, 256)
    check = batch(np.random.default_rng(args.seed + 2), args.steps, 500)
    test = batch(np.random.default_rng(12345), args.steps, args.test_size)
    results = {"LSTM chain": run("LSTM chain", ChainReader, args.hidden, args, probe, check, test),
               "Tree-LSTM": run("Tree-LSTM", TreeReader, tree_hidden, args, probe, check, test)}
    report(results, test, args)
    plot(results, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


def report(results, test, args):
    _, y = test
    base_accuracy = float(np.mean(np.abs(1.0 - y) < TOLERANCE))
    base_mse = float(np.mean((1.0 - y) ** 2))
    print(f"\nadding problem, T = {args.steps}: {args.iterations} training steps of {args.batch} sequences for each "
          f"model; held-out MSE and accuracy (|error| < {TOLERANCE}) on {len(y)} sequences")
    print(f"  {'model':<12} {'H':>3} {'params':>7} {'cells on path':>14} {'dx_1/dx_T at init':>18} "
          f"{'MSE < ' + str(SOLVED) + ' at':>16} {'test MSE':>9} {'accuracy':>9} {'train s':>8}")
    print(f"  {'always 1':<12} {'':>3} {0:>7} {'-':>14} {'-':>18} {'-':>16} {base_mse:9.4f} {base_accuracy:9.1%} "
          f"{0:8.0f}")
    for name, r in results.items():
        ratio = r["before"][0] / r["before"][-1]
        solved = "not reached" if r["solved_at"] is None else f"step {r['solved_at']}"
        print(f"  {name:<12} {r['hidden']:>3} {r['params']:>7} {int(r['path'].max()):>14} {ratio:>18.1e} "
              f"{solved:>16} {r['mse']:9.4f} {r['accuracy']:9.1%} {r['seconds']:8.0f}")
    print("(cells on path: from x_1 to the loss, T for the chain, ceil(log2 T) + 1 for the tree; dx_1/dx_T: "
          "||dL/dx_1|| / ||dL/dx_T|| over 256 sequences)")
    for name, r in results.items():
        print(f"{name}: test MSE {r['mse'] / base_mse:.1%} of always answering 1")


WINDOW = 25


def plot(results, args):
    plt = pyplot()
    fig, (paths, grads, curves) = plt.subplots(1, 3, figsize=(15, 4))
    positions = np.arange(1, args.steps + 1)
    for k, (name, r) in enumerate(results.items()):
        color = f"C{k}"
        paths.plot(positions, r["path"], color=color, label=name)
        grads.plot(positions, r["before"], color=color, linestyle="--", label=f"{name}, at init")
        grads.plot(positions, r["after"], color=color, label=f"{name}, trained")
        window = min(WINDOW, len(r["curve"]))
        average = np.convolve(r["curve"], np.ones(window) / window, mode="valid")
        curves.plot(np.arange(window - 1, len(r["curve"])), average, color=color, label=name)
        if r["solved_at"] is not None:
            curves.axvline(r["solved_at"], color=color, linestyle=":", label=f"{name}: held-out MSE < {SOLVED}")
    paths.set(yscale="log", xlabel="input position t", ylabel="cells from x_t to the loss",
              title="Gradient path length")
    paths.legend()
    grads.set(yscale="log", xlabel="input position t", ylabel="||dL/dx_t|| (mean over 256 sequences)",
              title="How much each input moves the loss")
    grads.legend(fontsize=8)
    curves.axhline(BASELINE, color="gray", linestyle="--", label="always 1 (0.167)")
    curves.set(yscale="log", xlabel="training step", ylabel="training MSE (moving average)",
               title=f"Adding problem, T = {args.steps}")
    curves.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, args, "tree_vs_chain.png")


if __name__ == "__main__":
    main()
