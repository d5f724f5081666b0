"""Gradient checkpointing: trade compute for memory by recomputing in backward.

``checkpoint(fn, *inputs)`` runs ``fn`` without recording its inside, keeping
only its inputs; the backward runs ``fn`` again with grad on and backpropagates
through that fresh graph (Chen et al. 2016, "Training Deep Nets with Sublinear
Memory Cost"). Parameters that ``fn`` uses get their gradients accumulated into
``.grad`` during that inner backward, so use it with ``backward()``: ``tg.grad``
cannot see them through the checkpoint and refuses to be asked for one (pass such
a tensor to ``checkpoint`` as an input instead). Random draws (dropout) replay
identically: the generator's state is restored for the recomputation.
"""
from . import creation
from .engine import backward as run_backward
from .engine import grad as run_grad
from .function import Function, _state, enable_grad, no_grad
from .tensor import Tensor, not_a_tensor


class Checkpoint(Function):
    @staticmethod
    def forward(ctx, fn, anchor, *arrays):
        ctx.fn = fn
        ctx.rng_state = creation.default_generator().bit_generator.state
        with no_grad():
            outs = fn(*[Tensor._make(a, False, None, 0) for a in arrays])
        ctx.single = isinstance(outs, Tensor)
        if not ctx.single:
            _check_outputs(outs)
        ctx.save_for_backward(*arrays)
        return outs.data if ctx.single else tuple(o.data for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        if ctx.create_graph:
            raise RuntimeError("checkpoint: create_graph=True is not supported through a checkpointed segment")
        inputs, outs = _rerun(ctx, ctx.needs_input_grad[2:])
        pairs = [(o, Tensor._make(g, False, None, 0)) for o, g in zip(outs, grads) if o.requires_grad]
        outs, grads = [o for o, _ in pairs], [g for _, g in pairs]
        wanted = [t for t in inputs if t.requires_grad]
        if _state.capturing:        # under tg.grad: the inputs' gradients only, no parameter's .grad touched
            if outs and wanted:
                for t, g in zip(wanted, run_grad(outs, wanted, grads, allow_unused=True)):
                    t.grad = g
        elif outs:
            run_backward(outs, grads)
        return (None, None) + tuple(t.grad.data if t.grad is not None else None for t in inputs)

    def hidden_leaves(self):
        """The tensors that require grad which ``fn`` uses besides its inputs (its parameters),
        found by running it again: this node's inputs do not lead to them."""
        _, outs = _rerun(self, [False] * len(self.saved_tensors))
        found, seen = {}, set()
        stack = [o.grad_fn for o in outs if o.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if hasattr(node, "hidden_leaves"):      # a checkpoint inside this one
                found.update((id(t), t) for t in node.hidden_leaves())
            for t in node.inputs:
                if isinstance(t, Tensor) and t.requires_grad:
                    if t.grad_fn is None:
                        found[id(t)] = t
                    else:
                        stack.append(t.grad_fn)
        return list(found.values())


def _rerun(ctx, needs):
    """(inputs, outputs as a list) of ``fn`` run again with grad on, on fresh leaves holding
    the saved inputs, and with the generator as forward found it (the same dropout masks)."""
    generator = creation.default_generator()
    saved_state, generator.bit_generator.state = generator.bit_generator.state, ctx.rng_state
    try:
        inputs = [Tensor._make(a, need, None, 0) for a, need in zip(ctx.saved_tensors, needs)]
        with enable_grad():
            outs = ctx.fn(*inputs)
    finally:
        generator.bit_generator.state = saved_state
    return inputs, [outs] if ctx.single else list(outs)


def _check_outputs(outs):
    """fn must return a Tensor (checked by the caller) or a non-empty tuple or list of Tensors."""
    if not isinstance(outs, (tuple, list)):
        raise not_a_tensor("checkpoint", "fn's result", outs, "a Tensor or a tuple of Tensors")
    if not outs:
        raise ValueError(f"checkpoint: fn returned an empty {type(outs).__name__}, expected a Tensor "
                         "or a tuple of Tensors")
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise not_a_tensor("checkpoint", f"item {i} of fn's result", o)


def checkpoint(fn, *inputs):
    """``fn(*inputs)`` (Tensors in, a Tensor or tuple of Tensors out) without keeping
    its intermediate results: they are recomputed when the gradient is needed."""
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise not_a_tensor("checkpoint", f"inputs[{i}]", t)
    if not inputs:
        raise ValueError("checkpoint: needs at least one input tensor")
    # The anchor requires grad so the node is recorded even when no input does:
    # parameters used inside fn still need their gradients.
    anchor = creation.zeros((), dtype=inputs[0].dtype if inputs[0].dtype.kind == "f" else None,
                            device=inputs[0].device, requires_grad=True)
    return Checkpoint.apply(fn, anchor, *inputs)
