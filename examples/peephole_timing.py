"""Peephole connections on a timing task: generating timed spikes after a cue.

Gers, Schraudolph & Schmidhuber (2002, "Learning precise timing with LSTM recurrent
networks", JMLR 3) gave LSTM's gates peephole connections to the cell state, so that
a gate can read the state it controls even while the output gate is shut, and showed
that with them LSTM learns to time and count precisely. In the spirit of their tasks
("generate timed spikes"), each sequence here has one cue spike at a random early
step t0, and the network must then spike exactly every n steps (t0 + n, t0 + 2n, ...)
with no further input: it has to measure time itself. LSTMs with the same hidden
size, without peepholes, with peepholes on every gate, and with a peephole into the
output gate only (``nn.PeepholeLSTMCell(peepholes=...)``) are trained on the same
sequences, a linear readout making the spikes. A sequence is timed exactly when the
output crosses 1/2 at every target step and at no other; the table gives that rate
on held-out sequences after training, the mean distance of each target spike to the
nearest emitted one (timing error, in steps; the sequence length when none is
emitted), the spikes emitted per target spike, and how many iterations each needed
until 95% of the held-out sequences were timed exactly, over several seeds.
Baseline: emitting nothing. At the default sizes (n = 10, T = 60, 8 units) the
networks learn the task within the budget on most seeds; the run measures which
learns it first and most reliably (on our runs: the LSTM without peepholes). Longer
periods (--period 20 --steps 64) need more iterations than the default budget for
any of them.

Run:  python examples/peephole_timing.py [--period 10] [--steps 60] [--iterations 1000] [--seeds 3]
                                         [--device cpu|cuda] [--smoke]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, progress, pyplot, save_figure, start

VARIANTS = {"LSTM, no peepholes": (), "peepholes on i, f, o": ("i", "f", "o"), "peephole on o only": ("o",)}


def batch(rng, size, steps, period, latest_cue):
    """Inputs (T, B, 1): a cue spike at t0 < latest_cue; targets (T, B, 1): 1 at t0 + k*period, k >= 1."""
    cue = rng.integers(0, latest_cue, size)
    t = np.arange(steps)[:, None]
    since = t - cue[None, :]
    x = (since == 0).astype(np.float64)[..., None]
    y = ((since > 0) & (since % period == 0)).astype(np.float64)[..., None]
    return x, y


class Timer(nn.Module):
    """A peephole LSTM layer (peepholes on the gates given) read out by a linear layer at every step."""

    def __init__(self, hidden, peepholes, device):
        self.rnn = nn.Recurrent(lambda i, h: nn.PeepholeLSTMCell(i, h, peepholes=peepholes, device=device,
                                                                 dtype=tg.float64), 1, hidden)
        nn.init.lstm_forget_bias_(self.rnn, 1.0)
        self.readout = nn.Linear(hidden, 1, device=device, dtype=tg.float64)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.readout(out)


def train(peepholes, seed, args, label):
    """A model trained on fresh sequences; returns it, its loss curve and [(iteration, exactly timed
    fraction on the held-out sequences)] every ``args.every`` iterations."""
    tg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Timer(args.hidden, peepholes, args.device)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    curve, checks = [], []
    for i in progress(range(1, args.iterations + 1), desc=f"{label:>22} seed {seed}", leave=False):
        x, y = batch(rng, args.batch, args.steps, args.period, args.period)
        target = tg.tensor(y, device=args.device)
        weight = tg.tensor(1 + (args.period - 1) * y, device=args.device)   # spikes as heavy as the silence
        logits = model(tg.tensor(x, device=args.device))
        loss = (tg.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        curve.append(loss.item())
        if i % args.every == 0 or i == args.iterations:
            checks.append((i, spike_scores(model, args)[0]))
    return model, curve, checks


def spike_scores(model, args):
    """(exactly timed fraction, mean timing error in steps, emitted spikes per target spike) on held-out
    sequences, and one sequence's (input, target, output) to draw."""
    x, y = batch(np.random.default_rng(12345), args.held_out, args.steps, args.period, args.period)
    with tg.no_grad():
        out = model(tg.tensor(x, device=args.device)).sigmoid().numpy()[..., 0]
    emitted, wanted = out > 0.5, y[..., 0] > 0.5
    exact = np.mean(np.all(emitted == wanted, axis=0))
    errors = []
    for b in range(emitted.shape[1]):
        fired = np.nonzero(emitted[:, b])[0]
        for t in np.nonzero(wanted[:, b])[0]:
            errors.append(np.abs(fired - t).min() if fired.size else args.steps)
    return exact, float(np.mean(errors)), emitted.sum() / wanted.sum(), (x[:, 0, 0], y[:, 0, 0], out[:, 0])


