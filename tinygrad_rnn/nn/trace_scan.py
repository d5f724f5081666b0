"""From a Python step to one graph node for a whole sequence: the traced scan.

A recurrent cell is written as graph ops: ``project(x)`` for the input side of all
steps, ``step(p, state)`` for one time step, ``output(state)`` for what the layer
emits. Run step by step, T steps record T copies of the same ops, each a graph
node with its Tensors, and a backward walks them all. :func:`scan` computes the
same thing as one node, the way ``jax.lax.scan`` turns a step function into one
primitive. Its meaning is this loop::

    def scan(cell, x, state, valid=None):          # x (T, B, I); valid (T, B) bool or None
        p = cell.project(x)                        # all T steps at once
        outputs = []
        for t in range(T):
            new = cell.step(p[t], state)
            if valid is not None:                  # rows past their length keep their state
                new = where(valid[t], new, state)  # and output zeros
            state = new
            outputs.append(where(valid[t], cell.output(state), 0))
        return stack(outputs), state

How it gets there:

1. **Trace.** ``project`` runs once on the whole input and ``step`` on the first
   step's values, under :class:`tinygrad_rnn.function.recording`: every op they call
   is appended to a tape (its class, its arguments, its outputs). The tape is a
   straight-line program over *registers*: the inputs (x, p_t, the state parts),
   the tensors the step reads from outside (parameters, or any other tensor such as
   encoder keys: the loop-invariant inputs), constants, and each op's outputs.
   A step that reads values into Python (``item()``, ``bool()``, ``numpy()``) or
   draws random numbers (dropout) cannot be replayed as a fixed program; those
   raise while tracing. To catch a constant made from the step's own values some
   other way (``Tensor(h.data > 0)``), ``step`` is traced twice more, with its
   inputs shifted far up and far down: the three tapes must be the same program
   (same ops, same constants, the same tensors read). When they are not, :func:`scan`
   returns None, warns once naming the cell, and the caller runs it step by step.
   ``step`` is traced on every call (it may read Python state that changed), but a call
   whose trace is the cell's previous program, on its own values, skips the probes and
   reuses that program's generated loops (3, 4).
2. **Hoist.** Ops of the step whose inputs are all loop-invariant (``W.T``, splits
   of a weight, a masked weight) move out of the loop and run once, after
   ``project``, in the *pre* segment. The rest form the *loop* segment.
3. **Replay.** The node's forward runs the pre segment once and the loop segment
   T times on arrays, calling each op's own ``forward``: no Tensor and no graph
   node per op per step, the states written into preallocated (T+1, B, ...) buffers.
   The loop is a Python function generated from the program, registers as local
   variables (``Program.loop_source`` shows it), so a step costs little beyond its ops.
4. **Backward.** For t = T-1 .. 0 the loop segment runs in reverse, calling each
   op's own ``backward`` with the context its forward filled at step t (a generated
   function too, ``Program.backward_source``; an op no gradient can reach is left out
   of it). Gradients of
   loop-invariant inputs accumulate across steps, except for a matmul whose
   loop-invariant operand needs a gradient (``h @ W.T``, ``weights @ keys``): its
   incoming gradients and varying operands are kept and, after the loop, given to
   ``MatMul.backward`` once, concatenated over all T steps, which is ONE matmul over
   all T*B rows. Then the pre segment runs in reverse once.
5. **Forward mode.** The node's ``jvp`` replays the program again, calling each op's
   ``jvp`` beside its ``forward``, so ``study.jvp`` and RTRL see through the node.
6. **Higher order.** Under ``create_graph=True`` the backward replays the program on
   Tensors with ``Function.apply``: the per-step graph, differentiated again.

There is no second source of any derivative: every one comes from an op's own
``backward`` or ``jvp``. A cell may also offer a hand-tuned *kernel* for the whole
sequence (``cell.kernel``, see :class:`Kernel`); :func:`scan` then uses it for
forward and backward, and the traced program (built only when asked for) for
forward mode, higher order and the study tools.
"""
import contextlib
import warnings
import weakref

import numpy as np

from .. import backend
from ..engine import grad as graph_grad
from ..function import Function, no_grad, recording
from ..function import DataDependentError
from ..ops import MatMul, Reshape
from ..tensor import Tensor
from ..xp import stack, where


# ------------------------------------------------------------------ naming values
def named(tensor, label):
    """``tensor``, with ``label`` as its name when a step is being traced: the study tools
    read a step's gate values by these names (``f = named(z_f.sigmoid(), "f")``).
    Outside tracing it does nothing."""
    from ..function import _state
    if _state.tape is not None:
        _state.tape.name(tensor, label)
    return tensor


class Tape:
    """What ran while recording: (op class, arguments, keyword arguments, outputs, ctx)
    per op, and the names given with :func:`named`."""

    def __init__(self):
        self.ops = []
        self.labels = []

    def record(self, cls, args, kwargs, result, ctx):
        self.ops.append((cls, args, kwargs, result if type(result) is tuple else (result,), ctx))

    def name(self, tensor, label):
        self.labels.append((label, tensor))


class UntraceableStep(Exception):
    """Why a step cannot be replayed as one fixed program (the message says)."""


# ------------------------------------------------------------------ the program
class Instr:
    """One op of the program: its class, argument registers, keyword arguments, output registers."""

    __slots__ = ("cls", "args", "kwargs", "outs", "out_meta", "ctx", "needs", "defer")

    def __init__(self, cls, args, kwargs, outs, out_meta, ctx=None):
        self.cls, self.args, self.kwargs, self.outs, self.out_meta, self.ctx = cls, args, kwargs, outs, out_meta, ctx
        self.needs = None           # per argument: does a gradient flow to it (set by Program.prepare_backward)
        self.defer = None           # index of the varying operand of a matmul whose other operand gets
        #                             its gradient once after the loop

    def same_as(self, other):
        return (self.cls is other.cls and self.args == other.args and self.outs == other.outs
                and self.out_meta == other.out_meta and _same_value(self.kwargs, other.kwargs))


class _Builder:
    """Turns tapes into instructions over numbered registers."""

    def __init__(self):
        self.count = 0
        self.reg_of = {}            # id(Tensor) -> register
        self.keep = []              # the Tensors behind reg_of, alive so that their ids stay theirs
        self.constants = {}         # register -> a non-tensor argument (number, axes, shape, index...)
        self.externals = []         # (register, Tensor): tensors the ops read that no traced op made
        self.meta = {}              # register -> (shape, dtype) of a tensor register

    def input(self, tensor):
        reg = self._new()
        self._bind(tensor, reg)
        return reg

    def ref(self, value):
        """The register of an argument or result (a Tensor, or any other value: a constant)."""
        if isinstance(value, Tensor):
            reg = self.reg_of.get(id(value))
            if reg is None:
                reg = self.input(value)
                self.externals.append((reg, value))
            return reg
        reg = self._new()
        self.constants[reg] = value
        return reg

    def instructions(self, tape):
        instrs = []
        for cls, args, kwargs, result, ctx in tape.ops:
            if any(isinstance(v, Tensor) for v in kwargs.values()):
                raise UntraceableStep(f"{cls.__name__} was given a tensor as a keyword argument")
            regs = tuple(self.ref(a) for a in args)
            outs = tuple(self.input(t) for t in result)
            instrs.append(Instr(cls, regs, dict(kwargs), outs, tuple(self.meta[r] for r in outs), ctx))
        return instrs

    def _new(self):
        self.count += 1
        return self.count - 1

    def _bind(self, tensor, reg):
        self.reg_of[id(tensor)] = reg
        self.keep.append(tensor)
        self.meta[reg] = (tensor.shape, tensor.dtype)


