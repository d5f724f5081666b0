"""The remedies for exploding and vanishing gradients, each on a run that fails without it.

(a) Gradient clipping (Pascanu, Mikolov & Bengio 2013). A ReLU RNN started at
the identity (the IRNN below) and trained with plain SGD on the adding problem
takes gradients of norm in the hundreds in its first steps. Without clipping
such a step pushes W_hh past the edge of stability: h grows exponentially over
the T steps, the loss and the gradient explode, and the next steps throw the
weights to where every ReLU unit is off for every input. The network is then
dead: its output is a constant and no gradient will ever reach W_hh again. The
same run, seed and step size with ``nn.utils.clip_grad_norm_(params, 1.0)``
keeps its loss bounded and its units alive. Shown: loss and gradient-norm
curves with and without, and the hidden units still active at the end.

(b) Initialisation. A plain RNN on the adding problem (Hochreiter & Schmidhuber
1997; see examples/adding_problem.py) at T = 100 from PyTorch's default
uniform init U(-1/sqrt(H), 1/sqrt(H)) with tanh; with W_hh a random orthogonal
matrix (Saxe, McClelland & Ganguli 2014), with tanh, and with ReLU and zero
biases; and as an IRNN: ReLU, W_hh = I, zero biases, small input weights (Le,
Jaitly & Hinton 2015). All four get the same optimiser (Adam), clipping and
step budget. Table: held-out MSE against always answering 1 (1/6 = 0.167);
solved means MSE < 0.01.

Run:  python examples/remedies.py [--steps 100] [--iterations 8000] [--smoke] [--device cpu|cuda]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, progress, pyplot, save_figure, start
from adding_problem import BASELINE, batch

SOLVED = 0.01          # held-out MSE below which the task counts as solved


class Regressor(nn.Module):
    """A one-layer RNN read out by a linear layer at the last step."""

    def __init__(self, hidden, nonlinearity, device):
        self.rnn = nn.RNN(2, hidden, nonlinearity=nonlinearity, device=device)
        self.readout = nn.Linear(hidden, 1, device=device)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.readout(out[-1])


def uniform_tanh(hidden, device):
    """PyTorch's default: every weight and bias from U(-1/sqrt(H), 1/sqrt(H))."""
    return Regressor(hidden, "tanh", device)


def orthogonal_tanh(hidden, device):
    """W_hh a random orthogonal matrix (all singular values 1); the rest as by default."""
    model = Regressor(hidden, "tanh", device)
    nn.init.orthogonal_(model.rnn.weight_hh_l0)
    return model


def orthogonal_relu(hidden, device):
    """ReLU, W_hh a random orthogonal matrix, zero biases: the IRNN's recipe with a rotation for the identity."""
    model = Regressor(hidden, "relu", device)
    nn.init.orthogonal_(model.rnn.weight_hh_l0)
    nn.init.zeros_(model.rnn.bias_ih_l0)
    nn.init.zeros_(model.rnn.bias_hh_l0)
    return model


def irnn(hidden, device):
    """ReLU, W_hh = I, zero biases, W_ih from N(0, 0.001^2): h starts out as a running sum of the inputs."""
    model = Regressor(hidden, "relu", device)
    nn.init.irnn_(model.rnn)
    return model


INITS = {"uniform, tanh": uniform_tanh, "orthogonal, tanh": orthogonal_tanh, "orthogonal, ReLU": orthogonal_relu,
         "IRNN (identity, ReLU)": irnn}


def held_out_mse(model, data, device):
    x, y = data
    with tg.no_grad():
        return float(np.mean((model(tg.tensor(x, device=device)).numpy() - y) ** 2))


