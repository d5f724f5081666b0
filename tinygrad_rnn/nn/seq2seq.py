"""Encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015), and
without it (Sutskever, Vinyals & Le 2014), as graph ops on the recurrent layers.

    encoder:  embeddings of the source -> (bi)GRU or LSTM, reading each row to its own length
    bridge:   s_0 = tanh(W_b [h_fwd; h_bwd]) for every decoder layer (and c_0 likewise for an LSTM)
    decoder:  s_t = cell([e(y_{t-1}); h~_{t-1}], s_{t-1})       (h~ is fed back only with input feeding)
              c_t, a_t = attention(s_t, encoder outputs, source mask)
              h~_t = tanh(W_c [c_t; s_t]),  logits_t = W_o h~_t   (without attention: logits_t = W_o s_t)

The source summary conditions the decoder in one of the three ways of Goodfellow et al.
(2016, §10.2.4), chosen by ``context``: "init" (the default) starts the decoder from the
bridge as above; "input" starts it from zeros and feeds the summary
v = tanh(W_s [h_fwd; h_bwd]) of the top encoder layer's final states to every decoder step,
as Cho et al. (2014) feed their summary c: every decoder layer's cell gets v W_ctx^T added to
its projected input (:mod:`tinygrad_rnn.nn.context`); "both" does both, as Cho et al. do.

Tokens are integer tensors, batch first. ``generate`` decodes greedily or with a
batched beam search and returns token lists (no BOS, stopped before EOS) and
each example's attention map.
"""
from typing import NamedTuple

import numpy as np

from .. import creation
from .. import functional as F
from ..function import no_grad
from ..tensor import Tensor
from ..xp import concatenate, stack, unbind, where
from .attention import KINDS, Attention
from .gru import GRUCell
from .lstm import LSTMCell
from .layers import Embedding, Linear
from .module import Module, ModuleList
from .cells import RecurrentCell, check_size
from .context import ContextCell
from .recurrent import GRU, LSTM, check_lengths, unroll

_CELLS = {"gru": (GRU, GRUCell), "lstm": (LSTM, LSTMCell)}
CONTEXTS = ("init", "input", "both")


class DecoderMemory(NamedTuple):
    """What every decoder step reads besides its own state: the attention memory (keys, projected
    keys, mask; None without attention) and, per decoder layer, the projected source summary
    v W_ctx^T (B, G*H) added to its input at every step (None unless context is "input" or "both")."""
    attention: object
    context: object


