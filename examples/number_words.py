"""Number words to digits in English, French and German with attention seq2seq.

"three hundred and forty-two", "trois cent quarante-deux" and
"dreihundertzweiundvierzig" all map to "342". The words come from ``num2words``
for numbers 0-99,999; 10% of the numbers are held out (never seen in any
language during training), so the model must compose, not memorise.

Run:  python examples/number_words.py [--steps 2000] [--device cpu|cuda]
"""
import time

import numpy as np

from tinygrad_rnn import nn
from _common import parser, require, start
from _seq import Vocab, exact_match, train

LANGUAGES = ("en", "fr", "de")


def pairs_for(numbers, rng):
    num2words = require("num2words").num2words
    langs = rng.choice(LANGUAGES, len(numbers))
    return [(num2words(int(n), lang=str(lang)), str(n)) for n, lang in zip(numbers, langs)], langs


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    args = p.parse_args()
    t0 = start(args, "number words -> digits (en, fr, de)")
    rng = np.random.default_rng(args.seed)
    numbers = rng.permutation(100_000)
    held_out, seen = numbers[:10_000], numbers[10_000:]
    train_pairs, _ = pairs_for(rng.choice(seen, 40_000), rng)
    test, test_langs = pairs_for(held_out[:1500], rng)
    src_vocab = Vocab("".join(s for s, _ in train_pairs + test))
    tgt_vocab = Vocab("0123456789")
    print(f"{len(train_pairs):,} training pairs; e.g. {train_pairs[0][0]!r} -> {train_pairs[0][1]!r}")
    model = nn.Seq2Seq(len(src_vocab), len(tgt_vocab), embed_size=32, hidden_size=args.hidden, cell="gru",
                       attention="luong_general", device=args.device)
    train(model, train_pairs, src_vocab, tgt_vocab, args)
    accuracy, examples = exact_match(model, test, src_vocab, tgt_vocab, args.device, max_len=7)
    print(f"\nheld-out exact match (numbers never seen in training): {accuracy:.1%}")
    for lang in LANGUAGES:
        rows = [e for e, l in zip(examples, test_langs) if l == lang]
        print(f"  {lang}: {np.mean([e[1] == e[2] for e in rows]):.1%} of {len(rows)}")
    for source, target, guess, _ in examples[:5]:
        print(f"  {source:<48} -> {guess}  {'ok' if guess == target else 'wrong, want ' + target}")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
