"""nn.Module, Parameter, ModuleList, Sequential, the basic layers (Linear, Embedding,
Dropout), the loss Modules, the state-dict helpers to and from PyTorch, and gradient
checkpointing.

Properties held here: parameter names and order follow PyTorch, state dicts are
independent NumPy copies that round-trip bit-exactly, ``load_state_dict`` checks
everything before it changes anything, ``to(dtype)`` keeps the Parameter objects,
layer gradients match finite differences in float64, and a checkpointed
function has exactly the gradients of the plain one.
"""
import math
import re
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from helpers import hyp

nn = tg.nn
F = tg.functional


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ----------------------------------------------------------------- models used below
class Block(nn.Module):
    def __init__(self, device):
        self.proj = nn.Linear(3, 4, device=device)
        self.gain = nn.Parameter(tg.ones(4, device=device))


class Net(nn.Module):
    """Children assigned before and after a direct parameter, a ModuleList, a
    layer without bias, a module without parameters and an embedding."""

    def __init__(self, device="cpu", dtype=None):
        self.enc = nn.Linear(3, 4, device=device, dtype=dtype)
        self.scale = nn.Parameter(tg.ones(1, device=device, dtype=dtype))
        self.blocks = nn.ModuleList([nn.Linear(4, 4, device=device, dtype=dtype),
                                     nn.Linear(4, 2, bias=False, device=device, dtype=dtype)])
        self.drop = nn.Dropout(0.25)
        self.emb = nn.Embedding(5, 2, padding_idx=0, device=device, dtype=dtype)
        self.not_a_parameter = tg.ones(3, device=device)      # a plain tensor is not registered
        self.plain_list = [nn.Linear(2, 2, device=device)]   # neither is a Python list of modules

    def forward(self, x):
        h = self.enc(x).tanh() * self.scale
        for layer in self.blocks:
            h = self.drop(layer(h))
        return h


NET_NAMES = ["scale", "enc.weight", "enc.bias", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
             "emb.weight"]


# ----------------------------------------------------------------- Parameter
def test_parameter_is_a_leaf_that_requires_grad(device):
    p = nn.Parameter(tg.zeros(2, 3, dtype=tg.float64, device=device))
    assert isinstance(p, tg.Tensor) and p.is_leaf and p.requires_grad
    assert p.dtype == tg.float64 and p.device == device and p.shape == (2, 3)
    frozen = nn.Parameter(tg.zeros(2, device=device), requires_grad=False)
    assert not frozen.requires_grad
    assert "Parameter containing" in repr(p)


# ----------------------------------------------------------------- traversal
def test_named_parameters_order_and_names(device):
    net = Net(device)
    names = [n for n, _ in net.named_parameters()]
    # a module's own parameters come before its children's, as in PyTorch
    assert names == NET_NAMES
    assert [id(p) for p in net.parameters()] == [id(p) for _, p in net.named_parameters()]
    assert dict(net.named_parameters())["blocks.1.weight"] is net.blocks[1].weight
    assert [n for n, _ in net.named_parameters(prefix="model")] == ["model." + n for n in NET_NAMES]
    assert [n for n, _ in net.named_modules()] == ["", "enc", "blocks", "blocks.0", "blocks.1", "drop", "emb"]
    assert [n for n, _ in net.named_children()] == ["enc", "blocks", "drop", "emb"]


def test_nested_modules_are_found_at_every_depth(device):
    class Outer(nn.Module):
        def __init__(self):
            self.inner = nn.ModuleList([Block(device), nn.ModuleList([Block(device)])])
            self.head = nn.Linear(4, 1, device=device)

    names = [n for n, _ in Outer().named_parameters()]
    assert names == ["inner.0.gain", "inner.0.proj.weight", "inner.0.proj.bias",
                     "inner.1.0.gain", "inner.1.0.proj.weight", "inner.1.0.proj.bias",
                     "head.weight", "head.bias"]


@hyp()
@given(sizes=st.lists(st.integers(1, 4), min_size=2, max_size=5), bias=st.lists(st.booleans(), min_size=4,
                                                                               max_size=4))