def _same_value(a, b):
    """Equal constants: same type and value, arrays elementwise (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return (a.shape == b.shape and a.dtype == b.dtype
                and bool(backend.get_array_module(a).array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    try:
        return bool(a == b)
    except Exception:
        return a is b


class Program:
    """A traced cell: the pre segment (project, and the hoisted ops of the step) and the
    loop segment (the rest of the step), over one register file.

    Attributes:
        cell: the cell that was traced.
        pre, loop: lists of :class:`Instr`.
        x_reg, p_reg, step_p_reg: registers of the input x (T, B, I), of p = project(x)
            and of the step's p_t.
        state_in, state_out: registers of the state parts before and after a step.
        out_reg: register of ``output(state)``.
        inputs: registers of the node's inputs after x and the state: the loop-invariant
            tensors that require grad, in node-input order (``input_tensors`` holds them).
        constants: {register: value} of non-tensor arguments and of tensors that need no grad.
        names: {label: register} of the values the step named (see :func:`named`).
        meta: {register: (shape, dtype)} of every tensor register.
        kernel: a hand-tuned :class:`Kernel` that runs instead of the replay, or None.
    """

    kernel = None

    def __init__(self, cell):
        self.cell = cell
        self.pre, self.loop = [], []
        self.names, self.constants, self.meta = {}, {}, {}
        self.inputs, self.input_tensors = [], []
        self.count = 0
        self.warm = None            # (x array, register values, pre contexts) from tracing, reused once

    @property
    def n_state(self):
        return len(self.state_in)

    # ----- building -----
    @classmethod
    def trace(cls, cell, x, parts, like):
        """The program of ``cell`` traced on the input x (T, B, I) and initial state ``parts``."""
        program = cls(cell)
        with no_grad():
            builder = _Builder()
            x_leaf = _leaf(x)
            program.x_reg = builder.input(x_leaf)
            pre_tape = Tape()
            with recording(pre_tape):
                p = cell.project(x_leaf)
            _check_projection(cell, p, x)
            pre = builder.instructions(pre_tape)
            program.p_reg = builder.ref(p)
            twins = [_copy_builder(builder) for _ in _PROBES]
            first = _trace_step(cell, builder, p.data[0], parts, like)
            earlier = cell.__dict__.get("_last_trace")
            if earlier is None or not earlier.same_step(first):     # else the probes passed on that program
                _probe(cell, first, twins, p.data[min(1, x.shape[0] - 1)], like)
        program._assemble(builder, pre, first, pre_tape)
        if earlier is not None:
            program.adopt_compiled(earlier)
        cell.__dict__["_last_trace"] = _LastTrace(first, program)
        return program

    def loop_signature(self):
        """What the generated loops are made from, besides the loop's instructions."""
        return self.step_p_reg, self.state_in, self.state_out, self.out_reg

    def adopt_compiled(self, earlier):
        """Share the generated loops of an earlier program (a :class:`_LastTrace`) whose loop
        segment is this one's, op for op."""
        if (len(self.loop) == len(earlier.loop) and all(a.same_as(b) and a.defer == b.defer
                                                        for a, b in zip(self.loop, earlier.loop))
                and self.loop_signature() == earlier.signature):
            self._compiled = earlier.compiled

    def _assemble(self, builder, pre, step, pre_tape):
        self.count = builder.count
        self.meta = dict(builder.meta)
        self.step_p_reg, self.state_in, self.state_out, self.out_reg = step.p_reg, step.state_in, \
            step.state_out, step.out_reg
        varying = {self.step_p_reg, *self.state_in}
        hoisted = []
        for ins in step.instrs:
            if any(r in varying for r in ins.args):
                varying.update(ins.outs)
                self.loop.append(ins)
            else:
                hoisted.append(ins)
        self.varying = varying
        self.pre = pre + hoisted
        for reg, t in builder.externals:
            if t.requires_grad:
                self.inputs.append(reg)
                self.input_tensors.append(t)
            else:
                self.constants[reg] = t.data
        self.constants.update(builder.constants)
        self.names = {label: builder.reg_of[id(t)] for label, t in step.tape.labels if id(t) in builder.reg_of}
        with_grad = self._reached(set(self.inputs))
        for ins in self.loop:
            ins.defer = _deferrable(ins, varying, self.meta, with_grad)
        # the traced project (and hoisted ops) ran on this call's own input: keep their results once
        values = {builder.reg_of[id(t)]: t.data for t in builder.keep}
        self.warm = values, [ins.ctx for ins in self.pre]
        for ins in self.loop + self.pre:
            ins.ctx = None

    def traced(self, ctx):
        return self

    # ----- forward -----
    def registers(self, x, invariants):
        """A fresh register file with x, the node's invariant inputs and the constants."""
        regs = [None] * self.count
        for reg, value in self.constants.items():
            regs[reg] = value
        regs[self.x_reg] = x
        for reg, value in zip(self.inputs, invariants):
            regs[reg] = value
        return regs

    def run_pre(self, regs):
        """Run the pre segment; its contexts, in order (reused from tracing the first time)."""
        if self.warm is not None and self.warm[0].get(self.x_reg) is regs[self.x_reg]:
            values, ctxs = self.warm
            self.warm = None
            xp = backend.get_array_module(regs[self.x_reg])
            for ins, c in zip(self.pre, ctxs):
                for r in ins.outs:
                    regs[r] = values[r]
                if xp is not np:
                    c._xp = xp          # traced under no_grad, where apply does not set it
            return ctxs
        self.warm = None
        return [_run(ins, regs) for ins in self.pre]

    def forward(self, ctx, x, parts, invariants, valid):
        """Outputs (T, B, O) and final state parts; what backward needs is kept on ``ctx``."""
        xp = backend.get_array_module(x)
        regs = self.registers(x, invariants)
        ctx.pre_ctxs = self.run_pre(regs)
        p = regs[self.p_reg]
        steps = x.shape[0]
        states = [xp.empty((steps + 1,) + s.shape, s.dtype) for s in parts]
        for buf, s in zip(states, parts):
            buf[0] = s
        out_part = _index_of(self.out_reg, self.state_out)
        out_seq = None if out_part is not None else xp.empty((steps,) + self.meta[self.out_reg][0],
                                                            self.meta[self.out_reg][1])
        start = masked_steps(valid)
        deferred = {k: [] for k, ins in enumerate(self.loop) if ins.defer is not None}
        step_ctxs = self.compiled_loop(xp is not np)(regs, p, states, out_seq, steps, valid, start, xp, deferred)
        ctx.step_ctxs, ctx.states, ctx.deferred_operands = step_ctxs, states, deferred
        ctx.start, ctx.regs = start, regs
        outputs = states[out_part][1:] if out_part is not None else out_seq
        return (mask_outputs(xp, outputs, valid, start),) + tuple(buf[steps].copy() for buf in states)

    def compiled_loop(self, gpu):
        """The loop segment as a Python function, generated once per program and device kind:
        its registers are local variables and each op a direct call of its class's ``forward``,
        so that a step costs its ops and little else. :attr:`loop_source` shows it."""
        return self._generated(gpu, lambda: _loop_source(self, gpu), "traced loop")

    def _generated(self, key, make_source, what):
        """The function ``loop`` of the source ``make_source()`` gives, compiled once per ``key``
        and kept in the program's cache (shared with programs that adopt it)."""
        cache = self.__dict__.setdefault("_compiled", {})
        if key not in cache:
            source, names = make_source()
            scope = dict(names)
            exec(compile(source, f"<{what} of {type(self.cell).__name__}>", "exec"), scope)
            cache[key] = scope["loop"]
        return cache[key]

    @property
    def loop_source(self):
        """The Python source of the generated forward loop (on NumPy arrays)."""
        return _loop_source(self, False)[0]

    @property
    def backward_source(self):
        """The Python source of the generated backward loop, for the gradients the node's last
        backward asked for (for all its inputs if it has not run one)."""
        if any(ins.needs is None for ins in self.loop):
            self.prepare_backward((True,) * (1 + self.n_state + len(self.inputs)))
        return _backward_source(self)[0]

    # ----- backward -----
    def prepare_backward(self, needs):
        """Which registers a gradient must reach, given the node's ``needs_input_grad``;
        sets each instruction's ``needs``. Returns the set."""
        n_state = self.n_state
        wanted = set()
        if needs[0]:
            wanted.add(self.x_reg)
        wanted.update(r for r, need in zip(self.inputs, needs[1 + n_state:]) if need)
        for r, need in zip(self.state_in, needs[1:1 + n_state]):
            if need:
                wanted.add(r)
        # a register needs a gradient if some wanted input lies behind it; loop-carried
        # state needs one if what the step makes of it does (a fixed point over the parts)
        while True:
            reached = self._reached(wanted)
            extra = {r_in for r_in, r_out in zip(self.state_in, self.state_out) if r_out in reached} - wanted
            if not extra:
                break
            wanted |= extra
        for ins in self.pre + self.loop:
            ins.needs = tuple(r in reached and ins.cls.differentiable for r in ins.args)
        return reached

    def _reached(self, wanted):
        """Registers that depend on a wanted register through differentiable ops (themselves included):
        those a gradient must flow through."""
        reached = set(wanted)
        changed = True
        while changed:
            changed = False
            if self.p_reg in reached and self.step_p_reg not in reached:
                reached.add(self.step_p_reg)            # p_t is p[t]
            for ins in self.pre + self.loop:
                if ins.cls.differentiable and any(r in reached for r in ins.args):
                    new = set(ins.outs) - reached
                    if new:
                        reached |= new
                        changed = True
        return reached

    def backward(self, ctx, d_out, d_final):
        """Gradients for (x, state parts..., invariant inputs...), as the node returns them;
        ``d_out`` None when no gradient reached the outputs."""
        self.prepare_backward(ctx.needs_input_grad)
        xp = ctx.xp
        steps = ctx.states[0].shape[0] - 1
        valid, start = ctx.valid, ctx.start
        grads = [None] * self.count
        d_p = xp.zeros((steps,) + self.meta[self.step_p_reg][0], self.meta[self.step_p_reg][1])
        d_state = [g.copy() for g in d_final]
        deferred = {k: [] for k in ctx.deferred_operands}
        loop = self.compiled_backward(tuple(ins.needs for ins in self.loop))
        d_state = loop(ctx.step_ctxs, d_out, d_state, d_p, grads, deferred, steps, valid, start, xp,
                       type(d_final[0]))
        for k, pairs in deferred.items():
            if pairs:
                operands = ctx.deferred_operands[k]
                self._deferred_backward(ctx, self.loop[k], [operands[t] for t, _ in pairs[::-1]],
                                        [g for _, g in pairs[::-1]], grads, xp)
        _add(grads, self.p_reg, d_p)
        for ins, c in zip(self.pre[::-1], ctx.pre_ctxs[::-1]):
            gouts = [grads[r] for r in ins.outs]
            if all(x is None for x in gouts):
                continue
            if len(gouts) > 1:
                gouts = _zero_filled(xp, gouts, ins.out_meta)
            for r, gi, need in zip(ins.args, _call_backward(ins, c, gouts), ins.needs):
                if gi is not None and need:
                    _add(grads, r, _checked(ins, r, gi, self.meta))
        return (grads[self.x_reg],) + tuple(d_state) + tuple(grads[r] for r in self.inputs)

    def compiled_backward(self, needs):
        """The loop segment's backward as a generated Python function (see :func:`_backward_source`),
        one per pattern of ``needs`` (which arguments of each op a gradient goes to)."""
        return self._generated(("backward", needs), lambda: _backward_source(self), "traced backward")

    def _deferred_backward(self, node, ins, operands, gs, grads, xp):
        """The loop-invariant operand's gradient of a matmul, from all steps at once:
        ``MatMul.backward`` on the varying operands and incoming gradients concatenated
        along the varying operand's row axis (for a varying right operand, its column axis)."""
        vary = ins.defer
        fixed_reg = ins.args[1 - vary]
        if not ins.needs[1 - vary]:
            return
        fixed = node.regs[fixed_reg]
        operand_axis = -2 if vary == 0 else -1
        grad_axis = -1 if vary == 1 or fixed.ndim == 1 else -2
        ctx = MatMul()
        stacked = xp.concatenate(operands, axis=operand_axis)
        ctx._saved = (stacked, fixed) if vary == 0 else (fixed, stacked)
        ctx.needs_input_grad = (vary == 1, vary == 0)
        if xp is not np:
            ctx._xp = xp
        result = MatMul.backward(ctx, xp.concatenate(gs, axis=grad_axis))
        _add(grads, fixed_reg, _checked(ins, fixed_reg, result[1 - vary], self.meta))

    # ----- forward mode -----
    def jvp(self, ctx, tangents, x, parts, invariants, valid):
        """Tangents of (outputs, final state parts) from tangents of (x, state parts, invariants),
        replaying forward with each op's ``jvp`` beside it."""
        xp = backend.get_array_module(x)
        k = next(t.shape[0] for t in tangents if t is not None)
        regs = self.registers(x, invariants)
        tan = [None] * self.count
        n_state = self.n_state
        tan[self.x_reg] = tangents[0]
        for reg, t in zip(self.inputs, tangents[1 + n_state:]):
            tan[reg] = t
        for ins in self.pre:
            _run_jvp(ins, regs, tan, k, xp)
        p, tp = regs[self.p_reg], tan[self.p_reg]
        steps = x.shape[0]
        state = [s for s in parts]
        t_state = [_full(xp, t, k, s.shape, s.dtype) for t, s in zip(tangents[1:1 + n_state], parts)]
        start = masked_steps(valid)
        t_outs = []
        for t in range(steps):
            regs[self.step_p_reg] = p[t]
            tan[self.step_p_reg] = None if tp is None else tp[:, t]
            for r, s, ts in zip(self.state_in, state, t_state):
                regs[r], tan[r] = s, ts
            for ins in self.loop:
                _run_jvp(ins, regs, tan, k, xp)
            mask = step_mask(valid, start, t)
            new = [regs[r] for r in self.state_out]
            t_new = [_full(xp, tan[r], k, regs[r].shape, regs[r].dtype) for r in self.state_out]
            t_out = _full(xp, tan[self.out_reg], k, regs[self.out_reg].shape, regs[self.out_reg].dtype)
            if mask is not None:
                new = [xp.where(_fit(mask, n.ndim), n, o) for n, o in zip(new, state)]
                t_new = [xp.where(_fit(mask, n.ndim - 1), n, o) for n, o in zip(t_new, t_state)]
                t_out = xp.where(_fit(mask, t_out.ndim - 1), t_out, 0)
            state, t_state = new, t_new
            t_outs.append(t_out)
        return (xp.stack(t_outs, axis=1),) + tuple(t_state)

    # ----- on the graph -----
    def on_graph(self, x, parts, invariants, valid, tapes=None):
        """The same computation as Tensors, each op through ``Function.apply``: the per-step
        graph (what create_graph=True differentiates, and what the study tools draw).
        Returns (outputs (T, B, O), final state parts...) as Tensors. With a list ``tapes``,
        appends a :class:`Tape` of the pre segment and one per step (the nodes each made)."""
        regs = [None] * self.count
        for reg, value in self.constants.items():
            regs[reg] = _as_constant(value, x)
        regs[self.x_reg] = x
        for reg, value in zip(self.inputs, invariants):
            regs[reg] = value
        with _recording_into(tapes):
            for ins in self.pre:
                _apply(ins, regs)
            p = regs[self.p_reg]
        state, outputs = list(parts), []
        start = masked_steps(valid)
        for t in range(x.shape[0]):
            with _recording_into(tapes):
                regs[self.step_p_reg] = p[t]
                for r, s in zip(self.state_in, state):
                    regs[r] = s
                for ins in self.loop:
                    _apply(ins, regs)
                new, out = [regs[r] for r in self.state_out], regs[self.out_reg]
                mask = step_mask(valid, start, t)
                if mask is not None:
                    new = [where(_leaf(_fit(mask, n.ndim)), n, o) for n, o in zip(new, state)]
                    out = where(_leaf(_fit(mask, out.ndim)), out, 0.0)
            state = new
            outputs.append(out)
        return (stack(outputs, axis=0),) + tuple(state)

    def graph_backward(self, ctx, grads):
        """Backward under create_graph: replay on Tensors and differentiate that. The replay reads
        aliases of the node's inputs (identity reshapes), and the gradients are taken at them: a
        parameter that also made one of the inputs (a cell called step after step) gets here
        only what flows through this node; the engine adds the rest through the graph."""
        inputs = [Reshape.apply(t, t.shape) if isinstance(t, Tensor) and t.requires_grad else t
                  for t in ctx.saved_tensors]
        n_state = self.n_state
        x, parts, invariants = inputs[0], inputs[1:1 + n_state], inputs[1 + n_state:]
        outputs = self.on_graph(x, parts, invariants, ctx.valid)
        wanted = [i for i, need in enumerate(ctx.needs_input_grad) if need]
        found = graph_grad(list(outputs), [inputs[i] for i in wanted], grad_outputs=list(grads),
                           create_graph=True, allow_unused=True)
        result = [None] * len(inputs)
        for i, g in zip(wanted, found):
            result[i] = g
        return tuple(result)


