"""Backpropagation through time, three ways, all through the computation graph.

- Full BPTT is just ``loss.backward()`` over the unrolled graph.
- :func:`truncated_bptt` is BPTT(k1, k2) of Williams & Peng (1990): read the
  sequence k1 steps at a time, carrying the state forward, and after each chunk
  backpropagate its loss through the last k2 >= k1 steps only.
- :func:`checkpointed_unroll` keeps memory near O(sqrt T): the sequence runs in
  segments whose insides are recomputed during backward (Chen et al. 2016); its
  gradients equal full BPTT.
"""
import math
from collections import deque

from ..checkpoint import checkpoint
from ..engine import backward
from ..xp import concatenate
from .recurrent import check_lengths, unroll


def _parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def _rebuild(like, parts):
    return tuple(parts) if isinstance(like, tuple) else parts[0]


def detach_state(state):
    """The state cut from the graph (a Tensor, a tuple of them, or None)."""
    if state is None:
        return None
    return _rebuild(state, [s.detach() for s in _parts(state)])


def truncated_bptt(model, inputs, targets, loss_fn, k1, k2=None, state=None, on_chunk=None):
    """Train on one long sequence with BPTT(k1, k2) (Williams & Peng 1990).

    Args:
        model: ``model(x, state) -> (outputs, state)`` for x (steps, B, ...) time-major,
            e.g. a unidirectional ``nn.LSTM`` or a small Module around one; state may be None.
        inputs, targets: Tensors (T, B, ...); targets may be None when loss_fn ignores them.
        loss_fn: ``loss_fn(outputs, targets) -> scalar Tensor`` for one chunk of k1 steps.
        k1: steps read between two backward passes; k2: steps each backward pass
            reaches back (default k1; k2 >= k1).
        on_chunk: called as ``on_chunk(loss)`` after each chunk's gradients are in
            ``.grad`` (clip, step the optimizer and zero the gradients there).
    Returns: (list of the chunk losses as floats, the final state, detached).

    With k2 == k1 each chunk is one graph from a detached state. With k2 > k1 every
    step is a graph of its own whose input state is a detached leaf; a chunk's
    gradient is carried back step by step through the last k2 of them, which
    therefore stay alive between chunks.
    """
    k2 = k1 if k2 is None else k2
    if k1 < 1 or k2 < k1:
        raise ValueError(f"truncated_bptt: need 1 <= k1 <= k2, got k1={k1}, k2={k2}")
    if k2 == k1:
        return _chunked(model, inputs, targets, loss_fn, k1, state, on_chunk)
    return _windowed(model, inputs, targets, loss_fn, k1, k2, state, on_chunk)


def _chunked(model, inputs, targets, loss_fn, k, state, on_chunk):
    losses = []
    for t0 in range(0, inputs.shape[0], k):
        outputs, state = model(inputs[t0:t0 + k], detach_state(state))
        loss = loss_fn(outputs, None if targets is None else targets[t0:t0 + k])
        loss.backward()
        if on_chunk is not None:
            on_chunk(loss)
        losses.append(loss.item())
    return losses, detach_state(state)


def _windowed(model, inputs, targets, loss_fn, k1, k2, state, on_chunk):
    window = deque(maxlen=k2)       # (state in: detached leaves, state out) of the last k2 steps
    losses, outputs, steps = [], [], inputs.shape[0]
    for t in range(steps):
        state_in = None if state is None else _rebuild(state, [s.detach().requires_grad_() for s in _parts(state)])
        out, state = model(inputs[t:t + 1], state_in)
        window.append((state_in, state))
        outputs.append(out)
        if (t + 1) % k1 and t + 1 < steps:
            continue
        for leaves, _ in window:
            for leaf in _parts(leaves) if leaves is not None else []:
                leaf.grad = None
        first = t + 1 - len(outputs)
        loss = loss_fn(concatenate(outputs, axis=0), None if targets is None else targets[first:t + 1])
        loss.backward(retain_graph=True)
        _carry_back(window)
        if on_chunk is not None:
            on_chunk(loss)
        losses.append(loss.item())
        outputs = []
    return losses, detach_state(state)


def _carry_back(window):
    """Pass the gradient at each step's input state on to the previous step's output state."""
    entries = list(window)
    for (_, previous_out), (leaves, _) in zip(reversed(entries[:-1]), reversed(entries[1:])):
        if leaves is None:
            break
        pairs = [(out, leaf.grad) for out, leaf in zip(_parts(previous_out), _parts(leaves))
                 if leaf.grad is not None and out.requires_grad]
        if pairs:
            backward([o for o, _ in pairs], [g for _, g in pairs], retain_graph=True)


def checkpointed_unroll(cell, x, state=None, lengths=None, segment=None):
    """``unroll(cell, x, state, lengths)`` in segments of ``segment`` steps (default
    ceil(sqrt(T))) whose internals are recomputed in backward: the graph held between
    forward and backward is the segment boundaries and outputs, not every gate of
    every step. Gradients equal those of ``unroll``; forward direction only."""
    steps = x.shape[0]
    segment = segment or max(1, math.ceil(math.sqrt(steps)))
    lengths = check_lengths(lengths, steps, x.shape[1], "checkpointed_unroll")
    state = cell.initial_state(x.shape[1], x) if state is None else state
    outputs = []
    for t0 in range(0, steps, segment):
        chunk = x[t0:t0 + segment]
        chunk_lengths = None if lengths is None else (lengths - t0).clip(0, chunk.shape[0])

        def run(chunk, *parts, chunk_lengths=chunk_lengths, like=state):
            out, new = unroll(cell, chunk, _rebuild(like, list(parts)), chunk_lengths)
            return (out,) + tuple(_parts(new))

        out, *parts = checkpoint(run, chunk, *_parts(state))
        outputs.append(out)
        state = _rebuild(state, parts)
    return concatenate(outputs, axis=0), state