def test_module_list_names_follow_the_list(sizes, bias, device):
    layers = nn.ModuleList()
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias[i], device=device))
    expected = []
    for i in range(len(sizes) - 1):
        expected.append(f"{i}.weight")
        if bias[i]:
            expected.append(f"{i}.bias")
    assert [n for n, _ in layers.named_parameters()] == expected
    assert len(layers) == len(sizes) - 1
    assert layers[-1] is list(layers)[-1]
    for (name, p), (i, layer) in zip([(n, p) for n, p in layers.named_parameters() if n.endswith("weight")],
                                     enumerate(layers)):
        assert p is layer.weight and p.shape == (sizes[i + 1], sizes[i])


def test_module_list_refuses_non_modules():
    with pytest.raises(TypeError, match="ModuleList"):
        nn.ModuleList([nn.Linear(2, 2), "not a module"])


def test_shared_parameter_and_shared_module_are_listed_once(device):
    class Tied(nn.Module):
        def __init__(self):
            self.a = nn.Linear(3, 3, device=device)
            self.b = nn.Linear(3, 3, device=device)
            self.b.weight = self.a.weight            # tied weight
            self.c = self.a                         # the same module twice

        def forward(self, x):
            return self.b(self.a(x))

    m = Tied()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["a.weight", "a.bias", "b.bias"]
    assert len(m.parameters()) == len({id(p) for p in m.parameters()}) == 3
    # the tied weight receives the gradient of both uses, once
    x = tg.randn(2, 3, dtype=tg.float32, device=device)
    m(x).sum().backward()
    w = m.a.weight.numpy().astype(np.float64)
    xa = x.numpy().astype(np.float64)
    h = xa @ w.T + m.a.bias.numpy()
    grad_out = np.ones((2, 3))
    expected = grad_out.T @ h + ((grad_out @ w).T @ xa)
    np.testing.assert_allclose(m.a.weight.grad.numpy(), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- state_dict
def test_state_dict_holds_numpy_copies(device):
    net = Net(device)
    state = net.state_dict()
    assert list(state) == NET_NAMES
    before = {k: v.copy() for k, v in state.items()}
    for name, p in net.named_parameters():
        assert isinstance(state[name], np.ndarray) and state[name].dtype == p.dtype
        np.testing.assert_array_equal(state[name], p.numpy())
        state[name][...] = 123.0                    # mutating the copy must not touch the model
    for name, p in net.named_parameters():
        assert same_bits(p.numpy(), before[name])
    # and updating the model later does not change a state dict taken earlier
    state2 = net.state_dict()
    net.enc.weight.data = net.enc.weight.data + 1
    assert same_bits(state2["enc.weight"], before["enc.weight"])


@pytest.mark.parametrize("dtype", [tg.float32, tg.float64])
def test_state_dict_round_trips_bit_exactly(dtype, device, tmp_path):
    tg.manual_seed(1)
    src = Net(device, dtype)
    # awkward values that a lossy path would change: -0.0, nan, tiny, huge
    w = src.enc.weight.numpy().copy()
    w.flat[:4] = [-0.0, np.nan, np.finfo(dtype).tiny, np.finfo(dtype).max]
    src.enc.weight.data = tg.tensor(w, device=device).data
    state = src.state_dict()

    tg.manual_seed(2)
    dst = Net(device, dtype)
    ids_before = [id(p) for p in dst.parameters()]
    missing, unexpected = dst.load_state_dict(state)
    assert missing == [] and unexpected == []
    assert [id(p) for p in dst.parameters()] == ids_before       # the same Parameter objects, refilled
    for (name, p), (_, q) in zip(src.named_parameters(), dst.named_parameters()):
        assert same_bits(p.numpy(), q.numpy()), name
        assert q.device == device and q.dtype == dtype
    # the model does not share memory with the dict it was loaded from
    state["enc.bias"][...] = 7
    assert not np.any(dst.enc.bias.numpy() == 7)

    path = tmp_path / "model.npz"
    tg.save(src.state_dict(), path)
    tg.manual_seed(3)
    again = Net(device, dtype)
    again.load_state_dict(tg.load(path))
    for (name, p), (_, q) in zip(src.named_parameters(), again.named_parameters()):
        assert same_bits(p.numpy(), q.numpy()), name


def test_load_state_dict_keeps_dtype_and_accepts_tensors(device):
    net = Net(device, tg.float32)
    state = {k: v.astype(np.float64) * 0.5 for k, v in net.state_dict().items()}
    state["scale"] = tg.tensor(np.array([2.5]), dtype=tg.float64, device=device)    # a Tensor value
    net.load_state_dict(state)
    for name, p in net.named_parameters():
        assert p.dtype == tg.float32 and p.device == device
    assert net.scale.numpy().tolist() == [2.5]
    np.testing.assert_array_equal(net.enc.weight.numpy(), state["enc.weight"].astype(np.float32))


def test_load_state_dict_strict_names_every_problem_at_once(device):
    net = Net(device)
    before = net.state_dict()
    state = dict(before)
    del state["enc.bias"], state["blocks.1.weight"]
    state["head.weight"] = np.zeros((2, 2), np.float32)
    state["enc.weight"] = np.zeros((5, 3), np.float32)     # wrong shape
    state["scale"] = np.full(1, 9.0, np.float32)          # would be valid on its own
    with pytest.raises(ValueError) as info:
        net.load_state_dict(state)
    msg = str(info.value)
    for key in ("enc.bias", "blocks.1.weight", "head.weight", "enc.weight"):
        assert key in msg
    assert "missing" in msg and "unexpected" in msg
    assert "(4, 3)" in msg and "(5, 3)" in msg            # expected and actual shape
    # nothing was loaded
    for name, p in net.named_parameters():
        assert same_bits(p.numpy(), before[name]), name


def test_load_state_dict_non_strict_returns_missing_and_unexpected(device):
    net = Net(device)
    state = net.state_dict()
    new_scale = np.full(1, 4.0, np.float32)
    partial = {"scale": new_scale, "extra.weight": np.zeros(3, np.float32), "blocks.0.bias": state["blocks.0.bias"]}
    missing, unexpected = net.load_state_dict(partial, strict=False)
    assert list(missing) == [n for n in NET_NAMES if n not in ("scale", "blocks.0.bias")]
    assert list(unexpected) == ["extra.weight"]
    assert net.scale.numpy().tolist() == [4.0]
    # shapes are checked even when not strict
    with pytest.raises(ValueError, match="scale"):
        net.load_state_dict({"scale": np.zeros(2, np.float32)}, strict=False)


def test_load_state_dict_from_torch_tensors(device):
    torch = pytest.importorskip("torch")
    net = Net(device)
    state = {k: torch.from_numpy(v * 2) for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(p.numpy(), state[name].numpy())


BAD_VALUES = [
    ("strings", np.array([["a", "b", "c"]] * 4), r"holds <U1 values \(ndarray\), expected numbers"),
    ("None", None, r"holds object values \(NoneType\)"),
    ("complex", np.ones((4, 3), np.complex64), "holds complex64 values"),
    ("overflow", np.full((4, 3), 1e300), r"12 finite value\(s\) overflow float32, e\.g\. 1e\+300"),
]


@pytest.mark.parametrize("what, value, words", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_checks_conversion_before_assigning_anything(what, value, words, strict, device):
    """A bad value part way through the dict (after entries that are fine) used to leave a
    half-loaded model; now nothing is assigned."""
    net = Net(device)
    before = net.state_dict()
    state = {k: v + 1 for k, v in before.items()}        # every entry valid and different...
    state["enc.weight"] = value                          # ...but one, in the middle of the order
    with pytest.raises(ValueError, match=r"cannot convert enc\.weight: .*nothing was loaded") as info:
        net.load_state_dict(state, strict=strict)
    assert re.search(words, str(info.value))
    for name, p in net.named_parameters():
        assert same_bits(p.numpy(), before[name]), name
    del state["enc.weight"]
    net.load_state_dict(state, strict=False)
    assert same_bits(net.scale.numpy(), before["scale"] + 1)


def test_load_state_dict_into_an_integer_parameter_needs_exact_values(device):
    class Counter(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(tg.ones(2, device=device))
            self.counts = nn.Parameter(tg.tensor([1, 2], device=device), requires_grad=False)

    m = Counter()
    with pytest.raises(ValueError, match="counts: its values do not fit int64 exactly"):
        m.load_state_dict({"weight": np.zeros(2), "counts": np.array([1.5, 2.0])})
    assert m.weight.numpy().tolist() == [1.0, 1.0]
    m.load_state_dict({"weight": np.zeros(2), "counts": np.array([3.0, 4.0])})
    assert m.counts.numpy().tolist() == [3, 4] and m.counts.dtype == tg.int64


def test_load_state_dict_needs_a_mapping(device):
    net = Net(device)
    with pytest.raises(TypeError, match="expected a mapping of names to arrays, got list"):
        net.load_state_dict(list(net.state_dict().items()))


# ----------------------------------------------------------------- modes, grads, dtype
def test_train_and_eval_are_recursive(device):
    net = Net(device)
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert not net.blocks[1].training and not net.drop.training
    assert net.train() is net
    assert all(m.training for m in net.modules())
    net.train(False)
    assert not any(m.training for m in net.modules())
    x = tg.randn(6, 3, device=device)
    np.testing.assert_array_equal(net(x).numpy(), net(x).numpy())   # no dropout in eval mode


def test_zero_grad(device):
    net = Net(device)
    net(tg.randn(4, 3, device=device)).sum().backward()
    assert net.enc.weight.grad is not None
    net.zero_grad(set_to_none=False)
    for name, p in net.named_parameters():
        if p.grad is not None:
            assert p.grad.shape == p.shape and p.grad.dtype == p.dtype
            assert not np.any(p.grad.numpy()), name
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_zero_grad_clears_non_finite_gradients(device):
    """After an exploding step the gradients hold inf/nan; zeroing must still give zeros."""
    layer = nn.Linear(2, 2, device=device)
    layer.weight.grad = tg.tensor([[np.nan, np.inf], [-np.inf, 1.0]], device=device)
    layer.bias.grad = tg.tensor([np.nan, 2.0], device=device)
    with np.errstate(invalid="ignore"):
        layer.zero_grad(set_to_none=False)
    for p in layer.parameters():
        np.testing.assert_array_equal(p.grad.numpy(), np.zeros(p.shape))


def test_to_float64_keeps_parameter_identity(device):
    tg.manual_seed(0)
    net = Net(device, tg.float32)
    params = net.parameters()
    values = [p.numpy().copy() for p in params]
    opt = tg.optim.SGD(params, lr=0.5)                      # built before the cast
    assert net.to(dtype=tg.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    for p, v in zip(net.parameters(), values):
        assert p.dtype == tg.float64 and p.device == device and p.requires_grad
        np.testing.assert_array_equal(p.numpy(), v.astype(np.float64))
    x = tg.randn(5, 3, dtype=tg.float64, device=device)
    net.eval()
    net(x).sum().backward()
    grads = {id(p): p.grad.numpy().copy() for p in net.parameters() if p.grad is not None}
    assert grads and all(g.dtype == np.float64 for g in grads.values())
    opt.step()
    for p, v in zip(net.parameters(), values):
        expected = v.astype(np.float64) - 0.5 * grads.get(id(p), 0.0)
        np.testing.assert_allclose(p.numpy(), expected, rtol=1e-12, atol=0)
        assert p.dtype == tg.float64
    net.to(device=device)
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    with pytest.raises(TypeError, match="float"):
        net.to(dtype=tg.int64)


def test_repr_shows_nested_structure():
    text = repr(Net())
    assert text.startswith("Net(\n")
    assert "  (enc): Linear(in_features=3, out_features=4, bias=True)" in text
    assert "  (blocks): ModuleList(\n    (0): Linear(in_features=4, out_features=4, bias=True)\n" in text
    assert "    (1): Linear(in_features=4, out_features=2, bias=False)\n  )" in text
    assert "(drop): Dropout(p=0.25)" in text
    assert "(emb): Embedding(5, 2, padding_idx=0)" in text
    assert text.endswith("\n)")
    assert repr(nn.Dropout(0.1)) == "Dropout(p=0.1)"


# ----------------------------------------------------------------- Linear
@hyp()
@given(batch=st.lists(st.integers(1, 3), max_size=2), n_in=st.integers(1, 4), n_out=st.integers(1, 3),
       bias=st.booleans())
def test_linear_value_and_gradcheck(batch, n_in, n_out, bias, device):
    layer = nn.Linear(n_in, n_out, bias=bias, dtype=tg.float64, device=device)
    assert layer.weight.dtype == tg.float64 and layer.weight.device == device
    x = tg.randn(*batch, n_in, dtype=tg.float64, device=device, requires_grad=True)
    y = layer(x)
    assert y.shape == (*batch, n_out)
    expected = x.numpy() @ layer.weight.numpy().T + (layer.bias.numpy() if bias else 0.0)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)
    inputs = [x, layer.weight] + ([layer.bias] if bias else [])
    assert tg.gradcheck(lambda *args: layer(args[0]), inputs)


@hyp()
@given(n_in=st.integers(1, 64), n_out=st.integers(1, 16))
def test_linear_default_init_is_within_bounds(n_in, n_out, device):
    layer = nn.Linear(n_in, n_out, device=device)
    bound = 1 / math.sqrt(n_in)
    assert layer.weight.shape == (n_out, n_in) and layer.bias.shape == (n_out,)
    assert layer.weight.dtype == tg.float32
    assert np.all(np.abs(layer.weight.numpy()) <= bound)
    assert np.all(np.abs(layer.bias.numpy()) <= bound)


def test_linear_default_init_fills_its_bounds(device):
    tg.manual_seed(0)
    layer = nn.Linear(400, 250, device=device)
    w = layer.weight.numpy().astype(np.float64)
    bound = 1 / 20
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.mean()) < 0.01 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert w.min() < 0 < w.max()


# ----------------------------------------------------------------- Embedding
@pytest.mark.parametrize("padding_idx, row", [(0, 0), (3, 3), (-1, 5)])
def test_embedding_padding_row_is_zero_and_gets_no_gradient(padding_idx, row, device):
    tg.manual_seed(0)
    emb = nn.Embedding(6, 3, padding_idx=padding_idx, dtype=tg.float64, device=device)
    w = emb.weight.numpy()
    assert not np.any(w[row]) and np.all(np.delete(w, row, axis=0) != 0)
    ids = np.array([[1, 4, row, 1], [row, 1, 2, 4]])
    out = emb(tg.tensor(ids, device=device))
    assert out.shape == (2, 4, 3)
    np.testing.assert_array_equal(out.numpy(), w[ids])
    upstream = np.random.default_rng(0).standard_normal((2, 4, 3))
    out.backward(tg.tensor(upstream, device=device))
    expected = np.zeros((6, 3))
    for pos, i in np.ndenumerate(ids):
        if i != row:
            expected[i] += upstream[pos]                 # repeated ids accumulate
    np.testing.assert_allclose(emb.weight.grad.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert not np.any(emb.weight.grad.numpy()[row])


def test_embedding_out_of_range_ids_raise(device):
    emb = nn.Embedding(5, 2, device=device)
    for bad in ([0, 5], [-1, 2]):
        with pytest.raises(ValueError, match=r"\[0, 5\)"):
            emb(tg.tensor(bad, device=device))
    with pytest.raises(TypeError, match="integers"):
        emb(tg.tensor([0.0, 1.0], device=device))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(5, 2, padding_idx=5)


def test_embedding_gradcheck(device):
    # without padding_idx (whose row is held at zero gradient on purpose)
    emb = nn.Embedding(4, 2, dtype=tg.float64, device=device)
    ids = tg.tensor([[0, 2, 3], [3, 3, 1]], device=device)
    assert tg.gradcheck(lambda w: emb(ids) * 1.5, [emb.weight])


# ----------------------------------------------------------------- Dropout
def test_dropout_train_and_eval(device):
    tg.manual_seed(0)
    x = tg.randn(200, 100, dtype=tg.float64, device=device, requires_grad=True)
    drop = nn.Dropout(0.3)
    y = drop(x)
    xv, yv = x.numpy(), y.numpy()
    kept = yv != 0
    assert abs(1 - kept.mean() - 0.3) < 0.01
    np.testing.assert_allclose(yv[kept], xv[kept] / 0.7, rtol=1e-12)
    y.backward(tg.ones_like(y))
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.7, rtol=1e-12)
    drop.eval()
    np.testing.assert_array_equal(drop(x).numpy(), xv)
    drop.train()
    assert not np.array_equal(drop(x).numpy(), xv)
    assert not np.any(nn.Dropout(1.0)(x).numpy())
    np.testing.assert_array_equal(nn.Dropout(0.0)(x).numpy(), xv)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p must be in"):
            nn.Dropout(p)


def test_dropout_follows_the_seed(device):
    x = tg.ones(50, device=device)
    tg.manual_seed(5)
    a = nn.Dropout(0.5)(x).numpy()
    tg.manual_seed(5)
    b = nn.Dropout(0.5)(x).numpy()
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- Sequential
def test_sequential_runs_its_modules_in_order_under_pytorch_names(device):
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8, dtype=tg.float64, device=device), nn.Dropout(0.5),
                          nn.Linear(8, 2, dtype=tg.float64, device=device))
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(model) == 3 and isinstance(model[1], nn.Dropout) and model[-1] is list(model)[2]
    model.eval()
    x = tg.randn(4, 3, dtype=tg.float64, device=device)
    np.testing.assert_array_equal(model(x).numpy(), model[2](model[1](model[0](x))).numpy())
    head = model[1:]
    assert isinstance(head, nn.Sequential) and [n for n, _ in head.named_children()] == ["1", "2"]
    assert head[1] is model[2]
    assert model.append(nn.Linear(2, 1, dtype=tg.float64, device=device)) is model
    assert model(x).shape == (4, 1) and "3.weight" in model.state_dict()
    assert nn.Sequential()(x) is x
    assert repr(nn.Sequential(nn.Dropout(0.1))) == "Sequential(\n  (0): Dropout(p=0.1)\n)"


def test_sequential_takes_named_modules(device):
    model = nn.Sequential(OrderedDict([("encoder", nn.Linear(3, 4, device=device)),
                                       ("decoder", nn.Linear(4, 3, device=device))]))
    assert [n for n, _ in model.named_parameters()] == ["encoder.weight", "encoder.bias",
                                                         "decoder.weight", "decoder.bias"]
    assert model.encoder is model[0]
    assert model(tg.ones(2, 3, device=device)).shape == (2, 3)


def test_sequential_refuses_non_modules_and_bad_names():
    with pytest.raises(TypeError, match="Sequential holds Modules, got function"):
        nn.Sequential(nn.Linear(2, 2), lambda x: x)
    with pytest.raises(TypeError, match="Sequential holds Modules, got list"):
        nn.Sequential([nn.Linear(2, 2)])
    for bad in ("a.b", "", "forward", "training", 3):
        with pytest.raises(ValueError, match="a module name must be a new, non-empty string"):
            nn.Sequential({bad: nn.Linear(2, 2)})


def test_sequential_matches_torch(device):
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2)).double()
    ours = nn.Sequential(nn.Linear(3, 5, device=device), nn.Linear(5, 2, device=device)).to(dtype=tg.float64)
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(ours(tg.tensor(x, dtype=tg.float64, device=device)).numpy(),
                               theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------- losses as Modules
def _classes(device, shape=(6, 4, 3)):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    target.flat[::4] = 2
    return logits, target


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_loss_module_matches_functional_and_torch(reduction, ignore_index, device):
    logits, target = _classes(device)
    loss_fn = nn.CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)
    x = tg.tensor(logits, dtype=tg.float64, device=device, requires_grad=True)
    t = tg.tensor(target, device=device)
    got = loss_fn(x, t)
    np.testing.assert_array_equal(got.numpy(), F.cross_entropy(x, t, ignore_index, reduction).numpy())
    torch = pytest.importorskip("torch")
    tx = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.CrossEntropyLoss(ignore_index=ignore_index, reduction=reduction)(tx, torch.tensor(target))
    np.testing.assert_allclose(got.numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    got.sum().backward()
    expected.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_module_matches_torch(reduction, device):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 5, 3))
    got = nn.MSELoss(reduction=reduction)(tg.tensor(a, dtype=tg.float64, device=device),
                                          tg.tensor(b, dtype=tg.float64, device=device))
    np.testing.assert_allclose(got.numpy(), np.mean((a - b) ** 2) if reduction == "mean" else
                               np.sum((a - b) ** 2) if reduction == "sum" else (a - b) ** 2, rtol=1e-12)
    torch = pytest.importorskip("torch")
    expected = torch.nn.MSELoss(reduction=reduction)(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12)