class _StepTrace:
    """One traced call of the step: its instructions and the registers of its inputs and results."""

    def __init__(self, tape, instrs, p_reg, state_in, state_out, out_reg, new_parts, externals, constants):
        self.tape, self.instrs, self.p_reg = tape, instrs, p_reg
        self.state_in, self.state_out, self.out_reg = state_in, state_out, out_reg
        self.new_parts, self.externals, self.constants = new_parts, externals, constants


def _trace_step(cell, builder, p_value, part_values, like):
    """Record ``cell.step`` (and ``cell.output``) on leaves holding p_t and the state parts."""
    p_t = _leaf(p_value)
    parts = [_leaf(v) for v in part_values]
    p_reg = builder.input(p_t)
    state_in = tuple(builder.input(s) for s in parts)
    known = len(builder.externals)
    tape = Tape()
    try:
        with recording(tape):
            new = cell.step(p_t, _rebuild(like, parts))
            new_parts = _parts_of(new)
            out = cell.output(new)
    except DataDependentError as error:
        raise UntraceableStep(str(error)) from None
    _check_new_state(cell, parts, new_parts, out)
    instrs = builder.instructions(tape)
    state_out = tuple(builder.ref(s) for s in new_parts)
    out_reg = builder.ref(out)
    constants = {r: v for r, v in builder.constants.items() if r > p_reg}
    return _StepTrace(tape, instrs, p_reg, state_in, state_out, out_reg, new_parts, builder.externals[known:],
                      constants)


