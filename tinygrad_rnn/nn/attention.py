"""Attention over a sequence of keys: four scoring functions, one softmax.

For a query q (B, Hq) and keys k_1..k_S (B, S, Hk), each kind scores every key,
the scores become weights a = softmax(score) over the valid positions, and the
context is the weighted sum c = sum_s a_s k_s (Bahdanau, Cho & Bengio 2015;
Luong, Pham & Manning 2015):

    bahdanau       score(q, k) = v^T tanh(W q + U k)            (additive)
    luong_dot      score(q, k) = k . q                          (Hq = Hk)
    luong_general  score(q, k) = k^T W q
    luong_concat   score(q, k) = v^T tanh(W [q; k])             (W split as W_q q + W_k k)

Positions where ``mask`` is False get a score of -inf, so their weight is
exactly zero and they receive exactly zero gradient.
"""
import math

from .. import creation
from ..functional import softmax
from ..tensor import Tensor
from ..xp import where
from . import init
from .module import Module, Parameter

KINDS = ("bahdanau", "luong_dot", "luong_general", "luong_concat")


def _weight(*shape, fan_in, device, dtype):
    bound = 1.0 / math.sqrt(fan_in)
    return Parameter(init.uniform_(creation.zeros(*shape, dtype=dtype, device=device or "cpu"), -bound, bound))


class Memory:
    """Keys prepared once for many queries (a decoder attends to the same source at
    every step): the keys, their projection where the kind has one, and the mask."""

    def __init__(self, keys, projected, mask):
        self.keys, self.projected, self.mask = keys, projected, mask


class Attention(Module):
    """``context, weights = attn(query, keys, mask=None)``: one of the scores of the module
    docstring, softmax over the valid positions, and the weighted sum of the keys.

    Args:
        query_size, key_size: Hq and Hk.
        kind: one of KINDS (default "bahdanau").
        attn_size: the hidden size of the additive kinds (default key_size).
        device, dtype: of the parameters.
    Inputs: ``query``, ``keys`` (or a :class:`Memory` from ``attn.prepare(keys, mask)``, to
    project the keys once for many queries), ``mask`` (optional; True = a real position).
    Outputs: ``(context, weights)``; padded positions get exactly zero weight and gradient.
    Shape: query (B, Hq), keys (B, S, Hk), mask (B, S) bool -> context (B, Hk), weights (B, S),
    each row of weights summing to 1.

    Example::

        attn = nn.Attention(16, 32, kind="luong_general")
        keys = tg.randn(4, 7, 32)
        context, weights = attn(tg.randn(4, 16), keys, mask=tg.tensor(np.arange(7) < 5)[None].broadcast_to((4, 7)))
    """

    def __init__(self, query_size, key_size, kind="bahdanau", attn_size=None, *, device=None, dtype=None):
        if kind not in KINDS:
            raise ValueError(f"Attention: kind must be one of {KINDS}, got {kind!r}")
        if kind == "luong_dot" and query_size != key_size:
            raise ValueError(f"Attention: luong_dot needs query_size == key_size, got {query_size} and {key_size}")
        self.query_size, self.key_size, self.kind = query_size, key_size, kind
        self.attn_size = attn_size or key_size
        a = self.attn_size
        if kind in ("bahdanau", "luong_concat"):
            self.weight_query = _weight(a, query_size, fan_in=query_size + key_size, device=device, dtype=dtype)
            self.weight_key = _weight(a, key_size, fan_in=query_size + key_size, device=device, dtype=dtype)
            self.v = _weight(a, fan_in=a, device=device, dtype=dtype)
        elif kind == "luong_general":
            self.weight = _weight(key_size, query_size, fan_in=query_size, device=device, dtype=dtype)

    def prepare(self, keys, mask=None):
        """Check the keys and project them once (the key side of the additive kinds)."""
        if not isinstance(keys, Tensor) or keys.ndim != 3 or keys.shape[2] != self.key_size:
            raise ValueError(f"Attention: keys must be (batch, source length, {self.key_size}), "
                             f"got {getattr(keys, 'shape', type(keys).__name__)}")
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.dtype.kind != "b" or mask.shape != keys.shape[:2]:
                raise ValueError(f"Attention: mask must be a bool tensor of shape {keys.shape[:2]}, got "
                                 f"{getattr(mask, 'dtype', type(mask).__name__)} {getattr(mask, 'shape', '')}")
            if not bool(mask.data.any(axis=1).all()):
                raise ValueError("Attention: every row of mask needs at least one True position")
        projected = None
        if self.kind in ("bahdanau", "luong_concat"):
            batch, length = keys.shape[:2]
            projected = (keys.reshape(-1, self.key_size) @ self.weight_key.T).reshape(batch, length, -1)
        return Memory(keys, projected, mask)

    def forward(self, query, keys, mask=None):
        memory = keys if isinstance(keys, Memory) else self.prepare(keys, mask)
        keys = memory.keys
        if not isinstance(query, Tensor) or query.shape != (keys.shape[0], self.query_size):
            raise ValueError(f"Attention: query must be ({keys.shape[0]}, {self.query_size}), "
                             f"got {getattr(query, 'shape', type(query).__name__)}")
        scores = self.score(query, memory)                                    # (B, S)
        if memory.mask is not None:
            scores = where(memory.mask, scores, -math.inf)
        weights = softmax(scores, axis=-1)
        context = (weights.unsqueeze(1) @ keys).squeeze(1)                    # (B, Hk)
        return context, weights

    def score(self, query, memory):
        """Unnormalised scores (B, S) of every key for the query."""
        keys = memory.keys
        if self.kind == "luong_dot":
            return (keys @ query.unsqueeze(2)).squeeze(2)
        if self.kind == "luong_general":
            return (keys @ (query @ self.weight.T).unsqueeze(2)).squeeze(2)
        hidden = (memory.projected + (query @ self.weight_query.T).unsqueeze(1)).tanh()   # (B, S, A)
        return hidden @ self.v

    def extra_repr(self):
        return f"{self.query_size}, {self.key_size}, kind={self.kind!r}, attn_size={self.attn_size}"