def test_loss_modules_check_their_arguments():
    for cls in (nn.CrossEntropyLoss, nn.MSELoss):
        with pytest.raises(ValueError, match=r"reduction must be one of \('none', 'mean', 'sum'\), got 'average'"):
            cls(reduction="average")
        with pytest.raises(TypeError):           # PyTorch's positional weight / size_average
            cls(None)
    with pytest.raises(TypeError, match="ignore_index must be an int, got 0.5"):
        nn.CrossEntropyLoss(ignore_index=0.5)
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss(ignore_index=-100, reduction='mean')"
    assert repr(nn.MSELoss(reduction="sum")) == "MSELoss(reduction='sum')"


# ----------------------------------------------------------------- state dicts to and from PyTorch
def test_torch_state_dict_helpers_carry_an_lstm_both_ways(device):
    torch = pytest.importorskip("torch")
    tg.manual_seed(0)
    ours = nn.LSTM(3, 4, num_layers=2, bidirectional=True, device=device)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    sd = nn.utils.to_torch_state_dict(ours)
    assert list(sd) == [n for n, _ in ours.named_parameters()]
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in sd.values())
    theirs.load_state_dict(sd)                                   # strict: every name matches
    for name, p in ours.named_parameters():
        assert same_bits(theirs.state_dict()[name].numpy(), p.numpy()), name
    sd["weight_ih_l0"].zero_()                                   # a copy, not a view of the model
    assert np.any(ours.weight_ih_l0.numpy())

    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    expected, _ = theirs(torch.from_numpy(x))
    got, _ = ours(tg.tensor(x, device=device))
    np.testing.assert_allclose(got.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6)

    with torch.no_grad():
        for v in theirs.parameters():
            v.mul_(0.5)
    back = nn.utils.from_torch_state_dict(theirs)                # a torch Module or its state_dict
    assert all(type(v) is np.ndarray for v in back.values())
    assert list(back) == list(nn.utils.from_torch_state_dict(theirs.state_dict()))
    ours.load_state_dict(back)
    for name, p in ours.named_parameters():
        assert same_bits(p.numpy(), theirs.state_dict()[name].numpy()), name
    back["bias_hh_l1"][...] = 7                                  # a copy, not a view of the torch model
    assert not torch.any(theirs.bias_hh_l1 == 7)


