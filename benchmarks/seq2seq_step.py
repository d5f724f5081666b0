"""One training step (forward + backward) of attention seq2seq, tinygrad_rnn against PyTorch.

Both models are the same network: embeddings, a bidirectional GRU encoder, a
tanh bridge to the decoder's initial state, a GRU decoder with input feeding,
Bahdanau (additive) attention, h~ = tanh(W_c [c; s]), a linear readout and the
cross-entropy over the target; tinygrad_rnn's is ``nn.Seq2Seq``, PyTorch's is
written out below with torch.nn.GRU for the encoder and nn.GRUCell in a loop
for the decoder. Default sizes: B = 64, source and target length 30,
E = H = 256, vocabulary 1000 (the issue's configuration). Times are the
minimum over repeats after a warm-up, float32, in one run, the two implementations
taking turns so that machine load falls on both alike.

Run:  python benchmarks/seq2seq_step.py [--quick] [--repeats 5]
"""
import argparse
import time

import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn

try:
    import torch
except ImportError:
    torch = None


def data(rng, batch, src_len, tgt_len, vocab):
    src = rng.integers(3, vocab, (batch, src_len))
    lengths = rng.integers(src_len // 2, src_len + 1, batch)
    lengths[0] = src_len
    for i, n in enumerate(lengths):
        src[i, n:] = 0
    tgt = rng.integers(3, vocab, (batch, tgt_len + 1))
    tgt[:, 0] = 1
    return src, lengths, tgt[:, :-1], tgt[:, 1:]


def tinygrad_step(args, batch_data):
    model = nn.Seq2Seq(args.vocab, args.vocab, embed_size=args.size, hidden_size=args.size, cell="gru",
                       attention="bahdanau")
    src, lengths, tgt_in, tgt_out = batch_data
    src, tgt_in, tgt_out = tg.tensor(src), tg.tensor(tgt_in), tg.tensor(tgt_out)

    def step():
        logits = model(src, lengths, tgt_in)
        loss = tg.functional.cross_entropy(logits.reshape(-1, args.vocab), tgt_out.reshape(-1))
        model.zero_grad()
        loss.backward()
        return loss.item()
    return step


class TorchSeq2Seq(torch.nn.Module if torch else object):
    """The same network as nn.Seq2Seq(cell="gru", attention="bahdanau"), in PyTorch."""

    def __init__(self, vocab, size):
        super().__init__()
        self.src_embed = torch.nn.Embedding(vocab, size, padding_idx=0)
        self.tgt_embed = torch.nn.Embedding(vocab, size, padding_idx=0)
        self.encoder = torch.nn.GRU(size, size, batch_first=True, bidirectional=True)
        self.bridge = torch.nn.Linear(2 * size, size)
        self.decoder = torch.nn.GRUCell(2 * size, size)
        self.w_query = torch.nn.Linear(size, size, bias=False)
        self.w_key = torch.nn.Linear(2 * size, size, bias=False)
        self.v = torch.nn.Parameter(torch.empty(size).uniform_(-size ** -0.5, size ** -0.5))
        self.combine = torch.nn.Linear(3 * size, size, bias=False)
        self.readout = torch.nn.Linear(size, vocab)

    def forward(self, src, lengths, tgt_in):
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.src_embed(src), lengths, batch_first=True,
                                                         enforce_sorted=False)
        out, h_n = self.encoder(packed)
        keys, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        projected = self.w_key(keys)
        mask = torch.arange(src.shape[1])[None, :] < lengths[:, None]
        state = torch.tanh(self.bridge(torch.cat([h_n[0], h_n[1]], dim=1)))
        feed = torch.zeros_like(state)
        logits = []
        for t in range(tgt_in.shape[1]):
            state = self.decoder(torch.cat([self.tgt_embed(tgt_in[:, t]), feed], dim=1), state)
            scores = torch.tanh(projected + self.w_query(state)[:, None]) @ self.v
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
            context = (weights[:, None] @ keys)[:, 0]
            feed = torch.tanh(self.combine(torch.cat([context, state], dim=1)))
            logits.append(self.readout(feed))
        return torch.stack(logits, dim=1)


def torch_step(args, batch_data):
    model = TorchSeq2Seq(args.vocab, args.size)
    src, lengths, tgt_in, tgt_out = (torch.as_tensor(a) for a in batch_data)

    def step():
        logits = model(src, lengths, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, args.vocab), tgt_out.reshape(-1))
        model.zero_grad()
        loss.backward()
        return loss.item()
    return step


def best_times(steps, repeats):
    """{name: min time of ``steps[name]()``} after one warm-up call each, the steps taking turns
    (one call of each per round), so that load from other processes falls on all alike."""
    for step in steps.values():
        step()
    best = {name: float("inf") for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--length", type=int, default=30)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = p.parse_args()
    if args.quick:
        args.batch, args.length, args.size, args.vocab, args.repeats = 8, 6, 16, 50, 2
    batch_data = data(np.random.default_rng(0), args.batch, args.length, args.length, args.vocab)
    print(f"attention seq2seq training step: B={args.batch}, S=T={args.length}, E=H={args.size}, "
          f"V={args.vocab}, float32, min of {args.repeats}, the implementations taking turns")
    steps = {"tinygrad_rnn": tinygrad_step(args, batch_data)}
    if torch is not None:
        torch.manual_seed(0)
        steps["PyTorch"] = torch_step(args, batch_data)
    best = best_times(steps, args.repeats)
    print(f"  tinygrad_rnn  {best['tinygrad_rnn'] * 1e3:8.1f} ms")
    if torch is None:
        print("  PyTorch not installed: no comparison")
        return
    print(f"  PyTorch       {best['PyTorch'] * 1e3:8.1f} ms  ({torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"  ratio tinygrad_rnn / PyTorch: {best['tinygrad_rnn'] / best['PyTorch']:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
