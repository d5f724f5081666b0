"""The unrolled graph, drawn: the nodes behind a tensor as Graphviz DOT text, one
cluster per layer and time step, and a per-step table of ops and saved bytes.

Backpropagation through time is the ordinary backward pass over the graph that
the forward loop recorded (Werbos 1990); this module shows that graph with its
time structure visible. Three calls::

    states = [h0]
    for t in range(T):
        states.append(cell(x[t], states[-1]))
    loss = tg.stack(states[1:]).sum()
    dot = to_dot(loss, states, params=cell)       # DOT text
    render(dot, "rnn.svg")                        # .svg/.png/.pdf, or .dot without Graphviz
    table, costs = summary(loss, states)          # ops and saved bytes per (layer, step)

The graph is read from the recorded nodes, so walk it before ``backward`` frees
them (or backward with ``retain_graph=True`` first): a freed node raises.

**Which step a node belongs to.** Let S(l, t) be the tensors of layer l's state
after step t (a tuple such as (h, c) counts part by part) and S(l, -1) its
initial state, when given. Node n is put in cluster (l, t), and in one cluster
at most, by four rules applied in this order (a node keeps the first cluster
it gets; within a rule, clusters go in (layer, step) order):

1. n produces a tensor of S(l, t);
2. n lies on a path from a tensor of S(l, t-1) to a tensor of S(l, t) that does
   not pass through S(l, t-1) again (n uses S(l, t-1), directly or through other
   nodes, and S(l, t) uses n);
3. where S(l, t-1) is not given (t = 0 without an initial state): n produces
   a tensor that S(l, t) depends on and that a node put in (l, t+1) by rules
   1-2 uses, and every node that uses n's outputs is in (l, t), in (l, t+1) or
   in no cluster yet. This finds a part of the state the caller did not list,
   such as an LSTM's c when only h is given, which rule 2 finds for the other steps;
4. n is none of the above, produces no root and no initial state, and every
   node that uses its outputs is in cluster (l, t): side branches that serve
   only that step, e.g. the ``W_hh^T`` a composed cell recomputes each step, or
   the input projection of a step-by-step loop.

Nodes in no cluster (the one input projection of all steps of ``unroll``,
which a one-step unroll gives to step 0 by rule 4; the loss; the stacking of
outputs) are drawn at top level, and so is every leaf tensor, once, with edges
to each node that uses it: a shared parameter fans out across the step clusters.
"""
import math
import numbers
import shutil
import subprocess
import warnings
from collections import namedtuple
from pathlib import Path

from ..files import write_bytes
from ..function import enable_grad
from ..nn.trace_scan import Scan
from ..ops import Stack
from ..tensor import Tensor

_FORMATS = ("svg", "png", "pdf")


class UnrolledGraph:
    """The nodes behind some root tensors and the (layer, step) cluster of each.

    Attributes:
        nodes: the Function nodes, in walk order (each once).
        leaves: the leaf Tensors the nodes use, in walk order (each once).
        consumers: {node: nodes that use one of its outputs (once per use)}.
        steps: the (layer, step) keys of the clusters, step >= 0, sorted.
        cluster: {node: (layer, step)} for the nodes in a cluster (rules in the module docstring).
        redirect: {(id of a whole-sequence node, output index): the Tensor of its expansion
            that stands for that output}.
    """

    def __init__(self, roots, states):
        self.roots = roots
        self.nodes, self.leaves, self.consumers = _walk(roots)
        self.redirect = {}
        first_layer = 1 + max((layer for layer, _ in states), default=-1)
        listed = {t.grad_fn for parts in states.values() for t in parts if t.grad_fn is not None}
        expanded = _expand_scans(self, first_layer, keep=listed)
        self.state_steps = sorted(key for key in states if key[1] >= 0)
        self.steps = sorted(set(self.state_steps) | set(expanded.values()))
        self.cluster = _assign(self, states)
        self.cluster.update(expanded)

    def source(self, t):
        """The tensor that ``t`` stands for in the drawing (itself, or its expansion's)."""
        if t.grad_fn is not None:
            return self.redirect.get((id(t.grad_fn), t._index), t)
        return t

    def members(self, key):
        """The nodes of cluster ``key`` = (layer, step), or of no cluster for None, in walk order."""
        return [n for n in self.nodes if self.cluster.get(n) == key]


