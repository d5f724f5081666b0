"""The backward pass: reverse mode over the recorded graph, without recursion.

Nodes run in decreasing generation (a node's generation is one more than its
inputs' largest, DeZero's scheme), so each runs once, after every node that
consumes its outputs, however long the graph is. Nodes wait in one bucket per
generation; since a node's largest-generation input is exactly one generation
lower, walking the generations down from the roots' visits O(nodes) buckets,
with no heap. The gradients waiting for a node live in a dict local to the pass;
after a node has run, its saved arrays and input links are freed unless
``retain_graph``.
"""

import numpy as np

from . import backend
from .function import _check_finite, _state, freed_error
from .tensor import Tensor, not_a_tensor


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of every leaf
    that requires grad. ``grad_tensors`` (one per tensor) may be omitted for
    one-element outputs. ``create_graph=True`` records the backward pass itself,
    so the gradients can be differentiated again."""
    roots = _seed(tensors, grad_tensors, create_graph, "backward")
    _run(roots, create_graph if retain_graph is None else retain_graph, create_graph, None)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned as a tuple
    (no ``.grad`` is touched). An input that the outputs do not depend on gives
    None with ``allow_unused=True`` and an error otherwise."""
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise not_a_tensor("grad", f"inputs[{i}]", t)
        if not t.requires_grad:
            raise ValueError(f"grad: inputs[{i}] does not require grad")
    capture = _Capture(inputs)
    roots = _seed(outputs, grad_outputs, create_graph, "grad")
    _run(roots, create_graph if retain_graph is None else retain_graph, create_graph, capture)
    results = []
    for i, g in enumerate(capture.results):
        if g is None and not allow_unused:
            raise ValueError(f"grad: inputs[{i}] was not used to compute the outputs; "
                             "pass allow_unused=True to get None for it")
        results.append(g if g is None or create_graph else Tensor._make(_plain_array(g), False, None, 0))
    return tuple(results)


class _Capture:
    """Where tg.grad collects the gradients of its inputs instead of ``.grad``."""

    def __init__(self, inputs):
        self.results = [None] * len(inputs)
        self.leaves = {}    # id(leaf) -> its slots in inputs (a tensor may be asked for more than once)
        self.nodes = {}     # node -> [(output index, slot), ...]
        for i, t in enumerate(inputs):
            if t.grad_fn is None:
                self.leaves.setdefault(id(t), []).append(i)
            else:
                self.nodes.setdefault(t.grad_fn, []).append((t._index, i))

    def prune(self, roots):
        """(nodes to visit, nodes whose backward must run): only what lies on a path
        from the outputs to an input, so the pass stops at non-leaf inputs."""
        leads = {}
        stack = [(t.grad_fn, False) for t, _ in roots if t.grad_fn is not None]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                leads[node] = any(self._reaches(inp, leads) for inp in node.inputs if isinstance(inp, Tensor))
                continue
            if node in leads:
                continue
            if node.inputs is None:
                raise RuntimeError(f"{type(node).__name__}: trying to backward through the graph a second time, "
                                   "but its saved arrays were freed; pass retain_graph=True to the first backward")
            leads[node] = False
            stack.append((node, True))
            stack.extend((inp.grad_fn, False) for inp in node.inputs
                         if isinstance(inp, Tensor) and inp.grad_fn is not None and inp.grad_fn not in leads)
        if self.leaves:
            self._refuse_hidden([node for node in leads if hasattr(node, "hidden_leaves")])
        expand = {node for node, wanted in leads.items() if wanted}
        return expand | set(self.nodes), expand

    def _refuse_hidden(self, hiders):
        """A checkpoint's backward puts the gradients of the parameters inside it into their
        ``.grad``, out of tg.grad's sight: asking for one would give None or a partial sum."""
        for node in hiders:
            for t in node.hidden_leaves():
                if id(t) in self.leaves:
                    raise ValueError(
                        f"grad: inputs[{self.leaves[id(t)][0]}] is used inside checkpoint(fn, ...), which hides "
                        "it from tg.grad; pass it to checkpoint as an input, or call backward() and read its .grad")

    def _reaches(self, t, leads):
        node = t.grad_fn
        if node is None:
            return id(t) in self.leaves
        return leads.get(node, False) or any(index == t._index for index, _ in self.nodes.get(node, ()))

    def add(self, slot, g):
        old = self.results[slot]
        self.results[slot] = g if old is None else old + g