def test_to_torch_state_dict_takes_a_state_dict_and_from_torch_names_bad_entries(device):
    torch = pytest.importorskip("torch")
    net = Net(device, tg.float64)
    state = net.state_dict()
    sd = nn.utils.to_torch_state_dict(state)
    assert sd["enc.weight"].dtype == torch.float64 and list(sd) == NET_NAMES
    sd["enc.weight"].fill_(7.0)                                  # copies, not views of the dict passed in
    assert not np.any(state["enc.weight"] == 7.0)
    assert torch.equal(nn.utils.to_torch_state_dict({"t": tg.ones(2, device=device)})["t"], torch.ones(2))
    with pytest.raises(TypeError, match="expected a Module or a state dict, got int"):
        nn.utils.to_torch_state_dict(3)
    with pytest.raises(TypeError, match="'w' is torch.bfloat16, which NumPy cannot hold"):
        nn.utils.from_torch_state_dict({"w": torch.zeros(2, dtype=torch.bfloat16)})
    with pytest.raises(TypeError, match="'w' is a ndarray, expected a torch.Tensor"):
        nn.utils.from_torch_state_dict({"w": np.zeros(2)})
    with pytest.raises(TypeError, match="expected a torch.nn.Module or its state dict"):
        nn.utils.from_torch_state_dict([1, 2])


