"""Array helpers shared by the hand-tuned whole-sequence kernels of the built-in cells.

A kernel's parameters may include ``PROJECTED_CONTEXT``: a (B, G*H) array added to every
step's projected input (a layer's context, projected once: :mod:`tinygrad_rnn.nn.context`);
``projection`` adds it and :class:`RowGrads` sums its gradient over the steps.

A kernel keeps its buffers from one call to the next (:class:`Plans`): a *plan* holds the
arrays of one sequence shape and, built once, the views of them that each time step
reads, so that a step is its NumPy calls and nothing else: no buffer to fault in, no
view to build, as a hand-written NumPy loop would do it.
"""
import threading

import numpy as np

PROJECTED_CONTEXT = "projected_context"


class Plans:
    """A cell's kernel plans that no node holds, for the next call with the same key.

    A node leases a plan for its forward pass and holds it until its backward has run
    without ``retain_graph`` (``Scan.release``) or until the node itself is garbage; only
    then can another call get it. Two passes in flight therefore never share buffers, and
    a backward with ``retain_graph`` can run again on what its forward left. The kernels
    never hand out a view of a plan: outputs, final states and gradients are fresh arrays.
    At most ``KEEP`` free plans are kept, the most recently returned: a layer called on one
    shape after another rebuilds its buffers (as it would without plans) rather than hold
    idle ones; :func:`clear_plans` frees them."""

    KEEP = 1

    def __init__(self):
        self.free = []          # [(key, plan)], the most recently returned last
        self.lock = threading.Lock()    # two threads calling one layer never take the same plan

    def lease(self, key, build):
        """A :class:`Lease` on a free plan for ``key``, or on a new one made by ``build()``."""
        with self.lock:
            for k in range(len(self.free) - 1, -1, -1):
                if self.free[k][0] == key:
                    return Lease(self, key, self.free.pop(k)[1])
        return Lease(self, key, build())

    def give_back(self, key, plan):
        with self.lock:
            self.free.append((key, plan))
            if len(self.free) > self.KEEP:
                del self.free[0]


class Lease:
    """One node's hold on a plan; the plan goes back to its :class:`Plans` once, when
    :meth:`end` is called or the lease is garbage."""

    __slots__ = ("plans", "key", "plan")

    def __init__(self, plans, key, plan):
        self.plans, self.key, self.plan = plans, key, plan

    def end(self):
        plan, self.plan = self.plan, None
        if plan is not None:
            self.plans.give_back(self.key, plan)

    __del__ = end


class KernelPlan:
    """Base of a kernel's plan: its buffers for one shape (the subclass's ``__slots__``), the
    views each forward step reads (``_views()``) and what its backward pass uses
    (``_make_backward(variant)``). A plan kept for later calls (more than one step) builds its
    views and backward buffers once; a single step's plan builds them when asked, keeping
    nothing more on the node than ``kept``, the fields its backward reads."""

    __slots__ = ("forward_steps", "_backward")
    kept = ()

    def _start(self, steps):
        self.forward_steps = self._views() if steps > 1 else None
        self._backward = None

    def steps(self):
        """The views each forward step reads."""
        return self.forward_steps or self._views()

    def backward(self, variant=None):
        """What the backward pass uses (its buffers, its views), for ``variant`` (a kernel's
        choice, e.g. whether it may write over the forward's buffers); kept with the plan."""
        made = self._backward or {}
        back = made.get(variant)
        if back is None:
            back = self._make_backward(variant)
            if self.forward_steps is not None:
                self._backward = {**made, variant: back}
        return back


def clear_plans(cell):
    """Free the plans ``cell`` keeps for later calls (those a node holds go when the node does)."""
    cell.__dict__.pop("_kernel_plans", None)


def lease_plan(ctx, cell, key, build, steps):
    """The plan for ``key`` from ``cell``'s plans (made by ``build()`` if none is free), leased
    to the node ``ctx`` until it is released. A single step (a cell called on x_t) gets a plan of
    its own, not kept: a step-by-step loop holds thousands of them at once, and each object a
    node keeps costs the garbage collector on every full collection."""
    if steps == 1:
        return build()
    plans = cell.__dict__.get("_kernel_plans")
    if plans is None:
        plans = cell.__dict__["_kernel_plans"] = Plans()
    ctx.lease = plans.lease(key, build)
    return ctx.lease.plan


