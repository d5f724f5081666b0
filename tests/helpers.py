"""What many test files share."""
from hypothesis import HealthCheck, Phase, settings

import tinygrad_rnn as tg
from tinygrad_rnn.nn import trace_scan


def hyp(max_examples=None):
    """Hypothesis settings on top of the active profile (see conftest.py), capped at ``max_examples``.

    The ``device`` fixture holds no state, so function-scoped fixtures are fine; the
    explain phase is skipped because it reruns a failing test hundreds of times."""
    kw = {"suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
          "phases": [p for p in settings.default.phases if p != Phase.explain]}
    if max_examples is not None:
        kw["max_examples"] = min(max_examples, settings.default.max_examples)
    return settings(**kw)


class Cube(tg.Function):
    """x^3, with a backward but no forward-mode (jvp) rule: for the errors of forward mode."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 3 * g * x * x


def scan_nodes(*tensors):
    """The whole-sequence (Scan) nodes of the graph behind ``tensors``."""
    seen, stack = set(), [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(i.grad_fn for i in node.inputs if isinstance(i, tg.Tensor) and i.grad_fn is not None)
    return [n for n in seen if isinstance(n, trace_scan.Scan)]


def parts(state):
    """A state's parts as a list: a tuple's items, or the one tensor."""
    return list(state) if isinstance(state, tuple) else [state]
