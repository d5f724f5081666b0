"""Tree-structured networks: a recursive network and the Tree-LSTMs of Tai, Socher & Manning (2015).

A :class:`Tree` holds a value (the node's input) and its ordered children. The
models give every node a state computed from its own input and its children's
states, leaves first, so that the root's state sums up the whole tree:

- :class:`RecursiveNN`, the recursive network of Socher et al. (2011):
  ``h = tanh(W [h_left; h_right] + b)``;
- :class:`ChildSumTreeLSTM`, any number of unordered children, one forget gate per child;
- :class:`NaryTreeLSTM`, at most N ordered children, each position with its own matrices.

The evaluation never recurses. :class:`TreeBatch` numbers the nodes of a batch
of trees in post-order with an explicit stack and gives each node its height
(0 for a leaf, one more than its tallest child otherwise). All nodes of one
height, across every tree of the batch, then run together, lowest level first:
every child is done before its parent, and one matmul serves a whole level. A
chain of 5,000 nodes is 5,000 levels of one node and runs, forward and
backward, like a 5,000-step RNN.

Inputs: a model built with ``vocab_size`` owns an Embedding and takes token ids
as node values; otherwise values are vectors of ``input_size`` features
(Tensors, which then receive gradients, or arrays). A node whose value is None
has input zero, as the inner nodes of a constituency tree do.

Every model returns ``(output, state) = model(trees)``, as ``nn.RNN`` and
``nn.LSTM`` do: ``output`` (N, H) is the h of every node, tree after tree, each
tree in post-order (the order of :meth:`Tree.nodes`), and ``state`` is the
roots' state, one row per tree: h (B, H) for RecursiveNN, (h, c) each (B, H)
for the Tree-LSTMs.

A sequence can be read by a tree too: :meth:`TreeNetwork.over_sequence` puts
the balanced binary tree of :func:`balanced_tree` over the T positions of a
(T, B, I) batch (the inputs at the leaves, inner nodes joining two children)
and runs it level by level with the whole batch in each op. A leaf's state
then reaches the root through ceil(log2 T) nodes where a chain needs up to T
steps, the shorter gradient path that recursive networks offer for long-term
dependencies (Goodfellow, Bengio & Courville 2016, section 10.6).
"""
import functools
import numbers

import numpy as np

from .. import backend, creation
from ..ops import IndexAdd
from ..tensor import Tensor, not_a_tensor
from ..xp import broadcast_to, concatenate, split, stack
from .cells import project_input, uniform_parameter
from .layers import Embedding
from .module import Module


class Tree:
    """A node of an ordered tree: ``value`` (its input: a token id, a vector, or None) and ``children``.

    Example::

        PLUS = 10
        expr = Tree(PLUS, [Tree(3), Tree(4)])      # the expression 3 + 4, tokens as ids
        [node.value for node in expr.nodes()]      # [3, 4, 10]: post-order
    """

    __slots__ = ("value", "children")

    def __init__(self, value=None, children=()):
        if isinstance(children, Tree):
            raise TypeError("Tree: children must be a sequence of Trees, got a single Tree (wrap it in a list)")
        children = tuple(children)
        for i, child in enumerate(children):
            if not isinstance(child, Tree):
                raise TypeError(f"Tree: child {i} is a {type(child).__name__}, expected a Tree")
        self.value, self.children = value, children

    def nodes(self):
        """Every node, each child before its parent (post-order), walked with an explicit stack."""
        stack = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                yield node
            else:
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.children))

    def size(self):
        """The number of nodes."""
        return sum(1 for _ in self.nodes())

    def height(self):
        """0 for a leaf, else one more than the tallest child's height."""
        heights = {}
        for node in self.nodes():
            heights[id(node)] = 1 + max(heights[id(c)] for c in node.children) if node.children else 0
        return heights[id(self)]

    def __repr__(self):
        return f"Tree({self.value!r}, <{len(self.children)} children>)"


