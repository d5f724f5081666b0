"""The unrolled-graph panel: the nodes of a traced forward, each in its (layer, step)
cluster, and the gradient each edge carries.

The clusters are those of :func:`tinygrad_rnn.study.graph.unrolled_graph`, given the
trace's states; an edge's number is ||dL/dv||, the Frobenius norm of the gradient of
the loss at the value v the edge carries (the value's gradient as a whole, as
``graph.to_dot`` labels it), read with one ``tg.grad`` over all of them. An edge into a
parameter's per-step alias theta_t = identity(theta) carries dL/dtheta_t, step t's share
of the parameter's gradient, so the parameter can be drawn once with one coloured edge
to every step.
"""
import numpy as np

from ... import backend
from ...engine import grad
from ...tensor import Tensor
from .. import graph as graph_module
from ..tracing import Identity
from .jsonable import round_number

NO_CLUSTER = (-1, -1)


def collect(trace, loss, gates=None, param_names=None):
    """The graph panel's data for ``trace`` and the ``loss`` computed from it (its graph not freed:
    before a backward, or after one with ``retain_graph=True``).

    Args:
        trace: a :class:`~tinygrad_rnn.study.tracing.Trace`.
        loss: the scalar Tensor whose graph is drawn.
        gates: {(k, t): {gate name: values array}} to name the gate nodes, or None.
        param_names: {id(tensor): name} for the leaves that are not the model's parameters
            (e.g. a readout inside the loss), or None.
    Returns: {"nodes": [[op, label, shape, k, t]], "leaves": [[name, shape, is_parameter, k, t,
        grad norm]], "edges": [[source, target, norm]], "roots": [node indices]}; a source
        j < 0 is leaf -j-1, k = t = -1 means no cluster, a norm is None where no gradient flows.
    """
    states = _states_in_graph(trace, loss)
    unrolled = graph_module.unrolled_graph(loss, states)
    index = {node: i for i, node in enumerate(unrolled.nodes)}
    leaf_index = {id(t): j for j, t in enumerate(unrolled.leaves)}
    labels = _labels(trace, unrolled, gates or {})
    names = {id(p): name for name, p in trace.params.items()}
    names.update(param_names or {})
    edges, carried, leaf_users = _edges(unrolled, index, leaf_index)
    norms = _gradient_norms(loss, carried, unrolled.leaves)
    nodes = [[type(n).__name__, labels.get(n, ""), _shape(n), *unrolled.cluster.get(n, NO_CLUSTER)]
             for n in unrolled.nodes]
    leaves = [[names.get(id(t), "input" if not t.requires_grad else "leaf"), list(t.shape), id(t) in names,
               *_leaf_cluster(t, leaf_users.get(id(t), ())), norms.get(("leaf", id(t)))] for t in unrolled.leaves]
    edge_rows = [[source, target, norms.get(key)] for source, target, key in edges]
    roots = sorted({index[t.grad_fn] for t in unrolled.roots})
    return {"nodes": nodes, "leaves": leaves, "edges": edge_rows, "roots": roots}


def _states_in_graph(trace, loss):
    """{(k, t): parts} of the trace's states that the loss depends on; t = -1 for initial states.
    A part nothing reads (the last c of an LSTM whose loss reads h) is not in the graph."""
    known = set(graph_module.unrolled_graph(loss).nodes)
    states = {}
    for k in range(trace.num_layers):
        for t in range(-1, trace.steps):
            state = trace.initial_states[k] if t < 0 else trace.states[k][t]
            parts = tuple(p for p in (state if isinstance(state, tuple) else (state,))
                          if p.grad_fn is None or p.grad_fn in known)
            if parts:
                states[(k, t)] = parts
    return states


def _labels(trace, unrolled, gates):
    """{node: label}: a state part ("h_3"), a parameter's alias ("weight_hh"), a named gate ("f")."""
    labels = {}
    from ..telemetry import part_names
    for k in range(trace.num_layers):
        for t, state in enumerate(trace.states[k]):
            parts = state if isinstance(state, tuple) else (state,)
            for name, part in zip(part_names(trace.cells[k], len(parts)), parts):
                if part.grad_fn is not None:
                    labels[part.grad_fn] = f"{name}_{t}"
    for name, aliases in trace.aliases.items():
        for alias in aliases:
            labels[alias.grad_fn] = name
    by_cluster = {}
    for node, key in unrolled.cluster.items():
        by_cluster.setdefault(key, []).append(node)
    for key, values in gates.items():
        for node in by_cluster.get(key, ()):
            if type(node).__name__ not in ("Sigmoid", "Tanh") or node in labels:
                continue
            out = node._out_arrays[0]
            for gate, array in values.items():
                if out.shape == array.shape and bool((out == array).all()):
                    labels[node] = gate
                    break
    return labels


def _edges(unrolled, index, leaf_index):
    """[(source, target, key)] for every input of every node; {key: Tensor} of the values whose
    gradient colours an edge: the value itself, or for an edge into an identity node its output
    (a parameter's alias: the step's share); {id(leaf): the clusters of its users}."""
    edges, carried, leaf_users = [], {}, {}
    for node in unrolled.nodes:
        alias_out = node._output_tensor(0) if isinstance(node, Identity) else None
        for inp in node.inputs:
            if not isinstance(inp, Tensor):
                continue
            inp = unrolled.source(inp)
            if inp.grad_fn is not None:
                source = index[inp.grad_fn]
                value = alias_out if alias_out is not None else inp
            else:
                source = -1 - leaf_index[id(inp)]
                value = alias_out
                leaf_users.setdefault(id(inp), set()).add(unrolled.cluster.get(node))
            key = None
            if value is not None and value.requires_grad:
                key = ("node", id(value.grad_fn), value._index)
                carried.setdefault(key, value)
            edges.append((source, index[node], key))
    return edges, carried, leaf_users


def _gradient_norms(loss, carried, leaves):
    """{key: ||dL/dv||} for the carried values and the leaves that require grad (None where the
    loss does not depend on them), in one pass."""
    keys = list(carried)
    wanted = [carried[k] for k in keys]
    leaf_keys = [("leaf", id(t)) for t in leaves if t.requires_grad]
    wanted += [t for t in leaves if t.requires_grad]
    if not wanted:
        return {}
    found = grad(loss, wanted, retain_graph=True, allow_unused=True)
    return {key: None if g is None else _norm(g.data) for key, g in zip(keys + leaf_keys, found)}


def _norm(array):
    array = backend.to_device(array, "cpu").astype(np.float64)
    return round_number(float(np.sqrt((array * array).sum())))


def _shape(node):
    shapes = [list(a.shape) for a in node._out_arrays]
    return shapes[0] if len(shapes) == 1 else shapes


def _leaf_cluster(leaf, clusters):
    """The one cluster all users of a non-parameter leaf lie in (a step's input x_t), else none."""
    clusters = set(clusters)
    if leaf.requires_grad or len(clusters) != 1 or None in clusters:
        return NO_CLUSTER
    return clusters.pop()
