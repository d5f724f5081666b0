"""Bad inputs get a clear error naming what was wrong and what was expected, never a silent
cast, broadcast or a raw NumPy error from deep inside (regressions of a bad-input audit)."""
import re

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn

FORMS = {"kernel": dict(fused=True), "traced": dict(fused=False), "per_step": dict(fused=False, per_step=True)}


def layer(kind, form, dtype=tg.float32, device="cpu"):
    return {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](4, 8, dtype=dtype, device=device, **FORMS[form])


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_mixed_float_dtypes_raise_the_same_in_every_form(device, kind, form):
    """float64 weights and a float32 input: an error naming both, whichever form runs the steps
    (the hand-tuned kernel used to compute silently in the input's dtype)."""
    with pytest.raises(TypeError, match="input is float32 but parameter weight_ih_l0 is float64"):
        layer(kind, form, tg.float64, device)(tg.randn(5, 3, 4, device=device))
    h0 = tg.zeros(1, 3, 8, dtype=tg.float64, device=device)
    state = (h0, h0) if kind == "lstm" else h0
    with pytest.raises(TypeError, match="initial state part 0 is float64, expected float32"):
        layer(kind, form, tg.float32, device)(tg.randn(5, 3, 4, device=device), state)


@pytest.mark.parametrize("dtype", [tg.int64, tg.bool_])
def test_integer_or_bool_input_is_a_type_error(device, dtype):
    x = tg.zeros(5, 3, 4, dtype=dtype, device=device)
    with pytest.raises(TypeError, match=f"input has dtype {np.dtype(dtype).name}, expected a floating dtype"):
        nn.GRU(4, 8, device=device)(x)
    with pytest.raises(TypeError, match="expected a floating dtype"):
        nn.GRUCell(4, 8, device=device)(x[0])


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "peephole"])
def test_a_cells_state_is_checked_against_its_input(device, kind):
    cell = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell, "peephole": nn.PeepholeLSTMCell}[kind](
        3, 5, device=device)
    x = tg.randn(3, 3, device=device)
    tuple_state = kind in ("lstm", "peephole")

    def state(*shape):
        part = tg.randn(*shape, device=device)
        return (part, part) if tuple_state else part

    with pytest.raises(ValueError, match=r"state part 0 is \(1, 5\) float32 on cpu|state part 0 is \(1, 5\)"):
        cell(x, state(1, 5))                          # a batch-1 state is not broadcast to batch 3
    with pytest.raises(ValueError, match=r"expected \(3, 5\)"):
        cell(x, state(3, 4))                          # the wrong hidden size
    with pytest.raises(ValueError, match=r"expected \(3, 5\)"):
        cell(x, state(3, 5, 1))                       # the wrong rank
    wrong = tg.randn(3, 5, device=device) if tuple_state else (tg.randn(3, 5, device=device),)
    with pytest.raises(ValueError, match="the state must be"):
        cell(x, wrong)                                # a Tensor for an LSTM, a 1-tuple for a GRU
    with pytest.raises(TypeError, match=r"state part 0 must be a tinygrad_rnn Tensor, got a numpy.ndarray; convert"):
        cell(x, np.zeros((3, 5), np.float32))
    seq = tg.randn(4, 3, 3, device=device)
    with pytest.raises(ValueError, match=r"expected \(3, 5\)"):
        nn.unroll(cell, seq, state(1, 5))             # the same checks for a whole sequence


def test_layer_state_given_as_arrays_or_lists_is_a_type_error(device):
    x = tg.randn(5, 3, 4, device=device)
    with pytest.raises(TypeError, match=r"initial state part 0 .* must be a tinygrad_rnn Tensor, got a numpy.ndarray"):
        nn.GRU(4, 8, device=device)(x, np.zeros((1, 3, 8), np.float32))
    with pytest.raises(TypeError, match=r"initial state part 0 .* must be a tinygrad_rnn Tensor, got a list"):
        nn.LSTM(4, 8, device=device)(x, ([[0.0] * 8] * 3, [[0.0] * 8] * 3))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_no_time_steps_is_an_error_and_an_empty_batch_an_empty_output(device, kind):
    with pytest.raises(ValueError, match=r"input of shape \(0, 3, 4\) has no time steps"):
        layer(kind, "kernel", device=device)(tg.randn(0, 3, 4, device=device))
    model = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](4, 8, num_layers=2, bidirectional=True,
                                                                   device=device)
    out, final = model(tg.randn(5, 0, 4, device=device))
    assert out.shape == (5, 0, 16)
    for part in final if isinstance(final, tuple) else (final,):
        assert part.shape == (4, 0, 8)


@pytest.mark.parametrize("args, error, message", [
    ((3, 2.5), TypeError, "hidden_size must be an int, got float 2.5"),
    ((3, 2, 1.5), TypeError, "num_layers must be an int, got float 1.5"),
    ((-1, 2), ValueError, "input_size must be at least 1, got -1"),
    ((True, 2), TypeError, "input_size must be an int, got bool"),
])
def test_layer_sizes_must_be_positive_ints(args, error, message):
    for make in (nn.LSTM, nn.GRU, nn.RNN):
        with pytest.raises(error, match=message):
            make(*args)
    if len(args) == 2:
        with pytest.raises(error, match=message):
            nn.LSTMCell(*args)


