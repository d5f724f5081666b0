"""Vanishing and exploding gradients, seen from inside backpropagation through time.

Five recurrent cells of the same size read the same adding-problem sequences
(Hochreiter & Schmidhuber 1997) at T = 100, untrained, straight from their
initialisation. For a loss on the last step, backpropagation through time
multiplies dL/dh_T by one Jacobian J_t = dh_t/dh_{t-1} per step on the way
back, so what reaches step t is set by the product J_T ... J_{t+1}
(Bengio, Simard & Frasconi 1994). The script measures that product three ways,
with the tools of tinygrad_rnn.study, and draws the graph that BPTT walks.

What to look for:

- tanh RNN, default init U(-1/sqrt(H), 1/sqrt(H)): J_t = diag(tanh'(a_t)) W_hh.
  Pascanu, Mikolov & Bengio (2013) bound a w-step product by eta^w with
  eta = ||W_hh||_2, and show that eta < 1 (with |tanh'| <= 1) is enough for the
  gradient to vanish. Here eta is about 1 or a little above, so the bound says
  little (eta > 1 is needed for explosion, not enough for it), but the
  eigenvalues of such a random matrix lie in a disc of radius about 1/sqrt(3),
  and the measured gradient shrinks geometrically, by orders of magnitude over
  100 steps: step 0 receives next to nothing from a loss at step T-1.
- tanh RNN, orthogonal W_hh (Saxe et al. 2014): all singular values are 1, so
  eta = 1 and only tanh' < 1 shrinks the gradient: it still vanishes, but
  orders of magnitude more slowly than with the small uniform weights, and the
  more slowly the closer the pre-activations stay to tanh's linear range.
- IRNN: a ReLU RNN with W_hh = I and zero biases (Le, Jaitly & Hinton 2015).
  J_t = diag(relu'(a_t)) is 0 or 1 per unit, so along the units that stay active
  the gradient goes back unchanged: no decay and no growth. Run with --gain 1.05
  (W_hh = 1.05 I) to see it explode instead, by about 1.05 per step.
- LSTM (forget-gate bias 1, Gers et al. 2000) and GRU (Cho et al. 2014): the
  state is updated additively, c_t = f_t * c_{t-1} + i_t * g_t, so the direct path
  dc_t/dc_{t-1} = diag(f_t) has no weight matrix and no squashing in it: the
  "constant error carousel" of Hochreiter & Schmidhuber (1997), which carries
  the error unchanged when f = 1 (the GRU's h_t = z_t * h_{t-1} + ... likewise).
  At initialisation f is about sigmoid(1) and z about sigmoid(0), so these
  gradients still decay, at the rate the keep gates set; training can open the
  gates for as long as a task needs. Run with --forget-bias 3 (f about 0.95)
  to see far more of the LSTM's gradient reach step 0.

The figures (saved in examples/out/):

1. vanishing_gradients.png: ||dL/dh_t|| against t for the five cells on one log
   scale (and ||dL/dc_t|| of the LSTM), with the mean keep gates of the LSTM and
   GRU below, and the fraction of their units that is saturated.
2. vanishing_jacobians.png: mean log ||J_t ... J_{t-w+1}||_2 against the window
   length w; its slope is the mean log growth per step (0: norms kept; below 0:
   vanishing; above 0: exploding), with the bound w log eta of the Elman cells.
3. vanishing_truncation.png: truncated-BPTT gradients (each loss term
   back-propagated k steps only, BPTT(k) of Williams & Peng 1990) against the
   full gradient as k grows, for a loss summed over steps: their cosine, their
   relative error, and how much gradient travels exactly lag steps back. Where
   gradients vanish a short k already agrees with full BPTT, since little came
   from far anyway; where they do not, what truncation drops is the long-range
   part, the bias that Tallec & Ollivier (2017) discuss.
4. vanishing_graph_rnn / vanishing_graph_lstm (.dot, and .svg where Graphviz is
   installed): the graph of a 5-step unroll of a small composed cell, one
   cluster per time step, the state edges labelled and coloured by ||dL/dh_t||.

And one page, vanishing.html (tinygrad_rnn.study.explore: open it in a browser,
no server needed), with the five cells side by side for the last-step loss: the
unrolled graph step by step, the backward pass animated, the connectivity map,
the Jacobian spectra, the gates, truncated BPTT and BPTT against RTRL.

Everything runs in float64, so a gradient that has shrunk by 1e-25 is still a
number and the ratios printed are not rounding noise.

Run:  python examples/study_vanishing.py [--steps 100] [--hidden 32] [--gain 1.0] [--forget-bias 1.0]
                                         [--device cpu|cuda] [--smoke]
"""
import os
import time
import warnings

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.study import explore, graph, jacobians, telemetry, truncation
from tinygrad_rnn.study.explore import combine
from tinygrad_rnn.study.explore.tasks import LastStepMSE, last_step_targets
from tinygrad_rnn.study.tracing import trace
from _common import parser, progress, pyplot, save_figure, start
from adding_problem import batch as adding_batch