def keep_plan(ctx, plan):
    """Keep ``plan`` on the node for its backward: itself when leased, else (a single step) the
    arrays its backward reads (``kept``, named by its class), as a tuple, which the garbage
    collector stops tracking: a node of a step-by-step loop then adds no tracked object, and
    keeps no buffer that only its forward needed (weights made ready for the forward's matmuls)."""
    if getattr(ctx, "lease", None) is not None:
        ctx.plan = plan
    else:
        ctx.plan_fields = tuple(getattr(plan, name) for name in type(plan).kept)


def kept_plan(ctx, cls):
    """The plan :func:`keep_plan` kept on ``ctx`` (a :class:`cls`; of a single step, only the
    fields in ``cls.kept``, the others None)."""
    plan = getattr(ctx, "plan", None)
    if plan is None:
        plan = cls.__new__(cls)
        for klass in cls.__mro__:
            for name in getattr(klass, "__slots__", ()):
                setattr(plan, name, None)
        for name, value in zip(cls.kept, ctx.plan_fields):
            setattr(plan, name, value)
    return plan


def plan_key(x, *sizes):
    """What fixes a plan's buffers: the input's shape, dtype and device, and the kernel's sizes."""
    return (x.shape, x.dtype, type(x), str(getattr(x, "device", "")), sizes)


def half_sigmoid_rows(xp, layout, hidden_size, dtype):
    """Per stacked row: 0.5 where the gate is a sigmoid (computed as tanh of half its input), else 1."""
    scale = xp.ones(len(layout) * hidden_size, dtype)
    for rows in layout.sigmoid_rows(hidden_size):
        scale[rows] = 0.5
    return scale


_SCALES = {}


def gate_scales(xp, layout, hidden_size, batch, dtype):
    """(column scale (G*H,), scale (B, G*H), shift (B, G*H)): sigmoid(z) = tanh(z * scale) * scale
    + shift on the sigmoid gates (0.5, 0.5) and tanh(z) on the others (1, 0), so that one tanh
    activates every gate of a step. Read-only arrays, shared by every call on NumPy (a cell called
    step by step would otherwise build them at each step)."""
    key = (layout.names, tuple(layout.activations.values()), hidden_size, batch, np.dtype(dtype).str)
    found = _SCALES.get(key) if xp is np else None
    if found is None:
        column = half_sigmoid_rows(xp, layout, hidden_size, dtype)
        scale = xp.ascontiguousarray(xp.broadcast_to(column, (batch, column.shape[0])))
        found = column, scale, 1 - scale
        if xp is np:
            for array in found:
                array.flags.writeable = False
            if len(_SCALES) >= 64:
                _SCALES.clear()
            _SCALES[key] = found
    return found


def projection(xp, x, w_ih, bias, out, w_t, scale=None, context=None):
    """out (T, B, G*H) = (x W_ih^T + b + q) * scale for all T*B rows at once, one matmul;
    q (B, G*H) is the projected context added at every step, or None. ``w_t`` (I, G*H) is
    the buffer W_ih^T * scale is written into: a C-ordered right operand, which BLAS
    multiplies faster than the transposed view W_ih.T."""
    steps, batch, features = x.shape
    if scale is None:
        xp.copyto(w_t, w_ih.T)
    else:
        xp.multiply(w_ih.T, scale, out=w_t)
    xp.matmul(x.reshape(steps * batch, features), w_t, out=out.reshape(steps * batch, -1))
    for term in (bias, context):
        if term is not None:
            out += term if scale is None else term * scale
    return out


_BLOCK_ROWS = 1024          # rows (steps * batch) of dz in a block of RowGrads