def unrolled_graph(root, states=None):
    """Walk the graph behind ``root`` and put its nodes in (layer, step) clusters.

    Args:
        root: a Tensor with a graph (e.g. the loss), or a list/tuple of them.
        states: the per-step states, in one of these forms (a state is a Tensor
            or a tuple of Tensors such as an LSTM's (h, c)):
            - the list of a step-by-step loop, ``[s0, s1, ..., sT]``: s0 is the
              initial state, s(t+1) the state after step t; one layer;
            - a list of such lists, one per layer;
            - a dict ``{(layer, t): state}``, t = 0..T-1, and t = -1 for an
              initial state;
            - a Tensor made by ``tg.stack`` (the output of ``unroll`` or of a
              one-layer, one-direction RNN/LSTM/GRU that ran step by step, e.g.
              with ``fused=False``): its stacked inputs are the states of layer
              0, with no initial state;
            - None: no clusters.

    Returns an :class:`UnrolledGraph`. Raises RuntimeError if backward has freed
    a node (walk before backward, or backward with ``retain_graph=True``).
    """
    return UnrolledGraph(_check_roots(root), _parse_states(states))


# ----------------------------------------------------------------- reading the arguments
def _check_roots(root):
    roots = list(root) if isinstance(root, (list, tuple)) else [root]
    if not roots:
        raise ValueError("graph: root is an empty sequence, expected a Tensor or a list of Tensors")
    for i, t in enumerate(roots):
        if not isinstance(t, Tensor):
            raise TypeError(f"graph: root {i} is a {type(t).__name__}, expected a Tensor")
        if t.grad_fn is None:
            raise ValueError(f"graph: root {i} (shape {t.shape}) has no graph: it is a leaf, or was computed "
                             "under no_grad or from tensors that do not require grad")
    return roots


def _parse_states(states):
    """{(layer, t): tuple of Tensors} from any accepted form; t = -1 is the initial state."""
    if states is None:
        return {}
    if isinstance(states, Tensor):
        if isinstance(states.grad_fn, Scan):
            return {}                           # a whole-sequence node: its steps come from its tape
        if not isinstance(states.grad_fn, Stack):
            made = type(states.grad_fn).__name__ if states.grad_fn is not None else "no op (a leaf)"
            raise ValueError(f"graph: a Tensor given as states must be made by tg.stack (the output of an "
                             f"unroll that ran step by step) or by a whole-sequence layer, this one was made "
                             f"by {made}")
        if states.grad_fn.inputs is None:
            _walk([states])                     # raises: the node was freed
        return {(0, t): (s,) for t, s in enumerate(states.grad_fn.inputs)}
    if isinstance(states, dict):
        return {_check_key(key): _parts(value, f"states[{key!r}]") for key, value in states.items()}
    if isinstance(states, list):
        layers = states if states and all(isinstance(s, list) for s in states) else [states]
        parsed = {}
        for layer, seq in enumerate(layers):
            if len(seq) < 2:
                raise ValueError(f"graph: layer {layer} lists {len(seq)} state(s), expected the initial state "
                                 "and at least one step, [s0, s1, ...]")
            for i, value in enumerate(seq):
                parsed[(layer, i - 1)] = _parts(value, f"states of layer {layer}, entry {i}")
        return parsed
    raise TypeError(f"graph: states is a {type(states).__name__}, expected a list [s0, s1, ...], a list of "
                    "them per layer, a dict {(layer, t): state}, a stacked Tensor or None")


