"""Forward mode: Jacobian-vector products pushed through the recorded graph.

Reverse mode (``backward``) carries one cotangent from an output back to every
input; forward mode carries tangents from the inputs to the outputs, alongside
the values (Wengert 1964; Griewank & Walther 2008, ch. 3). For y = f(x) and a
direction v it gives the directional derivative

    J v = lim_{e -> 0} (f(x + e v) - f(x)) / e,

one op at a time by the chain rule: if y = g(u) then dy = g'(u) du.

**Tangents.** A tangent of a tensor of shape ``shape`` is an array of shape
``(K, *shape)``: K directions pushed at once (RTRL pushes one per parameter), or
None for a zero tangent. An op defines the rule beside its backward::

    class Tanh(Function):
        ...
        @staticmethod
        def jvp(ctx, t):                     # one tangent per argument of apply
            out, = ctx.saved_tensors
            return t * (1 - out * out)       # the tangent of each output

A rule receives one tangent per argument of ``apply`` (None for arguments that
are not tensors or that carry no tangent, never all None) and reads the primal
values from ``ctx`` as backward does. It may return any array that broadcasts to
``(K, *out.shape)`` (an operand broadcast by the op keeps its smaller tangent);
the walk below broadcasts it.

**Design.** :func:`jvp` does not run a second, tangent-carrying interpreter: it
runs ``fn`` once with grad mode on, so the engine records the graph as usual,
then visits the recorded nodes in increasing generation (a node's generation
exceeds its inputs', so this is a topological order, without recursion) and
calls each node's ``jvp`` on its inputs' tangents. Nodes none of whose inputs
carry a tangent are skipped, so only ops on a path from a seeded input need a
rule. Recording costs what a forward pass with grad costs; in exchange every op
of the engine keeps its one forward, and ``Function.apply`` stays as fast as it is.
The tangents are not differentiable (no graph is recorded for them).
"""
from .. import backend
from ..function import enable_grad
from ..tensor import Tensor


def jvp(fn, primals, tangents):
    """Evaluate ``fn(*primals)`` and its Jacobian-vector products with ``tangents``.

    Args:
        fn: a function of Tensors returning a Tensor or a tuple/list of Tensors.
        primals: a Tensor or a sequence of Tensors, the point. A leaf that requires
            grad (a Parameter) is passed to ``fn`` as itself, so ``fn`` may equally
            reach it through a module; any other primal is passed as a fresh leaf
            cut from its history.
        tangents: one per primal, in the same structure: an array or Tensor of shape
            (K, *primal.shape), or None for zero. K is the same for all.
    Returns:
        ``(outputs, output_tangents)`` in ``fn``'s structure: the outputs detached,
        and Tensors of shape (K, *output.shape) (None only if no tangent was given).
        A tensor that ``fn`` reads from outside (a closure) is differentiated
        through its recorded history too.

    Shape: primal (*s), tangent (K, *s) -> output (*o), output tangent (K, *o).

    Example:
        >>> x = tg.tensor([1.0, 2.0], dtype=tg.float64)
        >>> _, t = jvp(lambda x: (x * x).sum(), x, np.eye(2))      # gradient, one direction per row
        >>> t.numpy()
        array([2., 4.])
    """
    single = isinstance(primals, Tensor)
    primals, tangents = ([primals], [tangents]) if single else (list(primals), _as_list(tangents, len(primals)))
    args, seeds = _seed(primals, tangents)
    with enable_grad():
        out = fn(*args)
    outs = _outputs(out)
    k = next((t.shape[0] for t in seeds.values()), None)
    values = [o.detach() for o in outs]
    results = [_wrap(t, o, k) for t, o in zip(_push(outs, seeds), outs)]
    if isinstance(out, Tensor):
        return values[0], results[0]
    like = tuple if isinstance(out, tuple) else list
    return like(values), like(results)


def _push(outputs, seeds):
    """The tangents (arrays, or None for zero) of the Tensors ``outputs``, given
    ``seeds`` = {id(leaf tensor): its tangent array}, through the recorded graph."""
    known = {}                        # node -> tuple of its outputs' tangents, or None
    for node in _recorded_nodes(outputs):
        ins = [_tangent_of(inp, seeds, known) for inp in node.inputs]
        if all(t is None for t in ins):
            known[node] = None
            continue
        rule = getattr(type(node), "jvp", None)
        if rule is None:
            raise NotImplementedError(
                f"jvp: {type(node).__name__} has no forward-mode rule; define a static method "
                f"jvp(ctx, *tangents) beside its backward (one tangent per argument of apply, each "
                f"(K, *shape) or None) that returns the tangent of each output")
        known[node] = _checked(node, rule(node, *ins), next(t for t in ins if t is not None).shape[0])
    return [_tangent_of(o, seeds, known) for o in outputs]