class Seq2Seq(Module):
    """``logits = model(src, src_lengths, tgt_in, teacher_forcing=1.0)``;
    ``tokens, attention = model.generate(src, src_lengths, max_len=50, beam_size=1, length_penalty=1.0)``.

    Args:
        src_vocab_size, tgt_vocab_size: the vocabularies (ids 0 .. size-1).
        embed_size, hidden_size: E and H (defaults 64, 128).
        cell: "gru" or "lstm", for the encoder and the decoder.
        attention: one of ``Attention.KINDS``, or None for the plain encoder-decoder.
        num_layers: of the encoder and of the decoder.  bidirectional_encoder: default True.
        dropout: on embeddings, between layers and before the readout, while training.
        pad_id, bos_id, eos_id: special target ids (defaults 0, 1, 2).
        input_feeding: feed h~ back into the next decoder step (Luong et al.; default True).
        context: how the source summary conditions the decoder (Goodfellow et al. 2016 §10.2.4):
            "init" (default) as its initial state, through the bridge; "input" at every decoder step,
            v W_ctx^T added to each decoder layer's projected input, v = tanh(W_s [h_fwd; h_bwd]) of the
            top encoder layer, from a zero initial state; "both" (Cho et al. 2014) both.
        device, dtype: of the parameters.
    Inputs: ``src`` ids padded with pad_id, ``src_lengths`` (B ints, or None for full rows),
    ``tgt_in`` ids starting with bos_id (the target shifted right).
    Outputs: ``logits`` over the target vocabulary at every step.
    Shape: src (B, S), tgt_in (B, T) -> logits (B, T, tgt_vocab_size).

    Parameters beyond the embeddings, encoder, decoder and readout: ``bridge`` (and ``bridge_cell``
    for an LSTM) with context "init" or "both"; ``summary`` (W_s: H x D*H) and ``context_input.{k}``
    (W_ctx of decoder layer k: G*H x H) with "input" or "both".

    Teacher forcing (1.0) runs the decoder as one whole-sequence node; ``teacher_forcing``
    < 1 feeds the model's own previous prediction instead of the true token with
    probability 1 - teacher_forcing, per example and step (scheduled sampling, Bengio
    et al. 2015), step by step.

    Example::

        model = nn.Seq2Seq(30, 12, cell="gru", attention="bahdanau")
        logits = model(tg.tensor([[5, 6, 7], [8, 4, 0]]), [3, 2], tg.tensor([[1, 3], [1, 5]]))   # (2, 2, 12)
        tokens, maps = model.generate(tg.tensor([[5, 6, 7]]), [3], beam_size=4)
    """

    def __init__(self, src_vocab_size, tgt_vocab_size, embed_size=64, hidden_size=128, cell="gru",
                 attention="bahdanau", num_layers=1, bidirectional_encoder=True, dropout=0.0, pad_id=0, bos_id=1,
                 eos_id=2, input_feeding=True, context="init", *, device=None, dtype=None):
        if cell not in _CELLS:
            raise ValueError(f"Seq2Seq: cell must be one of {tuple(_CELLS)}, got {cell!r}")
        if attention is not None and attention not in KINDS:
            raise ValueError(f"Seq2Seq: attention must be one of {KINDS} or None, got {attention!r}")
        if context not in CONTEXTS:
            raise ValueError(f"Seq2Seq: context must be one of {CONTEXTS}, got {context!r}")
        for name, token in (("pad_id", pad_id), ("bos_id", bos_id), ("eos_id", eos_id)):
            if not 0 <= token < tgt_vocab_size:
                raise ValueError(f"Seq2Seq: {name}={token} is outside the target vocabulary of {tgt_vocab_size}")
        kw = dict(device=device, dtype=dtype)
        layer, cell_class = _CELLS[cell]
        self.cell, self.attention_kind, self.hidden_size, self.num_layers = cell, attention, hidden_size, num_layers
        self.pad_id, self.bos_id, self.eos_id, self.dropout = pad_id, bos_id, eos_id, dropout
        self.context = context
        self.input_feeding = attention is not None and input_feeding
        directions = 2 if bidirectional_encoder else 1
        self.src_embed = Embedding(src_vocab_size, embed_size, padding_idx=pad_id, **kw)
        self.tgt_embed = Embedding(tgt_vocab_size, embed_size, padding_idx=pad_id, **kw)
        self.encoder = layer(embed_size, hidden_size, num_layers, batch_first=True, dropout=dropout,
                             bidirectional=bidirectional_encoder, **kw)
        bridged = context in ("init", "both")
        self.bridge = Linear(directions * hidden_size, hidden_size, **kw) if bridged else None
        self.bridge_cell = Linear(directions * hidden_size, hidden_size, **kw) if bridged and cell == "lstm" else None
        first_input = embed_size + (hidden_size if self.input_feeding else 0)
        self.decoder = ModuleList([cell_class(first_input if k == 0 else hidden_size, hidden_size, **kw)
                                   for k in range(num_layers)])
        self.summary = self.context_input = None
        if context in ("input", "both"):
            self.summary = Linear(directions * hidden_size, hidden_size, **kw)
            self.context_input = ModuleList([Linear(hidden_size, c.weight_ih.shape[0], bias=False, **kw)
                                             for c in self.decoder])
        key_size = directions * hidden_size
        # luong_dot compares the decoder state with the keys directly, so keys of another
        # size (a bidirectional encoder's) are first projected to hidden_size
        self.key_projection = None
        if attention == "luong_dot" and key_size != hidden_size:
            self.key_projection, key_size = Linear(key_size, hidden_size, bias=False, **kw), hidden_size
        if attention is not None:
            self.attention = Attention(hidden_size, key_size, attention, **kw)
            self.combine = Linear(key_size + hidden_size, hidden_size, bias=False, **kw)
        self.readout = Linear(hidden_size, tgt_vocab_size, **kw)

    # ----- the three parts -----
    def encode(self, src, src_lengths):
        """Decoder initial states (one per layer) and the :class:`DecoderMemory` every decoder
        step reads (the attention memory, the projected source summary)."""
        src, lengths = self._check_source(src, src_lengths)
        embedded = F.dropout(self.src_embed(src), self.dropout, self.training)
        outputs, finals = self.encoder(embedded, lengths=lengths)
        directions = 2 if self.encoder.bidirectional else 1

        def joined(states, k):                 # (L*D, B, H) -> layer k's [fwd; bwd] (B, D*H)
            parts = [states[k * directions + d] for d in range(directions)]
            return concatenate(parts, axis=1) if directions > 1 else parts[0]

        def bridge(states, linear):            # per layer tanh(W [fwd; bwd])
            return [linear(joined(states, k)).tanh() for k in range(self.num_layers)]

        if self.bridge is None:                # context "input": the decoder starts from its cells' zeros
            states = [cell.initial_state(src.shape[0], outputs) for cell in self.decoder]
        elif self.cell == "lstm":
            states = list(zip(bridge(finals[0], self.bridge), bridge(finals[1], self.bridge_cell)))
        else:
            states = bridge(finals, self.bridge)
        attention = context = None
        if self.attention_kind is not None:
            steps = np.arange(src.shape[1])[None, :] < lengths[:, None]
            mask = Tensor(steps, device=src.device)
            keys = outputs if self.key_projection is None else self.key_projection(outputs)
            attention = self.attention.prepare(keys, mask)
        if self.summary is not None:           # v = tanh(W_s [h_fwd; h_bwd]) of the top layer, projected once
            hidden = finals[0] if self.cell == "lstm" else finals
            summary = self.summary(joined(hidden, self.num_layers - 1)).tanh()
            context = [linear(summary) for linear in self.context_input]
        return states, DecoderMemory(attention, context)

    def decode_step(self, tokens, states, memory, feed):
        """One decoder step: logits (B, V), the new states, the new fed-back h~, attention weights (B, S)."""
        out, states, feed, weights = self._advance(self.tgt_embed(tokens), states, memory, feed)
        return self._readout(out), states, feed, weights

    def _advance(self, x, states, memory, feed):
        """The decoder from an embedded input (B, E) to the attentional state h~ (B, H) it reads out."""
        if self.input_feeding:
            x = concatenate([x, feed], axis=1)
        new_states = []
        for k, cell in enumerate(self.decoder):
            if memory.context is not None:     # the summary, projected once, added at this step too
                cell = ContextCell(cell, memory.context[k])
            state = cell(F.dropout(x, self.dropout, self.training) if k else x, states[k])
            new_states.append(state)
            x = state[0] if isinstance(state, tuple) else state
        weights = None
        if memory.attention is not None:
            context, weights = self.attention(x, memory.attention)
            x = self.combine(concatenate([context, x], axis=1)).tanh()
        return x, new_states, (x if self.input_feeding else None), weights

    def _teacher_forced(self, embedded, states, memory, feed):
        """The attentional states h~ (B, T, H) of all decoder steps from the embedded targets: one
        whole-sequence node (the decoder step traced, the keys and mask loop-invariant inputs, so
        dL/dkeys is one batched matmul over all steps), or step by step while dropout draws masks."""
        if self.dropout and self.training:
            outs = []
            for x in unbind(embedded, axis=1):
                out, states, feed, _ = self._advance(x, states, memory, feed)
                outs.append(out)
            return stack(outs, axis=1)
        decoder = DecoderStep(self, memory, states)
        outs, _ = unroll(decoder, embedded.swapaxes(0, 1), decoder.pack(states, feed))
        return outs.swapaxes(0, 1)

    def _readout(self, x):
        return self.readout(F.dropout(x, self.dropout, self.training))

    def forward(self, src, src_lengths, tgt_in, teacher_forcing=1.0):
        src, src_lengths = self._check_source(src, src_lengths)
        _check_ids(tgt_in, "tgt_in", "(batch, steps)")
        if tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"Seq2Seq: src has {src.shape[0]} rows and tgt_in {tgt_in.shape[0]}")
        if tgt_in.shape[1] == 0:
            raise ValueError("Seq2Seq: tgt_in has no steps; expected at least the BOS column")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"Seq2Seq: teacher_forcing must be in [0, 1], got {teacher_forcing}")
        if src.shape[0] == 0:                # an empty batch: empty logits, as PyTorch's layers give
            return creation.zeros(0, tgt_in.shape[1], self.readout.weight.shape[0], dtype=self.readout.weight.dtype,
                                  device=src.device)
        states, memory = self.encode(src, src_lengths)
        feed = self._zeros_feed(src.shape[0], src)
        if teacher_forcing == 1.0:      # the inputs are known: embed them and read out all steps at once
            return self._readout(self._teacher_forced(self.tgt_embed(tgt_in), states, memory, feed))
        rng = creation.default_generator()
        logits, tokens = [], tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            if t > 0:
                tokens = tgt_in[:, t]
                if teacher_forcing < 1.0:
                    own = Tensor(rng.random(tgt_in.shape[0]) >= teacher_forcing, device=src.device)
                    guess = Tensor(logits[-1].data.argmax(axis=1), device=src.device)
                    tokens = where(own, guess, tokens)
            step_logits, states, feed, _ = self.decode_step(tokens, states, memory, feed)
            logits.append(step_logits)
        return stack(logits, axis=1)

    # ----- decoding -----
    def generate(self, src, src_lengths, max_len=50, beam_size=1, length_penalty=1.0):
        """Decode without teacher forcing. Returns (tokens, attention): B lists of ids
        (no BOS, stopped before EOS) and B arrays (len(tokens[b]), src_lengths[b]) of
        attention weights (zeros (n, 0) without attention). Beam search keeps
        ``beam_size`` hypotheses per example and ranks finished ones by
        log p / length ** length_penalty (length counting the EOS)."""
        max_len, beam_size = check_size("generate", "max_len", max_len), check_size("generate", "beam_size", beam_size)
        if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)):
            raise TypeError(f"generate: length_penalty must be a number, got {type(length_penalty).__name__}")
        src, lengths = self._check_source(src, src_lengths)
        if src.shape[0] == 0:
            return [], []                    # an empty batch: nothing to decode
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                return self._beam(src, lengths, max_len, beam_size, length_penalty)
        finally:
            self.train(was_training)

    def _beam(self, src, src_lengths, max_len, beam, alpha):
        src, lengths = self._check_source(src, src_lengths)
        batch, source_len = src.shape
        states, memory = self.encode(src, lengths)
        rows = np.repeat(np.arange(batch), beam)                   # hypothesis row -> example
        states = [_take(s, rows, src.device) for s in states]
        attention = memory.attention
        if attention is not None:
            attention = type(attention)(*(None if m is None else _take(m, rows, src.device)
                                          for m in (attention.keys, attention.projected, attention.mask)))
        context = None if memory.context is None else [_take(q, rows, src.device) for q in memory.context]
        memory = DecoderMemory(attention, context)
        feed = self._zeros_feed(batch * beam, src)
        scores = np.full((batch, beam), -np.inf)
        scores[:, 0] = 0.0                                        # at first every beam is the same: use one
        history = np.zeros((batch * beam, 0), dtype=np.int64)
        maps = np.zeros((batch * beam, 0, source_len))
        finished = [[] for _ in range(batch)]
        tokens = np.full(batch * beam, self.bos_id)
        for t in range(max_len):
            logits, states, feed, weights = self.decode_step(Tensor(tokens, device=src.device), states, memory, feed)
            logp = F.log_softmax(logits, axis=1).numpy().astype(np.float64)
            vocab = logp.shape[1]
            total = (scores.reshape(-1, 1) + logp).reshape(batch, beam * vocab)
            step_map = weights.numpy() if weights is not None else np.zeros((batch * beam, source_len))
            parents, tokens, scores = self._select(total, vocab, beam, t, history, maps, step_map, finished,
                                                   alpha, max_len)
            history = np.concatenate([history[parents], tokens[:, None]], axis=1)
            maps = np.concatenate([maps[parents], step_map[parents][:, None]], axis=1)
            if all(len(f) >= beam for f in finished):
                break
            states = [_take(s, parents, src.device) for s in states]
            feed = None if feed is None else _take(feed, parents, src.device)
        return self._best(finished, history, maps, scores, lengths, alpha, beam)

    def _select(self, total, vocab, beam, t, history, maps, step_map, finished, alpha, max_len):
        """Per example: finish the EOS candidates ranked among the top ``beam``, keep the
        best ``beam`` others alive. Returns parent rows, next tokens and scores."""
        batch = total.shape[0]
        parents = np.zeros(batch * beam, dtype=np.int64)
        tokens = np.full(batch * beam, self.eos_id)
        scores = np.full((batch, beam), -np.inf)
        for b in range(batch):
            order = np.argsort(-total[b], kind="stable")[:2 * beam]
            alive = 0
            for rank, flat in enumerate(order):
                parent, token = b * beam + flat // vocab, flat % vocab
                score = total[b, flat]
                if not np.isfinite(score):
                    break
                if token == self.eos_id or t == max_len - 1:
                    if rank < beam and len(finished[b]) < beam:
                        ended = token == self.eos_id
                        seq = list(history[parent]) + ([] if ended else [int(token)])
                        amap = maps[parent] if ended else np.concatenate([maps[parent], step_map[parent][None]])
                        finished[b].append((score / (t + 1) ** alpha, seq, amap))
                    continue
                if alive < beam and len(finished[b]) < beam:
                    parents[b * beam + alive], tokens[b * beam + alive] = parent, token
                    scores[b, alive] = score
                    alive += 1
            if alive == 0:                      # nothing left alive: keep rows valid, scores -inf
                parents[b * beam:(b + 1) * beam] = b * beam
        return parents, tokens, scores

    def _best(self, finished, history, maps, scores, lengths, alpha, beam):
        out_tokens, out_maps = [], []
        for b, hyps in enumerate(finished):
            if not hyps:                         # none ended within max_len: the best alive one
                k = int(np.argmax(scores[b]))
                hyps = [(0.0, list(history[b * beam + k]), maps[b * beam + k])]
            _, seq, amap = max(hyps, key=lambda h: h[0])
            out_tokens.append([int(x) for x in seq])
            out_maps.append(np.asarray(amap)[:len(seq), :lengths[b]])
        return out_tokens, out_maps

    # ----- helpers -----
    def _zeros_feed(self, batch, like):
        if not self.input_feeding:
            return None
        return creation.zeros(batch, self.hidden_size, dtype=self.readout.weight.dtype, device=like.device)

    def _check_source(self, src, src_lengths):
        """src and its lengths as a host int array; ``src_lengths=None`` means every row is full length."""
        _check_ids(src, "src", "(batch, source length)")
        if src_lengths is None:
            return src, np.full(src.shape[0], src.shape[1], dtype=np.int64)
        return src, check_lengths(src_lengths, src.shape[1], src.shape[0], "Seq2Seq")