def _check_key(key):
    if not (isinstance(key, tuple) and len(key) == 2
            and all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in key)):
        raise TypeError(f"graph: states keys must be (layer, step) pairs of ints, got {key!r}")
    layer, t = int(key[0]), int(key[1])
    if layer < 0 or t < -1:
        raise ValueError(f"graph: states key {key!r} out of range, expected layer >= 0 and step >= -1")
    return layer, t


def _parts(value, where):
    parts = value if isinstance(value, tuple) else (value,)
    if not parts or not all(isinstance(p, Tensor) for p in parts):
        got = type(value).__name__ if not isinstance(value, tuple) else \
            "(" + ", ".join(type(p).__name__ for p in parts) + ")"
        raise TypeError(f"graph: {where} is {got}, expected a Tensor or a tuple of Tensors")
    return parts


def _param_names(params):
    """{id(tensor): name} from a {name: Tensor} dict or a Module's named_parameters()."""
    if params is None:
        return {}
    if hasattr(params, "named_parameters"):
        params = dict(params.named_parameters())
    if not isinstance(params, dict):
        raise TypeError(f"graph: params is a {type(params).__name__}, expected a dict {{name: Tensor}} or a Module")
    names = {}
    for name, t in params.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"graph: params[{name!r}] is a {type(t).__name__}, expected a Tensor")
        names.setdefault(id(t), str(name))
    return names


# ----------------------------------------------------------------- whole-sequence nodes
def _expand_scans(graph, first_layer, keep=()):
    """Replace each whole-sequence node (``nn.trace_scan.Scan``) by its per-step graph, replayed from
    its tape on its own inputs; returns {node of an expansion: (layer, step)}, layers numbered
    from ``first_layer`` in the order the nodes run. Nodes in ``keep`` stay as they are (a cell
    with a kernel called step by step makes one such node per step: the step of a listed state)."""
    scans = sorted((n for n in graph.nodes if isinstance(n, Scan) and n not in keep), key=lambda n: n.generation)
    clusters = {}
    for layer, scan in enumerate(scans, start=first_layer):
        program = scan.program.traced(scan)
        x, *rest = scan.inputs
        n = program.n_state
        tapes = []
        with enable_grad():
            outputs = program.on_graph(x, rest[:n], rest[n:], scan.valid, tapes)
        for t, tape in enumerate(tapes[1:]):
            for *_, ctx in tape.ops:
                clusters[ctx] = (layer, t)
        _splice(graph, scan, outputs)
    return clusters


def _splice(graph, scan, outputs):
    """Put the expansion ``outputs`` (Tensors) of ``scan`` into the graph in its place."""
    stop = {_key(t) for t in scan.inputs if isinstance(t, Tensor)}
    nodes, leaves, consumers = _walk([o for o in outputs if o.grad_fn is not None], stop)
    for parent, users in consumers.items():
        if parent in graph.consumers:                       # an outer node feeding the expansion
            graph.consumers[parent] = [u for u in graph.consumers[parent] if u is not scan] + users
        else:
            graph.consumers[parent] = users
    for i, out in enumerate(outputs):
        graph.redirect[(id(scan), i)] = out
        if out.grad_fn is not None:
            graph.consumers.setdefault(out.grad_fn, []).extend(graph.consumers.get(scan, ()))
    graph.consumers.pop(scan, None)
    graph.nodes = [n for n in graph.nodes if n is not scan] + nodes
    known = {id(t) for t in graph.leaves}
    graph.leaves += [t for t in leaves if id(t) not in known]


# ----------------------------------------------------------------- walking and clustering
def _key(t):
    """A tensor's identity in the graph: its node and output index, or the leaf itself."""
    return (id(t.grad_fn), t._index) if t.grad_fn is not None else (id(t), -1)