_PROBES = (1024.0, -1024.0)


def _probe(cell, first, twins, p_value, like):
    """Trace the step again at the probes (inputs shifted far up and far down): the traces must be
    ``first``'s program, else :class:`UntraceableStep`."""
    with np.errstate(all="ignore"):
        for twin, offset in zip(twins, _PROBES):
            try:
                other = _trace_step(cell, twin, _moved(p_value, offset),
                                    [_moved(s.data, offset) for s in first.new_parts], like)
            except (UntraceableStep, ValueError, TypeError, IndexError, ArithmeticError) as error:
                raise UntraceableStep(f"the step fails on other values than its first step's "
                                      f"({type(error).__name__}: {error})") from None
            _check_same(first, other)


class _Seen:
    """What a kept trace needs of a tensor its step read: a weak reference (is a later one the
    same tensor?) and its device, requires_grad and values (is it an equal one?), without
    keeping the tensor, and the graph behind it, alive."""

    __slots__ = ("ref", "device", "requires_grad", "data", "shape")

    def __init__(self, tensor):
        self.ref, self.device, self.requires_grad = weakref.ref(tensor), tensor.device, tensor.requires_grad
        self.data, self.shape = tensor.data, tensor.shape


class _LastTrace:
    """A cell's last traced step, and what its program's generated loops are made from. A call
    whose step traces to the same program (ops, wiring, constants, tensors read) on its own
    values needs no probes: that is the evidence a probe gives, and the program passed the
    probes when it was first traced. Its generated loops are shared too. It holds no tensor
    of that call (its graph could be large), only weak references and arrays."""

    __slots__ = ("first", "loop", "signature", "compiled")

    def __init__(self, first, program):
        first.tape = first.new_parts = None         # this call's tensors: not needed to compare
        first.externals = [(reg, _Seen(t)) for reg, t in first.externals]
        self.first, self.loop, self.signature = first, program.loop, program.loop_signature()
        self.compiled = program.__dict__.setdefault("_compiled", {})

    def same_step(self, other):
        if other.p_reg != self.first.p_reg or other.state_in != self.first.state_in:
            return False
        try:
            _check_same(self.first, other)
        except UntraceableStep:
            return False
        return True