class DecoderStep(RecurrentCell):
    """One decoder step of a :class:`Seq2Seq` as a recurrent cell, so that the teacher-forced
    decoder runs as one traced whole-sequence node: the input is the embedded previous target
    token, the state is (each layer's state parts..., h~), the output is h~ (the attentional
    state the readout reads). The :class:`DecoderMemory` (attention keys, projected summary) is
    read as a loop-invariant input of the node."""

    def __init__(self, model, memory, states):
        self.model, self.memory = model, memory
        self.layer_parts = [len(s) if isinstance(s, tuple) else 1 for s in states]
        self.input_size = model.tgt_embed.weight.shape[1]
        self.hidden_size = model.hidden_size

    def initial_state(self, batch, like):
        zeros = creation.zeros(batch, self.hidden_size, dtype=like.dtype, device=like.device)
        return (zeros,) * (sum(self.layer_parts) + 1)

    def pack(self, states, feed):
        """The decoder's per-layer states and the fed-back h~ as one flat tuple state."""
        parts = [p for s in states for p in (s if isinstance(s, tuple) else (s,))]
        last = states[-1][0] if isinstance(states[-1], tuple) else states[-1]
        return tuple(parts) + (feed if feed is not None else last,)

    def unpack(self, state):
        states, i = [], 0
        for n in self.layer_parts:
            states.append(tuple(state[i:i + n]) if n > 1 else state[i])
            i += n
        return states, state[-1]

    def step(self, p, state):
        states, feed = self.unpack(state)
        out, states, _, _ = self.model._advance(p, states, self.memory, feed if self.model.input_feeding else None)
        return self.pack(states, out)

    def output(self, state):
        return state[-1]


def _check_ids(tokens, name, shape):
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        actual = (f"a Tensor of {tokens.dtype} with shape {tokens.shape}" if isinstance(tokens, Tensor)
                  else f"a {type(tokens).__name__}")
        raise ValueError(f"Seq2Seq: {name} must be an integer Tensor {shape}, got {actual}")


def _take(state, rows, device):
    """The given rows of a state (a Tensor or a tuple of them)."""
    if isinstance(state, tuple):
        return tuple(_take(s, rows, device) for s in state)
    return state[Tensor(np.asarray(rows), device=device)]