def _walk(roots, stop=frozenset()):
    """(nodes, leaves, consumers) behind the roots, with an explicit stack (no recursion); the
    walk does not go past a tensor whose key is in ``stop``."""
    nodes, leaves, consumers, seen_leaves = [], [], {}, set()
    stack = [t.grad_fn for t in roots]
    seen = set(stack)
    while stack:
        node = stack.pop()
        if node.inputs is None:
            raise RuntimeError(f"graph: the {type(node).__name__} node was freed by a backward pass; walk the "
                               "graph before backward, or pass retain_graph=True to backward")
        nodes.append(node)
        for inp in node.inputs:
            if not isinstance(inp, Tensor):
                continue
            parent = inp.grad_fn
            if parent is not None and _key(inp) in stop:
                consumers.setdefault(parent, []).append(node)
                continue
            if parent is None:
                if id(inp) not in seen_leaves:
                    seen_leaves.add(id(inp))
                    leaves.append(inp)
                continue
            consumers.setdefault(parent, []).append(node)
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return nodes, leaves, consumers


def _assign(graph, states):
    """{node: (layer, step)} by the four rules of the module docstring, in order."""
    cluster = {}
    _claim_states(graph, states, cluster)
    for layer, step in graph.state_steps:
        previous = states.get((layer, step - 1))
        if previous is not None:
            for node in _between(previous, states[(layer, step)]):
                cluster.setdefault(node, (layer, step))
    _claim_unlisted(graph, states, cluster)
    _claim_branches(graph, states, cluster)
    return cluster


def _claim_states(graph, states, cluster):
    """Rule 1: the producer of each state tensor joins its step."""
    known = set(graph.consumers) | {t.grad_fn for t in graph.roots}
    for key in graph.state_steps:
        for t in states[key]:
            if t.grad_fn is None:
                continue
            if t.grad_fn not in known:
                raise ValueError(f"graph: the state at (layer, step) = {key} is not in the graph behind the "
                                 "root; pass the states of the forward pass that computed the root")
            cluster.setdefault(t.grad_fn, key)


def _claim_unlisted(graph, states, cluster):
    """Rule 3: where no earlier state starts rule 2, state parts the caller did not list, found from the step after."""
    by_key = {}
    for node, key in cluster.items():
        by_key.setdefault(key, []).append(node)
    for layer, step in graph.state_steps:
        if (layer, step - 1) in states:
            continue
        allowed = {None, (layer, step), (layer, step + 1)}
        candidates = {}
        for node in by_key.get((layer, step + 1), ()):
            for inp in node.inputs:
                parent = inp.grad_fn if isinstance(inp, Tensor) else None
                if (parent is not None and parent not in cluster
                        and all(cluster.get(u) in allowed for u in graph.consumers[parent])):
                    candidates[_key(inp)] = parent
        if candidates:
            floor = min(p.generation for p in candidates.values()) - 1
            for k in _tensors_behind(states[(layer, step)], floor) & candidates.keys():
                cluster.setdefault(candidates[k], (layer, step))