def _moved(value, offset):
    """``value`` shifted by ``offset`` (float), or shuffled along the batch (int, bool): the probe
    traces run there. A constant the step makes from its own values (a threshold mask such as
    ``h.data > a`` for any |a| < 1024, a copy of ``h.data``) cannot be the same at both probes
    and the first trace, so the traces differ and the step is not replayed as a fixed program."""
    host = backend.to_device(value, "cpu")
    if host.dtype.kind == "f":
        moved = host + host.dtype.type(offset)
    elif host.ndim:
        moved = np.roll(host, 1 if offset > 0 else -1, axis=0)
    else:
        moved = host
    return backend.to_device(moved, backend.device_of(value))


def _copy_builder(builder):
    """A builder that continues from ``builder``'s registers (for a second trace of the step)."""
    twin = _Builder()
    twin.count, twin.reg_of, twin.keep = builder.count, dict(builder.reg_of), list(builder.keep)
    twin.constants, twin.externals, twin.meta = dict(builder.constants), list(builder.externals), \
        dict(builder.meta)
    return twin


def _check_same(first, other):
    """Two traces of the step must be one program: the same ops and wiring, the same constant
    arguments (shapes, axes, index arrays...), and the same tensors read from outside (or, for
    tensors made inside the step, equal values: one made from the step's own values differs)."""
    problem = None
    if len(first.instrs) != len(other.instrs):
        problem = f"it ran {len(first.instrs)} ops on its first step's values and {len(other.instrs)} on others"
    else:
        for i, (a, b) in enumerate(zip(first.instrs, other.instrs)):
            if not a.same_as(b):
                problem = (f"op {i} is {a.cls.__name__} on its first step's values and {b.cls.__name__} (or wired "
                           "differently) on others")
                break
    if problem is None and (first.state_out != other.state_out or first.out_reg != other.out_reg):
        problem = "it returns its state from different ops on different values"
    if problem is None and (first.constants.keys() != other.constants.keys() or not all(
            _same_value(v, other.constants[r]) for r, v in first.constants.items())):
        problem = "an argument that is not a tensor (a shape, an index...) depends on the step's values"
    if problem is None and len(first.externals) != len(other.externals):
        problem = "it reads a different number of tensors from outside on different values"
    if problem is None:
        for (reg_a, a), (reg_b, b) in zip(first.externals, other.externals):
            same_tensor = a is b or (isinstance(a, _Seen) and a.ref() is b)
            if reg_a != reg_b or not (same_tensor or (a.device == b.device and a.requires_grad == b.requires_grad
                                                      and _same_value(a.data, b.data))):
                problem = (f"a tensor of shape {a.shape} that it reads changes with the step's values (is it "
                           "made from them outside the ops, e.g. from .data?)")
                break
    if problem is not None:
        raise UntraceableStep(problem)


def _check_projection(cell, p, x):
    if not isinstance(p, Tensor) or p.ndim < 2 or p.shape[:2] != x.shape[:2]:
        raise ValueError(f"{type(cell).__name__}.project must map (T, B, ...) inputs to (T, B, ...), got "
                         f"{getattr(p, 'shape', type(p).__name__)} for input {x.shape}")


def _check_new_state(cell, parts, new_parts, out):
    name = type(cell).__name__
    if len(new_parts) != len(parts):
        raise ValueError(f"{name}.step returned a state of {len(new_parts)} parts for a state of {len(parts)}")
    for i, (old, new) in enumerate(zip(parts, new_parts)):
        if not isinstance(new, Tensor) or new.shape != old.shape or new.dtype != old.dtype:
            got = f"{new.shape} {new.dtype}" if isinstance(new, Tensor) else type(new).__name__
            raise ValueError(f"{name}.step returned state part {i} as {got}, expected {old.shape} {old.dtype} "
                             "like the state it was given")
    if not isinstance(out, Tensor):
        raise ValueError(f"{name}.output must return a Tensor, got {type(out).__name__}")


# ------------------------------------------------------------------ the generated loop
def _loop_source(program, gpu):
    """Python source of ``loop(regs, p, states, out_seq, steps, valid, start, xp, deferred)`` for
    the program's loop segment, and the names it reads (op classes, their forwards, keyword
    arguments). It returns the list of each step's op contexts."""
    names = {"_array": _array, "_carry_rows": _carry_rows}
    produced = {program.step_p_reg, *program.state_in}
    for ins in program.loop:
        produced.update(ins.outs)
    outside = sorted({r for ins in program.loop for r in ins.args if r not in produced})
    lines = ["def loop(regs, p, states, out_seq, steps, valid, start, xp, deferred):"]
    lines += [f"    r{r} = regs[{r}]" for r in outside]
    lines += [f"    s{k} = states[{k}]" for k in range(len(program.state_in))]
    lines += [f"    d{k} = deferred[{k}].append" for k, ins in enumerate(program.loop) if ins.defer is not None]
    lines += ["    step_ctxs = []", "    keep = step_ctxs.append", "    for t in range(steps):",
              f"        r{program.step_p_reg} = p[t]"]
    lines += [f"        r{r} = s{k}[t]" for k, r in enumerate(program.state_in)]
    for k, ins in enumerate(program.loop):
        names[f"C{k}"], names[f"F{k}"] = ins.cls, ins.cls.forward
        args = ", ".join([f"c{k}"] + [f"r{r}" for r in ins.args])
        if ins.kwargs:
            names[f"K{k}"] = ins.kwargs
            args += f", **K{k}"
        lines.append(f"        c{k} = C{k}()")
        if gpu:
            lines.append(f"        c{k}._xp = xp")
        if len(ins.outs) == 1:
            call = f"F{k}({args})"
            lines.append(f"        r{ins.outs[0]} = " + (f"_array({call})" if ins.out_meta[0][0] == () else call)
                         + f"  # {ins.cls.__name__}")
        else:
            lines.append(f"        {', '.join(f'r{r}' for r in ins.outs)} = F{k}({args})  # {ins.cls.__name__}")
            lines += [f"        r{r} = _array(r{r})" for r, meta in zip(ins.outs, ins.out_meta) if meta[0] == ()]
        if ins.defer is not None:
            lines.append(f"        d{k}(r{ins.args[ins.defer]})")
    lines.append("        keep((" + "".join(f"c{k}, " for k in range(len(program.loop))) + "))")
    lines += [f"        s{k}[t + 1] = r{r}" for k, r in enumerate(program.state_out)]
    if _index_of(program.out_reg, program.state_out) is None:
        lines.append(f"        out_seq[t] = r{program.out_reg}")
    lines += ["        if start is not None and t >= start:", "            _carry_rows(xp, states, valid, t)",
              "    return step_ctxs"]
    return "\n".join(lines) + "\n", names