class TreeBatch:
    """The nodes of a batch of trees, stored level by level, and the edges between levels.

    Nodes are numbered in post-order, tree after tree (the rows of a model's
    ``output``). For the evaluation they are reordered by height, post-order
    within a height ("level order"): ``levels[l]`` holds the nodes of height l.
    A batch can be built once and passed to a model in place of the trees.

    Args: trees, a Tree or a non-empty sequence of Trees.
    """

    def __init__(self, trees):
        trees = [trees] if isinstance(trees, Tree) else list(trees)
        if not trees:
            raise ValueError("TreeBatch: got no trees, expected at least one")
        values, children, heights, roots, self._starts = _flatten(trees)
        self.num_trees, self.num_nodes = len(trees), len(values)
        degrees = np.array([len(c) for c in children])
        self._widest = int(np.argmax(degrees))        # the first node with the most children
        self.max_children = int(degrees[self._widest])
        heights = np.array(heights)
        self._post = np.argsort(heights, kind="stable")            # level-order row -> post-order node
        row = np.empty_like(self._post)
        row[self._post] = np.arange(self.num_nodes)                # post-order node -> level-order row
        self.output_rows, self.root_rows = row, row[roots]
        self.values = [values[g] for g in self._post]
        self.sizes = np.bincount(heights).tolist()
        self.levels = _levels(children, degrees, heights, row, self.sizes)

    def where(self, row):
        """Names the node at level-order ``row`` for error messages."""
        node = int(self._post[row])
        tree = int(np.searchsorted(self._starts, node, side="right")) - 1
        return f"node {node - self._starts[tree]} (post-order) of tree {tree}"

    def check_arity(self, arity, name):
        """ValueError unless every node has at most ``arity`` children (None: any number)."""
        if arity is not None and self.max_children > arity:
            tree = int(np.searchsorted(self._starts, self._widest, side="right")) - 1
            raise ValueError(f"{name}: node {self._widest - self._starts[tree]} (post-order) of tree {tree} has "
                             f"{self.max_children} children, expected at most {arity}")


def _flatten(trees):
    """Post-order over all trees with an explicit stack: values, children (node numbers), heights, roots, starts."""
    values, children, heights, roots, starts = [], [], [], [], []
    for t, tree in enumerate(trees):
        if not isinstance(tree, Tree):
            raise TypeError(f"TreeBatch: trees[{t}] is a {type(tree).__name__}, expected a Tree")
        starts.append(len(values))
        stack, finished, open_nodes = [(tree, False)], [], set()
        while stack:
            node, expanded = stack.pop()
            if not expanded:
                if id(node) in open_nodes:
                    raise ValueError(f"TreeBatch: tree {t} contains itself (a cycle), so it is not a tree")
                open_nodes.add(id(node))
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.children))
                continue
            open_nodes.discard(id(node))
            k = len(node.children)
            kids = finished[len(finished) - k:]           # the last k finished nodes are its children
            del finished[len(finished) - k:]
            finished.append(len(values))
            values.append(node.value)
            children.append(kids)
            heights.append(1 + max(heights[c] for c in kids) if kids else 0)
        roots.append(finished.pop())
    return values, children, heights, roots, starts


