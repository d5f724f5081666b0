"""Speaker recognition on the Japanese Vowels data with variable-length batches.

Nine speakers utter /ae/; each utterance is 7 to 29 frames of 12 LPC cepstrum
coefficients (Kudo, Toyama & Shimbo 1999; the UCR/UEA archive copy that sktime
ships: 270 training and 370 test utterances). A bidirectional GRU reads each
padded batch with ``lengths=`` so padding never enters the state, and its final
states feed a linear classifier. Baseline: 1-nearest-neighbour with dynamic time
warping, 94.9% test accuracy in the UEA archive's results.

Run:  python examples/vowels.py [--epochs 60] [--smoke] [--device cpu|cuda]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, progress, pyplot, require, save_figure, start

DTW_BASELINE = 0.949


def load(split):
    """Padded (T_max, N, 12) float32 array, lengths (N,), integer labels (N,)."""
    load_japanese_vowels = require("sktime.datasets").load_japanese_vowels
    frame, labels = load_japanese_vowels(split=split, return_X_y=True)
    series = [np.stack([frame.iloc[i, c].to_numpy(dtype=np.float64) for c in range(frame.shape[1])], axis=1)
              for i in range(len(frame))]
    lengths = np.array([len(s) for s in series])
    padded = np.zeros((lengths.max(), len(series), frame.shape[1]), dtype=np.float32)
    for i, s in enumerate(series):
        padded[:len(s), i] = s
    return padded, lengths, np.array([int(c) - 1 for c in labels])


class Classifier(nn.Module):
    def __init__(self, features, hidden, classes, device):
        self.rnn = nn.GRU(features, hidden, bidirectional=True, device=device)
        self.readout = nn.Linear(2 * hidden, classes, device=device)

    def forward(self, x, lengths):
        _, h_n = self.rnn(x, lengths=lengths)           # h_n (2, B, H): each row's own last valid step
        return self.readout(tg.cat([h_n[0], h_n[1]], axis=1))


def accuracy(model, x, lengths, labels, device):
    with tg.no_grad():
        model.eval()
        logits = model(tg.tensor(x, device=device), lengths)
        model.train()
    return float((logits.numpy().argmax(axis=1) == labels).mean())


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--smoke", action="store_true", help="a few seconds: one epoch of a small model")
    args = p.parse_args()
    if args.smoke:
        args.epochs, args.hidden = 1, 8
    t0 = start(args, "Japanese Vowels speaker recognition")
    train_x, train_len, train_y = load("train")
    test_x, test_len, test_y = load("test")
    mean = train_x.sum(axis=(0, 1)) / train_len.sum()
    std = np.sqrt(((train_x - mean) ** 2 * (np.arange(len(train_x))[:, None] < train_len)[..., None]).sum(axis=(0, 1))
                  / train_len.sum())
    for x, lengths in ((train_x, train_len), (test_x, test_len)):
        x -= mean
        x /= std
        x *= (np.arange(len(x))[:, None] < lengths)[..., None]      # padding stays exactly zero
    print(f"{len(train_y)} training and {len(test_y)} test utterances, lengths "
          f"{min(train_len.min(), test_len.min())}-{max(train_len.max(), test_len.max())}, 9 speakers")

    model = Classifier(train_x.shape[2], args.hidden, 9, args.device)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    history = []
    for _ in progress(range(args.epochs), desc="epochs"):
        order = rng.permutation(len(train_y))
        for first in range(0, len(order), args.batch):
            rows = order[first:first + args.batch]
            steps = train_len[rows].max()
            logits = model(tg.tensor(train_x[:steps, rows], device=args.device), train_len[rows])
            loss = tg.functional.cross_entropy(logits, tg.tensor(train_y[rows], device=args.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append((accuracy(model, train_x, train_len, train_y, args.device),
                        accuracy(model, test_x, test_len, test_y, args.device)))

    test_acc = history[-1][1]
    print(f"\ntest accuracy {test_acc:.1%} vs 1-NN DTW {DTW_BASELINE:.1%} "
          f"({'better' if test_acc > DTW_BASELINE else 'not better'}); training accuracy {history[-1][0]:.1%}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([h[0] for h in history], label="training")
    ax.plot([h[1] for h in history], label="test")
    ax.axhline(DTW_BASELINE, color="gray", linestyle="--", label="1-NN DTW (94.9%)")
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0.5, 1.02), title="Japanese Vowels, bidirectional GRU")
    ax.legend()
    save_figure(fig, args, "vowels.png")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