F64 = tg.float64
COLORS = {"tanh RNN": "tab:red", "tanh RNN, orthogonal": "tab:orange", "IRNN": "tab:purple",
          "LSTM": "tab:blue", "GRU": "tab:green"}


# ------------------------------------------------------------------ the five cells
def tanh_rnn(args):
    return nn.RNNCell(2, args.hidden, device=args.device, dtype=F64)


def orthogonal_rnn(args):
    cell = nn.RNNCell(2, args.hidden, device=args.device, dtype=F64)
    nn.init.orthogonal_(cell.weight_hh, gain=args.gain)
    return cell


def irnn(args):
    cell = nn.RNNCell(2, args.hidden, nonlinearity="relu", device=args.device, dtype=F64)
    return nn.init.irnn_(cell, gain=args.gain)


def lstm(args):
    cell = nn.LSTMCell(2, args.hidden, device=args.device, dtype=F64)
    return nn.init.lstm_forget_bias_(cell, args.forget_bias)


def gru(args):
    return nn.GRUCell(2, args.hidden, device=args.device, dtype=F64)


BUILDERS = {"tanh RNN": tanh_rnn, "tanh RNN, orthogonal": orthogonal_rnn, "IRNN": irnn, "LSTM": lstm, "GRU": gru}


# ------------------------------------------------------------------ data and losses
def data(args):
    """Adding-problem inputs x (T, B, 2), the last-step target (B, 1) and the running
    target (T, B, 1): the sum of the marked numbers seen up to each step."""
    x, y = adding_batch(np.random.default_rng(args.seed), args.steps, args.batch)
    running = np.cumsum(x[..., 0] * x[..., 1], axis=0)[..., None]
    as_tensor = lambda a: tg.tensor(a, dtype=F64, device=args.device)  # noqa: E731
    return as_tensor(x), as_tensor(y), as_tensor(running)


def gradient_through_time(cell, readout, x, y):
    """Telemetry of one backward from an MSE on the last step only, and the mean keep gate per step."""
    tr = trace(cell, x)
    loss = tg.functional.mse_loss(readout(tr.outputs[0][-1]), y)
    return telemetry.record(tr, loss), keep_gate(cell, tr)


def keep_gate(cell, tr):
    """Mean over units and batch of the gate that keeps the old state, per step: the LSTM's forget
    gate f (c' = f * c + ...) or the GRU's update gate z (h' = z * h + ...); None for other cells."""
    gate = "f" if isinstance(cell, nn.LSTMCell) else "z" if isinstance(cell, nn.GRUCell) else None
    if gate is None:
        return None
    values = [telemetry.gate_values(cell, tr.projected[0][t], tr.previous_state(0, t))[gate][0]
              for t in range(tr.steps)]
    return np.array([float(v.mean()) for v in values])


def spectra(cell, x, args):
    """Jacobian products over about 25 window lengths (fewer SVDs than all T of them)."""
    windows = np.unique(np.linspace(1, args.steps, min(args.steps, 25)).round().astype(int))
    return jacobians.jacobian_spectra(cell, x[:, :args.jacobian_batch], windows=windows)


def truncation_bias(cell, readout, x, running):
    """Sliding-window truncated BPTT against full BPTT for a loss summed over steps."""
    loss_fn = lambda out, target: ((readout(out) - target) ** 2).sum()  # noqa: E731
    return truncation.measure(cell, x, loss_fn, targets=running, variant="sliding")


def study(name, args, x, y, running):
    tg.manual_seed(args.seed)
    cell = BUILDERS[name](args)
    readout = nn.Linear(args.hidden, 1, device=args.device, dtype=F64)
    record, keep = gradient_through_time(cell, readout, x, y)
    return {"telemetry": record, "keep": keep, "spectra": spectra(cell, x, args), "radius": spectral_radius(cell),
            "truncation": truncation_bias(cell, readout, x, running), "page": page(name, cell, readout, x, y, args)}


def page(name, cell, readout, x, y, args):
    """The cell's run for the browser page: the same last-step MSE, written as a sum over steps
    (a 0/1 weight per step in the targets), as study.explore and its truncation panel need."""
    targets = last_step_targets(y.numpy(), args.steps, device=args.device, dtype=F64)
    return explore(cell, x, LastStepMSE(readout), targets, name=name, rows=args.jacobian_batch,
                   title=f"Vanishing and exploding gradients: five cells, adding problem, T = {args.steps}")