def _levels(children, degrees, heights, row, sizes):
    """One :class:`Level` per height, with the edges from its nodes' children."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    parent = np.repeat(np.arange(len(children)), degrees)
    child = np.fromiter((c for kids in children for c in kids), dtype=np.int64, count=int(degrees.sum()))
    position = np.arange(len(child)) - np.repeat(np.cumsum(degrees) - degrees, degrees)
    order = np.argsort(row[parent], kind="stable")        # edges sorted by parent row, positions in order
    parent, child, position = parent[order], child[order], position[order]
    parent_level, child_level = heights[parent], heights[child]
    bounds = np.searchsorted(parent_level, np.arange(len(sizes) + 1))
    levels = [Level(0, sizes[0], None)]
    for h in range(1, len(sizes)):
        e = slice(bounds[h], bounds[h + 1])
        src = child_level[e]
        links = (src, row[child[e]] - offsets[src], row[parent[e]] - offsets[h], position[e])
        levels.append(Level(h, sizes[h], links, sizes))
    return levels


class _Edges:
    """Edges from children in lower levels to the ``size`` nodes of one level.

    Edge e joins row ``rows[e]`` of level ``levels[e]`` (the child) to row
    ``parents[e]`` of this level. Edges are grouped by the child's level, so the
    children's states are gathered with one index per level they come from.
    """

    def __init__(self, levels, rows, parents, size, level_sizes):
        order = np.argsort(levels, kind="stable")
        levels, rows = levels[order], rows[order]
        self.parents, self.size = parents[order], size
        self.sources = []
        for s in np.unique(levels):
            r = rows[levels == s]
            whole = len(r) == level_sizes[s] and np.array_equal(r, np.arange(len(r)))
            self.sources.append((int(s), None if whole else r))
        self.direct = len(self.parents) == size and np.array_equal(self.parents, np.arange(size))

    def gather(self, states):
        """(E, H): each edge's child state, from ``states``, the list of the lower levels' tensors."""
        parts = [states[s] if r is None else states[s][r] for s, r in self.sources]
        return parts[0] if len(parts) == 1 else concatenate(parts, axis=0)

    def to_edges(self, x):
        """(E, ...): for each edge, the row of ``x`` (size, ...) that belongs to its parent."""
        return x if self.direct else x[self.parents]

    def to_parents(self, x):
        """(size, ...): the sum of ``x`` (E, ...) over each parent's edges, zero for a parent with none."""
        if self.direct:
            return x
        index = backend.to_device(self.parents, x.device)
        return IndexAdd.apply(x, index, (self.size,) + x.shape[1:])


class Level:
    """The ``size`` nodes of one height and the edges to their children (``edges`` is None for the leaves).

    ``links`` holds, per edge, the child's level and row, the parent's row in
    this level and the child's position among its siblings (from 0).
    """

    def __init__(self, height, size, links=None, level_sizes=None):
        self.height, self.size = height, size
        self._links, self._level_sizes, self._by_position = links, level_sizes, {}
        self.edges = None if links is None else _Edges(*links[:3], size, level_sizes)

    def child(self, k, states):
        """(size, H): the state of each node's k-th child (from 0), zeros where a node has none."""
        if k not in self._by_position:
            keep = None if self._links is None else self._links[3] == k
            self._by_position[k] = None if keep is None or not keep.any() else _Edges(
                *(a[keep] for a in self._links[:3]), self.size, self._level_sizes)
        edges = self._by_position[k]
        if edges is None:
            like = states[0]
            return creation.zeros(self.size, like.shape[1], dtype=like.dtype, device=like.device)
        return edges.to_parents(edges.gather(states))


def _join(parts, axis):
    return parts[0] if len(parts) == 1 else concatenate(parts, axis=axis)