def _backward_source(program):
    """Python source of ``loop(step_ctxs, d_out, d_state, d_p, grads, deferred, steps, valid, start,
    xp, array_type)``: the loop segment run in reverse for t = T-1 .. 0, calling each op's own
    ``backward`` with the context its forward filled at step t; returns the gradients of the
    initial state parts. Gradients are local variables ``g<register>``; an op that no gradient
    can reach is left out when the source is made, one that none reached at run time skipped."""
    names = {"_zero_filled": _zero_filled, "_checked": _checked, "_fit": _fit, "_accumulate": _accumulate,
             "loop_ins": program.loop, "meta": program.meta}
    varying, assigned = program.varying, set()
    lines = ["def loop(step_ctxs, d_out, d_state, d_p, grads, deferred, steps, valid, start, xp, array_type):",
             "    owned = set()"]
    lines += [f"    ds{k} = d_state[{k}]" for k in range(len(program.state_in))]
    lines += [f"    e{k} = deferred[{k}].append" for k, ins in enumerate(program.loop) if ins.defer is not None]
    lines += ["    for t in range(steps - 1, -1, -1):", "        ctxs = step_ctxs[t]",
              "        mask = None if start is None or t < start else valid[t][:, None]",
              "        if mask is not None:"]
    lines += [f"            kept{k} = ds{k} * ~_fit(mask, ds{k}.ndim)" for k in range(len(program.state_in))]

    def receive(reg, expr, indent):
        """Code adding the gradient ``expr`` (not None) to register ``reg``."""
        pad = " " * indent
        if reg not in varying:
            return [f"{pad}_accumulate(grads, owned, {reg}, {expr})"]
        if reg in assigned:
            return [f"{pad}g{reg} = {expr} if g{reg} is None else g{reg} + {expr}"]
        assigned.add(reg)
        return [f"{pad}g{reg} = {expr}"]

    for k, r in enumerate(program.state_out):
        lines.append(f"        d = ds{k} if mask is None else ds{k} * _fit(mask, ds{k}.ndim)")
        lines += receive(r, "d", 8)
    if program.out_reg in varying and program.out_reg not in assigned:
        lines.append(f"        g{program.out_reg} = None")
        assigned.add(program.out_reg)
    lines += ["        if d_out is not None:",
              "            d = d_out[t] if mask is None else d_out[t] * _fit(mask, d_out.ndim - 1)"]
    lines += receive(program.out_reg, "d", 12)
    for k in range(len(program.loop) - 1, -1, -1):
        lines += _backward_of(program, k, names, assigned, receive)
    for k, r in enumerate(program.state_in):
        grad = f"g{r}" if r in assigned else "None"
        lines += [f"        d = {grad}", "        if d is None:", f"            d = xp.zeros_like(ds{k})",
                  f"        ds{k} = d if mask is None else d + kept{k}"]
    if program.step_p_reg in assigned:
        lines += [f"        if g{program.step_p_reg} is not None:", f"            d_p[t] = g{program.step_p_reg}"]
    lines.append("    return [" + "".join(f"ds{k}, " for k in range(len(program.state_in))) + "]")
    return "\n".join(lines) + "\n", names


def _backward_of(program, k, names, assigned, receive):
    """The lines that run loop op k's backward inside the generated loop (none if no gradient can
    reach its outputs)."""
    ins = program.loop[k]
    reached = [r for r in ins.outs if r in assigned]
    if not reached:
        return []
    needs = ins.needs
    if ins.defer is not None:               # the invariant operand's gradient comes after the loop
        needs = tuple(n and j == ins.defer for j, n in enumerate(needs))
    routes = [(j, r) for j, r in enumerate(ins.args) if needs[j]]
    trusted = ins.cls.__module__.startswith("tinygrad_rnn.ops.")    # tested to return the right shapes
    names[f"B{k}"], names[f"N{k}"] = ins.cls.backward, needs
    lines = [f"        g{r} = None" for j, r in routes if r in program.varying and r not in assigned]
    assigned.update(r for j, r in routes if r in program.varying)
    if len(ins.outs) == 1:
        lines += [f"        if g{ins.outs[0]} is not None:", f"            c = ctxs[{k}]",
                  f"            c.needs_input_grad = N{k}"]
        if ins.defer is not None:
            lines.append(f"            e{k}((t, g{ins.outs[0]}))")
        lines.append(f"            res = B{k}(c, g{ins.outs[0]})  # {ins.cls.__name__}")
    else:
        gouts = ", ".join(f"g{r}" if r in assigned else "None" for r in ins.outs)
        lines += [f"        if not all(x is None for x in ({gouts},)):", f"            c = ctxs[{k}]",
                  f"            c.needs_input_grad = N{k}",
                  f"            res = B{k}(c, *_zero_filled(xp, [{gouts}], loop_ins[{k}].out_meta))"
                  f"  # {ins.cls.__name__}"]
    lines.append("            res = res if type(res) is tuple else (res,)")
    for j, r in routes:
        lines += [f"            gi = res[{j}]", "            if gi is not None:"]
        check = "type(gi) is not array_type" + ("" if trusted else f" or (gi.shape, gi.dtype) != meta[{r}]")
        lines += [f"                if {check}:", f"                    gi = _checked(loop_ins[{k}], {r}, gi, meta)"]
        if r in program.varying:
            lines.append(f"                g{r} = gi if g{r} is None else g{r} + gi")
        else:
            lines.append(f"                _accumulate(grads, owned, {r}, gi)")
    return lines


def _accumulate(grads, owned, reg, g):
    """Add a step's gradient of a loop invariant to its sum; in place once the sum is an array
    this pass made (``owned``)."""
    old = grads[reg]
    if old is None:
        grads[reg] = g
    elif reg in owned:
        old += g
    else:
        grads[reg] = old + g
        owned.add(reg)


def _carry_rows(xp, states, valid, t):
    """Rows past their length at step t keep their state."""
    mask = valid[t][:, None]
    for buf in states:
        carry(xp, buf[t + 1], buf[t], _fit(mask, buf.ndim - 1))


# ------------------------------------------------------------------ running instructions
def _run(ins, regs):
    """Run one instruction's forward on the register file; returns its context."""
    ctx = ins.cls()
    args = [regs[r] for r in ins.args]
    if any(hasattr(a, "__cuda_array_interface__") for a in args):
        ctx._xp = backend.get_array_module(*args)
    out = ins.cls.forward(ctx, *args, **ins.kwargs)
    outs = out if type(out) is tuple else (out,)
    for r, o in zip(ins.outs, outs):
        regs[r] = o if not isinstance(o, np.generic) else np.asarray(o)
    return ctx