def first_solved(checks, level=0.95):
    """The first checked iteration at which at least ``level`` of the held-out sequences are timed exactly."""
    return next((i for i, exact in checks if exact >= level), None)


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--period", type=int, default=10, help="n: steps between two spikes")
    p.add_argument("--steps", type=int, default=60, help="sequence length T")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--every", type=int, default=50, help="iterations between two held-out checks")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--hidden", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--held-out", type=int, default=500, help="held-out sequences")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--smoke", action="store_true", help="a few seconds: T = 12, period 3, 10 iterations, one seed")
    args = p.parse_args()
    if args.smoke:
        args.period, args.steps, args.iterations, args.every, args.seeds, args.hidden = 3, 12, 10, 5, 1, 4
    t0 = start(args, f"timed spikes every {args.period} steps, T = {args.steps}")
    results, solved, progress_, examples, sizes = {}, {}, {}, {}, {}
    for label, peepholes in VARIANTS.items():
        for seed in range(args.seed, args.seed + args.seeds):
            model, _, checks = train(peepholes, seed, args, label)
            *numbers, example = spike_scores(model, args)
            results.setdefault(label, []).append(numbers)
            solved.setdefault(label, []).append(first_solved(checks))
            progress_.setdefault(label, []).append(checks)
            examples.setdefault(label, example)
        sizes[label] = sum(p_.size for p_ in model.parameters())

    print(f"\n{args.held_out} held-out sequences, spikes every {args.period} steps after a cue, T = {args.steps}, "
          f"{args.iterations} iterations (mean +- sd over {args.seeds} seed{'s' if args.seeds > 1 else ''})")
    print(f"  {'':<22}{'weights':>8}{'exactly timed':>16}{'timing error':>16}{'spikes emitted':>16}"
          f"{'iterations to 95% exact':>26}")
    for label, scores in results.items():
        scores = np.array(scores)
        cells = [f"{scores[:, k].mean():5.2f} +- {scores[:, k].std():4.2f}" for k in range(3)]
        reached = [i for i in solved[label] if i is not None]
        when = (f"{np.mean(reached):6.0f} +- {np.std(reached):4.0f}" if len(reached) == len(solved[label])
                else f"{len(reached)}/{len(solved[label])} seeds")
        print(f"  {label:<22}{sizes[label]:>8}" + "".join(f"{c:>16}" for c in cells) + f"{when:>26}")
    print(f"  {'emitting nothing':<22}{0:>8}{0.0:>16.2f}{float(args.steps):>16.2f}{0.0:>16.2f}")
    print("  (timing error: steps from each target spike to the nearest emitted one; spikes emitted per target spike)")

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for label, runs in progress_.items():
        steps = [i for i, _ in runs[0]]
        exact = np.array([[e for _, e in run] for run in runs])
        line, = ax.plot(steps, exact.mean(axis=0), marker="o", ms=3, label=label)
        ax.fill_between(steps, exact.min(axis=0), exact.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set(xlabel="iteration", ylabel="held-out sequences timed exactly", ylim=(-0.02, 1.02),
           title="Learning to time (mean, min-max over seeds)")
    ax.legend(fontsize=8)
    x, y, _ = examples[next(iter(examples))]
    ax2.bar(np.arange(args.steps), y, color="lightgray", label="target spikes")
    ax2.plot(np.nonzero(x)[0], [1.05], "kv", label="cue")
    for label, (_, _, out) in examples.items():
        ax2.plot(out, label=label)
    ax2.axhline(0.5, color="gray", linestyle=":")
    ax2.set(xlabel="step", ylabel="output", title=f"A held-out sequence after training (seed {args.seed})")
    ax2.legend(fontsize=8)
    save_figure(fig, args, "peephole_timing.png")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
