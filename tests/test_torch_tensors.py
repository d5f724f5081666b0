"""A torch.Tensor where a tinygrad_rnn Tensor is expected: every entry point says so, naming
the op and how to convert, instead of a confusing message ("expected a Tensor, got Tensor")."""
import numpy as np
import pytest

import tinygrad_rnn as tg
import tinygrad_rnn.functional as F

torch = pytest.importorskip("torch")


class Cube(tg.Function):
    @staticmethod
    def forward(ctx, a):
        return a ** 3

    @staticmethod
    def backward(ctx, g):
        return g


def _calls(t, x):
    """(what the message names, the call) for each entry point, given a torch tensor t and our x."""
    return [
        ("add: each operand", lambda: x + t), ("add: each operand", lambda: t + x),
        ("mul: each operand", lambda: x * t), ("matmul: each operand", lambda: x @ t.T),
        ("less: each operand", lambda: x < t), ("maximum: each operand", lambda: tg.maximum(x, t)),
        ("maximum: at least one argument", lambda: tg.maximum(t, 1.0)),
        ("where: each operand", lambda: tg.where(x > 0, x, t)),
        ("exp: input", lambda: tg.exp(t)), ("sum: input", lambda: tg.sum(t)), ("mean: input", lambda: tg.mean(t)),
        ("var: input", lambda: tg.var(t)), ("max: input", lambda: tg.max(t)), ("clip: input", lambda: tg.clip(t, 0, 1)),
        ("reshape: input", lambda: tg.reshape(t, 3, 2)), ("reshape: input", lambda: tg.reshape(t, -1)),
        ("reshape: input", lambda: tg.squeeze(t)), ("reshape: input", lambda: tg.unsqueeze(t, 0)),
        ("Transpose.apply: argument 0", lambda: tg.transpose(t)), ("Split.apply: argument 0", lambda: tg.split(t, 1)),
        ("unbind: input", lambda: tg.unbind(t)), ("cat: input", lambda: tg.cat([x, t])),
        ("stack: input", lambda: tg.stack([t, x])), ("Cube.apply: argument 0", lambda: Cube.apply(t)),
        ("grad: inputs\\[0\\]", lambda: tg.grad(x.sum(), [t])), ("backward: outputs\\[0\\]", lambda: tg.backward([t])),
        ("linear: input", lambda: F.linear(t, x)), ("linear: weight", lambda: F.linear(x, t)),
        ("softmax: input", lambda: F.softmax(t)), ("log_softmax: input", lambda: F.log_softmax(t)),
        ("logsumexp: input", lambda: F.logsumexp(t)), ("leaky_relu: input", lambda: F.leaky_relu(t)),
        ("elu: input", lambda: F.elu(t)), ("dropout: input", lambda: F.dropout(t)),
        ("cross_entropy: input", lambda: F.cross_entropy(t, tg.tensor([0, 1]))),
        ("nll_loss: target", lambda: F.nll_loss(x, torch.tensor([0, 1]))),
        ("embedding: ids", lambda: F.embedding(torch.tensor([0]), x)),
        ("checkpoint: inputs\\[0\\]", lambda: tg.checkpoint(lambda a: a, t)),
        ("zeros_like: input", lambda: tg.zeros_like(t)),
    ]


@pytest.mark.parametrize("case", range(len(_calls(None, None))))
def test_a_torch_tensor_is_named_with_how_to_convert_it(case):
    t = torch.randn(2, 3)
    x = tg.randn(2, 3, requires_grad=True)
    where, call = _calls(t, x)[case]
    with pytest.raises(TypeError, match=f"^{where} must be .*got a torch.Tensor; convert it with "
                                        r"tg.tensor\(t.detach\(\).cpu\(\).numpy\(\)\), or a torch module's "
                                        "weights with tg.nn.utils.from_torch_state_dict"):
        call()


def test_other_types_keep_their_own_messages():
    """A list is named with a hint; an unknown type still lets Python try its reflected operator."""
    x = tg.randn(2, 3)
    with pytest.raises(TypeError, match=r"exp: input must be a tinygrad_rnn Tensor, got a list; "
                                        r"convert it with tg.tensor\(\.\.\.\)"):
        tg.exp([1.0, 2.0])

    class Other:
        def __radd__(self, other):
            return "handled"

    assert x + Other() == "handled"


def test_the_suggested_conversion_works():
    t = torch.randn(2, 3, requires_grad=True)
    x = tg.tensor(t.detach().cpu().numpy())
    np.testing.assert_array_equal(x.numpy(), t.detach().numpy())