class TreeNetwork(Module):
    """Base of the tree models: the node inputs, their projection, the level-by-level evaluation.

    Holds ``weight_ih`` (gates*H, I) and ``bias`` (gates*H,), and ``embedding``
    (vocab_size, I) when ``vocab_size`` is given. A subclass sets ``gates`` and
    ``arity`` (the most children a node may have; None for any number) and
    defines ``recurrent_weights()``, what ``compose`` needs of its weights,
    prepared once per forward, and ``compose(p, level, states, weights)``: the
    state of one level's nodes, a tuple of (size, H) tensors, from their
    projected inputs ``p`` = x W_ih^T + b (size, gates*H) and ``states``, a
    tuple (one entry per state part) of the lists of lower levels' tensors
    (None for the leaves, which have no children).
    """

    gates = 1
    arity = None

    def __init__(self, input_size, hidden_size, vocab_size=None, bias=True, *, device=None, dtype=None):
        name = type(self).__name__
        for arg, value in (("input_size", input_size), ("hidden_size", hidden_size), ("vocab_size", vocab_size)):
            if value is not None and (not isinstance(value, numbers.Integral) or value <= 0):
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        self.input_size, self.hidden_size, self.vocab_size = input_size, hidden_size, vocab_size
        self.embedding = Embedding(vocab_size, input_size, device=device, dtype=dtype) if vocab_size else None
        rows = self.gates * hidden_size
        self.weight_ih = uniform_parameter((rows, input_size), hidden_size, device, dtype)
        self.bias = uniform_parameter((rows,), hidden_size, device, dtype) if bias else None

    def recurrent_weights(self):
        raise NotImplementedError(f"{type(self).__name__} must define recurrent_weights()")

    def compose(self, p, level, states, weights):
        raise NotImplementedError(f"{type(self).__name__} must define compose(p, level, states, weights)")

    def forward(self, trees):
        """(output, state) for a Tree, a sequence of Trees or a TreeBatch; see the module docstring."""
        batch = trees if isinstance(trees, TreeBatch) else TreeBatch(trees)
        batch.check_arity(self.arity, type(self).__name__)
        weights = self.recurrent_weights()
        states = None
        for level, p in zip(batch.levels, self._project(batch)):
            new = self.compose(p, level, states, weights)
            if states is None:
                states = tuple([part] for part in new)
            else:
                for part, tensor in zip(states, new):
                    part.append(tensor)
        stacked = [_join(part, 0) for part in states]
        roots = tuple(s[batch.root_rows] for s in stacked)
        return stacked[0][batch.output_rows], roots[0] if len(roots) == 1 else roots

    def over_sequence(self, x):
        """Read each sequence of a batch with the balanced binary tree over its positions.

        The leaves are the inputs x_1 .. x_T; the inner nodes, without input of
        their own, join two adjacent children each, as in :func:`balanced_tree`.
        The tree has height ceil(log2 T), and each level runs as one batched
        step for all its nodes and all B sequences, so T = 1000 takes 10 levels,
        not 1000 steps. The result equals, in value and gradient, the general
        evaluation ``self([balanced_tree(T, [x[t, b] for t in range(T)]) for b in range(B)])``
        with its rows arranged by sequence.

        Args: x, a Tensor (T, B, I) of inputs (or (T, B) token ids for a model built with vocab_size).
        Returns: ``(output, state)``: output (2T - 1, B, H), the h of every node in the
        post-order of ``balanced_tree(T)``; state, the roots' state as ``forward`` gives it,
        h (B, H), or (h, c) for the Tree-LSTMs.

        Example::

            lstm = NaryTreeLSTM(2, 16)
            output, (h, c) = lstm.over_sequence(tg.randn(256, 32, 2))    # 8 levels; h (32, 16)
        """
        name = f"{type(self).__name__}.over_sequence"
        if self.arity is not None and self.arity < 2:
            raise ValueError(f"{name}: the tree over a sequence has nodes of two children, but this model takes "
                             f"at most {self.arity} (build it with arity >= 2)")
        x = self._sequence_input(x, name)
        steps, batch = x.shape[0], x.shape[1]
        weights = self.recurrent_weights()
        p = project_input(x, self.weight_ih, self.bias).reshape(steps * batch, self.weight_ih.shape[0])
        frontier = self.compose(p, Level(0, steps * batch), None, weights)
        h_by_level = [frontier[0]]
        while frontier[0].shape[0] > batch:
            nodes = frontier[0].shape[0] // batch
            level = _Pairs(_pairs(nodes), batch)
            new = self.compose(self._inner_projection(level.size, p), level, tuple([s] for s in frontier), weights)
            h_by_level.append(new[0])
            if 2 * level.size < frontier[0].shape[0]:      # the nodes left unpaired move up as they are
                new = tuple(concatenate([n, s[2 * level.size:]], axis=0) for n, s in zip(new, frontier))
            frontier = new
        hidden = h_by_level[0].shape[1]
        output = _join(h_by_level, 0).reshape(2 * steps - 1, batch, hidden)[_pairing(steps).post_order]
        return output, frontier[0] if len(frontier) == 1 else frontier

    def _sequence_input(self, x, name):
        """(T, B, I) inputs from ``x``: checked, and looked up in the embedding for a model with vocab_size."""
        if not isinstance(x, Tensor):
            raise not_a_tensor(name, "input", x)
        if self.embedding is not None:
            if x.ndim != 2 or x.dtype.kind not in "iu":
                raise ValueError(f"{name}: a model with vocab_size takes token ids of shape (seq, batch) and an "
                                 f"integer dtype, got shape {x.shape} and dtype {x.dtype.name}")
            x = self.embedding(x)
        elif x.ndim != 3:
            raise ValueError(f"{name}: input has {x.ndim} dims, expected 3 (seq, batch, feature)")
        if x.shape[2] != self.input_size:
            raise ValueError(f"{name}: input has {x.shape[2]} features, expected input_size={self.input_size}")
        if x.shape[0] == 0:
            raise ValueError(f"{name}: input of shape {x.shape} has no time steps; expected at least one")
        if x.dtype != self.weight_ih.dtype:
            raise TypeError(f"{name}: input is {x.dtype.name} but the parameters are {self.weight_ih.dtype.name}; "
                            "convert one of them so that they match")
        return x

    def _inner_projection(self, rows, like):
        """(rows, gates*H): what an inner node, which has no input, gets in place of x W_ih^T + b: the bias."""
        zeros = creation.zeros(rows, like.shape[1], dtype=like.dtype, device=like.device)
        return zeros if self.bias is None else zeros + self.bias

    def _project(self, batch):
        """x W_ih^T + b for every node, one matmul for the batch, split into levels."""
        rows, x = self._inputs(batch)
        n, width = batch.num_nodes, self.weight_ih.shape[0]
        if x is None:
            p = creation.zeros(n, width, dtype=self.weight_ih.dtype, device=self.weight_ih.device)
        else:
            p = x @ self.weight_ih.T
            if len(rows) < n:                                   # nodes without a value have input zero
                p = IndexAdd.apply(p, backend.to_device(np.asarray(rows), p.device), (n, width))
        if self.bias is not None:
            p = p + self.bias
        return split(p, batch.sizes, axis=0)

    def _inputs(self, batch):
        """(rows, x): the level-order rows of the nodes that have a value, and their inputs (len(rows), I)."""
        rows = [r for r, v in enumerate(batch.values) if v is not None]
        if not rows:
            return rows, None
        if self.embedding is not None:
            return rows, self.embedding(self._token_ids(batch, rows))
        return rows, self._vectors(batch, rows)

    def _token_ids(self, batch, rows):
        name = type(self).__name__
        for r in rows:
            v = batch.values[r]
            if not isinstance(v, numbers.Integral) or isinstance(v, bool):
                raise TypeError(f"{name}: {batch.where(r)} has a value of type {type(v).__name__}; a model with "
                                f"vocab_size takes token ids (ints) as node values")
            if not 0 <= v < self.vocab_size:
                raise ValueError(f"{name}: {batch.where(r)} has token id {v}, expected one in "
                                 f"[0, {self.vocab_size})")
        ids = np.array([batch.values[r] for r in rows], dtype=np.int64)
        return Tensor(ids, device=self.weight_ih.device)

    def _vectors(self, batch, rows):
        name, like = type(self).__name__, self.weight_ih
        vectors = []
        for r in rows:
            v = batch.values[r]
            if isinstance(v, numbers.Number):
                raise TypeError(f"{name}: {batch.where(r)} has the number {v!r} as its value; a model without "
                                f"vocab_size takes vectors of {self.input_size} features (pass vocab_size to "
                                "use token ids)")
            if not isinstance(v, Tensor):
                v = np.asarray(backend.to_device(v, "cpu") if hasattr(v, "__cuda_array_interface__") else v)
                if v.dtype.kind not in "biuf":
                    raise TypeError(f"{name}: {batch.where(r)} has a value of dtype {v.dtype}, expected numbers")
            if tuple(v.shape) != (self.input_size,):
                raise ValueError(f"{name}: {batch.where(r)} has an input of shape {tuple(v.shape)}, expected "
                                 f"({self.input_size},)")
            vectors.append(v)
        if any(isinstance(v, Tensor) for v in vectors):
            return stack([v if isinstance(v, Tensor) else Tensor(v, dtype=like.dtype, device=like.device)
                          for v in vectors], axis=0)
        return Tensor(np.stack(vectors), dtype=like.dtype, device=like.device)

    def extra_repr(self):
        vocab = f", vocab_size={self.vocab_size}" if self.vocab_size else ""
        return f"{self.input_size}, {self.hidden_size}{vocab}" + ("" if self.bias is not None else ", bias=False")


