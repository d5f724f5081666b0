"""Number words to digits in English, French and German with attention seq2seq.

"three hundred and forty-two", "trois cent quarante-deux" and
"dreihundertzweiundvierzig" all map to "342". The words come from ``num2words``
for numbers 0-99,999; 10% of the numbers are held out (never seen in any
language during training), so the model must compose, not memorise.

Run:  python examples/number_words.py [--steps 2000] [--device cpu|cuda] [--smoke]
"""
import time

import numpy as np

from tinygrad_rnn import nn
from _common import parser, pyplot, require, save_figure, start
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
    p.add_argument("--train-size", type=int, default=40_000, help="training pairs")
    p.add_argument("--test-size", type=int, default=1500, help="held-out pairs")
    p.add_argument("--smoke", action="store_true", help="a few seconds: 20 steps on 2,000 pairs, the same code path")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.batch, args.hidden, args.train_size, args.test_size = 20, 16, 16, 2000, 60
    t0 = start(args, "number words -> digits (en, fr, de)")
    rng = np.random.default_rng(args.seed)
    numbers = rng.permutation(100_000)
    held_out, seen = numbers[:10_000], numbers[10_000:]
    train_pairs, _ = pairs_for(rng.choice(seen, args.train_size), rng)
    test, test_langs = pairs_for(held_out[:args.test_size], rng)
    src_vocab = Vocab("".join(s for s, _ in train_pairs + test))
    tgt_vocab = Vocab("0123456789")
    print(f"{len(train_pairs):,} training pairs; e.g. {train_pairs[0][0]!r} -> {train_pairs[0][1]!r}")
    model = nn.Seq2Seq(len(src_vocab), len(tgt_vocab), embed_size=32, hidden_size=args.hidden, cell="gru",
                       attention="luong_general", device=args.device)
    train(model, train_pairs, src_vocab, tgt_vocab, args)
    accuracy, examples = exact_match(model, test, src_vocab, tgt_vocab, args.device, max_len=7)
    print(f"\nheld-out exact match (numbers never seen in training): {accuracy:.1%}")
    per_language = {}
    for lang in LANGUAGES:
        rows = [e for e, l in zip(examples, test_langs) if l == lang]
        per_language[lang] = np.mean([e[1] == e[2] for e in rows]) if rows else 0.0
        print(f"  {lang}: {per_language[lang]:.1%} of {len(rows)}")
    for source, target, guess, _ in examples[:5]:
        print(f"  {source:<48} -> {guess}  {'ok' if guess == target else 'wrong, want ' + target}")
    plot(per_language, next((e for e in examples if e[2]), examples[0]), args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


def plot(per_language, example, args):
    """Held-out exact match per language, and where the decoder looks for one held-out number."""
    plt = pyplot()
    fig, (bars, heat) = plt.subplots(1, 2, figsize=(12, 3.6), width_ratios=(1, 3))
    bars.bar(list(per_language), [100 * v for v in per_language.values()], color="tab:blue")
    bars.set(ylim=(0, 100), ylabel="held-out exact match (%)", title="per language")
    source, target, guess, amap = example
    if guess:
        image = heat.imshow(amap, cmap="viridis", aspect="auto", vmin=0, vmax=1)
        heat.set_yticks(range(len(guess)), list(guess))
        fig.colorbar(image, ax=heat, label="attention weight")
    else:                                   # nothing written (an untrained model): no attention to show
        heat.text(0.5, 0.5, "no digit written", ha="center", transform=heat.transAxes)
        heat.set_yticks([])
    heat.set_xticks(range(len(source)), list(source), fontsize=7)
    heat.set_title(f"attention while writing {guess!r} (want {target!r})", fontsize=10)
    return save_figure(fig, args, "number_words.png")


if __name__ == "__main__":
    main()
