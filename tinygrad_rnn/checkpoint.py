"""Gradient checkpointing: trade compute for memory by recomputing in backward.

``checkpoint(fn, *inputs)`` runs ``fn`` without recording its inside, keeping
only its inputs; the backward runs ``fn`` again with grad on and backpropagates
through that fresh graph (Chen et al. 2016, "Training Deep Nets with Sublinear
Memory Cost"). Parameters that ``fn`` uses get their gradients accumulated into
``.grad`` during that inner backward, so use it with ``backward()``, not with
``tg.grad`` on such parameters. Random draws (dropout) replay identically: the
generator's state is restored for the recomputation.
"""
from . import creation
from .engine import backward as run_backward
from .function import Function, enable_grad, no_grad
from .tensor import Tensor


class Checkpoint(Function):
    @staticmethod
    def forward(ctx, fn, anchor, *arrays):
        ctx.fn = fn
        ctx.rng_state = creation.default_generator().bit_generator.state
        with no_grad():
            outs = fn(*[Tensor._make(a, False, None, 0) for a in arrays])
        ctx.single = isinstance(outs, Tensor)
        ctx.save_for_backward(*arrays)
        return outs.data if ctx.single else tuple(o.data for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        if ctx.create_graph:
            raise RuntimeError("checkpoint: create_graph=True is not supported through a checkpointed segment")
        generator = creation.default_generator()
        saved_state, generator.bit_generator.state = generator.bit_generator.state, ctx.rng_state
        try:
            inputs = [Tensor._make(a, need, None, 0)
                      for a, need in zip(ctx.saved_tensors, ctx.needs_input_grad[2:])]
            with enable_grad():
                outs = ctx.fn(*inputs)
        finally:
            generator.bit_generator.state = saved_state
        outs = [outs] if ctx.single else list(outs)
        pairs = [(o, g) for o, g in zip(outs, grads) if o.requires_grad]
        if pairs:
            run_backward([o for o, _ in pairs], [Tensor._make(g, False, None, 0) for _, g in pairs])
        return (None, None) + tuple(t.grad.data if t.grad is not None else None for t in inputs)


def checkpoint(fn, *inputs):
    """``fn(*inputs)`` (Tensors in, a Tensor or tuple of Tensors out) without keeping
    its intermediate results: they are recomputed when the gradient is needed."""
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"checkpoint: inputs[{i}] is a {type(t).__name__}, expected a Tensor")
    if not inputs:
        raise ValueError("checkpoint: needs at least one input tensor")
    # The anchor requires grad so the node is recorded even when no input does:
    # parameters used inside fn still need their gradients.
    anchor = creation.zeros((), dtype=inputs[0].dtype if inputs[0].dtype.kind == "f" else None,
                            device=inputs[0].device, requires_grad=True)
    return Checkpoint.apply(fn, anchor, *inputs)