class RecursiveNN(TreeNetwork):
    """Recursive neural network (Socher, Lin, Ng & Manning 2011) over trees of at most ``arity`` children:

        h_j = tanh(W_ih x_j + W_hh [h_j1; ...; h_jN] + b)

    With N = 2 and no input at inner nodes this is Socher et al.'s composition
    h = tanh(W [h_left; h_right] + b); a leaf is h = tanh(W_ih x + b), a learned
    layer where the paper uses the word vector itself, so that I and H may
    differ. A missing child (a node with fewer than N) counts as h = 0.

    Parameters: weight_ih (H, I), bias (H,), weight_hh (H, N*H) = [W_1 ... W_N],
    the columns of child position k in W_k; embedding (V, I) with vocab_size.
    Shape: trees (B of them, N nodes in all) -> output (N, H), h (B, H).

    Example::

        net = RecursiveNN(8, 16, vocab_size=12)
        output, h = net([Tree(10, [Tree(3), Tree(4)])])      # h: (1, 16)
    """

    def __init__(self, input_size, hidden_size, vocab_size=None, bias=True, arity=2, *, device=None, dtype=None):
        _check_arity(arity, "RecursiveNN")
        self.arity = arity
        super().__init__(input_size, hidden_size, vocab_size, bias, device=device, dtype=dtype)
        self.weight_hh = uniform_parameter((hidden_size, arity * hidden_size), hidden_size, device, dtype)

    def recurrent_weights(self):
        return self.weight_hh.T

    def compose(self, p, level, states, w_hh):
        if states is None:
            return (p.tanh(),)
        hs, = states
        children = _join([level.child(k, hs) for k in range(self.arity)], axis=1)   # (size, N*H)
        return ((p + children @ w_hh).tanh(),)