def test_torch_helpers_say_torch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)             # as if it were not installed
    for helper, arg in ((nn.utils.to_torch_state_dict, nn.Linear(2, 2)), (nn.utils.from_torch_state_dict, {})):
        with pytest.raises(ImportError, match=f"{helper.__name__} needs PyTorch, which is not installed"):
            helper(arg)


def test_importing_the_package_does_not_import_torch():
    code = "import sys, tinygrad_rnn; tinygrad_rnn.nn.utils; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------- same seed, same model
def test_manual_seed_gives_the_same_weights(device):
    tg.manual_seed(42)
    a = Net(device).state_dict()
    tg.manual_seed(42)
    b = Net(device).state_dict()
    tg.manual_seed(43)
    c = Net(device).state_dict()
    assert all(same_bits(a[k], b[k]) for k in a)
    assert not np.array_equal(a["enc.weight"], c["enc.weight"])


# ----------------------------------------------------------------- checkpoint
def _grads(tensors):
    return [None if t.grad is None else t.grad.numpy().copy() for t in tensors]


def _clear(tensors):
    for t in tensors:
        t.grad = None


@hyp(10)
@given(batch=st.integers(1, 3), width=st.integers(1, 4), x_needs_grad=st.booleans())
def test_checkpoint_gradients_equal_plain_gradients(batch, width, x_needs_grad, device):
    tg.manual_seed(0)
    lin = nn.Linear(width, width, dtype=tg.float64, device=device)
    w2 = nn.Parameter(tg.randn(width, 2, dtype=tg.float64, device=device))
    x = tg.randn(batch, width, dtype=tg.float64, device=device, requires_grad=x_needs_grad)
    leaves = [x, lin.weight, lin.bias, w2]

    def block(h):          # parameters reached through the closure
        h = lin(h).tanh()
        return h @ w2, h.sum()

    def loss(out):
        y, s = out
        return (y * y).sum() + 3 * s + (x * x).sum() if x_needs_grad else (y * y).sum() + 3 * s

    plain_out = block(x)
    loss(plain_out).backward()
    expected = _grads(leaves)
    _clear(leaves)

    ck_out = tg.checkpoint(block, x)
    np.testing.assert_array_equal(ck_out[0].numpy(), plain_out[0].numpy())
    loss(ck_out).backward()
    got = _grads(leaves)
    for e, g in zip(expected, got):
        if e is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    assert got[1] is not None and got[3] is not None
    assert (got[0] is not None) == x_needs_grad