def _tensors_behind(parts, floor):
    """Keys of the tensors that ``parts`` depend on (themselves included) made by nodes above generation ``floor``."""
    found = {_key(t) for t in parts}
    stack = [t.grad_fn for t in parts if t.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node in seen or node.generation <= floor:
            continue
        seen.add(node)
        for inp in node.inputs:
            if isinstance(inp, Tensor) and inp.grad_fn is not None:
                found.add(_key(inp))
                stack.append(inp.grad_fn)
    return found


def _claim_branches(graph, states, cluster):
    """Rule 4: a node all of whose users are in one step joins it (users first: generation order)."""
    fixed = {t.grad_fn for t in graph.roots}
    fixed.update(t.grad_fn for key, parts in states.items() if key[1] == -1 for t in parts)
    for node in sorted(graph.nodes, key=lambda n: n.generation, reverse=True):
        users = graph.consumers.get(node)
        if node in cluster or node in fixed or not users:
            continue
        first = cluster.get(users[0])
        if first is not None and all(cluster.get(u) == first for u in users):
            cluster[node] = first


def _between(previous, current):
    """The nodes on a path from a tensor of ``previous`` to one of ``current``.

    A backward walk from ``current`` that stops at ``previous`` and below the
    lowest generation of its producers (a descendant's generation is higher), then
    a forward pass in generation order marking the nodes that use ``previous``."""
    stop = {_key(t) for t in previous}
    floor = min(t.grad_fn.generation if t.grad_fn is not None else 0 for t in previous)
    stack = [t.grad_fn for t in current if t.grad_fn is not None and _key(t) not in stop]
    window = set()
    while stack:
        node = stack.pop()
        if node in window or node.generation <= floor:
            continue
        window.add(node)
        stack.extend(inp.grad_fn for inp in node.inputs
                     if isinstance(inp, Tensor) and inp.grad_fn is not None and _key(inp) not in stop)
    reached = set()
    for node in sorted(window, key=lambda n: n.generation):
        if any(isinstance(inp, Tensor) and (_key(inp) in stop or inp.grad_fn in reached) for inp in node.inputs):
            reached.add(node)
    return reached


# ----------------------------------------------------------------- DOT text
def to_dot(root, states=None, params=None, grads=None, title="unrolled"):
    """Graphviz DOT text of the graph behind ``root``, one cluster per (layer, step).

    Op nodes are boxes labelled with the op's class name and output shape(s);
    leaf tensors are ellipses, each drawn once (parameters filled, named from
    ``params``). Step clusters ``cluster_l{layer}_t{step}`` sit inside one
    cluster ``cluster_l{layer}`` per layer; nodes of no step are at top level
    (see the module docstring for the rule). Walk before backward frees the
    graph, or backward with ``retain_graph=True``.

    Args:
        root, states: as :func:`unrolled_graph`.
        params: {name: Tensor}, or a Module (its ``named_parameters()``), to name leaves.
        grads: gradients to show, after a ``backward(retain_graph=True)``:
            None (none), True (each tensor's ``.grad``, so the non-leaf tensors
            that called ``retain_grad()`` and the leaves), or a dict {Tensor:
            gradient array or Tensor}. An edge carrying a non-leaf tensor with a
            gradient g is labelled ||g||_2 and coloured on a log scale from blue
            (smallest norm shown) to red (largest); a leaf shows ||g||_2 in its
            own label, since its gradient is the total over all its uses.
        title: the graph's name.

    Returns the DOT text (a str).
    """
    graph = unrolled_graph(root, states)
    names = _param_names(params)
    grad_of = _grad_source(grads)
    ids = {node: f"n{i}" for i, node in enumerate(graph.nodes)}
    ids.update((id(t), f"v{i}") for i, t in enumerate(graph.leaves))
    roots = {t.grad_fn for t in graph.roots}
    lines = [f"digraph {_quote(title)} {{", "  rankdir=TB;", "  newrank=true;",   # newrank: clusters do not overlap
             '  node [fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=8];']
    lines += [f"  {ids[id(t)]} [{_leaf_attrs(t, names, grad_of)}];" for t in graph.leaves]
    lines += [f"  {ids[n]} [{_op_attrs(n, n in roots)}];" for n in graph.members(None)]
    lines += _cluster_lines(graph, ids, roots)
    lines += _edge_lines(graph, ids, grad_of)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _cluster_lines(graph, ids, roots):
    by_key = {key: [] for key in graph.steps}
    for node in graph.nodes:
        key = graph.cluster.get(node)
        if key is not None:
            by_key[key].append(node)
    lines = []
    for layer in sorted({layer for layer, _ in graph.steps}):
        lines += [f"  subgraph cluster_l{layer} {{", f'    label="layer {layer}";', '    style="rounded";']
        for key in (k for k in graph.steps if k[0] == layer):
            lines += [f"    subgraph cluster_l{layer}_t{key[1]} {{", f'      label="t = {key[1]}";',
                      '      style="filled"; fillcolor="#f4f4f4";']
            lines += [f"      {ids[n]} [{_op_attrs(n, n in roots)}];" for n in by_key[key]]
            lines.append("    }")
        lines.append("  }")
    return lines


def _edge_lines(graph, ids, grad_of):
    edges = []
    for node in graph.nodes:
        for inp in node.inputs:
            if isinstance(inp, Tensor):
                inp = graph.source(inp)
                source = ids[inp.grad_fn] if inp.grad_fn is not None else ids[id(inp)]
                g = grad_of(inp) if inp.grad_fn is not None else None
                edges.append((source, ids[node], None if g is None else _norm(g)))
    shown = [n for _, _, n in edges if n is not None]
    lines = []
    for source, target, norm in edges:
        attrs = "" if norm is None else f' [label="{norm:.2e}", color="{_heat(norm, shown)}"]'
        lines.append(f"  {source} -> {target}{attrs};")
    return lines


def _op_attrs(node, is_root):
    shapes = [tuple(a.shape) for a in node._out_arrays]
    shape = str(shapes[0]) if len(shapes) == 1 else (
        f"{len(shapes)} x {shapes[0]}" if len(set(shapes)) == 1 else ", ".join(map(str, shapes)))
    attrs = f"label={_quote(type(node).__name__ + chr(10) + shape)}, shape=box"
    return attrs + (", peripheries=2" if is_root else "")


def _leaf_attrs(t, names, grad_of):
    name = names.get(id(t), "leaf" if t.requires_grad else "tensor")
    label = f"{name}\n{tuple(t.shape)}"
    g = grad_of(t)
    if g is not None:
        label += f"\n|grad| = {_norm(g):.2e}"
    style = 'style=filled, fillcolor="#fff2b3"' if t.requires_grad else 'style=dashed'
    return f"label={_quote(label)}, shape=ellipse, {style}"


def _grad_source(grads):
    """A function tensor -> gradient array (or None) for the ``grads`` argument of to_dot."""
    if grads is None or grads is False:
        return lambda t: None
    if grads is True:
        return lambda t: None if t.grad is None else t.grad.data
    if isinstance(grads, dict):
        for k in grads:
            if not isinstance(k, Tensor):
                raise TypeError(f"to_dot: grads keys must be Tensors, got a {type(k).__name__}")
        by_id = {id(k): (v.data if isinstance(v, Tensor) else v) for k, v in grads.items()}
        return lambda t: by_id.get(id(t))
    raise TypeError(f"to_dot: grads is a {type(grads).__name__}, expected None, True or a dict {{Tensor: gradient}}")


def _norm(g):
    return math.sqrt(float((g * g).sum()))


def _heat(norm, shown):
    """An HSV colour from blue (smallest norm in ``shown``) to red (largest), on a log scale."""
    tiny = 1e-300
    lo, hi = math.log(max(min(shown), tiny)), math.log(max(max(shown), tiny))
    where = 0.5 if hi == lo else (math.log(max(norm, tiny)) - lo) / (hi - lo)
    return f"{0.66 * (1 - where):.3f} 0.850 0.850"


def _quote(text):
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# ----------------------------------------------------------------- rendering
def render(dot, path):
    """Draw DOT text to ``path``; returns the path written (a str).

    The format comes from the suffix (.svg, .png, .pdf; none means .svg). It is
    drawn by Graphviz's ``dot`` program when it is on PATH; otherwise the plain
    DOT text is written next to it, with the suffix .dot, and a RuntimeWarning
    says so and how to draw it later. A path ending in .dot or .gv is written as
    text directly. Files are written atomically.
    """
    if not isinstance(dot, str):
        raise TypeError(f"render: dot must be DOT text (a str), got a {type(dot).__name__}")
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".svg")
    fmt = path.suffix[1:].lower()
    if fmt in ("dot", "gv"):
        return write_bytes(str(path), dot.encode())
    if fmt not in _FORMATS:
        raise ValueError(f"render: cannot draw {path.name}: suffix {path.suffix!r}, expected one of "
                         f"{', '.join('.' + f for f in _FORMATS)}, .dot or .gv")
    program = shutil.which("dot")
    if program is not None:
        drawn = subprocess.run([program, f"-T{fmt}"], input=dot.encode(), capture_output=True)
        if drawn.returncode != 0:
            raise RuntimeError(f"render: dot -T{fmt} failed: {drawn.stderr.decode(errors='replace').strip()}")
        return write_bytes(str(path), drawn.stdout)
    fallback = path.with_suffix(".dot")
    write_bytes(str(fallback), dot.encode())
    warnings.warn(f"render: the Graphviz `dot` program is not on PATH, so {path.name} was not drawn; wrote the "
                  f"DOT text to {fallback} (draw it with: dot -T{fmt} {fallback} -o {path})", RuntimeWarning,
                  stacklevel=2)
    return str(fallback)