def _run_jvp(ins, regs, tan, k, xp):
    """Forward one instruction and push the tangents of its arguments through its ``jvp``."""
    ctx = ins.cls()
    args = [regs[r] for r in ins.args]
    if xp is not np:
        ctx._xp = xp
    out = ins.cls.forward(ctx, *args, **ins.kwargs)
    outs = tuple(o if not isinstance(o, np.generic) else np.asarray(o) for o in (out if type(out) is tuple
                                                                                else (out,)))
    for r, o in zip(ins.outs, outs):
        regs[r] = o
    ins_t = [tan[r] for r in ins.args]
    if not ins.cls.differentiable or all(t is None for t in ins_t):
        for r in ins.outs:
            tan[r] = None
        return
    rule = getattr(ins.cls, "jvp", None)
    if rule is None:
        raise NotImplementedError(f"jvp: {ins.cls.__name__} has no forward-mode rule; define a static method "
                                  "jvp(ctx, *tangents) beside its backward")
    ctx.inputs, ctx._out_arrays = tuple(args), outs
    result = rule(ctx, *ins_t)
    result = result if type(result) is tuple else (result,)
    for r, t, o in zip(ins.outs, result, outs):
        tan[r] = None if t is None else _full(xp, t, k, o.shape, o.dtype)


def _full(xp, t, k, shape, dtype):
    """A tangent as an array (K, *shape): broadcast, or zeros for None."""
    if t is None:
        return xp.zeros((k,) + tuple(shape), dtype)
    if isinstance(t, Tensor):
        t = t.data
    return t if t.shape == (k,) + tuple(shape) else xp.broadcast_to(t, (k,) + tuple(shape))


def _apply(ins, regs):
    """Run one instruction as a graph op on Tensors (``Function.apply``)."""
    out = ins.cls.apply(*[regs[r] for r in ins.args], **ins.kwargs)
    for r, o in zip(ins.outs, out if type(out) is tuple else (out,)):
        regs[r] = o


def _recording_into(tapes):
    """Record into a new Tape appended to ``tapes``; a block that records nothing if ``tapes`` is None."""
    if tapes is None:
        return contextlib.nullcontext()
    tapes.append(Tape())
    return recording(tapes[-1])


def _as_constant(value, like):
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, Tensor):
        return Tensor._make(value, False, None, 0)
    return value


def _call_backward(ins, ctx, gouts):
    """The op's own backward with the gradients of its outputs."""
    ctx.needs_input_grad = ins.needs
    result = ins.cls.backward(ctx, *gouts)
    return result if type(result) is tuple else (result,)


def _checked(ins, reg, g, meta):
    """``g`` as an array of the register's shape and dtype (a backward may return a NumPy scalar)."""
    if isinstance(g, Tensor):
        g = g.data
    if isinstance(g, np.generic):
        g = np.asarray(g)
    shape, dtype = meta[reg]
    if g.shape != shape:
        raise RuntimeError(f"{ins.cls.__name__}.backward returned a gradient of shape {g.shape}, expected {shape}")
    return g if g.dtype == dtype else g.astype(dtype)


def _add(grads, reg, g):
    old = grads[reg]
    grads[reg] = g if old is None else old + g


def _zero_filled(xp, gouts, meta):
    return [xp.zeros(shape, dtype) if g is None else g for g, (shape, dtype) in zip(gouts, meta)]


def _deferrable(ins, varying, meta, with_grad):
    """For a matmul with one loop-varying operand of rank >= 2 and a loop-invariant operand
    that may need a gradient: the index of the varying operand; else None."""
    if ins.cls is not MatMul:
        return None
    a, b = ins.args
    for vary, fixed in ((0, b), (1, a)):
        if (ins.args[vary] in varying and fixed not in varying and fixed in with_grad
                and len(meta[ins.args[vary]][0]) >= 2):
            return vary
    return None


def _fit(mask, ndim):
    """A (B, 1) step mask reshaped to broadcast against an array of ``ndim`` dims with batch first."""
    return mask if ndim == 2 else mask.reshape(mask.shape[:1] + (1,) * (ndim - 1))


def _array(out):
    """An op's result as an array (NumPy returns scalars for 0-d results; CuPy arrays pass)."""
    return np.asarray(out) if isinstance(out, np.generic) else out


def _index_of(reg, regs):
    for i, r in enumerate(regs):
        if r == reg:
            return i
    return None


def _leaf(value):
    return Tensor._make(value, False, None, 0)


