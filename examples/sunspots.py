"""One-step forecasts of yearly sunspot numbers, 1980-2008, with a GRU.

The series (1700-2008) ships with statsmodels. The network reads the years up
to t and predicts year t + 1; it is trained on 1700-1959, the epoch is chosen on
1960-1979, and it is scored on 1980-2008, each forecast made from the true
history before it. Baselines, computed here on the same years: persistence
(next year = this year; RMSE 29.1 in the literature) and an AR(9) model fitted by
least squares on the training years (RMSE 15.2).

Run:  python examples/sunspots.py [--epochs 600] [--device cpu|cuda] [--smoke]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, progress, pyplot, require, save_figure, start

TRAIN_END, VALID_END = 1960, 1980     # first year of validation, first year of test


def load():
    sunspots = require("statsmodels.datasets").sunspots
    data = sunspots.load_pandas().data
    return data["YEAR"].to_numpy().astype(int), data["SUNACTIVITY"].to_numpy(dtype=np.float64)


def rmse(pred, true):
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def ar_forecast(series, years, order=9):
    """Least-squares AR(order) fitted on years before TRAIN_END; one-step forecasts for every year."""
    rows = np.array([series[t - order:t][::-1] for t in range(order, len(series))])
    design = np.hstack([rows, np.ones((len(rows), 1))])
    fit = years[order:] < TRAIN_END
    coef, *_ = np.linalg.lstsq(design[fit], series[order:][fit], rcond=None)
    forecast = np.full(len(series), np.nan)
    forecast[order:] = design @ coef
    return forecast


class Forecaster(nn.Module):
    def __init__(self, hidden, device):
        self.rnn = nn.GRU(1, hidden, device=device)
        self.readout = nn.Linear(hidden, 1, device=device)

    def forward(self, x):            # x (T, 1, 1) -> next-step predictions (T, 1, 1)
        out, _ = self.rnn(x)
        return self.readout(out)


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--smoke", action="store_true", help="a few seconds: 5 epochs of 4 units, the same code path")
    args = p.parse_args()
    if args.smoke:
        args.epochs, args.hidden = 5, 4
    t0 = start(args, "sunspot forecasts")
    years, series = load()
    scale_mean, scale_std = series[years < TRAIN_END].mean(), series[years < TRAIN_END].std()
    z = (series - scale_mean) / scale_std
    x = tg.tensor(z[:-1, None, None], dtype=tg.float32, device=args.device)    # year t
    target = z[1:]                                                              # year t + 1
    target_years = years[1:]
    train = tg.tensor((target_years < TRAIN_END).astype(np.float32)[:, None, None], device=args.device)
    y = tg.tensor(target[:, None, None], dtype=tg.float32, device=args.device)

    model = Forecaster(args.hidden, args.device)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    valid = (target_years >= TRAIN_END) & (target_years < VALID_END)
    best = (np.inf, None)
    for _ in progress(range(args.epochs), desc="epochs"):
        pred = model(x)
        loss = (((pred - y) ** 2) * train).sum() / train.sum()
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        forecast = pred.numpy().ravel() * scale_std + scale_mean
        score = rmse(forecast[valid], series[1:][valid])
        if score < best[0]:
            best = (score, forecast)

    test = target_years >= VALID_END
    truth = series[1:][test]
    gru = rmse(best[1][test], truth)
    persistence = rmse(series[:-1][test], truth)
    ar = rmse(ar_forecast(series, years)[1:][test], truth)
    print(f"\none-step forecasts {VALID_END}-{years[-1]}, RMSE (lower is better)")
    print(f"  persistence     {persistence:6.1f}   (29.1 in the literature)")
    print(f"  AR(9)           {ar:6.1f}   (15.2 in the literature)")
    print(f"  GRU ({args.hidden} units)  {gru:6.1f}   ({'beats' if gru < ar else 'does not beat'} AR(9))")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    span = target_years >= 1940
    ax.plot(target_years[span], series[1:][span], "k-", label="observed")
    ax.plot(target_years[test], best[1][test], "o-", ms=3, label=f"GRU (RMSE {gru:.1f})")
    ax.plot(target_years[test], ar_forecast(series, years)[1:][test], "s--", ms=3, label=f"AR(9) (RMSE {ar:.1f})")
    ax.axvline(VALID_END - 0.5, color="gray", linestyle=":")
    ax.set(xlabel="year", ylabel="sunspot number", title="One-step-ahead forecasts")
    ax.legend()
    save_figure(fig, args, "sunspots.png")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
