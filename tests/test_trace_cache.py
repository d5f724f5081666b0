"""A traced program is reused across calls only where the step traces to the same program.

``nn/trace_scan.py`` traces a cell's ``step`` on every call; when the trace is the cell's
previous program (ops, wiring, constants, tensors read) it skips the probe traces and reuses
the generated forward and backward loops. Properties held here, float64, against the per-step
graph (``unroll(..., per_step=True)``):
1. a second call reuses the generated loops (the same function objects) and is exact;
2. a Python attribute the step reads, changed between calls, is seen by the next call;
3. a step that becomes data-dependent between calls (a mode switch) is still caught: one
   warning, then step-by-step execution with the per-step graph's results;
4. the generated source is there to read, one line per op named after its class;
5. what a cell keeps of its last trace holds no tensor of that call (nor the graph behind it).
"""
import gc
import warnings
import weakref

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.nn import trace_scan
from tinygrad_rnn.nn.cells import project_input, uniform_parameter
from tinygrad_rnn.nn.recurrent import unroll
from helpers import scan_nodes

F64 = tg.float64


class ScaledCell(nn.RecurrentCell):
    """h' = scale * tanh(x W_ih^T + h W_hh^T), with ``scale`` a Python attribute; in ``data_mode``
    the units with h <= 0 are halved by a mask made from h.data (untraceable)."""

    def __init__(self, input_size, hidden_size, device):
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = uniform_parameter((hidden_size, input_size), hidden_size, device, F64)
        self.weight_hh = uniform_parameter((hidden_size, hidden_size), hidden_size, device, F64)
        self.scale, self.data_mode = 1.0, False

    def project(self, x):
        return project_input(x, self.weight_ih)

    def step(self, p, h):
        new = (p + h @ self.weight_hh.T).tanh() * self.scale
        if self.data_mode:
            positive = tg.tensor(h.data > 0, device=h.device)
            new = tg.where(positive, new, 0.5 * new)
        return new


def problem(device, seed=0):
    rng = np.random.default_rng(seed)
    tg.manual_seed(seed)
    cell = ScaledCell(2, 3, device)
    x = tg.Tensor(rng.standard_normal((6, 2, 2)), requires_grad=True, device=device)
    h0 = tg.Tensor(rng.standard_normal((2, 3)), requires_grad=True, device=device)
    return cell, x, h0


def run(cell, x, h0, per_step=False):
    """Outputs, final state and gradients, and the Scan nodes of the graph (found before backward frees it)."""
    out, h = unroll(cell, x, h0, per_step=per_step)
    nodes = scan_nodes(out, h)
    grads = tg.grad(out.sum() + (h * h).sum(), [x, h0, *cell.parameters()])
    return [out.numpy(), h.numpy()] + [g.numpy() for g in grads], nodes


def assert_same_as_per_step(cell, x, h0):
    """The cell's layer equals the per-step graph; returns its Scan nodes."""
    got, nodes = run(cell, x, h0)
    want, _ = run(cell, x, h0, per_step=True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    return nodes


def test_a_second_call_reuses_the_generated_loops_and_is_exact(device):
    cell, x, h0 = problem(device)
    first = assert_same_as_per_step(cell, x, h0)[0].program
    second = assert_same_as_per_step(cell, x, h0)[0].program
    assert second is not first
    assert second.compiled_loop(device != "cpu") is first.compiled_loop(device != "cpu")
    assert len(second.__dict__["_compiled"]) == 2           # the forward loop and one backward


def test_an_attribute_changed_between_calls_is_seen(device):
    cell, x, h0 = problem(device)
    assert_same_as_per_step(cell, x, h0)
    with tg.no_grad():
        unscaled, _ = unroll(cell, x, h0)
    cell.scale = 0.5                                        # a constant of the program: a new program
    assert_same_as_per_step(cell, x, h0)
    with tg.no_grad():
        scaled, _ = unroll(cell, x, h0)
    np.testing.assert_allclose(scaled.numpy()[0], 0.5 * unscaled.numpy()[0], rtol=1e-12)


def test_a_step_that_turns_data_dependent_is_still_caught(device, monkeypatch):
    monkeypatch.setattr(trace_scan, "_warned", set())
    cell, x, h0 = problem(device)
    assert_same_as_per_step(cell, x, h0)                   # traced, probes passed, program kept
    cell.data_mode = True
    with pytest.warns(RuntimeWarning, match="ScaledCell"):
        assert assert_same_as_per_step(cell, x, h0) == []  # ran step by step
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cell.data_mode = False
        assert len(assert_same_as_per_step(cell, x, h0)) == 1   # traceable again


def test_the_generated_source_names_every_op(device):
    cell, x, h0 = problem(device)
    assert_same_as_per_step(cell, x, h0)
    program = assert_same_as_per_step(cell, x, h0)[0].program    # a second call's: its loops were shared
    for ins in program.loop:
        assert f"# {ins.cls.__name__}" in program.loop_source
        assert f"# {ins.cls.__name__}" in program.backward_source


class OffsetCell(ScaledCell):
    """h' = tanh(x W_ih^T + h W_hh^T) + offset, with ``offset`` a tensor set per call (as a decoder's
    keys are): a loop-invariant input read from outside the cell's parameters."""

    offset = None

    def step(self, p, h):
        return (p + h @ self.weight_hh.T).tanh() + self.offset


def test_the_kept_trace_holds_no_tensor_of_its_call(device):
    cell, x, h0 = problem(device)
    cell.__class__ = OffsetCell
    cell.offset = tg.Tensor(np.full((2, 3), 0.25), requires_grad=True, device=device) * 2   # a graph behind it
    assert_same_as_per_step(cell, x, h0)
    gone = weakref.ref(cell.offset)
    cell.offset = None
    gc.collect()
    assert gone() is None