# ----------------------------------------------------------------- the table
StepCost = namedtuple("StepCost", "ops saved_bytes ctx_bytes")
StepCost.__doc__ = """Ops in a cluster, bytes of their ``ctx._saved`` arrays and of other arrays kept on ctx."""


def summary(root, states=None):
    """Ops and bytes kept for backward, per layer and time step.

    For each (layer, step) cluster (rules in the module docstring) and for the
    nodes of no step (key None): ``ops``, the number of nodes; ``saved_bytes``,
    the sum of ``nbytes`` of the arrays in their ``ctx._saved`` (what
    ``save_for_backward`` kept); ``ctx_bytes``, that of the other arrays forward
    stored as attributes of ctx (e.g. the activations a fused LSTM step keeps).
    Each array is counted once in all: at the node of lowest generation that
    keeps it (ties in walk order), so a recurrent weight every step saves counts
    at step 0, and h_t, saved by step t and by step t+1, counts at step t.
    Arrays are told apart by identity, so two views of one buffer (the W^T a
    composed step makes each step) count as two. Walk before backward frees
    the graph.

    Returns (table, costs): a text table, and {(layer, step) or None: StepCost}.
    """
    graph = unrolled_graph(root, states)
    costs = {key: [0, 0, 0] for key in graph.steps + [None]}
    order = {node: i for i, node in enumerate(graph.nodes)}
    counted = set()
    for node in sorted(graph.nodes, key=lambda n: (n.generation, order[n])):
        cost = costs[graph.cluster.get(node)]
        cost[0] += 1
        for column, arrays in ((1, _saved_arrays(node)), (2, _ctx_arrays(node))):
            for a in arrays:
                if id(a) not in counted:
                    counted.add(id(a))
                    cost[column] += int(a.nbytes)
    costs = {key: StepCost(*c) for key, c in costs.items()}
    return _table(costs), costs


def _is_array(a):
    return hasattr(a, "nbytes") and hasattr(a, "dtype") and not isinstance(a, Tensor)


def _saved_arrays(node):
    return [a for a in getattr(node, "_saved", ()) if _is_array(a)]


def _ctx_arrays(node):
    arrays = []
    for value in getattr(node, "__dict__", {}).values():
        for a in (value if isinstance(value, (tuple, list)) else (value,)):
            if _is_array(a):
                arrays.append(a)
    return arrays


def _table(costs):
    rows = [(str(key[0]), str(key[1]), c) for key, c in costs.items() if key is not None]
    rows.append(("other", "", costs[None]))
    total = StepCost(*(sum(c[i] for c in costs.values()) for i in range(3)))
    rows.append(("total", "", total))
    header = f"{'layer':>5}  {'step':>5}  {'ops':>7}  {'saved bytes':>13}  {'ctx bytes':>11}"
    lines = [header, "-" * len(header)]
    lines += [f"{a:>5}  {b:>5}  {c.ops:>7,}  {c.saved_bytes:>13,}  {c.ctx_bytes:>11,}" for a, b, c in rows]
    return "\n".join(lines)