def _seed(primals, tangents):
    """The arguments for ``fn`` and {id(argument): tangent array} for those with a tangent."""
    args, seeds = [], {}
    k = None
    for i, (p, t) in enumerate(zip(primals, tangents)):
        if not isinstance(p, Tensor):
            raise TypeError(f"jvp: primals[{i}] is a {type(p).__name__}, expected a Tensor")
        if t is None:
            args.append(p)
            continue
        if p.dtype.kind != "f":
            raise TypeError(f"jvp: primals[{i}] has dtype {p.dtype.name}; only float tensors take a tangent")
        t = Tensor(t, dtype=p.dtype, device=p.device).data
        if t.shape[1:] != p.shape or t.ndim != p.ndim + 1:
            raise ValueError(f"jvp: tangents[{i}] has shape {t.shape}, expected (K,) + {p.shape} "
                             f"(K directions of primals[{i}])")
        if k is not None and t.shape[0] != k:
            raise ValueError(f"jvp: tangents[{i}] has {t.shape[0]} directions, an earlier tangent {k}; "
                             "all must have the same K")
        k = t.shape[0]
        arg = p if p.is_leaf and p.requires_grad else p.detach().requires_grad_()
        if id(arg) in seeds:
            raise ValueError(f"jvp: primals[{i}] is the same tensor as an earlier primal; pass it once")
        args.append(arg)
        seeds[id(arg)] = t
    return args, seeds


def _as_list(tangents, n):
    if isinstance(tangents, (list, tuple)) and len(tangents) == n:
        return list(tangents)
    got = f"{len(tangents)} tangents" if isinstance(tangents, (list, tuple)) else f"a {type(tangents).__name__}"
    raise ValueError(f"jvp: expected a sequence of {n} tangents (one per primal, None for zero), got {got}")


def _outputs(out):
    outs = [out] if isinstance(out, Tensor) else list(out) if isinstance(out, (list, tuple)) else None
    if outs is None or not all(isinstance(o, Tensor) for o in outs):
        raise TypeError(f"jvp: fn must return a Tensor or a tuple/list of Tensors, got {type(out).__name__}")
    return outs


def _recorded_nodes(outputs):
    """Every node that made the outputs, in increasing generation (inputs before users)."""
    seen, stack = set(), [o.grad_fn for o in outputs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        if node.inputs is None:
            raise RuntimeError(f"jvp: fn reads a tensor made by {type(node).__name__} whose graph was freed by "
                               "an earlier backward; recompute it inside fn or pass retain_graph=True there")
        seen.add(node)
        stack.extend(inp.grad_fn for inp in node.inputs
                     if isinstance(inp, Tensor) and inp.grad_fn is not None and inp.grad_fn not in seen)
    return sorted(seen, key=lambda node: node.generation)


def _tangent_of(t, seeds, known):
    if not isinstance(t, Tensor):
        return None
    if t.grad_fn is None:
        return seeds.get(id(t))
    tangents = known[t.grad_fn]
    return None if tangents is None else tangents[t._index]


def _checked(node, result, k):
    """The rule's result as a tuple of arrays (K, *out.shape), one per output of the node."""
    name = type(node).__name__
    result = result if type(result) is tuple else (result,)
    if len(result) != node.n_outputs:
        raise RuntimeError(f"{name}.jvp returned {len(result)} tangents, expected {node.n_outputs} (one per output)")
    checked = []
    for i, (t, out) in enumerate(zip(result, node._out_arrays)):
        expected = (k,) + out.shape
        if t is not None and t.shape != expected:
            try:
                t = backend.get_array_module(t).broadcast_to(t, expected)
            except ValueError:
                raise RuntimeError(f"{name}.jvp returned a tangent of shape {t.shape} for output {i}, "
                                   f"expected {expected}") from None
        checked.append(t)
    return tuple(checked)


def _wrap(t, like, k):
    """An output tangent as a Tensor; zeros for an output that depends on no seed."""
    if t is None:
        if k is None:
            return None
        t = backend.get_array_module(like.data).zeros((k,) + like.shape, dtype=like.dtype)
    return Tensor._make(t, False, None, 0)