def _seed(tensors, grads, create_graph, name):
    """Pair each root tensor with its starting gradient (an array, or a Tensor under create_graph)."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grads is None:
        grads = [None] * len(tensors)
    elif isinstance(grads, Tensor) or not isinstance(grads, (list, tuple)):
        grads = [grads]
    if len(grads) != len(tensors):
        raise ValueError(f"{name}: got {len(grads)} gradients for {len(tensors)} outputs")
    roots = []
    for i, (t, g) in enumerate(zip(tensors, grads)):
        if not isinstance(t, Tensor):
            raise not_a_tensor(name, f"outputs[{i}]", t)
        if not t.requires_grad:
            raise RuntimeError(f"{name}: outputs[{i}] does not require grad and has no grad_fn "
                               "(was it computed under no_grad, or from inputs that do not require grad?)")
        if g is None:
            if t.size != 1:
                raise RuntimeError(f"{name}: a gradient can be implied only for one-element outputs; "
                                   f"outputs[{i}] has shape {t.shape}, so pass its gradient explicitly")
            g = Tensor._make(backend.get_array_module(t.data).ones_like(t.data), False, None, 0)
        elif not isinstance(g, Tensor):
            g = Tensor(g, dtype=t.dtype, device=t.device)
        if g.shape != t.shape:
            raise ValueError(f"{name}: gradient {i} has shape {g.shape}, expected {t.shape} like its output")
        if g.device != t.device:
            raise ValueError(f"{name}: gradient {i} is on {g.device}, its output on {t.device}")
        g = g.astype(t.dtype) if create_graph else g.data.astype(t.dtype, copy=False)
        roots.append((t, g))
    return roots


def _run(roots, retain_graph, create_graph, capture):
    pending = {}   # node -> gradient of its output so far, or of its outputs (a list) when it has several
    leaves = {}    # id(leaf) -> [leaf, gradient gathered so far, whether that array is ours to add into]
    buckets = {}   # generation -> nodes waiting to run
    visit = expand = None
    if capture is not None:
        visit, expand = capture.prune(roots)
    for t, g in roots:
        _deliver(t, g, pending, buckets, leaves, create_graph, visit)
    previous = _state.enabled, _state.capturing, _state.retaining
    _state.enabled, _state.capturing, _state.retaining = create_graph, capture is not None, bool(retain_graph)
    anomaly = _state.anomaly
    generation = max(buckets, default=0)
    try:
        while generation > 0:
            nodes = buckets.pop(generation, ())
            generation -= 1
            for node in nodes:
                grads = pending.pop(node)
                if node.n_outputs == 1:
                    grads = [grads]
                if (node._n_in < 0 or node._out_hooks or node._retained or capture is not None
                        or (node.n_outputs > 1 and any(g is None for g in grads))):
                    _complete(node, grads, create_graph, capture)
                    if expand is not None and node not in expand:
                        continue            # a tg.grad input with nothing wanted below it
                result = _call_backward(node, grads) if create_graph else node.backward(node, *grads)
                if type(result) is not tuple:
                    result = (result,)
                n_in = node._n_in
                if len(result) != n_in or anomaly:
                    _check_result(node, result)
                # For an input that needs grad the slots hold the node that made it (output
                # in_index[i]) or, for a leaf, the Tensor itself.
                edges = (node._in0,) if n_in == 1 else (node._in0, node._in1) if n_in == 2 else node._edges(n_in)
                in_index = node._in_index
                for i, (inp, g, needed) in enumerate(zip(edges, result, node.needs_input_grad)):
                    if g is None or not needed:
                        continue
                    if isinstance(inp, Tensor):
                        data = inp.data
                        if create_graph or type(g) is not np.ndarray or g.shape != data.shape or g.dtype != data.dtype:
                            g = _checked_grad(node, i, data, g, create_graph)
                        _deliver(inp, g, pending, buckets, leaves, create_graph, visit, node.fresh_grads)
                        continue
                    parent, index = inp, in_index[i] if in_index else 0
                    try:
                        data = parent._out_arrays[index]
                    except IndexError:                  # () once an earlier backward released parent
                        raise freed_error(parent) from None
                    if create_graph or type(g) is not np.ndarray or g.shape != data.shape or g.dtype != data.dtype:
                        g = _checked_grad(node, i, data, g, create_graph)
                    if visit is not None:
                        _deliver_to_node(parent, index, g, pending, buckets, visit)
                        continue
                    if parent.n_outputs == 1:          # the common case of _deliver_to_node, inlined
                        old = pending.get(parent)
                        if old is None:
                            pending[parent] = g
                            _queue(buckets, parent)
                        else:
                            pending[parent] = old + g
                    else:
                        _deliver_to_node(parent, index, g, pending, buckets, None)
                if not retain_graph:
                    node.release()
        for t, g, owned in leaves.values():
            _finish_leaf(t, g, owned, create_graph, capture)
    finally:
        _state.enabled, _state.capturing, _state.retaining = previous


def _call_backward(node, grads):
    """The node's backward under create_graph: ctx.saved_tensors and ctx.xp give Tensors."""
    node._graph_mode = True
    try:
        return node.backward(node, *grads)
    finally:
        del node._graph_mode


def _checked_grad(node, i, data, g, create_graph):
    """``g`` as an array (or a Tensor under create_graph) of the shape and dtype of input ``i``'s ``data``."""
    if create_graph:
        if not isinstance(g, Tensor):
            raise RuntimeError(f"{type(node).__name__}.backward returned an array for input {i} under "
                               "create_graph=True; write it with ctx.xp and operators so it can be "
                               "differentiated again")
    elif type(g) is not np.ndarray:
        g = _plain_array(g)
    if g.shape != data.shape:
        raise RuntimeError(f"{type(node).__name__}.backward returned a gradient of shape {g.shape} "
                           f"for input {i}, expected {data.shape}")
    return g if g.dtype == data.dtype else g.astype(data.dtype)


