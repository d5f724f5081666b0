"""Extended Kalman filter training against BPTT + Adam: one-step sunspot forecasts.

The same small recurrent network (an Elman network with a back projection from its
output, ``nn.ElmanJordanCell``: it reads this year's sunspot number and predicts next
year's) is trained on the years 1700-1959 in three ways:

- the extended Kalman filter (Puskorius & Feldkamp 1994; ``study.DecoupledEKF``), one
  weight update per year, with the output's derivative through all earlier years from
  RTRL: global (one covariance over all weights) and node-decoupled (one per neuron);
- backpropagation through time with Adam, one update per pass over the whole sequence
  (as examples/sunspots.py trains), and truncated BPTT with Adam, one update per 20 years.

After every pass over the training years, each is scored by its one-step RMSE on the
held-out years 1960-2008 (the network runs over the whole series, each forecast from
the true history before it). The filter needs far fewer passes; a pass costs it more
(O(m W^2) per year for W weights), so the table also gives the wall time. Baselines:
persistence and a least-squares AR(9) on the training years.

Run:  python examples/ekf_sunspots.py [--passes 20] [--adam-passes 600] [--seeds 3] [--device cpu|cuda] [--smoke]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.study import DecoupledEKF
from _common import parser, progress, pyplot, require, save_figure, start

TEST_START = 1960
F64 = tg.float64


def load():
    sunspots = require("statsmodels.datasets").sunspots
    data = sunspots.load_pandas().data
    return data["YEAR"].to_numpy().astype(int), data["SUNACTIVITY"].to_numpy(dtype=np.float64)


def make_cell(args, seed):
    tg.manual_seed(seed)
    return nn.ElmanJordanCell(1, args.hidden, 1, output_nonlinearity="identity", device=args.device, dtype=F64)


class Scorer:
    """One-step RMSE on the held-out years of the network run over the whole series."""

    def __init__(self, series, z, years, mean, scale, device):
        self.x = tg.tensor(z[:-1, None, None], dtype=F64, device=device)
        self.held_out = years[1:] >= TEST_START
        self.truth, self.mean, self.scale = series[1:][self.held_out], mean, scale

    def __call__(self, cell):
        with tg.no_grad():
            out, _ = nn.unroll(cell, self.x)
        forecast = out.numpy()[:, 0, 0][self.held_out] * self.scale + self.mean
        return float(np.sqrt(np.mean((forecast - self.truth) ** 2)))


def spread(values):
    return f"{np.mean(values):6.1f} +- {np.std(values):4.1f}"


def run_ekf(groups, seed, data, score, args):
    """(RMSE after each pass, seconds after each pass) of a filter-trained network."""
    x, d = data
    cell = make_cell(args, seed)
    ekf = DecoupledEKF(cell, groups=groups, p0=args.p0, q=args.q, r=args.r)
    curve, clock, elapsed = [], [], 0.0
    for _ in progress(range(args.passes), desc=f"EKF {groups:>7} seed {seed}", leave=False):
        t0 = time.perf_counter()
        ekf.train(x, d)
        elapsed += time.perf_counter() - t0
        curve.append(score(cell))
        clock.append(elapsed)
    return curve, clock


def run_adam(chunk, seed, data, score, args):
    """The same for BPTT + Adam, one update per ``chunk`` years (None: the whole sequence)."""
    x, d = data
    cell = make_cell(args, seed)
    opt = tg.optim.Adam(cell.parameters(), lr=args.lr)
    steps = x.shape[0]
    chunk = chunk or steps
    curve, clock, elapsed = [], [], 0.0
    name = "BPTT" if chunk == steps else f"TBPTT({chunk})"
    passes = args.adam_passes if chunk == steps else args.tbptt_passes
    for _ in progress(range(passes), desc=f"{name:>11} seed {seed}", leave=False):
        t0 = time.perf_counter()
        state = None
        for first in range(0, steps, chunk):
            out, state = nn.unroll(cell, x[first:first + chunk], state)
            loss = ((out - d[first:first + chunk]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(cell.parameters(), 1.0)
            opt.step()
            state = tuple(s.detach() for s in state)
        elapsed += time.perf_counter() - t0
        curve.append(score(cell))
        clock.append(elapsed)
    return curve, clock


def ar_rmse(series, years, order=9):
    rows = np.array([series[t - order:t][::-1] for t in range(order, len(series))])
    design = np.hstack([rows, np.ones((len(rows), 1))])
    fit = years[order:] < TEST_START
    coef, *_ = np.linalg.lstsq(design[fit], series[order:][fit], rcond=None)
    held = years[order:] >= TEST_START
    return float(np.sqrt(np.mean((design[held] @ coef - series[order:][held]) ** 2)))


def first_reaching(curve, clock, target):
    """(passes, seconds) at the first pass whose RMSE is at most ``target``, or None."""
    for k, (value, seconds) in enumerate(zip(curve, clock)):
        if value <= target:
            return k + 1, seconds
    return None


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--passes", type=int, default=20, help="passes of the Kalman filters")
    p.add_argument("--adam-passes", type=int, default=600, help="passes of BPTT + Adam (one update each)")
    p.add_argument("--tbptt-passes", type=int, default=100, help="passes of truncated BPTT + Adam")
    p.add_argument("--chunk", type=int, default=20, help="years per truncated-BPTT update")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--hidden", type=int, default=8)
    p.add_argument("--p0", type=float, default=1.0, help="initial covariance P = p0 I")
    p.add_argument("--q", type=float, default=1e-6, help="process noise Q = q I")
    p.add_argument("--r", type=float, default=1.0, help="measurement noise R = r I (normalised units)")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--smoke", action="store_true", help="a few seconds: 2 passes each, one seed, 3 units")
    args = p.parse_args()
    if args.smoke:
        args.passes, args.adam_passes, args.tbptt_passes, args.seeds, args.hidden = 2, 3, 2, 1, 3
    t0 = start(args, "EKF vs BPTT + Adam on sunspots")
    years, series = load()
    train_years = years[1:] < TEST_START
    mean, scale = series[years < TEST_START].mean(), series[years < TEST_START].std()
    z = (series - mean) / scale
    data = (tg.tensor(z[:-1][train_years][:, None, None], dtype=F64, device=args.device),
            tg.tensor(z[1:][train_years][:, None, None], dtype=F64, device=args.device))
    score = Scorer(series, z, years, mean, scale, args.device)
    persistence = float(np.sqrt(np.mean((series[:-1][score.held_out] - score.truth) ** 2)))
    ar9 = ar_rmse(series, years)

    methods = {"EKF, global": lambda s: run_ekf("global", s, data, score, args),
               "EKF, per neuron": lambda s: run_ekf("neuron", s, data, score, args),
               "BPTT + Adam": lambda s: run_adam(None, s, data, score, args),
               f"TBPTT({args.chunk}) + Adam": lambda s: run_adam(args.chunk, s, data, score, args)}
    runs = {name: [run(seed) for seed in range(args.seed, args.seed + args.seeds)] for name, run in methods.items()}

    target = 1.1 * ar9
    print(f"\none-step forecasts {TEST_START}-{years[-1]}, RMSE on the held-out years (mean +- sd over {args.seeds} "
          f"seed{'s' if args.seeds > 1 else ''}; {sum(p.size for p in make_cell(args, 0).parameters())} weights)")
    print(f"  {'':<20}{'after 1 pass':>15}{'after 5':>15}{'at the end':>15}{'passes':>8}{'seconds':>9}"
          f"{'to reach ' + format(target, '.1f'):>22}")
    for name, seeds in runs.items():
        curves = np.array([c for c, _ in seeds])
        clocks = np.array([c for _, c in seeds])
        after = [spread(curves[:, min(k, curves.shape[1]) - 1]) for k in (1, 5)]
        reached = [first_reaching(c, t, target) for c, t in seeds]
        got = [r for r in reached if r is not None]
        reach = (f"{np.mean([r[0] for r in got]):5.0f} passes {np.mean([r[1] for r in got]):5.1f} s"
                 if len(got) == len(reached) else f"{len(got)}/{len(reached)} seeds")
        print(f"  {name:<20}{after[0]:>15}{after[1]:>15}{spread(curves[:, -1]):>15}{curves.shape[1]:>8}"
              f"{clocks[:, -1].mean():9.1f}{reach:>22}")
    print("  ('to reach': the first pass whose held-out RMSE is within 10% of AR(9)'s, and its training time)")
    print(f"  {'persistence':<20}{persistence:>15.1f}")
    print(f"  {'AR(9)':<20}{ar9:>15.1f}")

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for name, seeds in runs.items():
        curves = np.array([c for c, _ in seeds])
        clocks = np.array([c for _, c in seeds]).mean(axis=0)
        passes = np.arange(1, curves.shape[1] + 1)
        line, = ax.plot(passes, curves.mean(axis=0), label=name)
        ax.fill_between(passes, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
        ax2.plot(clocks, curves.mean(axis=0), color=line.get_color(), label=name)
    for a in (ax, ax2):
        a.axhline(ar9, color="black", linestyle="--", label="AR(9)")
        a.axhline(persistence, color="gray", linestyle=":", label="persistence")
        a.set(xscale="log", ylim=(0, 2.5 * persistence))
    ax.set(xlabel="passes over the training years", ylabel="held-out one-step RMSE", title="Against passes")
    ax2.set(xlabel="training time (s)", title="Against wall time")
    ax.legend(fontsize=8)
    save_figure(fig, args, "ekf_sunspots.png")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