def test_seq2seq_empty_batch_and_generate_arguments(device):
    model = nn.Seq2Seq(20, 12, embed_size=8, hidden_size=6, device=device)
    empty = tg.zeros(0, 4, dtype=tg.int64, device=device)
    assert model(empty, [], tg.zeros(0, 3, dtype=tg.int64, device=device)).shape == (0, 3, 12)
    assert model.generate(empty, []) == ([], [])
    src = tg.tensor([[5, 6]], device=device)
    with pytest.raises(TypeError, match="max_len must be an int, got float 2.5"):
        model.generate(src, [2], max_len=2.5)
    with pytest.raises(ValueError, match="beam_size must be at least 1, got 0"):
        model.generate(src, [2], beam_size=0)


def test_a_torch_tensor_is_named_and_the_conversion_said(device):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"LSTM: input must be a tinygrad_rnn Tensor, got a torch.Tensor; "
                                        r"convert it with tg.tensor\(t.detach\(\).cpu\(\).numpy\(\)\)"):
        nn.LSTM(4, 8, device=device)(torch.zeros(5, 3, 4))
    with pytest.raises(TypeError, match="GRUCell: input must be a tinygrad_rnn Tensor, got a torch.Tensor"):
        nn.GRUCell(4, 8, device=device)(torch.zeros(3, 4))


@pytest.mark.parametrize("fn", [tg.maximum, tg.minimum])
def test_maximum_and_minimum_give_a_nans_gradient_to_the_nan(device, fn):
    """The NaN is the result, so it gets the gradient (two NaNs share it); the other operand none."""
    a = tg.tensor([np.nan, 1.0, np.nan, 2.0], dtype=tg.float64, device=device, requires_grad=True)
    b = tg.tensor([2.0, np.nan, np.nan, 2.0], dtype=tg.float64, device=device, requires_grad=True)
    fn(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 0.0, 0.5, 0.5])
    np.testing.assert_array_equal(b.grad.numpy(), [0.0, 1.0, 0.5, 0.5])


@pytest.mark.parametrize("make, message", [
    (lambda: tg.tensor([1e30], dtype=tg.int64), "1e\\+30 cannot be an int64"),
    (lambda: tg.tensor([np.nan, 1.0], dtype=tg.int64), "nan cannot be an int64"),
    (lambda: tg.full((2,), 2 ** 63), "9223372036854775808 is out of range for int64"),
])
def test_floats_and_big_ints_do_not_wrap_into_int64(make, message):
    with pytest.raises(ValueError, match=message):
        make()
    assert tg.full((2,), 2.5, dtype=tg.int64).numpy().tolist() == [2, 2]      # truncation, as PyTorch


def test_gradcheck_names_a_torch_tensor_and_how_to_convert_it():
    torch = pytest.importorskip("torch")
    for check in (tg.gradcheck, tg.gradgradcheck):
        with pytest.raises(TypeError, match=r"inputs\[0\] must be a tinygrad_rnn Tensor, got a torch.Tensor; convert"):
            check(lambda a: a * 2, [torch.randn(2, dtype=torch.float64)])


@pytest.mark.parametrize("make, message", [
    (lambda: tg.nn.Linear(-1, 3), "Linear: in_features must be at least 0, got -1"),
    (lambda: tg.nn.Linear(2, 3.0), "Linear: out_features must be an int, got float 3.0"),
    (lambda: tg.nn.Embedding(-2, 3), "Embedding: num_embeddings must be at least 0, got -2"),
    (lambda: tg.nn.Embedding(4, True), "Embedding: embedding_dim must be an int, got bool True"),
])
def test_layer_sizes_are_checked(make, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        make()


def test_a_linear_layer_without_inputs_gives_its_bias_as_pytorch():
    layer = tg.nn.Linear(0, 3)
    out = layer(tg.zeros(2, 0))
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(layer.bias.numpy(), (2, 3)))


def test_cuda_index_names_the_gpus_cupy_sees(device):
    if device == "cpu":
        with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda'\) or 'cuda:N', got 'gpu'"):
            tg.zeros(2, device="gpu")
        if not tg.cuda_available():
            with pytest.raises(RuntimeError, match="CUDA is unavailable"):
                tg.zeros(2, device="cuda:0")
        return
    cp = tg.backend.cupy()
    current, count = cp.cuda.Device().id, cp.cuda.runtime.getDeviceCount()
    x = tg.zeros(2, device=f"cuda:{current}")
    assert x.device == "cuda" and tg.nn.Linear(2, 2).to(f"cuda:{current}").weight.device == "cuda"
    with pytest.raises(ValueError, match=f"CuPy sees {count} GPU"):
        tg.zeros(2, device=f"cuda:{count}")