def _queue(buckets, node):
    bucket = buckets.get(node.generation)
    if bucket is None:
        buckets[node.generation] = [node]
    else:
        bucket.append(node)


def _deliver(t, g, pending, buckets, leaves, create_graph, visit, fresh=False):
    """Add ``g`` to what ``t``'s node (queued on first use) or leaf has gathered; ``fresh``: g is
    a new array no one else holds (see ``Function.fresh_grads``)."""
    node = t.grad_fn
    if node is None:
        entry = leaves.get(id(t))
        if entry is None:
            leaves[id(t)] = [t, g, fresh and not create_graph]
        elif create_graph or not entry[2]:
            entry[1], entry[2] = entry[1] + g, not create_graph
        else:
            entry[1] += g                   # our own array: add in place, no new array per use
        return
    _deliver_to_node(node, t._index, g, pending, buckets, visit)


def _deliver_to_node(node, index, g, pending, buckets, visit):
    """Add ``g`` to what output ``index`` of ``node`` (queued on first use) has gathered."""
    if visit is not None and node not in visit:
        return
    old = pending.get(node)
    if old is None:
        _queue(buckets, node)
    if node.n_outputs == 1:     # the gradient itself: no list per node, nothing new for the collector to track
        pending[node] = g if old is None else old + g
        return
    slots = pending[node] = [None] * node.n_outputs if old is None else old
    old = slots[index]
    slots[index] = g if old is None else old + g


def _finish_leaf(t, g, owned, create_graph, capture):
    """Run the leaf's hooks on its total gradient, then capture it or add it to ``.grad``."""
    if t._hooks:
        g, owned = _run_hooks(t._hooks, g, create_graph), False
    if capture is not None:
        for slot in capture.leaves.get(id(t), ()):
            capture.add(slot, g)
        return
    if create_graph:
        t.grad = g if t.grad is None else t.grad + g
        return
    g = _plain_array(g)
    if t.grad is None:
        t.grad = Tensor._make(g if owned else g.copy(), False, None, 0)   # a copy: g may be shared
    elif t.grad.shape == t.shape and t.grad.dtype == t.dtype and t.grad.grad_fn is None:
        t.grad.data += g        # in place, as PyTorch does
    else:
        t.grad = Tensor._make(_plain_array(t.grad.data + g), False, None, 0)


def _complete(node, grads, create_graph, capture):
    """Fill in zeros for unused outputs, run output hooks and retain_grad, capture for tg.grad."""
    if node._n_in < 0:
        raise freed_error(node)
    for i, g in enumerate(grads):
        if g is None and (node.materialize_grads or i in (node._out_hooks or ()) or i in (node._retained or ())):
            zeros = backend.get_array_module(node._out_arrays[i]).zeros_like(node._out_arrays[i])
            grads[i] = Tensor._make(zeros, False, None, 0) if create_graph else zeros
    if node._out_hooks:
        for i, hooks in node._out_hooks.items():
            grads[i] = _run_hooks(hooks, grads[i], create_graph)
    if node._retained:
        for i, ref in node._retained.items():
            t = ref()
            if t is not None and create_graph:
                t.grad = grads[i] if t.grad is None else t.grad + grads[i]
            elif t is not None:
                total = grads[i].copy() if t.grad is None else t.grad.data + grads[i]
                t.grad = Tensor._make(_plain_array(total), False, None, 0)
    if capture is not None and node in capture.nodes:
        for index, slot in capture.nodes[node]:
            capture.add(slot, grads[index])


def _check_result(node, result):
    name = type(node).__name__
    if len(result) != node._n_in:
        raise RuntimeError(f"{name}.backward returned {len(result)} gradients, expected {node._n_in} "
                           "(one per argument of apply, None for those without a gradient)")
    _check_finite(name, "backward", [r.data if isinstance(r, Tensor) else r for r in result], node._stack)


def _run_hooks(hooks, g, create_graph):
    for hook in list(hooks):
        wrapped = g if create_graph else Tensor._make(g, False, None, 0)
        new = hook(wrapped)
        if new is not None:
            name = f"hook {getattr(hook, '__name__', hook)}"
            if not isinstance(new, Tensor):
                raise not_a_tensor(name, "the value returned", new, f"None or a Tensor of shape {wrapped.shape}")
            if new.shape != wrapped.shape or new.dtype != wrapped.dtype or new.device != wrapped.device:
                raise RuntimeError(f"{name} must return None or a Tensor of shape {wrapped.shape}, dtype "
                                   f"{wrapped.dtype.name} on {wrapped.device} (the gradient's), got one of shape "
                                   f"{new.shape}, dtype {new.dtype.name} on {new.device}")
            g = new if create_graph else new.data
    return g


def _plain_array(g):
    """An array from what a plain backward returned (NumPy makes scalars of 0-d results)."""
    if isinstance(g, Tensor):
        return g.data
    return np.asarray(g) if isinstance(g, np.generic) else g