def test_checkpoint_through_a_non_leaf_input_and_a_chain(device):
    tg.manual_seed(1)
    a = tg.randn(2, 3, dtype=tg.float64, device=device, requires_grad=True)
    w = nn.Parameter(tg.randn(3, 3, dtype=tg.float64, device=device))

    def step(h):
        return (h @ w).sigmoid() * h

    def run(use_checkpoint):
        h = a * 2.0
        for _ in range(3):
            h = tg.checkpoint(step, h) if use_checkpoint else step(h)
        h.sum().backward()
        grads = _grads([a, w])
        _clear([a, w])
        return h.numpy(), grads

    (h0, g0), (h1, g1) = run(False), run(True)
    np.testing.assert_array_equal(h0, h1)
    for e, g in zip(g0, g1):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_checkpoint_shared_parameters_unused_outputs_and_repeated_inputs(device):
    tg.manual_seed(2)
    w = nn.Parameter(tg.randn(3, 3, dtype=tg.float64, device=device))
    x = tg.randn(2, 3, dtype=tg.float64, device=device, requires_grad=True)

    def block(h, k):
        y = (h @ w) * k
        return y.tanh(), y.sigmoid()            # the second output goes unused

    def run(use_checkpoint):
        a, _ = tg.checkpoint(block, x, x) if use_checkpoint else block(x, x)
        (a @ w).sum().backward()                # w is used inside and outside the segment
        grads = _grads([x, w])
        _clear([x, w])
        return grads

    for e, g in zip(run(False), run(True)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_checkpoint_replays_dropout_identically(device):
    tg.manual_seed(3)
    lin = nn.Linear(4, 4, dtype=tg.float64, device=device)
    x = tg.randn(5, 4, dtype=tg.float64, device=device, requires_grad=True)
    drop = nn.Dropout(0.5)

    def block(h):
        return drop(lin(h).tanh()) * 2

    def run(use_checkpoint):
        tg.manual_seed(11)
        y = tg.checkpoint(block, x) if use_checkpoint else block(x)
        between = tg.rand(8, dtype=tg.float64).numpy()     # draws between forward and backward
        (y * y).sum().backward()
        after = tg.rand(8, dtype=tg.float64).numpy()       # the generator continues as without checkpoint
        grads = _grads([x, lin.weight, lin.bias])
        _clear([x, lin.weight, lin.bias])
        return y.numpy(), grads, np.concatenate([between, after])

    (y0, g0, r0), (y1, g1, r1) = run(False), run(True)
    np.testing.assert_array_equal(y0, y1)
    assert np.any(y0 == 0)                                  # dropout did drop something
    for e, g in zip(g0, g1):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(r0, r1)


def test_checkpoint_argument_errors(device):
    with pytest.raises(TypeError, match="inputs\\[1\\]"):
        tg.checkpoint(lambda a, b: a, tg.ones(2, device=device), np.ones(2))
    with pytest.raises(ValueError, match="at least one input"):
        tg.checkpoint(lambda: tg.ones(2))