class ChildSumTreeLSTM(TreeNetwork):
    """Child-Sum Tree-LSTM (Tai, Socher & Manning 2015, eqs. 2-8) for trees with any number of children:

        h~_j  = sum_k h_k                                    over the children k of node j
        i_j   = sigmoid(W_i x_j + U_i h~_j + b_i)
        f_jk  = sigmoid(W_f x_j + U_f h_k  + b_f)            one forget gate per child
        o_j   = sigmoid(W_o x_j + U_o h~_j + b_o)
        u_j   = tanh(W_u x_j + U_u h~_j + b_u)
        c_j   = i_j * u_j + sum_k f_jk * c_k
        h_j   = o_j * tanh(c_j)

    A leaf has no children: c = i * u. The children enter only through sums,
    so the result does not depend on their order. On a chain (one child each)
    it is an LSTM run from the bottom leaf to the root.

    Parameters, rows stacked i | o | u | f: weight_ih (4H, I) = W, bias (4H,) = b,
    weight_hh (4H, H) = U; embedding (V, I) with vocab_size.
    Shape: trees (B of them, N nodes in all) -> output (N, H), (h, c) each (B, H).

    Example::

        lstm = ChildSumTreeLSTM(8, 16, vocab_size=12)
        output, (h, c) = lstm([Tree(10, [Tree(3), Tree(4), Tree(5)])])
    """

    gates = 4

    def __init__(self, input_size, hidden_size, vocab_size=None, bias=True, *, device=None, dtype=None):
        super().__init__(input_size, hidden_size, vocab_size, bias, device=device, dtype=dtype)
        self.weight_hh = uniform_parameter((4 * hidden_size, hidden_size), hidden_size, device, dtype)

    def recurrent_weights(self):
        """(U_iou^T (H, 3H), U_f^T (H, H)), split once per forward."""
        u_iou, u_f = split(self.weight_hh, [3 * self.hidden_size, self.hidden_size], axis=0)
        return u_iou.T, u_f.T

    def compose(self, p, level, states, weights):
        H = self.hidden_size
        z_iou, p_f = split(p, [3 * H, H], axis=1)
        forget = None
        if states is not None:
            u_iou, u_f = weights
            edges = level.edges
            h_k, c_k = edges.gather(states[0]), edges.gather(states[1])     # every child's state, (E, H)
            z_iou = z_iou + edges.to_parents(h_k) @ u_iou                   # U h~_j
            f = (edges.to_edges(p_f) + h_k @ u_f).sigmoid()                 # f_jk, (E, H)
            forget = edges.to_parents(f * c_k)                              # sum_k f_jk * c_k
        i, o, u = split(z_iou, H, axis=1)
        c = i.sigmoid() * u.tanh()
        if forget is not None:
            c = c + forget
        return o.sigmoid() * c.tanh(), c


