"""What the sequence-to-sequence examples share: character vocabularies, padded
batches, a training loop and exact-match scoring."""
import numpy as np

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from _common import progress

PAD, BOS, EOS = 0, 1, 2


class Vocab:
    """Characters <-> ids, with ids 0, 1, 2 kept for PAD, BOS and EOS."""

    def __init__(self, chars):
        self.chars = ["<pad>", "<bos>", "<eos>"] + sorted(set(chars))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        return [self.index[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


def batch(pairs, src_vocab, tgt_vocab, device, reverse_source=False):
    """Padded source ids, lengths, decoder inputs (BOS + target) and outputs (target + EOS, PAD after)."""
    src = [src_vocab.encode(s[::-1] if reverse_source else s) for s, _ in pairs]
    tgt = [tgt_vocab.encode(t) for _, t in pairs]
    lengths = np.array([len(s) for s in src])
    src_ids = np.full((len(src), lengths.max()), PAD)
    steps = max(len(t) for t in tgt) + 1
    tgt_in, tgt_out = np.full((len(tgt), steps), PAD), np.full((len(tgt), steps), PAD)
    for i, (s, t) in enumerate(zip(src, tgt)):
        src_ids[i, :len(s)] = s
        tgt_in[i, :len(t) + 1] = [BOS] + t
        tgt_out[i, :len(t) + 1] = t + [EOS]
    return (tg.tensor(src_ids, device=device), lengths, tg.tensor(tgt_in, device=device),
            tg.tensor(tgt_out, device=device))


def train(model, pairs, src_vocab, tgt_vocab, args, desc="training", reverse_source=False):
    """Adam with a cosine schedule and gradient clipping; padded targets are ignored by the loss."""
    rng = np.random.default_rng(args.seed)
    opt = tg.optim.Adam(model.parameters(), lr=args.lr)
    schedule = tg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps, eta_min=args.lr / 20)
    for _ in progress(range(args.steps), desc=desc):
        rows = rng.integers(0, len(pairs), args.batch)
        src, lengths, tgt_in, tgt_out = batch([pairs[i] for i in rows], src_vocab, tgt_vocab, args.device,
                                              reverse_source)
        logits = model(src, lengths, tgt_in)
        loss = tg.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                           ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()


def exact_match(model, pairs, src_vocab, tgt_vocab, device, max_len, reverse_source=False, size=500):
    """Share of ``pairs`` decoded exactly (greedy), and (source, target, guess, attention) per pair."""
    hits, examples = 0, []
    for i in range(0, len(pairs), size):
        chunk = pairs[i:i + size]
        src, lengths, _, _ = batch(chunk, src_vocab, tgt_vocab, device, reverse_source)
        tokens, maps = model.generate(src, lengths, max_len=max_len)
        for (source, target), ids, amap in zip(chunk, tokens, maps):
            guess = tgt_vocab.decode(ids)
            hits += guess == target
            examples.append((source, target, guess, amap))
    return hits / len(pairs), examples
