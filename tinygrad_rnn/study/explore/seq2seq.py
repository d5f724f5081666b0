"""The numbers behind a Seq2Seq model's page: attention maps and the beam search tree.

The attention maps are what ``Seq2Seq.generate`` returns. The tree is read from the
model's own beam search while it runs: every call of its per-step selection
(``Seq2Seq._select``) is recorded (the hypotheses it extends, the tokens and their
cumulative log-probabilities, the hypotheses it finishes), so the tree shows what the
search did, not a second search written here.
"""
import inspect
from contextlib import contextmanager

import numpy as np

from ...nn.seq2seq import Seq2Seq
from ...tensor import Tensor
from .jsonable import plain, round_number


def seq2seq_run(model, src, lengths, options):
    """Attention maps (greedy and beam) and the beam tree of each of the first examples of ``src``."""
    if not isinstance(model, Seq2Seq):
        raise TypeError(f"explore: expected an nn.Seq2Seq here, got {type(model).__name__}")
    if not isinstance(src, Tensor) or src.ndim != 2:
        raise ValueError(f"explore: a Seq2Seq model takes source ids (batch, length), got "
                         f"{src.shape if isinstance(src, Tensor) else type(src).__name__}")
    rows = min(options["examples"], src.shape[0])
    src = src[:rows]
    lengths = None if lengths is None else list(np.asarray(lengths)[:rows])
    max_len, beam = options["max_len"], options["beam_size"]
    greedy_tokens, greedy_maps = model.generate(src, lengths, max_len=max_len, beam_size=1)
    with recorded_beam(model) as steps:
        beam_tokens, beam_maps = model.generate(src, lengths, max_len=max_len, beam_size=beam,
                                                length_penalty=options["length_penalty"])
    source_ids = src.numpy()
    source_len = [source_ids.shape[1]] * rows if lengths is None else [int(n) for n in lengths]
    src_label, tgt_label = options["src_labels"], options["tgt_labels"]
    examples = []
    for b in range(rows):
        source = [src_label(int(i)) for i in source_ids[b, :source_len[b]]]
        examples.append({
            "source": source,
            "greedy": [tgt_label(t) for t in greedy_tokens[b]], "greedy_attention": plain(greedy_maps[b], 4),
            "beam": [tgt_label(t) for t in beam_tokens[b]], "beam_attention": plain(beam_maps[b], 4),
            "tree": beam_tree(steps, b, beam, model.eos_id, beam_tokens[b], tgt_label)})
    return {"kind": "seq2seq", "model": " ".join(repr(model).split())[:300], "examples": examples,
            "beam_size": beam, "attention": model.attention_kind}


@contextmanager
def recorded_beam(model):
    """Inside the block, each call of ``model._select`` (one beam-search step) appends
    {history, parents, tokens, scores, finished} to the yielded list; the method is put back after."""
    steps = []
    original = model._select
    signature = inspect.signature(original)

    def select(*args, **kwargs):
        named = signature.bind(*args, **kwargs).arguments          # by name: robust to the order
        finished, history = named["finished"], named["history"]
        before = [len(f) for f in finished]
        parents, tokens, scores = original(*args, **kwargs)
        ended = [[(seq, score) for score, seq, _ in f[n:]] for f, n in zip(finished, before)]
        steps.append({"history": history.copy(), "parents": parents.copy(), "tokens": tokens.copy(),
                      "scores": scores.copy(), "ended": ended, "total": named["total"]})
        return parents, tokens, scores

    model._select = select
    try:
        yield steps
    finally:
        del model._select


def beam_tree(steps, b, beam, eos, chosen, label):
    """Example b's search as a tree: nodes [token label, parent node (-1: BOS), step, cumulative
    log p, "alive" | "ended", on the returned path (bool)].

    The hypotheses alive after step t are slots b*beam .. b*beam+beam-1 of that step's
    record, each pointing at its parent slot of step t-1; a finished hypothesis is found
    by its token history among step t's parents."""
    nodes = [["<bos>", -1, -1, 0.0, "alive", True]]
    slot_node = {0: 0}                       # slot of the previous step -> node index
    for t, record in enumerate(steps):
        rows = range(b * beam, (b + 1) * beam)
        history = record["history"]
        for seq, score in record["ended"][b]:
            parent = _slot_of(history, rows, seq if len(seq) == history.shape[1] else seq[:-1], b, beam)
            node_parent = slot_node.get(parent, 0)
            token = eos if len(seq) == history.shape[1] else seq[-1]
            raw = _cumulative(record["total"], b, parent, token, beam)
            nodes.append([label(int(token)) if token != eos else "<eos>", node_parent, t, raw, "ended",
                          False])
        new_slots = {}
        for j in range(beam):
            score = float(record["scores"][b, j])
            if not np.isfinite(score):
                continue
            parent_slot = int(record["parents"][b * beam + j]) - b * beam
            nodes.append([label(int(record["tokens"][b * beam + j])), slot_node.get(parent_slot, 0), t,
                          round_number(score), "alive", False])
            new_slots[j] = len(nodes) - 1
        slot_node = new_slots
    _mark_chosen(nodes, chosen, label)
    return {"nodes": nodes, "steps": len(steps)}


def _slot_of(history, rows, seq, b, beam):
    """The slot (0..beam-1) of example b whose history is ``seq``."""
    for row in rows:
        if list(history[row]) == list(seq):
            return row - b * beam
    return 0


def _cumulative(total, b, slot, token, beam):
    vocab = total.shape[1] // beam
    return round_number(float(total[b, slot * vocab + int(token)]))


def _mark_chosen(nodes, chosen, label):
    """Mark the path of the returned tokens (ending at its EOS node when it has one)."""
    want = [label(int(t)) for t in chosen]
    ends = [i for i, n in enumerate(nodes) if n[4] == "ended" and _path(nodes, i)[:-1] == want]
    if not ends:
        ends = [i for i, n in enumerate(nodes) if _path(nodes, i) == want]
    if ends:
        i = ends[0]
        while i >= 0:
            nodes[i][5] = True
            i = nodes[i][1]


def _path(nodes, i):
    labels = []
    while i > 0:
        labels.append(nodes[i][0])
        i = nodes[i][1]
    return labels[::-1]