class NaryTreeLSTM(TreeNetwork):
    """N-ary Tree-LSTM (Tai, Socher & Manning 2015, eqs. 9-14) for trees of at most N ordered children:

        i_j   = sigmoid(W_i x_j + sum_l U_i^(l)  h_jl + b_i)
        f_jk  = sigmoid(W_f x_j + sum_l U_fk^(l) h_jl + b_f)      k = 1..N, a forget gate per child
        o_j   = sigmoid(W_o x_j + sum_l U_o^(l)  h_jl + b_o)
        u_j   = tanh(W_u x_j + sum_l U_u^(l)  h_jl + b_u)
        c_j   = i_j * u_j + sum_l f_jl * c_jl
        h_j   = o_j * tanh(c_j)

    h_jl, c_jl are the state of node j's l-th child; a missing child (a leaf,
    or a node with fewer than N children) counts as zeros. Each child position
    has its own matrices, so the order of the children matters; with N = 2 it
    is the binary Tree-LSTM of constituency trees.

    Parameters: weight_ih (4H, I) = W and bias (4H,) = b, rows stacked
    i | f | o | u; weight_hh ((N+3)H, N*H) = U, rows stacked i | f_1 .. f_N | o | u,
    the columns of child position l holding U^(l); embedding (V, I) with vocab_size.
    Shape: trees (B of them, N nodes in all) -> output (N, H), (h, c) each (B, H).

    Example::

        lstm = NaryTreeLSTM(8, 16, vocab_size=12)              # binary
        output, (h, c) = lstm([Tree(10, [Tree(3), Tree(4)])])
    """

    gates = 4

    def __init__(self, input_size, hidden_size, vocab_size=None, bias=True, arity=2, *, device=None, dtype=None):
        _check_arity(arity, "NaryTreeLSTM")
        self.arity = arity
        super().__init__(input_size, hidden_size, vocab_size, bias, device=device, dtype=dtype)
        self.weight_hh = uniform_parameter(((arity + 3) * hidden_size, arity * hidden_size), hidden_size,
                                           device, dtype)

    def recurrent_weights(self):
        return self.weight_hh.T

    def compose(self, p, level, states, u):
        H, N = self.hidden_size, self.arity
        p_i, p_f, p_o, p_u = split(p, H, axis=1)
        if states is None:
            c = p_i.sigmoid() * p_u.tanh()
            return p_o.sigmoid() * c.tanh(), c
        hs, cs = states
        r = split(_join([level.child(k, hs) for k in range(N)], axis=1) @ u, H, axis=1)   # i | f_1..f_N | o | u
        c = (p_i + r[0]).sigmoid() * (p_u + r[N + 2]).tanh()
        for k in range(N):
            c = c + (p_f + r[1 + k]).sigmoid() * level.child(k, cs)
        return (p_o + r[N + 1]).sigmoid() * c.tanh(), c


def _check_arity(arity, name):
    if not isinstance(arity, numbers.Integral) or isinstance(arity, bool) or arity < 1:
        raise ValueError(f"{name}: arity must be a positive int, got {arity!r}")


# ---------------------------------------------------------------- trees over sequences
def balanced_tree(length, values=None):
    """The balanced binary tree over the positions 0 .. length-1 of a sequence, as :meth:`TreeNetwork.over_sequence`
    builds it: the leaves, left to right, hold ``values`` (the positions themselves when None), inner nodes
    hold None. With d = ceil(log2 length), the first length - 2^(d-1) pairs of adjacent leaves are joined
    and the other leaves move up unpaired, which leaves 2^(d-1) nodes; from there every level pairs all
    its nodes. So the tree has height d and every leaf is at depth d or d - 1 (the complete binary tree).

    Example::

        balanced_tree(5)    # (((0 1) 2) (3 4)): leaves 0 and 1 at depth 3, the others at depth 2
    """
    if not isinstance(length, numbers.Integral) or isinstance(length, bool) or length < 1:
        raise ValueError(f"balanced_tree: length must be a positive int, got {length!r}")
    if values is None:
        values = range(length)
    elif len(values) != length:
        raise ValueError(f"balanced_tree: got {len(values)} values for {length} leaves")
    nodes = [Tree(v) for v in values]
    for left, right in _pairing(length).children:
        nodes.append(Tree(None, [nodes[left], nodes[right]]))
    return nodes[-1]