def train(model, opt, args, steps, clip, desc, check=None):
    """Fresh batches of the adding problem; clip the gradient norm at ``clip`` (None: never).

    Returns the loss and gradient-norm curves, the step at which the loss stopped being finite (None
    if it never did) and, with ``check`` data, the held-out MSE every --check-every steps."""
    rng = np.random.default_rng(args.seed)
    losses, norms, checks, diverged = [], [], [], None
    for step in progress(range(1, steps + 1), desc=desc, leave=False):
        x, y = batch(rng, args.steps, args.batch)
        loss = tg.functional.mse_loss(model(tg.tensor(x, device=args.device)), tg.tensor(y, device=args.device))
        opt.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), np.inf if clip is None else clip)
        losses.append(loss.item())
        norms.append(norm.item())
        if not (np.isfinite(losses[-1]) and np.isfinite(norms[-1])):
            diverged = step                     # the weights are no longer numbers: nothing left to train
            break
        opt.step()
        if check is not None and step % args.check_every == 0:
            checks.append((step, held_out_mse(model, check, args.device)))
    return {"loss": losses, "norm": norms, "diverged": diverged, "checks": checks}


def clipping(args, check):
    """(a): the same IRNN, seed and SGD step size, without and with clipping."""
    runs = {}
    for name, clip in (("no clipping", None), (f"clip_grad_norm_ {args.clip:g}", args.clip)):
        tg.manual_seed(args.seed)
        model = irnn(args.hidden, args.device)
        opt = tg.optim.SGD(model.parameters(), lr=args.sgd_lr)
        with np.errstate(over="ignore", invalid="ignore"):    # the unclipped run overflows on purpose
            runs[name] = train(model, opt, args, args.clip_iterations, clip, f"SGD, {name}")
            runs[name]["active"] = active_units(model, check, args.device)
            runs[name]["test"] = held_out_mse(model, check, args.device)
    return runs


def active_units(model, data, device):
    """The share of hidden units whose ReLU is on at the last step for at least one held-out sequence."""
    with tg.no_grad():
        out, _ = model.rnn(tg.tensor(data[0], device=device))
    return float((out[-1].numpy() > 0).any(axis=0).mean())