class RowGrads:
    """The gradients that are sums over the rows of every step, from the gradients d at a
    layer's pre-activations (T, B, G*H), as the backward loop writes them: dL/dx = d W_ih,
    dL/dW = d^T h_{t-1} or d^T x_t, dL/db = the sum of d's rows, dL/dq = the sum of d over the
    steps (a projected context, added at every step).

    Each is a matmul or a sum over the rows of a block of steps (``done(t)``, called as the
    loop going back finishes step t), summed over the blocks: a block of d is
    read while the loop has just left it in cache. Timed on the arrays alone at T = 10,000
    (B = 16, G*H = 256, one BLAS thread), that took 199 ms in blocks of 512 rows against 284 ms
    for one matmul each over all T*B rows, which reads the 160 MB of d from memory once per
    gradient; ``benchmarks/rnn_step.py --configs 10000x16x64x64`` times the whole step.

    ``product(name, d, operand)``: name = d^T operand; ``total(name, d)``: the sum of d's rows;
    ``step_total(name, d)``: the sum over the steps, (B, G*H); ``times(name, d, w)``: name =
    d w, (T, B, w's columns), a fresh array. Each d, operand is (T, B, ...)."""

    def __init__(self, xp, steps, batch):
        self.xp = xp
        self.terms, self.grads, self.aliases = [], {}, {}
        self.summed_from = steps                # the steps from here on are summed
        self.block_steps = max(1, _BLOCK_ROWS // batch)

    def product(self, name, d, operand):
        self.terms.append((name, lambda a, b: _rows(d[a:b]).T @ _rows(operand[a:b])))

    def total(self, name, d):
        self.terms.append((name, lambda a, b: _rows(d[a:b]).sum(axis=0)))

    def step_total(self, name, d):
        self.terms.append((name, lambda a, b: d[a:b].sum(axis=0)))

    def times(self, name, d, w):
        out = self.grads[name] = self.xp.empty(d.shape[:2] + (w.shape[1],), d.dtype)
        self.terms.append((None, lambda a, b: self.xp.matmul(_rows(d[a:b]), w, out=_rows(out[a:b]))))

    def done(self, first):
        """The loop has finished step ``first`` and every later one."""
        stop = self.summed_from
        if first == 0 or stop - first >= self.block_steps:
            for name, term in self.terms:
                part = term(first, stop)
                if name is not None:
                    total = self.grads.get(name)
                    self.grads[name] = part if total is None else self.xp.add(total, part, out=total)
            self.summed_from = first

    def result(self):
        """(dL/dx or None, {name: gradient}) once the loop has finished step 0."""
        if self.summed_from != 0:
            raise RuntimeError(f"RowGrads: steps 0..{self.summed_from - 1} were never summed (done(0) not called)")
        grads = dict(self.grads)
        for name, same in self.aliases.items():
            grads[name] = grads[same]
        return grads.pop("x", None), grads


def row_grads(xp, x, hs, w_ih, need_x, need_params, d, recurrent=None):
    """A kernel's :class:`RowGrads`, those ``need_params`` asks for: from d (T, B, P), the
    gradient at what the input side feeds, dx, dW_ih, b_ih's and the projected context's; from
    ``recurrent`` (T, B, P'), the gradient at what the recurrent side feeds (d itself when None),
    dW_hh = recurrent^T h_{t-1} (hs (T+1, B, H)) and b_hh's. With one d for both sides, b_ih and
    b_hh have one gradient, summed once."""
    rows = RowGrads(xp, x.shape[0], x.shape[1])
    if need_x:
        rows.times("x", d, w_ih)
    if need_params["weight_ih"]:
        rows.product("weight_ih", d, x)
    if need_params["weight_hh"]:
        rows.product("weight_hh", d if recurrent is None else recurrent, hs[:-1])
    if recurrent is None and (need_params["bias_ih"] or need_params["bias_hh"]):
        rows.total("bias_ih", d)
        rows.aliases["bias_hh"] = "bias_ih"
    elif recurrent is not None:
        if need_params["bias_ih"]:
            rows.total("bias_ih", d)
        if need_params["bias_hh"]:
            rows.total("bias_hh", recurrent)
    if needs_context(need_params):
        rows.step_total(PROJECTED_CONTEXT, d)
    return rows


def _rows(a):
    """a (S, B, ...) as rows (S*B, ...)."""
    return a.reshape((-1,) + a.shape[2:])


def context_of(params):
    """The projected context among a kernel's parameters, or None."""
    return params.get(PROJECTED_CONTEXT)


def needs_context(need_params):
    """Whether the projected context (if the kernel has one) needs a gradient."""
    return need_params.get(PROJECTED_CONTEXT, False)