def _parts_of(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


def _rebuild(like, parts):
    return tuple(parts) if isinstance(like, tuple) else parts[0]


# ------------------------------------------------------------------ masking (shared with the kernels)
def masked_steps(valid):
    """The first step at which some row is no longer valid (None when there is none)."""
    if valid is None:
        return None
    ended = np.nonzero(~backend.to_device(valid, "cpu").all(axis=1))[0]
    return int(ended[0]) if ended.size else None


def step_mask(valid, start, t):
    """valid[t] as a (B, 1) column once some row has ended (t >= start), else None: the fast path."""
    return None if start is None or t < start else valid[t][:, None]


def carry(xp, new, old, mask):
    """Rows where ``mask`` is False keep ``old`` (in place in ``new``)."""
    xp.copyto(new, old, where=~mask)


def mask_outputs(xp, outputs, valid, start):
    """``outputs`` (T, B, ...) with zeros where ``valid`` is False: a copy then, else the array
    itself (a view of the states buffer, which no op writes into)."""
    if start is None:
        return outputs
    out = outputs.copy()
    m = valid[start:].reshape(valid[start:].shape + (1,) * (out.ndim - 2))
    out[start:] = xp.where(m, out[start:], 0)
    return out


def fresh_outputs(xp, states, valid, start):
    """The outputs of a kernel whose states (T+1, B, H) live in a plan it reuses: states[1:]
    masked as :func:`mask_outputs` does, always a new array."""
    out = mask_outputs(xp, states[1:], valid, start)
    return out.copy() if start is None else out


# ------------------------------------------------------------------ the node
class Scan(Function):
    """All T steps of a traced cell as one node: inputs x (T, B, I), the initial state
    parts and the loop-invariant tensors the cell reads; outputs (T, B, O) and the
    final state parts. ``program`` is the cell's :class:`Program`; ``valid`` (T, B)
    bool or None gives variable lengths. An output no gradient reached comes to backward
    as None (the outputs of a layer whose loss reads only h_n: no (T, B, H) of zeros)."""

    materialize_grads = False

    def release(self):
        """Free what backward no longer needs, and give a kernel's buffers back for reuse."""
        super().release()
        lease = self.__dict__.pop("lease", None)
        if lease is not None:
            lease.end()

    @staticmethod
    def forward(ctx, x, *rest, program, valid):
        n = program.n_state
        ctx.program, ctx.valid = program, valid
        ctx.save_for_backward(x, *rest)
        return program.forward(ctx, x, rest[:n], rest[n:], valid)

    @staticmethod
    def backward(ctx, d_out, *d_final):
        outs = ctx._out_arrays
        xp = backend.get_array_module(outs[0])     # the arrays' module, also under create_graph
        d_final = tuple(xp.zeros_like(outs[1 + i]) if g is None else g for i, g in enumerate(d_final))
        if ctx.create_graph:
            if d_out is None:
                d_out = xp.zeros_like(outs[0])
            return ctx.program.graph_backward(ctx, (d_out,) + d_final)
        return ctx.program.backward(ctx, d_out, d_final)

    @staticmethod
    def jvp(ctx, tx, *t_rest):
        program = ctx.program.traced(ctx)
        x, *rest = ctx.saved_tensors
        n = program.n_state
        return program.jvp(ctx, (tx,) + t_rest, x, rest[:n], rest[n:], ctx.valid)


class Kernel:
    """A hand-tuned whole-sequence form of a built-in cell (see ``nn/lstm.py``), on arrays.

    ``parameters(cell)``: [(name, Parameter or None)], the cell's parameters in the
    kernel's order (None where the cell has none, e.g. without bias).
    ``forward(ctx, cell, x, parts, params, valid)``: x (T, B, I), the state parts and
    {name: array or None}; returns (outputs (T, B, O), final parts...), fresh arrays,
    keeping on ``ctx`` what backward needs (its buffers leased from the cell's
    :class:`~tinygrad_rnn.nn.kernels.Plans`). ``ctx.params`` holds the params.
    ``backward(ctx, d_out, d_final, need_x, need_parts, need_params)``: the gradients
    (dx, (d part, ...), {name: gradient}) of those needed.
    """

    @staticmethod
    def parameters(cell):
        """PyTorch's four parameters of a gated cell (see :class:`~tinygrad_rnn.nn.cells.GatedCell`)."""
        return [(name, getattr(cell, name)) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


class KernelProgram:
    """The program of a cell with a kernel: the kernel runs forward and backward; the traced
    program is built only when forward mode, create_graph or a study tool asks for it, and kept
    on the node. The cell keeps its KernelProgram while its parameters stay the same tensors, so
    a cell called step by step leaves one object per step for the garbage collector: the node."""

    __slots__ = ("cell", "kernel", "n_state", "names", "param_names", "input_tensors")

    def __init__(self, cell, kernel, n_state, named):
        self.cell, self.kernel, self.n_state = cell, kernel, n_state
        self.names = tuple(name for name, _ in named)
        self.param_names = tuple(name for name, p in named if p is not None)
        self.input_tensors = tuple(p for _, p in named if p is not None)

    @classmethod
    def of(cls, cell, kernel, n_state):
        """The cell's KernelProgram, made anew when its kernel, state or parameters changed."""
        named = tuple(kernel.parameters(cell))
        program = cell.__dict__.get("_kernel_program")
        if (program is None or program.kernel is not kernel or program.n_state != n_state
                or program.names != tuple(name for name, _ in named)
                or not _same_objects(program.input_tensors, [p for _, p in named if p is not None])):
            program = cell.__dict__["_kernel_program"] = cls(cell, kernel, n_state, named)
        return program

    def forward(self, ctx, x, parts, invariants, valid):
        params = dict.fromkeys(self.names)
        params.update(zip(self.param_names, invariants))
        ctx.params = params
        return self.kernel.forward(ctx, self.cell, x, parts, params, valid)

    def backward(self, ctx, d_out, d_final):
        needs, n = ctx.needs_input_grad, self.n_state
        need_params = dict.fromkeys(self.names, False)
        need_params.update(zip(self.param_names, needs[1 + n:]))
        dx, d_parts, d_params = self.kernel.backward(ctx, d_out, d_final, needs[0], needs[1:1 + n], need_params)
        grads = (dx,) + tuple(d_parts) + tuple(d_params.get(name) for name in self.param_names)
        ctx.fresh_grads = True          # the kernel's arrays are its own: one array per input (b_ih and b_hh
        return _one_each(grads)         # share one gradient, so one of them gets a copy)

    def traced(self, ctx):
        """The traced :class:`Program` of the cell, on this node's own inputs."""
        if getattr(ctx, "traced_program", None) is None:
            x, *rest = ctx.saved_tensors
            parts = [r for r in rest[:self.n_state]]
            live = [p for _, p in self.kernel.parameters(self.cell) if p is not None]
            if len(live) != len(self.input_tensors) or any(a is not b for a, b in zip(live, self.input_tensors)):
                raise RuntimeError(f"{type(self.cell).__name__}: its parameters were replaced after the forward "
                                   "pass, so the sequence cannot be replayed")
            like = tuple(parts) if self.n_state > 1 else parts[0]
            program = Program.trace(self.cell, _as_data(x), [_as_data(p) for p in parts], like)
            position = {id(p): i for i, p in enumerate(self.input_tensors)}
            if any(id(t) not in position for t in program.input_tensors):
                raise RuntimeError(f"{type(self.cell).__name__}: its step reads a tensor that requires grad and is "
                                   "not one of the kernel's parameters")
            by_position = {position[id(t)]: r for r, t in zip(program.inputs, program.input_tensors)}
            for i, t in enumerate(self.input_tensors):       # a parameter the step does not read: a constant
                if i not in by_position:
                    by_position[i] = program.count
                    program.count += 1
                    program.meta[by_position[i]] = (t.shape, t.dtype)
            program.inputs = [by_position[i] for i in range(len(self.input_tensors))]
            program.input_tensors = list(self.input_tensors)
            program.warm = None
            ctx.traced_program = program
        return ctx.traced_program

    def graph_backward(self, ctx, grads):
        return self.traced(ctx).graph_backward(ctx, grads)


def _one_each(grads):
    """``grads`` with a copy in place of each array already given to an earlier input."""
    seen, out = set(), []
    for g in grads:
        if g is not None and id(g) in seen:
            g = g.copy()
        seen.add(id(g))
        out.append(g)
    return tuple(out)


def _same_objects(a, b):
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _as_data(t):
    return t.data if isinstance(t, Tensor) else t


# ------------------------------------------------------------------ entry point
_warned = set()


def scan(cell, x, state, valid):
    """All steps of ``cell`` over x (T, B, I) from ``state`` as one node: (outputs (T, B, O),
    final state), or None if the cell's step cannot be traced (after one warning per cell
    class); ``valid`` (T, B) bool array or None."""
    parts = _parts_of(state)
    kernel = getattr(cell, "kernel", None)
    if kernel is not None:
        program = KernelProgram.of(cell, kernel, len(parts))
        inputs = program.input_tensors
    else:
        try:
            program = Program.trace(cell, x.data, [s.data for s in parts], state)
        except UntraceableStep as why:
            _warn_once(cell, why)
            return None
        inputs = program.input_tensors
    out, *final = Scan.apply(x, *parts, *inputs, program=program, valid=valid)
    return out, _rebuild(state, final)


def _warn_once(cell, why):
    cls = type(cell)
    if cls not in _warned:
        _warned.add(cls)
        warnings.warn(f"{cls.__name__}: its step cannot be traced into one whole-sequence op ({why}); "
                      "it runs step by step, one graph node per op and step", RuntimeWarning, stacklevel=4)