def initialisations(args, check, test):
    """(b): each init trained with Adam and clipping for the same budget; held-out curves and test MSE."""
    runs = {}
    for name, make in INITS.items():
        tg.manual_seed(args.seed)
        model = make(args.hidden, args.device)
        opt = tg.optim.Adam(model.parameters(), lr=args.lr)
        t0 = time.perf_counter()
        runs[name] = train(model, opt, args, args.iterations, args.clip, name, check)
        runs[name]["seconds"] = time.perf_counter() - t0
        runs[name]["test"] = held_out_mse(model, test, args.device)
    return runs


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100, help="sequence length T")
    p.add_argument("--iterations", type=int, default=8000, help="training steps for each initialisation")
    p.add_argument("--clip-iterations", type=int, default=2000, help="training steps for the clipping runs")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-4, help="Adam step size for the initialisations")
    p.add_argument("--sgd-lr", type=float, default=1e-2, help="SGD step size for the clipping runs")
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    p.add_argument("--check-every", type=int, default=250, help="steps between held-out checks")
    p.add_argument("--smoke", action="store_true", help="a few seconds: short sequences, few steps")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.iterations, args.clip_iterations, args.hidden, args.check_every = 20, 20, 20, 16, 10
    t0 = start(args, f"remedies on the adding problem, T = {args.steps}")
    check = batch(np.random.default_rng(args.seed + 7), args.steps, 500)
    test = batch(np.random.default_rng(12345), args.steps, 1000)
    clipped = clipping(args, check)
    inits = initialisations(args, check, test)
    report(clipped, inits, check, test, args)
    plot(clipped, inits, check, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


def report(clipped, inits, check, test, args):
    base = float(np.mean((1.0 - test[1]) ** 2))
    print(f"\n(a) IRNN, H = {args.hidden}, SGD lr {args.sgd_lr:g}, T = {args.steps}, {args.clip_iterations} steps of "
          f"{args.batch}; held-out MSE on 500 sequences (always answering 1: {np.mean((1.0 - check[1]) ** 2):.3f})")
    print(f"  {'run':<20} {'peak loss':>10} {'peak grad norm':>15} {'active units':>13} {'held-out MSE':>13}   outcome")
    for name, r in clipped.items():
        peak = int(np.nanargmax(r["loss"])) + 1
        outcome = (f"loss not finite at step {r['diverged']}" if r["diverged"] else
                   "dead: no unit is ever on, the output is a constant" if r["active"] == 0 else
                   "alive, still training")
        print(f"  {name:<20} {np.nanmax(r['loss']):>10.3g} {np.nanmax(r['norm']):>15.3g} {r['active']:>13.0%} "
              f"{r['test']:>13.4f}   {outcome} (peak at step {peak})")
    print(f"\n(b) plain RNN, H = {args.hidden}, Adam lr {args.lr:g}, clipped at {args.clip:g}, "
          f"{args.iterations} steps of {args.batch}; test MSE on 1000 sequences (always answering 1: {base:.3f})")
    print(f"  {'initialisation':<22} {'test MSE':>9} {'of baseline':>12} {'MSE < ' + str(SOLVED) + ' at':>16} "
          f"{'train s':>8}")
    for name, r in inits.items():
        first = next((step for step, mse in r["checks"] if mse < SOLVED), None)
        reached = "not reached" if first is None else f"step {first}"
        test_mse = "diverged" if r["diverged"] else f"{r['test']:.4f}"
        share = "-" if r["diverged"] else f"{r['test'] / base:.1%}"
        print(f"  {name:<22} {test_mse:>9} {share:>12} {reached:>16} {r['seconds']:8.0f}")


def plot(clipped, inits, check, args):
    plt = pyplot()
    fig, (loss_ax, norm_ax, init_ax) = plt.subplots(1, 3, figsize=(16, 4))
    for k, (name, r) in enumerate(clipped.items()):
        color = f"C{k}"
        steps = np.arange(1, len(r["loss"]) + 1)
        loss_ax.plot(steps, r["loss"], color=color, label=name)
        norm_ax.plot(steps, r["norm"], color=color, label=name)
        if r["diverged"]:
            finite = [v for v in r["loss"] if np.isfinite(v)]
            loss_ax.scatter([r["diverged"]], [max(finite) if finite else 1.0], color=color, marker="x", s=80,
                            zorder=3, label=f"loss not finite (step {r['diverged']})")
    loss_ax.axhline(BASELINE, color="gray", linestyle="--", label="always 1 (0.167)")
    loss_ax.set(yscale="log", xlabel="SGD step", ylabel="training MSE",
                title=f"(a) IRNN with SGD, T = {args.steps}")
    loss_ax.legend(fontsize=8)
    norm_ax.axhline(args.clip, color="gray", linestyle=":", label=f"clipping threshold {args.clip:g}")
    norm_ax.set(yscale="log", xlabel="SGD step", ylabel="gradient norm before clipping",
                title="(a) gradient norm")
    norm_ax.legend(fontsize=8)
    for k, (name, r) in enumerate(inits.items()):
        if r["checks"]:
            steps, mse = zip(*r["checks"])
            init_ax.plot(steps, mse, color=f"C{k + 2}", linestyle="--" if "tanh" in name else "-", label=name)
    base = float(np.mean((1.0 - check[1]) ** 2))
    init_ax.axhline(base, color="gray", linestyle="--", label=f"always 1 ({base:.3f} on these sequences)")
    init_ax.axhline(SOLVED, color="gray", linestyle=":", label=f"solved ({SOLVED})")
    init_ax.set(yscale="log", xlabel="training step", ylabel="held-out MSE (500 sequences)",
                title=f"(b) initialisations, T = {args.steps}")
    init_ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, args, "remedies.png")


if __name__ == "__main__":
    main()