class _Pairing:
    """The shape of ``balanced_tree(length)``, nodes numbered level by level (the leaves 0 .. length-1 first).

    ``children[j]`` is the (left, right) pair of inner node length + j, ``depth[t]``
    the number of inner nodes above leaf t (its gradient path to the root), and
    ``post_order`` the node numbers in post-order, ``Tree.nodes()``'s order.
    """

    def __init__(self, length):
        frontier, self.children = list(range(length)), []
        while len(frontier) > 1:
            paired = []
            for k in range(0, 2 * _pairs(len(frontier)), 2):
                self.children.append((frontier[k], frontier[k + 1]))
                paired.append(length + len(self.children) - 1)
            frontier = paired + frontier[len(paired) * 2:]
        self.post_order, depth = [], np.zeros(2 * length - 1, dtype=np.int64)
        stack = [(2 * length - 2, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded or node < length:
                self.post_order.append(node)
                continue
            stack.append((node, True))
            for child in reversed(self.children[node - length]):
                depth[child] = depth[node] + 1
                stack.append((child, False))
        self.post_order = np.array(self.post_order, dtype=np.int64)
        self.depth = depth[:length]


def _pairs(nodes):
    """How many pairs a level of ``nodes`` >= 2 nodes joins: as many as bring it down to a power of two."""
    return nodes - 2 ** ((nodes - 1).bit_length() - 1)


@functools.lru_cache(maxsize=32)
def _pairing(length):
    return _Pairing(length)


def leaf_depths(length):
    """(length,) ints: each leaf's depth in ``balanced_tree(length)``, the number of inner nodes its state
    passes through to reach the root: ceil(log2 length) or one less; 0 for a tree of one leaf."""
    if not isinstance(length, numbers.Integral) or isinstance(length, bool) or length < 1:
        raise ValueError(f"leaf_depths: length must be a positive int, got {length!r}")
    return _pairing(length).depth.copy()


class _Pairs:
    """One level of the tree over a sequence, as ``compose`` reads a :class:`Level`: ``pairs`` parents, parent
    j joining nodes 2j and 2j+1 of the level below (the "frontier"), each node ``batch`` rows, one per sequence.

    The frontier's rows are node-major (node n, sequence b at row n*batch + b), so the children of all
    parents are its first 2*size rows in edge order (parent, side, sequence), and reshapes replace the
    gathers and scatter-adds of a general tree.
    """

    def __init__(self, pairs, batch):
        self.pairs, self.batch, self.size = pairs, batch, pairs * batch
        self.edges = self

    def child(self, k, states):
        """(size, H): each parent's k-th child (0 left, 1 right; zeros for k >= 2)."""
        frontier = states[-1]
        width = frontier.shape[1]
        if k >= 2:
            return creation.zeros(self.size, width, dtype=frontier.dtype, device=frontier.device)
        sides = frontier[:2 * self.size].reshape(self.pairs, 2, self.batch * width)
        return sides[:, k].reshape(self.size, width)

    def gather(self, states):
        """(2*size, H): the children's states, left and right of each parent in turn."""
        return states[-1][:2 * self.size]

    def to_edges(self, x):
        """(2*size, W): each parent's row of ``x`` (size, W), once for each of its two children."""
        width = x.shape[1]
        both = broadcast_to(x.reshape(self.pairs, 1, self.batch * width), (self.pairs, 2, self.batch * width))
        return both.reshape(2 * self.size, width)

    def to_parents(self, x):
        """(size, W): the sum over each parent's two children of ``x`` (2*size, W)."""
        width = x.shape[1]
        return x.reshape(self.pairs, 2, self.batch * width).sum(axis=1).reshape(self.size, width)