# ------------------------------------------------------------------ numbers
def spectral_radius(cell):
    """max |eigenvalue| of W_hh for an Elman cell (what a long product of W_hh grows like), else None."""
    if not isinstance(cell, nn.RNNCell):
        return None
    return float(np.abs(np.linalg.eigvals(cell.weight_hh.numpy())).max())


def shrink_ratio(result):
    """||dL/dh_0|| / ||dL/dh_{T-1}||: what reaches the first step, relative to the last."""
    norms = result["telemetry"].grad_norms[0]["h"]
    return norms[0] / norms[-1]


def growth_per_step(result):
    """exp(slope) of the mean log window-product norm against w: the factor per step."""
    s = result["spectra"]
    keep = np.isfinite(s.log_norms)
    if keep.sum() < 2:
        return float("nan")
    return float(np.exp(np.polyfit(s.windows[keep], s.log_norms[keep], 1)[0]))


def shown_ks(steps):
    return sorted({k for k in (1, steps // 10, steps // 2) if k >= 1})


COLUMNS = """\
dh_0/dh_T-1: ||dL/dh_0|| / ||dL/dh_T-1|| for a loss on the last step (< 1: the gradient shrinks
  going back in time; > 1: it grows).
growth/step: the factor by which one more step multiplies ||dh_t/dh_t-w||, from the slope of the
  Jacobian products. eta: ||W_hh||_2 (Elman cells). keep: mean forget gate f (LSTM) or update gate z (GRU).
cos, err: truncated BPTT(k) against full BPTT on the summed loss, as the cosine (direction only:
  1 = parallel) and the relative error ||g_k - g|| / ||g|| (direction and size)."""


def optional(value, width, spec):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def print_table(results, steps):
    ks = shown_ks(steps)
    k_err = ks[len(ks) // 2]
    header = (f"{'model':<22}{'dh_0/dh_T-1':>12}{'growth/step':>12}{'eta':>7}{'keep':>7}"
              + "".join(f"{f'cos k={k}':>10}" for k in ks) + f"{f'err k={k_err}':>10}")
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in results.items():
        tr = r["truncation"]
        cos, err = dict(zip(tr.ks, tr.cosine)), dict(zip(tr.ks, tr.relative_error))
        keep = None if r["keep"] is None else float(r["keep"].mean())
        print(f"{name:<22}{shrink_ratio(r):>12.3g}{growth_per_step(r):>12.4f}"
              + optional(r["spectra"].eta, 7, ".3f") + optional(keep, 7, ".3f")
              + "".join(f"{cos[k]:>10.4f}" for k in ks) + f"{err[k_err]:>10.4f}")
    radii = "; ".join(f"{name}: {r['radius']:.3f}" for name, r in results.items() if r["radius"] is not None)
    print(f"spectral radius of W_hh (largest |eigenvalue|): {radii}")
    print(COLUMNS)


# ------------------------------------------------------------------ figures
def plot_gradients(results, args, plt):
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(2, 1),
                                      layout="constrained")
    t = np.arange(args.steps)
    for name, r in results.items():
        norms = r["telemetry"].grad_norms[0]
        top.plot(t, np.where(norms["h"] > 0, norms["h"], np.nan), color=COLORS[name], label=name)
        if "c" in norms:
            top.plot(t, np.where(norms["c"] > 0, norms["c"], np.nan), color=COLORS[name], ls="--",
                     label=f"{name}: ||dL/dc_t||")
    top.set(yscale="log", ylabel="||dL/dh_t||",
            title=f"Gradient of a last-step loss through time, T = {args.steps}")
    top.legend(fontsize="small")
    for name, gate in (("LSTM", "f"), ("GRU", "z")):
        r = results[name]
        bottom.plot(t, r["keep"], color=COLORS[name], label=f"{name}: mean {gate}")
        bottom.plot(t, r["telemetry"].saturation[0][gate], color=COLORS[name], ls=":",
                    label=f"{name}: {gate} saturated (< 0.1 or > 0.9)")
    bottom.set(xlabel="time step t", ylabel="gate value / fraction", ylim=(-0.02, 1.02),
               title="the gates that keep the old state")
    bottom.legend(fontsize="x-small", ncol=2)
    save_figure(fig, args, "vanishing_gradients.png")
    plt.close(fig)
    print("  shows: ||dL/dh_t|| per step (log scale); a line falling to the left is a vanishing gradient;\n"
          "         below, the LSTM's forget and the GRU's update gate, which set how fast theirs decays")


def plot_spectra(results, args, plt):
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for name, r in results.items():
        s = r["spectra"]
        ax.plot(s.windows, s.log_norms, color=COLORS[name], marker=".", label=name)
        if s.log_bound is not None:
            ax.plot(s.windows, s.log_bound, color=COLORS[name], ls="--", lw=1,
                    label=f"{name}: bound w log eta (eta = {s.eta:.2f})")
    ax.axhline(0.0, color="black", lw=0.8, ls=":")
    ax.set(xlabel="window length w", ylabel="mean log ||J_t ... J_(t-w+1)||_2",
           title="Products of state Jacobians (Pascanu et al. 2013)")
    ax.legend(fontsize="small")
    save_figure(fig, args, "vanishing_jacobians.png")
    plt.close(fig)
    print("  shows: log-norm of w-step Jacobian products; slope < 0 vanishes, > 0 explodes, dashed = eta^w bound")


def plot_truncation(results, args, plt):
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    for name, r in results.items():
        tr = r["truncation"]
        left.plot(tr.ks, tr.cosine, color=COLORS[name], marker=".", label=name)
        middle.plot(tr.ks, tr.relative_error, color=COLORS[name], marker=".", label=name)
        lags = tr.lag_norms / tr.lag_norms[0]
        right.plot(np.arange(tr.steps), np.where(lags > 0, lags, np.nan), color=COLORS[name], label=name)
    left.set(xscale="log", xlabel="truncation length k", ylabel="cosine with full BPTT",
             title="Truncated BPTT(k): direction")
    middle.set(xscale="log", xlabel="truncation length k", ylabel="||g_k - g|| / ||g||",
               title="Truncated BPTT(k): relative error")
    right.set(yscale="log", xlabel="lag (steps back)", ylabel="||D_lag|| / ||D_0||",
              title="Gradient that travels exactly lag steps")
    left.legend(fontsize="small")
    save_figure(fig, args, "vanishing_truncation.png")
    plt.close(fig)
    print("  shows: how close truncated BPTT(k) gets to full BPTT as k grows, and how much gradient travels\n"
          "         each lag back: where it vanishes, a short k loses little")


# ------------------------------------------------------------------ the unrolled graph
def small_unroll(cell, steps=5):
    """A step-by-step loop over a composed cell, every state retain_grad'ed; the loss reads the last step."""
    x = tg.randn(steps, 1, cell.input_size, dtype=F64, device=cell.weight_hh.device)
    states = [cell.initial_state(1, x)]
    for t in range(steps):
        state = cell(x[t], states[-1])
        for part in state if isinstance(state, tuple) else (state,):
            part.retain_grad()
        states.append(state)
    last = states[-1][0] if isinstance(states[-1], tuple) else states[-1]
    return (last ** 2).sum(), states


def draw(dot, path):
    """Write the DOT text, and an SVG of it where Graphviz's `dot` program is installed."""
    written = [graph.render(dot, path + ".dot")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        drawn = graph.render(dot, path + ".svg")
    return written + ([drawn] if drawn.endswith(".svg") else [])


def graph_view(name, cell, args):
    loss, states = small_unroll(cell)
    loss.backward(retain_graph=True)            # keep the graph: to_dot and summary walk it
    dot = graph.to_dot(loss, states, params=cell, grads=True, title=f"{name}, 5 steps")
    paths = draw(dot, os.path.join(args.out, f"vanishing_graph_{name}"))
    table, _ = graph.summary(loss, states)
    print(f"\n{name}: 5-step unroll of a composed {type(cell).__name__}(2, 3), ops and bytes saved per step")
    print(table)
    print("graph saved to " + ", ".join(paths))
    print("  shows: one cluster per step; state edges labelled ||dL/dh_t||, blue (small) to red (large)")


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=100, help="sequence length T")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--jacobian-batch", type=int, default=4, help="sequences whose Jacobians are measured")
    p.add_argument("--gain", type=float, default=1.0, help="scale of W_hh for the orthogonal and IRNN cells")
    p.add_argument("--forget-bias", type=float, default=1.0, help="the LSTM's forget-gate bias")
    p.add_argument("--smoke", action="store_true", help="a few seconds: T = 8, H = 4, the same code path")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.hidden, args.batch, args.jacobian_batch = 8, 4, 2, 2
    t0 = start(args, f"vanishing and exploding gradients, T = {args.steps}, H = {args.hidden}")
    x, y, running = data(args)
    results = {name: study(name, args, x, y, running) for name in progress(BUILDERS, desc="models")}
    print_table(results, args.steps)

    plt = pyplot()
    print()
    plot_gradients(results, args, plt)
    plot_spectra(results, args, plt)
    plot_truncation(results, args, plt)
    path = combine(*(r["page"] for r in results.values())).save(os.path.join(args.out, "vanishing.html"))
    print(f"page saved to {path} ({os.path.getsize(path) / 1e6:.2f} MB): open it in a browser\n"
          "  shows: the five cells on one page; pick one at the top, press play to watch the backward pass")

    tg.manual_seed(args.seed)
    graph_view("rnn", nn.RNNCell(2, 3, fused=False, device=args.device, dtype=F64), args)
    graph_view("lstm", nn.LSTMCell(2, 3, fused=False, device=args.device, dtype=F64), args)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
