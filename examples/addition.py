"""Learning to add: "a+b" -> the digits of a + b, with three seq2seq models.

The task and data follow the addition example of Deep Learning from Scratch 2
(Saito 2018): a, b in [0, 999], 50,000 questions, 10% held out. Three models
with the same sizes are compared, as in that book's chapter 7-8: a plain
encoder-decoder (Sutskever et al. 2014), the same reading its source reversed,
and an attention model with a bidirectional encoder (Bahdanau et al. 2015); all
use GRUs. A published rerun of the book's
scripts gave 10.8% (plain) and 54.3% (reversed) held-out exact match; attention
should reach about 99%.

Run:  python examples/addition.py [--steps 4000] [--device cpu|cuda] [--smoke]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, pyplot, save_figure, start
from _seq import Vocab, exact_match, train

# (name, attention, reversed source, bidirectional encoder): the attention model reads its source
# both ways, as Bahdanau et al.'s encoder does; the other two are the book's unidirectional ones.
MODELS = (("plain", None, False, False), ("reversed source", None, True, False),
          ("attention", "bahdanau", False, True))


def questions(rng, count):
    a, b = rng.integers(0, 1000, count), rng.integers(0, 1000, count)
    return [(f"{x}+{y}", str(x + y)) for x, y in zip(a, b)]


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--questions", type=int, default=50_000, help="questions in all; a tenth is held out")
    p.add_argument("--smoke", action="store_true", help="a few seconds: 20 steps on 2,000 questions, the same "
                   "code path")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.batch, args.hidden, args.questions = 20, 16, 16, 2000
    t0 = start(args, "addition with seq2seq")
    pairs = questions(np.random.default_rng(args.seed), args.questions)
    cut = args.questions - args.questions // 10
    train_pairs, test = pairs[:cut], pairs[cut:]
    vocab = Vocab("0123456789+")
    results = []
    for name, attention, reverse, bidirectional in MODELS:
        tg.manual_seed(args.seed)           # every model starts from the same draws
        model = nn.Seq2Seq(len(vocab), len(vocab), embed_size=16, hidden_size=args.hidden, cell="gru",
                           attention=attention, bidirectional_encoder=bidirectional, device=args.device)
        start_time = time.perf_counter()
        train(model, train_pairs, vocab, vocab, args, desc=f"{name:>15}", reverse_source=reverse)
        accuracy, _ = exact_match(model, test, vocab, vocab, args.device, max_len=5, reverse_source=reverse)
        results.append((name, accuracy, time.perf_counter() - start_time))

    print(f"\nheld-out exact match on {len(test):,} questions after {args.steps} steps of {args.batch}")
    print(f"  {'model':<16} {'accuracy':>9} {'seconds':>8}   reference (DL from Scratch 2, rerun)")
    reference = {"plain": "10.8%", "reversed source": "54.3%", "attention": "~99%"}
    for name, accuracy, seconds in results:
        print(f"  {name:<16} {accuracy:>9.1%} {seconds:>8.0f}   {reference[name]}")
    plot(results, reference, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


def plot(results, reference, args):
    """Held-out exact match of the three models beside the book's rerun."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    names = [name for name, _, _ in results]
    ax.bar(names, [100 * accuracy for _, accuracy, _ in results], color="tab:blue", label="this run")
    book = [float(reference[name].strip("~%")) for name in names]
    ax.scatter(names, book, color="black", marker="_", s=900, zorder=3, label="DL from Scratch 2 (rerun)")
    ax.set(ylim=(0, 100), ylabel="held-out exact match (%)", title=f"a+b with seq2seq, {args.steps} steps")
    ax.legend(loc="upper left")
    return save_figure(fig, args, "addition.png")


if __name__ == "__main__":
    main()
