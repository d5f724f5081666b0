"""Teacher forcing and exposure bias: a Jordan network forecasting yearly sunspots many years ahead.

A Jordan network (Jordan 1986) feeds its previous *output* back. Here the output at
year t is the window of the last K yearly values it expects, ending one year ahead,
(s_{t+1}, s_t, ..., s_{t-K+2}); fed back, that window is all the network knows of the
past, so it is a nonlinear autoregression of order K whose memory is its own output
(K = 2 by default: Yule's 1927 AR(2) model of the sunspot cycle, made nonlinear). Its
only input is a constant (Jordan's plan units, held fixed).

Trained on windows of the years before 1960 (each started from the true window), it
feeds back at every step either the true window (teacher forcing, Williams & Zipser
1989), its own previous output (free running), the truth at a random half of the
steps, or the truth with a probability lowered from 1 to 0 during training
(scheduled sampling, Bengio et al. 2015). It is then run free from the true window
of each year 1959..2008-N and scored on the held-out years 1960-2008 it forecasts,
1..N years ahead. Teacher-forced training never feeds the network its own errors:
it is the best one year ahead and the worst ten years ahead, where the networks
trained on their own outputs are best (exposure bias). With a longer window
(--order 10) the picture changes: teacher forcing is then best at every horizon
and free-running training overfits the training cycles. Baselines: persistence,
and a least-squares AR(K) iterated the same way.

Run:  python examples/jordan_teacher_forcing.py [--iterations 1500] [--order 2] [--seeds 3] [--device cpu|cuda]
                                                [--smoke]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, progress, pyplot, require, save_figure, start

TEST_START = 1960       # first year forecast in the held-out part


def load():
    sunspots = require("statsmodels.datasets").sunspots
    data = sunspots.load_pandas().data
    return data["YEAR"].to_numpy().astype(int), data["SUNACTIVITY"].to_numpy(dtype=np.float64)


def windows(z, ends, order):
    """The lag windows (s_e, s_{e-1}, ..., s_{e-K+1}) ending at each index in ``ends``: (len(ends), K)."""
    return np.stack([z[e - order + 1:e + 1][::-1] for e in ends])


def training_windows(z, years, order, length):
    """For every start year o whose targets lie before TEST_START: the initial window W_o (N, K) and the
    targets W_{o+1} .. W_{o+length} (length, N, K)."""
    starts = [o for o in range(order - 1, len(z) - length) if years[o + length] < TEST_START]
    first = windows(z, starts, order)
    targets = np.stack([windows(z, [o + t + 1 for o in starts], order) for t in range(length)])
    return first, targets


MODES = {
    "teacher forcing": lambda progress_: 1.0,
    "mixed, r = 0.5": lambda progress_: 0.5,
    "scheduled, r: 1 -> 0": lambda progress_: 1.0 - progress_,
    "free running": lambda progress_: 0.0,
}


def train(mode, seed, z, years, args):
    """A Jordan network trained with the mode's ratio of fed truth; returns it."""
    tg.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = nn.Jordan(1, args.hidden, output_size=args.order, output_nonlinearity="identity", dtype=tg.float64,
                    device=args.device)
    opt = tg.optim.Adam(net.parameters(), lr=args.lr)
    first, targets = training_windows(z, years, args.order, args.length)
    ones = tg.ones(args.length, args.batch, 1, dtype=tg.float64, device=args.device)
    for i in progress(range(args.iterations), desc=f"{mode:>22} seed {seed}", leave=False):
        rows = rng.integers(0, first.shape[0], args.batch)
        y0 = tg.tensor(first[rows][None], dtype=tg.float64, device=args.device)
        d = tg.tensor(targets[:, rows], dtype=tg.float64, device=args.device)
        out, _ = net(ones, y0, targets=d, teacher_forcing=MODES[mode](i / max(1, args.iterations - 1)))
        loss = ((out - d) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    return net


def forecast_origins(years, horizon):
    """The indices o of the years whose next ``horizon`` years are all held out."""
    return np.array([o for o in range(len(years) - horizon) if years[o + 1] >= TEST_START])


def jordan_forecasts(net, z, origins, args):
    """Free-running forecasts (len(origins), horizon) of the normalised series from each origin's true window."""
    y0 = tg.tensor(windows(z, origins, args.order)[None], dtype=tg.float64, device=args.device)
    with tg.no_grad():
        out, _ = net(tg.ones(args.horizon, len(origins), 1, dtype=tg.float64, device=args.device), y0)
    return out.numpy()[:, :, 0].T


def ar_forecasts(z, years, origins, args):
    """A least-squares AR(K) on the training years, iterated from each origin's true window."""
    ends = [e for e in range(args.order - 1, len(z) - 1) if years[e + 1] < TEST_START]
    design = np.hstack([windows(z, ends, args.order), np.ones((len(ends), 1))])
    coef, *_ = np.linalg.lstsq(design, z[np.array(ends) + 1], rcond=None)
    window, out = windows(z, origins, args.order), []
    for _ in range(args.horizon):
        nxt = window @ coef[:-1] + coef[-1]
        out.append(nxt)
        window = np.hstack([nxt[:, None], window[:, :-1]])
    return np.stack(out, axis=1)


def rmse_by_horizon(forecast, truth, scale):
    return np.sqrt(np.mean((forecast - truth) ** 2, axis=0)) * scale


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, default=1500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--order", type=int, default=2, help="K: years in the fed-back output window")
    p.add_argument("--hidden", type=int, default=12)
    p.add_argument("--length", type=int, default=16, help="steps of each training window")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--horizon", type=int, default=10, help="N: years forecast ahead")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--smoke", action="store_true", help="a few seconds: 10 iterations, one seed, the same code path")
    args = p.parse_args()
    if args.smoke:
        args.iterations, args.seeds, args.hidden, args.length, args.horizon = 10, 1, 4, 4, 3
    t0 = start(args, "Jordan network: teacher forcing vs free running")
    years, series = load()
    train_part = series[years < TEST_START]
    mean, scale = train_part.mean(), train_part.std()
    z = (series - mean) / scale
    origins = forecast_origins(years, args.horizon)
    truth = np.stack([z[origins + h] for h in range(1, args.horizon + 1)], axis=1)

    results, examples = {}, {}
    for mode in MODES:
        scores = []
        for seed in range(args.seed, args.seed + args.seeds):
            net = train(mode, seed, z, years, args)
            forecast = jordan_forecasts(net, z, origins, args)
            scores.append(rmse_by_horizon(forecast, truth, scale))
            if seed == args.seed:
                examples[mode] = forecast
        results[mode] = np.array(scores)
    baselines = {"persistence": rmse_by_horizon(np.repeat(z[origins][:, None], args.horizon, axis=1), truth, scale),
                 f"AR({args.order}) iterated": rmse_by_horizon(ar_forecasts(z, years, origins, args), truth, scale)}

    shown = sorted({1, 2, 3, 5, 8, args.horizon} & set(range(1, args.horizon + 1)))
    print(f"\nfree-running forecasts of {len(origins)} origins, years {TEST_START}-{years[-1]}: RMSE by years ahead "
          f"(mean +- sd over {args.seeds} seed{'s' if args.seeds > 1 else ''}; lower is better)")
    print(f"  {'':<22}" + "".join(f"{h:>13}" for h in shown) + f"{'mean 1..' + str(args.horizon):>13}")
    for name, scores in results.items():
        cells = [f"{scores[:, h - 1].mean():6.1f} +- {scores[:, h - 1].std():4.1f}" for h in shown]
        mean_all = scores.mean(axis=1)
        print(f"  {name:<22}" + "".join(f"{c:>13}" for c in cells) + f"{mean_all.mean():6.1f} +- {mean_all.std():4.1f}")
    for name, score in baselines.items():
        print(f"  {name:<22}" + "".join(f"{score[h - 1]:13.1f}" for h in shown) + f"{score.mean():13.1f}")
    best = min(results, key=lambda k: results[k].mean())
    print(f"  best over all horizons: {best}; teacher forcing at {args.horizon} years: "
          f"{results['teacher forcing'][:, -1].mean():.1f}, free running: {results['free running'][:, -1].mean():.1f}")

    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    steps = np.arange(1, args.horizon + 1)
    for name, scores in results.items():
        ax.errorbar(steps, scores.mean(axis=0), yerr=scores.std(axis=0), marker="o", ms=3, capsize=2, label=name)
    for name, score in baselines.items():
        ax.plot(steps, score, "--", color="gray" if name == "persistence" else "black", label=name)
    ax.set(xlabel="years ahead", ylabel="RMSE (sunspot number)", title="Free-running forecast error, held-out years")
    ax.legend(fontsize=8)
    pick = int(np.argmin(np.abs(years[origins] - 1979)))
    span = np.arange(origins[pick] - 15, min(len(years), origins[pick] + args.horizon + 5))
    ax2.plot(years[span], series[span], "k-", label="observed")
    future = years[origins[pick]] + steps
    for name, forecast in examples.items():
        ax2.plot(future, forecast[pick] * scale + mean, "o-", ms=3, label=name)
    ax2.axvline(years[origins[pick]] + 0.5, color="gray", linestyle=":")
    ax2.set(xlabel="year", ylabel="sunspot number",
            title=f"Running free from {years[origins[pick]]} (seed {args.seed})")
    ax2.legend(fontsize=8)
    save_figure(fig, args, "jordan_teacher_forcing.png")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
