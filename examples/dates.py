"""Human-written dates to ISO 8601 with an attention seq2seq model: the main demo.

Source strings are dates from 1950-2049 written by CLDR's locale data (the
``babel`` package) in eight locales and four styles ("14.03.87", "14 mars 1987",
"sábado, 14 de março de 1987", "March 14, 1987", ...); the target is the ISO
form ("1987-03-14") from ``datetime``. The US numeric style is left out: with
the day-first numeric styles it would make strings such as "11/12/87"
ambiguous. Test dates are days that never occur in training. The model reads
characters with a bidirectional GRU and writes characters with a GRU decoder
that attends to the source (Bahdanau et al. 2015); the score is exact match on
held-out dates, and a heatmap shows where the decoder looked.

It also writes one page, dates.html (tinygrad_rnn.study.explore; open it in a
browser): for a few held-out dates, the attention maps of the greedy and the
beam-search output, and the beam search itself as a tree of hypotheses.

Run:  python examples/dates.py [--steps 1500] [--device cpu|cuda] [--smoke]
"""
import datetime
import os
import time

import numpy as np

from tinygrad_rnn import nn
from tinygrad_rnn.study import explore
from _common import parser, pyplot, require, save_figure, start
from _seq import Vocab, batch, exact_match, train

LOCALES = ("en_US", "en_GB", "fr_FR", "de_DE", "es_ES", "it_IT", "pt_BR", "nl_NL")
STYLES = ("short", "medium", "long", "full")
TARGET_CHARS = "0123456789-"


def written(day, rng):
    """One way a person might write ``day``."""
    format_date = require("babel.dates").format_date
    locale = LOCALES[rng.integers(len(LOCALES))]
    styles = STYLES[1:] if locale == "en_US" else STYLES
    return format_date(day, format=styles[rng.integers(len(styles))], locale=locale)


def dataset(rng, train_size, test_size):
    first, days = datetime.date(1950, 1, 1), (datetime.date(2049, 12, 31) - datetime.date(1950, 1, 1)).days + 1
    order = rng.permutation(days)
    test_days, train_days = order[:test_size], order[test_size:]
    def pairs(day_numbers, count):
        picks = rng.choice(day_numbers, count)
        dates = [first + datetime.timedelta(days=int(d)) for d in picks]
        return [(written(d, rng), d.isoformat()) for d in dates]
    return pairs(train_days, train_size), pairs(test_days, test_size)


def plot_attention(examples, args):
    plt = pyplot()
    fig, axes = plt.subplots(1, len(examples), figsize=(4.2 * len(examples), 3.4))
    for ax, (source, _, guess, amap) in zip(np.atleast_1d(axes), examples):
        image = ax.imshow(amap, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(source)), list(source), fontsize=7)
        ax.set_yticks(range(len(guess)), list(guess), fontsize=8)
        ax.set_title(source, fontsize=9)
    fig.colorbar(image, ax=np.atleast_1d(axes).tolist(), label="attention weight")
    fig.suptitle("Where the decoder looks while writing each ISO character")
    return save_figure(fig, args, "dates_attention.png")


def write_page(model, pairs, src_vocab, tgt_vocab, args):
    """The browser page: attention maps and the beam tree of a few held-out dates."""
    src, lengths, _, _ = batch(pairs, src_vocab, tgt_vocab, args.device)
    report = explore(model, src, lengths=lengths, beam_size=4, max_len=12, examples=len(pairs),
                     src_labels=src_vocab.chars, tgt_labels=tgt_vocab.chars, name="dates seq2seq",
                     title="Dates to ISO 8601: attention and beam search")
    path = report.save(os.path.join(args.out, "dates.html"))
    print(f"page saved to {path} ({os.path.getsize(path) / 1e6:.2f} MB): open it in a browser")
    return path


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="training steps (batches)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--smoke", action="store_true", help="a few seconds: 30 steps on 300 pairs, the same code path")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.batch, args.hidden, args.train_size, args.test_size = 30, 16, 16, 300, 40
    t0 = start(args, "dates -> ISO 8601 with attention")
    rng = np.random.default_rng(args.seed)
    train_pairs, test = dataset(rng, args.train_size, args.test_size)
    src_vocab = Vocab("".join(s for s, _ in train_pairs + test))
    tgt_vocab = Vocab(TARGET_CHARS)
    print(f"{len(train_pairs):,} training and {len(test):,} test pairs (test days never seen in training), "
          f"{len(src_vocab)} source characters; e.g. {train_pairs[0][0]!r} -> {train_pairs[0][1]!r}")

    model = nn.Seq2Seq(len(src_vocab), len(tgt_vocab), embed_size=32, hidden_size=args.hidden,
                       cell="gru", attention="bahdanau", device=args.device)
    train(model, train_pairs, src_vocab, tgt_vocab, args)
    train_time = time.perf_counter() - t0

    accuracy, examples = exact_match(model, test, src_vocab, tgt_vocab, args.device, max_len=12)
    print(f"\nheld-out exact match: {accuracy:.2%} on {len(test):,} dates ({train_time:.0f} s to train)")
    for source, target, guess, _ in examples[:8]:
        print(f"  {source:<34} -> {guess}  {'ok' if guess == target else 'wrong, want ' + target}")
    wrong = [e for e in examples if e[1] != e[2]]
    if wrong:
        print(f"{len(wrong)} mistakes, e.g. " + "; ".join(f"{s!r} -> {g} (want {t})" for s, t, g, _ in wrong[:3]))
    plot_attention(examples[:3], args)
    write_page(model, test[:4], src_vocab, tgt_vocab, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
