"""Learning to add: "a+b" -> the digits of a + b, with three seq2seq models.

The task and data follow the addition example of Deep Learning from Scratch 2
(Saito 2018): a, b in [0, 999], 50,000 questions, 10% held out. Three models
with the same sizes are compared, as in that book's chapter 7-8: a plain
encoder-decoder (Sutskever et al. 2014), the same reading its source reversed,
and an attention model with a bidirectional encoder (Bahdanau et al. 2015); all
use GRUs. A published rerun of the book's
scripts gave 10.8% (plain) and 54.3% (reversed) held-out exact match; attention
should reach about 99%.

Run:  python examples/addition.py [--steps 4000] [--device cpu|cuda]
"""
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import parser, start
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
    args = p.parse_args()
    t0 = start(args, "addition with seq2seq")
    pairs = questions(np.random.default_rng(args.seed), 50_000)
    train_pairs, test = pairs[:45_000], pairs[45_000:]
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
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
