"""Who remembers longer: five recurrent cells with the same number of parameters on the adding problem.

A tanh RNN, an LSTM, a GRU, a coupled-gate LSTM (CIFG: i = 1 - f, Greff et al.
2017) and a peephole LSTM (Gers & Schmidhuber 2000) are each given about the
same number of parameters (the LSTM's at --hidden; the others' hidden sizes are
chosen to match it) and trained on the adding problem (Hochreiter &
Schmidhuber 1997; see examples/adding_problem.py) at growing lengths T, with
the same optimiser (Adam, clipped at norm 1), batch and seed; the three LSTMs
start with forget-gate bias 1, as in adding_problem.py. A cell
*solves* a length when its MSE on 500 held-out sequences drops below 0.01
(6% of the 0.167 of always answering 1) at one of the checks made every
--check-every steps, within --budget training steps; it then stops early. Its
*reach* is the largest T it solves with no failure at a shorter one. Every
cell tries every length (--quick ends a cell's race at its first failure).
Also measured: the time of one training step, at the race's equal parameter
counts and at equal hidden sizes, for the claim that a GRU is cheaper than an
LSTM (Cho et al. 2014; Chung et al. 2014).

Run:  python examples/memory_race.py [--lengths 10 20 50 100 200 400] [--budget 1500] [--quick] [--smoke]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, progress, pyplot, save_figure, start
from adding_problem import BASELINE, batch

SOLVED = 0.01          # held-out MSE below which a length counts as solved
CHECK_SIZE = 500       # held-out sequences at each check


def forget_bias(layer, rows):
    """Forget-gate bias 1 (b_ih = 1, b_hh = 0 on the f rows ``rows``), as for the LSTM in adding_problem.py."""
    state = layer.state_dict()
    for name in state:
        if name.startswith(("bias_ih", "bias_hh")):
            state[name][rows] = 1.0 if name.startswith("bias_ih") else 0.0
    layer.load_state_dict(state)
    return layer


def tanh_rnn(hidden, device):
    return nn.RNN(2, hidden, device=device)


def lstm(hidden, device):
    return nn.init.lstm_forget_bias_(nn.LSTM(2, hidden, device=device), 1.0)


def gru(hidden, device):
    return nn.GRU(2, hidden, device=device)


def coupled_lstm(hidden, device):                  # rows f | g | o
    return forget_bias(nn.Recurrent(nn.CoupledLSTMCell, 2, hidden), slice(0, hidden)).to(device=device)


def peephole_lstm(hidden, device):                 # rows i | f | g | o
    return forget_bias(nn.Recurrent(nn.PeepholeLSTMCell, 2, hidden), slice(hidden, 2 * hidden)).to(device=device)


CELLS = {"tanh RNN": tanh_rnn, "LSTM": lstm, "GRU": gru, "coupled LSTM": coupled_lstm,
         "peephole LSTM": peephole_lstm}


class Regressor(nn.Module):
    """A recurrent layer read out by a linear layer at the last step."""

    def __init__(self, make, hidden, device):
        self.rnn = make(hidden, device)
        self.readout = nn.Linear(hidden, 1, device=device)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.readout(out[-1])


def count(module):
    return sum(p.numel() for p in module.parameters())


def matched_hidden(make, budget, device):
    """The hidden size whose model has the parameter count closest to ``budget``."""
    sizes = range(1, 4 * int(np.sqrt(budget)))
    return min(sizes, key=lambda h: abs(count(Regressor(make, h, device)) - budget))


def held_out_mse(model, check, device):
    x, y = check
    with tg.no_grad():
        return float(np.mean((model(tg.tensor(x, device=device)).numpy() - y) ** 2))


def race_one(name, make, hidden, steps, args):
    """Train until solved or out of budget: (solved, steps used, best held-out MSE, seconds per step)."""
    tg.manual_seed(args.seed)
    model = Regressor(make, hidden, args.device)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    check = batch(np.random.default_rng(args.seed + 7), steps, CHECK_SIZE)
    best, training_time = np.inf, 0.0
    bar = progress(range(1, args.budget + 1), desc=f"{name:>13} T={steps:<4}", leave=False)
    for step in bar:
        x, y = batch(rng, steps, args.batch)
        t0 = time.perf_counter()
        loss = tg.functional.mse_loss(model(tg.tensor(x, device=args.device)), tg.tensor(y, device=args.device))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        training_time += time.perf_counter() - t0
        if step % args.check_every == 0 or step == args.budget:
            best = min(best, held_out_mse(model, check, args.device))
            bar.set_postfix(mse=f"{best:.4f}")
            if best < SOLVED:
                break
    return {"solved": best < SOLVED, "steps": step, "mse": best, "step_time": training_time / step}


def time_per_step(make, hidden, steps, args, repeats):
    """Median seconds of one training step (forward, backward, clip, Adam) at hidden size ``hidden``."""
    model = Regressor(make, hidden, args.device)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    x, y = batch(np.random.default_rng(0), steps, args.batch)
    x, y = tg.tensor(x, device=args.device), tg.tensor(y, device=args.device)
    times = []
    for _ in range(repeats + 1):                       # the first run warms up (traces the step)
        t0 = time.perf_counter()
        loss = tg.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[10, 20, 50, 100, 200, 400])
    p.add_argument("--budget", type=int, default=1500, help="training steps allowed for each cell and length")
    p.add_argument("--check-every", type=int, default=100, help="steps between held-out checks")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=24, help="the LSTM's hidden size; the others match its count")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--quick", action="store_true", help="end a cell's race at the first length it fails")
    p.add_argument("--smoke", action="store_true", help="a few seconds: short sequences, tiny sizes, few steps")
    args = p.parse_args()
    if args.smoke:
        args.lengths, args.budget, args.check_every, args.hidden, args.batch = [5, 10], 6, 3, 4, 8
    t0 = start(args, f"memory race on the adding problem, T in {args.lengths}")
    budget = count(Regressor(lstm, args.hidden, args.device))
    sizes = {name: matched_hidden(make, budget, args.device) for name, make in CELLS.items()}
    counts = {name: count(Regressor(CELLS[name], h, args.device)) for name, h in sizes.items()}
    print("hidden sizes at equal parameter counts: "
          + ", ".join(f"{name} H={sizes[name]} ({counts[name]})" for name in CELLS))

    results = {name: {} for name in CELLS}
    for name, make in CELLS.items():
        for steps in sorted(args.lengths):
            results[name][steps] = race_one(name, make, sizes[name], steps, args)
            if not results[name][steps]["solved"] and args.quick:
                break
    timing_steps = 20 if args.smoke else 100
    timing_sizes, args.repeats = (args.hidden, 8 if args.smoke else 128), 3 if args.smoke else 10
    equal_h = {(name, h): time_per_step(make, h, timing_steps, args, args.repeats)
               for h in timing_sizes for name, make in CELLS.items()}
    report(results, sizes, counts, equal_h, timing_sizes, timing_steps, args)
    plot(results, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


def largest_solved(runs):
    """The largest T solved before the first failure (None when the first length already fails)."""
    best = None
    for steps in sorted(runs):
        if not runs[steps]["solved"]:
            break
        best = steps
    return best


def report(results, sizes, counts, equal_h, timing_sizes, timing_steps, args):
    lengths = sorted(args.lengths)
    print(f"\nadding problem: solved = held-out MSE < {SOLVED} within {args.budget} steps of {args.batch} "
          f"(always answering 1: {BASELINE:.3f}); each cell: steps to solve, or its best MSE when it fails")
    print(f"  {'cell':<14} {'H':>3} {'params':>6} " + "".join(f"{'T=' + str(t):>12}" for t in lengths)
          + f"{'reach':>7}")
    for name, runs in results.items():
        cells = []
        for steps in lengths:
            r = runs.get(steps)
            cells.append("-" if r is None else f"{r['steps']} steps" if r["solved"] else f"{r['mse']:.3f}")
        solved = largest_solved(runs)
        print(f"  {name:<14} {sizes[name]:>3} {counts[name]:>6} " + "".join(f"{c:>12}" for c in cells)
              + f"{'none' if solved is None else solved:>7}")
    common = max(t for t in lengths if all(t in runs for runs in results.values()))
    lstm_time = results["LSTM"][common]["step_time"]
    print(f"\ntime of one training step (batch {args.batch}; forward, backward, clipping, Adam): at the race's "
          f"equal parameter counts, T = {common} (mean over the race's steps); at equal hidden sizes, "
          f"T = {timing_steps} (median of {args.repeats})")
    print(f"  {'cell':<14} {'equal params':>13} {'vs LSTM':>8}"
          + "".join(f"{'H = ' + str(h):>11} {'vs LSTM':>8}" for h in timing_sizes))
    for name, runs in results.items():
        t = runs[common]["step_time"]
        print(f"  {name:<14} {t * 1e3:10.1f} ms {t / lstm_time:8.2f}"
              + "".join(f"{equal_h[name, h] * 1e3:8.1f} ms {equal_h[name, h] / equal_h['LSTM', h]:8.2f}"
                        for h in timing_sizes))
    if any(t not in runs for runs in results.values() for t in lengths):
        print("('-': not tried, the cell had failed a shorter length (--quick))")


def plot(results, args):
    plt = pyplot()
    fig, (race, cost) = plt.subplots(1, 2, figsize=(12, 4))
    for k, (name, runs) in enumerate(results.items()):
        lengths = sorted(runs)
        color, shift = f"C{k}", 1 + 0.03 * (k - 2)          # shifted a little so equal points stay visible
        best = largest_solved(runs)
        race.plot([t * shift for t in lengths], [runs[t]["steps"] for t in lengths], color=color, marker="o",
                  label=f"{name} (solves up to T = {best})" if best else f"{name} (solves none)")
        failed = [t for t in lengths if not runs[t]["solved"]]
        race.scatter([t * shift for t in failed], [runs[t]["steps"] for t in failed], color=color, marker="x",
                     s=80, zorder=3)
        cost.plot(lengths, [runs[t]["step_time"] * 1e3 for t in lengths], color=color, marker="o", label=name)
    race.axhline(args.budget, color="gray", linestyle="--", label="step budget (x: not solved)")
    lengths = sorted(args.lengths)
    race.set(xscale="log", xlabel="sequence length T", ylabel=f"training steps to held-out MSE < {SOLVED}",
             title="Adding problem at equal parameter counts")
    race.legend(fontsize=8)
    cost.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="ms per training step",
             title=f"Cost of a training step (batch {args.batch})")
    for ax in (race, cost):
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.minorticks_off()
    cost.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, args, "memory_race.png")


if __name__ == "__main__":
    main()
