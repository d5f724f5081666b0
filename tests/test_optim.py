"""tg.optim: optimizers, learning-rate schedules and gradient clipping.

Each optimizer runs several steps on a fixed sequence of gradients and is
compared with its update rule written out below in NumPy (float64) and, where
PyTorch is installed, with ``torch.optim`` under the same hyperparameters.
Schedules are compared with their closed forms, clipping with the norm it
promises. A gradient, a state buffer or a hyperparameter that does not fit
raises before anything changes: a step keeps every parameter's shape and dtype
or raises.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.optim import lr_scheduler
from helpers import hyp

nn = tg.nn
optim = tg.optim
clip_grad_norm_ = tg.nn.utils.clip_grad_norm_
clip_grad_value_ = tg.nn.utils.clip_grad_value_


# ----------------------------------------------------------------- a fixed problem
SHAPES = [(3, 4), (5,)]
STEPS = 7
SCALES = [3.0, 1.0, 0.2, 2.0, 0.05, 0.5, 1.5]     # shrinking gradients make amsgrad's maximum matter


def initial_values():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s) for s in SHAPES]


def gradient_sequence():
    rng = np.random.default_rng(1)
    return [[scale * rng.standard_normal(s) for s in SHAPES] for scale in SCALES]


def make_params(device, arrays=None, dtype=tg.float64):
    arrays = initial_values() if arrays is None else arrays
    return [nn.Parameter(tg.tensor(a, dtype=dtype, device=device)) for a in arrays]


def set_grads(params, grads):
    for p, g in zip(params, grads):
        p.grad = tg.tensor(g, dtype=p.dtype, device=p.device)


def run(opt_cls, kwargs, device, steps=STEPS):
    params = make_params(device)
    opt = opt_cls(params, **kwargs)
    for grads in gradient_sequence()[:steps]:
        set_grads(params, grads)
        opt.step()
    return [p.numpy() for p in params]


# ----------------------------------------------------------------- the update rules, written out
def ref_sgd(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    buf = None
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def ref_adam(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False):
    b1, b2 = betas
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    vmax = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        vmax = np.maximum(vmax, v)
        m_hat = m / (1 - b1 ** t)
        v_hat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def ref_adamw(p, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
    return ref_adam(p, grads, lr, betas, eps, weight_decay, amsgrad, decoupled=True)


def ref_rmsprop(p, grads, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    sq = np.zeros_like(p)
    avg = np.zeros_like(p)
    buf = np.zeros_like(p)
    for g in grads:
        g = g + weight_decay * p
        sq = alpha * sq + (1 - alpha) * g ** 2
        if centered:
            avg = alpha * avg + (1 - alpha) * g
            denom = np.sqrt(sq - avg ** 2) + eps
        else:
            denom = np.sqrt(sq) + eps
        if momentum:
            buf = momentum * buf + g / denom
            p = p - lr * buf
        else:
            p = p - lr * g / denom
    return p


def ref_adagrad(p, grads, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10):
    s = np.full_like(p, initial_accumulator_value)
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s = s + g ** 2
        p = p - clr * g / (np.sqrt(s) + eps)
    return p


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.9))),
    ("Adam", dict(lr=0.01, betas=(0.9, 0.99), amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1, amsgrad=True, eps=1e-3)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.05, weight_decay=0.5)),
    ("AdamW", dict(lr=0.01, betas=(0.9, 0.99), weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-4)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, alpha=0.8, centered=True, momentum=0.9, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1, weight_decay=0.1, eps=1e-6)),
]
REFERENCE = {"SGD": ref_sgd, "Adam": ref_adam, "AdamW": ref_adamw, "RMSprop": ref_rmsprop, "Adagrad": ref_adagrad}
CASE_IDS = [f"{name}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for name, kw in CASES]


@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_optimizer_matches_its_update_rule(name, kwargs, device):
    got = run(getattr(optim, name), kwargs, device)
    grads = gradient_sequence()
    for i, p0 in enumerate(initial_values()):
        expected = REFERENCE[name](p0, [g[i] for g in grads], **kwargs)
        np.testing.assert_allclose(got[i], expected, rtol=1e-10, atol=1e-12)
        assert not np.allclose(got[i], p0)


@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_optimizer_matches_torch(name, kwargs, device):
    torch = pytest.importorskip("torch")
    got = run(getattr(optim, name), kwargs, device)
    tparams = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in initial_values()]
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    for grads in gradient_sequence():
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g, dtype=torch.float64)
        topt.step()
    for g, tp in zip(got, tparams):
        np.testing.assert_allclose(g, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_default_hyperparameters_match_torch():
    torch = pytest.importorskip("torch")
    p = nn.Parameter(tg.zeros(2))
    tp = torch.zeros(2, requires_grad=True)
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        ours = getattr(optim, name)([p]).defaults
        theirs = getattr(torch.optim, name)([tp]).defaults
        for key, value in ours.items():
            assert theirs[key] == value, (name, key)


# ----------------------------------------------------------------- state
@pytest.mark.parametrize("name, kwargs", [CASES[i] for i in (2, 3, 10, 13, 18, 22)],
                         ids=[CASE_IDS[i] for i in (2, 3, 10, 13, 18, 22)])
@pytest.mark.parametrize("through_file", [False, True])
def test_state_dict_round_trip_continues_identically(name, kwargs, through_file, device, tmp_path):
    cls = getattr(optim, name)
    grads = gradient_sequence()
    straight = run(cls, kwargs, device)

    params = make_params(device)
    opt = cls(params, **kwargs)
    for g in grads[:3]:
        set_grads(params, g)
        opt.step()
    state = opt.state_dict()
    snapshot = [p.numpy().copy() for p in params]
    saved_arrays = {i: {k: np.array(v, copy=True) for k, v in s.items()} for i, s in state["state"].items()}
    if through_file:
        tg.save(state, tmp_path / "opt.npz")
        state = tg.load(tmp_path / "opt.npz")
    # the old optimizer keeps going; the saved state must not follow it
    set_grads(params, grads[3])
    opt.step()
    for i, s in saved_arrays.items():
        for k, v in s.items():
            np.testing.assert_array_equal(np.asarray(state["state"][i][k]), v)

    resumed = make_params(device, snapshot)
    opt2 = cls(resumed, **{k: v for k, v in kwargs.items() if k != "lr"}, lr=123.0)   # lr comes from the state
    opt2.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == kwargs["lr"]
    for g in grads[3:]:
        set_grads(resumed, g)
        opt2.step()
    for a, b in zip(straight, resumed):
        assert np.array_equal(a, b.numpy())


def test_state_dict_layout_follows_torch(device):
    params = make_params(device)
    opt = optim.Adam(params, lr=0.1)
    set_grads(params, gradient_sequence()[0])
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == [0, 1]
    assert sd["state"][0]["step"] == 1
    assert isinstance(sd["state"][1]["exp_avg"], np.ndarray) and sd["state"][1]["exp_avg"].shape == (5,)
    assert sd["param_groups"][0]["params"] == [0, 1]
    assert sd["param_groups"][0]["lr"] == 0.1
    with pytest.raises(ValueError, match="load_state_dict"):
        optim.Adam(params[:1]).load_state_dict(sd)


# ----------------------------------------------------------------- behaviour promised by the package
@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_step_does_not_write_into_the_old_arrays(name, kwargs, device):
    params = make_params(device)
    opt = getattr(optim, name)(params, **kwargs)
    for grads in gradient_sequence()[:3]:
        set_grads(params, grads)
        old = [p.data for p in params]
        old_values = [p.numpy().copy() for p in params]
        old_grads = [p.grad.numpy().copy() for p in params]
        opt.step()
        for p, o, v, g in zip(params, old, old_values, old_grads):
            assert p.data is not o
            np.testing.assert_array_equal(tg.Tensor(o).numpy(), v)      # the old array is intact
            np.testing.assert_array_equal(p.grad.numpy(), g)              # and so is the gradient
            assert not np.array_equal(p.numpy(), v)


def test_a_held_graph_keeps_the_weights_it_was_built_with(device):
    w = nn.Parameter(tg.tensor([1.0, 2.0, 3.0], dtype=tg.float64, device=device))
    x = tg.tensor([0.5, -1.0, 2.0], dtype=tg.float64, device=device, requires_grad=True)
    y = (w * x).sum()
    opt = optim.Adam([w], lr=0.5)
    w.grad = tg.ones(3, dtype=tg.float64, device=device)
    opt.step()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("name, kwargs", [c for c in CASES if c[1].get("weight_decay", 0) == 0][::3])
def test_float32_parameters_stay_float32(name, kwargs, device):
    params = make_params(device, dtype=tg.float32)
    opt = getattr(optim, name)(params, **kwargs)
    for grads in gradient_sequence()[:3]:
        set_grads(params, grads)
        opt.step()
    assert all(p.dtype == tg.float32 for p in params)
    for s in opt.state.values():
        for v in s.values():
            if hasattr(v, "dtype") and np.ndim(v):
                assert v.dtype == np.float32


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_a_scalar_parameter_stays_a_tensor_of_shape_0d(name, device):
    p = nn.Parameter(tg.tensor(1.5, dtype=tg.float64, device=device))
    opt = getattr(optim, name)([p], lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        (p * p).backward()
        opt.step()
    assert p.shape == () and p.dtype == tg.float64 and p.device == device
    value = p.numpy()
    assert isinstance(value, np.ndarray) and value.shape == ()
    assert 0.0 < float(value) < 1.5
    assert isinstance(opt.state_dict(), dict)


def test_parameters_without_grad_are_left_alone(device):
    a, b = make_params(device)
    before = b.numpy().copy()
    opt = optim.Adam([a, b], lr=0.1)
    a.grad = tg.ones(a.shape, dtype=tg.float64, device=device)
    opt.step()
    np.testing.assert_array_equal(b.numpy(), before)
    assert b not in opt.state or not opt.state[b]


def test_param_groups_use_their_own_hyperparameters(device):
    a, b = make_params(device)
    a0, b0 = a.numpy().copy(), b.numpy().copy()
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.9}], lr=0.1)
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[1]["momentum"] == 0.9
    ga, gb = np.ones(a.shape), np.full(b.shape, 2.0)
    for _ in range(2):
        set_grads([a, b], [ga, gb])
        opt.step()
    np.testing.assert_allclose(a.numpy(), a0 - 0.1 * 2 * ga, rtol=1e-12)
    np.testing.assert_allclose(b.numpy(), b0 - 0.5 * gb - 0.5 * (0.9 * gb + gb), rtol=1e-12)


def test_optimizer_zero_grad(device):
    params = make_params(device)
    opt = optim.SGD(params, lr=0.1)
    set_grads(params, gradient_sequence()[0])
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not np.any(p.grad.numpy()) for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_optimizer_zero_grad_clears_non_finite_gradients(device):
    """After an exploding step the gradients hold inf/nan; zeroing must still give zeros."""
    params = make_params(device)
    opt = optim.SGD(params, lr=0.1)
    set_grads(params, [np.full(s, np.nan) for s in SHAPES])
    params[1].grad = tg.tensor(np.full(5, np.inf), dtype=tg.float64, device=device)
    with np.errstate(invalid="ignore"):
        opt.zero_grad(set_to_none=False)
    for p in params:
        np.testing.assert_array_equal(p.grad.numpy(), np.zeros(p.shape))


def test_training_a_module_reduces_the_loss(device):
    tg.manual_seed(0)
    x = tg.randn(32, 3, dtype=tg.float64, device=device)
    target = x @ tg.tensor([[1.0], [-2.0], [0.5]], dtype=tg.float64, device=device) + 0.3
    model = nn.Linear(3, 1, dtype=tg.float64, device=device)
    opt = optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(100):
        loss = ((model(x) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]


# ----------------------------------------------------------------- bad hyperparameters
@pytest.mark.parametrize("name, kwargs, words", [
    ("SGD", dict(lr=-0.1), "lr"),
    ("SGD", dict(lr=0.1, momentum=-0.5), "momentum"),
    ("SGD", dict(lr=0.1, weight_decay=-1.0), "weight_decay"),
    ("SGD", dict(lr=0.1, nesterov=True), "nesterov"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
    ("Adam", dict(lr=-1.0), "lr"),
    ("Adam", dict(betas=(1.0, 0.999)), "betas"),
    ("Adam", dict(betas=(0.9, -0.1)), "betas"),
    ("Adam", dict(eps=-1e-8), "eps"),
    ("Adam", dict(weight_decay=-0.1), "weight_decay"),
    ("AdamW", dict(betas=(0.9, 1.5)), "betas"),
    ("AdamW", dict(lr=-1e-3), "lr"),
    ("RMSprop", dict(alpha=1.5), "alpha"),
    ("RMSprop", dict(alpha=-0.1), "alpha"),
    ("RMSprop", dict(momentum=-0.9), "momentum"),
    ("RMSprop", dict(eps=-1.0), "eps"),
    ("Adagrad", dict(lr_decay=-0.1), "lr_decay"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    ("Adagrad", dict(lr=-0.1), "lr"),
    ("Adagrad", dict(weight_decay=-0.1), "weight_decay"),
    ("Adagrad", dict(eps=-1e-10), "eps"),
    ("RMSprop", dict(weight_decay=-0.1), "weight_decay"),
    ("RMSprop", dict(lr=-0.1), "lr"),
    ("AdamW", dict(weight_decay=-0.1), "weight_decay"),
    ("AdamW", dict(eps=-1.0), "eps"),
    ("Adam", dict(betas=(0.9,)), r"betas must be a pair \(beta1, beta2\), got \(0.9,\)"),
    ("Adam", dict(betas=(0.9, 0.99, 0.9)), "betas must be a pair"),
    ("Adam", dict(lr=float("nan")), "lr must be finite, got nan"),
    ("SGD", dict(lr=float("inf")), "lr must be finite"),
    ("RMSprop", dict(eps=float("nan")), "eps must be finite"),
])
def test_bad_hyperparameters_raise(name, kwargs, words, device):
    with pytest.raises(ValueError, match=words):
        getattr(optim, name)(make_params(device), **kwargs)


@pytest.mark.parametrize("name, kwargs, words", [
    ("SGD", dict(lr="0.1"), r"SGD: lr must be a real number, got '0.1' \(str\)"),
    ("Adam", dict(lr=None), "lr must be a real number, got None"),
    ("Adam", dict(betas=(0.9, "0.999")), "betas must be a real number"),
    ("Adam", dict(amsgrad="yes"), "amsgrad must be True or False, got 'yes'"),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov="no"), "nesterov must be True or False"),
    ("RMSprop", dict(centered=1), "centered must be True or False"),
    ("Adagrad", dict(lr_decay=[0.1]), "lr_decay must be a real number"),
])
def test_hyperparameters_of_the_wrong_type_raise_at_construction(name, kwargs, words, device):
    with pytest.raises(TypeError, match=words):
        getattr(optim, name)(make_params(device), **kwargs)


def test_hyperparameters_of_a_group_are_checked_when_it_is_added(device):
    a, b = make_params(device)
    with pytest.raises(TypeError, match="lr must be a real number"):
        optim.SGD([{"params": [a]}, {"params": [b], "lr": "0.5"}], lr=0.1)
    with pytest.raises(ValueError, match="nesterov needs momentum > 0"):
        optim.SGD([{"params": [a]}, {"params": [b], "nesterov": True}], lr=0.1, momentum=0.0)
    opt = optim.Adam([a], lr=0.1)
    with pytest.raises(ValueError, match="betas must be in"):
        opt.add_param_group({"params": [b], "betas": (0.9, 1.0)})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_numpy_hyperparameters_keep_float32_parameters_float32(name, device):
    """A NumPy float64 scalar (say an lr read from a file) would promote a float32 array
    to float64; hyperparameters are kept as Python floats so it cannot."""
    params = make_params(device, dtype=tg.float32) + [nn.Parameter(tg.tensor(0.5, device=device))]
    kwargs = dict(lr=np.float64(0.01), weight_decay=np.float64(0.1))
    if name == "Adam" or name == "AdamW":
        kwargs["betas"] = np.array([0.9, 0.99])
    opt = getattr(optim, name)(params, **kwargs)
    assert type(opt.param_groups[0]["lr"]) is float
    for grads in gradient_sequence()[:2]:
        set_grads(params, grads + [np.float32(1.0)])
        opt.step()
    assert [p.dtype for p in params] == [tg.float32] * 3
    assert params[2].shape == ()


def test_bad_parameter_lists_raise(device):
    a, b = make_params(device)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="two groups"):
        optim.SGD([{"params": [a]}, {"params": [a, b]}], lr=0.1)
    with pytest.raises(TypeError, match="leaf"):
        optim.SGD([a * 2], lr=0.1)
    with pytest.raises(TypeError, match="ordered collection"):
        optim.SGD({a, b}, lr=0.1)
    with pytest.raises(TypeError, match="'params' entry"):
        optim.SGD([{"lr": 0.1}], lr=0.1)


@pytest.mark.parametrize("name, kwargs", [CASES[i] for i in (1, 6, 14, 19)], ids=[CASE_IDS[i] for i in (1, 6, 14, 19)])
def test_a_parameter_listed_twice_is_stepped_once(name, kwargs, device):
    """PyTorch warns and then steps such a parameter twice; here it is kept once, with the warning."""
    cls = getattr(optim, name)
    a, b = make_params(device)
    twin_a, twin_b = make_params(device)
    with pytest.warns(UserWarning, match="more than once") as record:
        opt = cls([a, b, a], **kwargs)
    assert record[0].filename == __file__                  # the warning points at the caller
    reference = cls([twin_a, twin_b], **kwargs)
    assert len(opt.param_groups[0]["params"]) == 2
    for grads in gradient_sequence()[:3]:
        set_grads([a, b], grads)
        set_grads([twin_a, twin_b], grads)
        opt.step()
        reference.step()
    np.testing.assert_array_equal(a.numpy(), twin_a.numpy())
    np.testing.assert_array_equal(b.numpy(), twin_b.numpy())
    c = nn.Parameter(tg.zeros(2, dtype=tg.float64, device=device))
    with pytest.warns(UserWarning, match="more than once"):
        opt.add_param_group({"params": [c, c]})
    assert opt.param_groups[1]["params"] == [c]
    with pytest.raises(ValueError, match=r"two groups \(params\[1\] of the new group is already in "
                                         r"param_groups\[0\]\)"):
        opt.add_param_group({"params": [nn.Parameter(tg.zeros(1)), b]})


# ----------------------------------------------------------------- gradients and states unlike their parameter
def _snapshot(params, opt):
    return ([p.data for p in params], [p.numpy().copy() for p in params],
            {id(p): {k: np.array(backend_host(v), copy=True) for k, v in s.items()} for p, s in opt.state.items()})


def backend_host(v):
    return tg.Tensor(v).numpy() if hasattr(v, "shape") else v


def _assert_unchanged(params, opt, snapshot):
    arrays, values, state = snapshot
    for p, a, v in zip(params, arrays, values):
        assert p.data is a
        np.testing.assert_array_equal(p.numpy(), v)
    assert {id(p) for p in opt.state if opt.state[p]} == {k for k, s in state.items() if s}
    for p, s in opt.state.items():
        for k, v in s.items():
            np.testing.assert_array_equal(backend_host(v), state[id(p)][k])


BAD_GRADS = [
    ("float64 for float32", lambda p: tg.ones(p.shape, dtype=tg.float64, device=p.device),
     ValueError, r"\.grad has dtype float64, expected dtype float32 like the parameter"),
    ("(3, 1) for (5,)", lambda p: tg.ones(3, 1, device=p.device),
     ValueError, r"\.grad has shape \(3, 1\), expected shape \(5,\)"),
    ("(1,) for (5,)", lambda p: tg.ones(1, device=p.device),
     ValueError, r"\.grad has shape \(1,\), expected shape \(5,\)"),
    ("int64 for float32", lambda p: tg.ones(p.shape, dtype=tg.int64, device=p.device),
     ValueError, "dtype int64, expected dtype float32"),
    ("an ndarray", lambda p: np.ones(p.shape, np.float32), TypeError, "a .grad of type ndarray, expected a Tensor"),
]


@pytest.mark.parametrize("bad", BAD_GRADS, ids=[b[0] for b in BAD_GRADS])
@pytest.mark.parametrize("name, kwargs", CASES, ids=CASE_IDS)
def test_step_refuses_a_grad_unlike_its_parameter(name, kwargs, bad, device):
    """The second parameter gets a bad gradient after two good steps: the step raises,
    naming it, and neither parameter nor any state has changed."""
    _, make_grad, error, words = bad
    params = make_params(device, dtype=tg.float32)
    opt = getattr(optim, name)(params, **kwargs)
    for grads in gradient_sequence()[:2]:
        set_grads(params, grads)
        opt.step()
    set_grads(params, gradient_sequence()[2])
    bad = make_grad(params[1])
    with pytest.raises((ValueError, TypeError)):
        params[1].grad = bad                                # assigning it is refused at once ...
    params[1]._grad = bad                                   # ... and past that check, the step refuses it
    snapshot = _snapshot(params, opt)
    with pytest.raises(error, match=words) as info:
        opt.step()
    assert "param_groups[0]['params'][1] (shape (5,), float32)" in str(info.value)
    _assert_unchanged(params, opt, snapshot)
    params[1].grad = tg.ones(5, device=device)              # once fixed, stepping works again
    opt.step()
    assert [p.dtype for p in params] == [tg.float32] * 2 and params[1].shape == (5,)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_step_refuses_a_gradient_a_hook_made_float64(name, device):
    w = nn.Parameter(tg.ones(2, device=device))
    w.register_hook(lambda g: g.double())
    opt = getattr(optim, name)([w], lr=0.1)
    with pytest.raises(RuntimeError, match="dtype float32 on \\w+ \\(the gradient's\\), got .* dtype float64"):
        (w * w).sum().backward()                # the engine refuses the hook's result
    assert w.grad is None
    opt.step()                                  # nothing to step: the parameter stays as it was
    assert w.dtype == tg.float32 and w.numpy().tolist() == [1.0, 1.0]


def test_step_refuses_state_left_behind_by_a_cast_model(device):
    model = nn.Linear(3, 2, device=device)
    opt = optim.Adam(model.parameters(), lr=0.1)
    model(tg.ones(1, 3, device=device)).sum().backward()
    opt.step()
    model.to(dtype=tg.float64)
    model(tg.ones(1, 3, dtype=tg.float64, device=device)).sum().backward()
    snapshot = _snapshot(model.parameters(), opt)
    with pytest.raises(ValueError, match="state 'exp_avg' has dtype float32, expected dtype float64.*casts it"):
        opt.step()
    _assert_unchanged(model.parameters(), opt, snapshot)
    opt.load_state_dict(opt.state_dict())         # the remedy the message names
    opt.step()
    assert all(p.dtype == tg.float64 for p in model.parameters())
    assert all(v.dtype == np.float64 for s in opt.state.values() for v in s.values() if hasattr(v, "dtype"))


# ----------------------------------------------------------------- loading optimizer state
def _stepped(cls, kwargs, model, steps=2):
    opt = cls(model.parameters(), **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        model(tg.ones(1, model.in_features, dtype=model.weight.dtype, device=model.weight.device)).sum().backward()
        opt.step()
    return opt


@pytest.mark.parametrize("name, kwargs", [CASES[i] for i in (1, 3, 8, 13, 18, 22)],
                         ids=[CASE_IDS[i] for i in (1, 3, 8, 13, 18, 22)])
def test_loading_the_state_of_another_model_raises_and_changes_nothing(name, kwargs, device):
    """The issue's case: SGD momentum saved from a Linear(3, 2), loaded into a Linear(1, 1)
    (same number of parameters) used to turn its weight into (2, 3) at the next step."""
    cls = getattr(optim, name)
    saved = _stepped(cls, kwargs, nn.Linear(3, 2, device=device)).state_dict()
    small = nn.Linear(1, 1, device=device)
    opt = _stepped(cls, {**kwargs, "lr": 0.5}, small, steps=1)
    snapshot = _snapshot(small.parameters(), opt)
    with pytest.raises(ValueError, match=r"state\[0\]\['\w+'\] has shape \(2, 3\), expected \(1, 1\)"):
        opt.load_state_dict(saved)
    _assert_unchanged(small.parameters(), opt, snapshot)
    assert opt.param_groups[0]["lr"] == 0.5                 # the hyperparameters were not taken either
    small(tg.ones(1, 1, device=device)).sum().backward()
    opt.step()
    assert small.weight.shape == (1, 1)


def test_load_state_dict_checks_every_entry_before_taking_any(device):
    model = nn.Linear(3, 2, device=device)
    good = _stepped(optim.Adam, dict(lr=0.1), model).state_dict()

    def variant(change):
        sd = {"state": {i: dict(s) for i, s in good["state"].items()},
              "param_groups": [dict(g) for g in good["param_groups"]]}
        change(sd)
        return sd

    bad = [
        (lambda sd: sd["state"][1].update(exp_avg=np.array(["a", "b"])), TypeError,
         r"state\[1\]\['exp_avg'\] holds <U1"),
        (lambda sd: sd["state"][1].update(exp_avg_sq=np.zeros(3)), ValueError, r"has shape \(3,\), expected \(2,\)"),
        (lambda sd: sd["state"][0].update(step=2.5), ValueError, r"step'\] must be a whole number >= 0"),
        (lambda sd: sd["state"][0].update(step=-1), ValueError, "whole number"),
        (lambda sd: sd["state"].update({2: sd["state"][0]}), ValueError,
         "state for parameter 2, but this optimizer has 2"),
        (lambda sd: sd["state"].update({-1: sd["state"][0]}), ValueError, "state for parameter -1"),
        (lambda sd: sd["state"].update({"w": sd["state"][0]}), TypeError, "parameter indices, got 'w'"),
        (lambda sd: sd["param_groups"][0].update(lr=-1.0), ValueError, "lr must be >= 0"),
        (lambda sd: sd["param_groups"][0].update(betas=(0.9,)), ValueError, "betas must be a pair"),
        (lambda sd: sd.pop("param_groups"), TypeError, "'state' and 'param_groups'"),
    ]
    opt = optim.Adam(model.parameters(), lr=0.5)
    model(tg.ones(1, 3, device=device)).sum().backward()
    opt.step()
    snapshot = _snapshot(model.parameters(), opt)
    groups = [dict(g) for g in opt.param_groups]
    for change, error, words in bad:
        with pytest.raises(error, match=words):
            opt.load_state_dict(variant(change))
        _assert_unchanged(model.parameters(), opt, snapshot)
        assert opt.param_groups == groups


@pytest.mark.parametrize("name, kwargs", [CASES[i] for i in (1, 8, 13, 18, 22)],
                         ids=[CASE_IDS[i] for i in (1, 8, 13, 18, 22)])
def test_loaded_state_takes_the_parameters_dtype(name, kwargs, device):
    """State saved from float64 parameters (a 0-d one among them, whose state NumPy may
    hand back as scalars) and loaded for float32 ones: every parameter stays float32."""
    cls = getattr(optim, name)

    def params(dtype):
        return make_params(device, dtype=dtype) + [nn.Parameter(tg.tensor(0.5, dtype=dtype, device=device))]

    def step(opt, ps, grads):
        set_grads(ps, grads + [np.float64(0.3)])
        opt.step()

    src = params(tg.float64)
    opt = cls(src, **kwargs)
    for grads in gradient_sequence()[:2]:
        step(opt, src, grads)
    saved = opt.state_dict()
    for s in saved["state"].values():                      # as NumPy scalars and 0-d arrays
        for k, v in s.items():
            s[k] = np.int64(v) if k == "step" else (v[()] if v.ndim == 0 else v)
    dst = params(tg.float32)
    opt32 = cls(dst, **kwargs)
    opt32.load_state_dict(saved)
    assert all(v.dtype == np.float32 for s in opt32.state.values() for v in s.values() if hasattr(v, "dtype"))
    assert all(type(s["step"]) is int for s in opt32.state.values() if "step" in s)
    for grads in gradient_sequence()[2:4]:
        step(opt32, dst, grads)
    assert [p.dtype for p in dst] == [tg.float32] * 3 and dst[2].shape == ()


# ----------------------------------------------------------------- the property the issue asks for
GRAD_DTYPES = [tg.float32, tg.float64, tg.int64]


@hyp(20)
@given(case=st.integers(0, len(CASES) - 1),
       shape=st.lists(st.integers(1, 3), max_size=3).map(tuple),
       dtype=st.sampled_from([tg.float32, tg.float64]),
       grads=st.lists(st.tuples(st.sampled_from(GRAD_DTYPES),
                                st.one_of(st.none(), st.lists(st.integers(1, 3), max_size=3).map(tuple))),
                      min_size=1, max_size=4),
       reload=st.booleans())
def test_a_step_keeps_every_parameters_shape_and_dtype_or_raises(case, shape, dtype, grads, reload, device):
    """Hand-set gradients of any dtype and shape (None: the parameter's own shape), with the
    optimizer's state reloaded from its state_dict or not: each step either keeps every
    parameter's shape and dtype, or raises and changes nothing."""
    name, kwargs = CASES[case]
    cls = getattr(optim, name)
    rng = np.random.default_rng(0)
    params = [nn.Parameter(tg.tensor(rng.standard_normal(shape), dtype=dtype, device=device)),
              nn.Parameter(tg.tensor(rng.standard_normal(3), dtype=dtype, device=device))]
    opt = cls(params, **kwargs)
    for i, (grad_dtype, grad_shape) in enumerate(grads):
        grad_shape = shape if grad_shape is None else grad_shape
        params[0]._grad = tg.tensor(rng.standard_normal(grad_shape) * 3, dtype=grad_dtype, device=device)
        params[1].grad = tg.ones(3, dtype=dtype, device=device)
        snapshot = _snapshot(params, opt)
        ok = grad_shape == shape and grad_dtype == dtype
        try:
            opt.step()
        except ValueError as e:
            assert not ok, e
            assert "params'][0]" in str(e)
            _assert_unchanged(params, opt, snapshot)
        else:
            assert ok
        assert params[0].shape == shape and params[1].shape == (3,)
        assert params[0].dtype == dtype and params[1].dtype == dtype
        if reload:
            state = opt.state_dict()
            opt = cls(params, **kwargs)
            opt.load_state_dict(state)


# ----------------------------------------------------------------- learning-rate schedules
def _sgd(lrs=(0.1,), device="cpu"):
    params = make_params(device)
    return optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])


def _lr_sequence(scheduler, opt, epochs):
    seq = [scheduler.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        scheduler.step()
        seq.append(scheduler.get_last_lr())
    return seq


SCHEDULES = [
    ("StepLR", dict(step_size=3, gamma=0.5), lambda base, e: base * 0.5 ** (e // 3)),
    ("StepLR", dict(step_size=1, gamma=0.9), lambda base, e: base * 0.9 ** e),
    ("ExponentialLR", dict(gamma=0.8), lambda base, e: base * 0.8 ** e),
    ("CosineAnnealingLR", dict(T_max=5), lambda base, e: base * (1 + math.cos(math.pi * e / 5)) / 2),
    ("CosineAnnealingLR", dict(T_max=4, eta_min=0.01),
     lambda base, e: 0.01 + (base - 0.01) * (1 + math.cos(math.pi * e / 4)) / 2),
]


@pytest.mark.parametrize("name, kwargs, closed_form", SCHEDULES, ids=[f"{s[0]}-{s[1]}" for s in SCHEDULES])
def test_schedules_follow_closed_forms(name, kwargs, closed_form, device):
    bases = (0.1, 0.03)
    opt = _sgd(bases, device)
    sched = getattr(lr_scheduler, name)(opt, **kwargs)
    epochs = 12
    seq = _lr_sequence(sched, opt, epochs)
    for epoch, lrs in enumerate(seq):
        assert lrs == pytest.approx([closed_form(b, epoch) for b in bases], rel=1e-12, abs=1e-15)
    assert [g["lr"] for g in opt.param_groups] == seq[-1]
    assert sched.last_epoch == epochs


@pytest.mark.parametrize("name, kwargs, closed_form", SCHEDULES, ids=[f"{s[0]}-{s[1]}" for s in SCHEDULES])
def test_schedules_match_torch(name, kwargs, closed_form, device):
    torch = pytest.importorskip("torch")
    opt = _sgd((0.1,), device)
    ours = _lr_sequence(getattr(lr_scheduler, name)(opt, **kwargs), opt, 12)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.1)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    theirs = [tsched.get_last_lr()]
    for _ in range(12):
        topt.step()
        tsched.step()
        theirs.append(tsched.get_last_lr())
    for a, b in zip(ours, theirs):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_the_optimizer_uses_the_scheduled_lr(device):
    p = nn.Parameter(tg.zeros(1, dtype=tg.float64, device=device))
    opt = optim.SGD([p], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    total = 0.0
    for epoch in range(5):
        p.grad = tg.ones(1, dtype=tg.float64, device=device)
        opt.step()
        total += 0.1 ** (epoch // 2)
        sched.step()
    np.testing.assert_allclose(p.numpy(), [-total], rtol=1e-12)


def test_scheduler_state_dict_round_trip(device):
    opt = _sgd((0.1,), device)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    assert "optimizer" not in state
    expected = _lr_sequence(sched, opt, 4)
    opt2 = _sgd((0.1,), device)
    sched2 = lr_scheduler.StepLR(opt2, step_size=2, gamma=0.5)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = expected[0][0]
    assert _lr_sequence(sched2, opt2, 4) == expected


def test_scheduler_arguments_are_checked(device):
    opt = _sgd((0.1,), device)
    with pytest.raises(ValueError, match="step_size"):
        lr_scheduler.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        lr_scheduler.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="factor"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="lowest")
    with pytest.raises(ValueError, match="threshold_mode"):
        lr_scheduler.ReduceLROnPlateau(opt, threshold_mode="relative")


def _plateau(metrics, device="cpu", lr=1.0, **kwargs):
    opt = _sgd((lr,), device)
    sched = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(sched.get_last_lr()[0])
    return out


@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_plateau_reduces_after_patience_bad_epochs(threshold_mode, device):
    # epoch 1 sets the best; epochs 2, 3, 4 are bad; the 3rd bad epoch (> patience 2) reduces
    lrs = _plateau([1.0] * 7, device, patience=2, factor=0.1, threshold_mode=threshold_mode)
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01])


def test_plateau_keeps_the_lr_while_the_metric_improves(device):
    # the default relative threshold: the first metric must become the best
    assert _plateau([10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0], device, patience=2) == [1.0] * 8
    assert _plateau([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], device, mode="max", patience=1) == [1.0] * 6
    assert _plateau([5.0, 4.0, 3.0, 2.0, 1.0], device, threshold_mode="abs", threshold=0.5, patience=1) == [1.0] * 5


def test_plateau_needs_improvement_beyond_the_threshold(device):
    # improvements of 0.001 are below an absolute threshold of 0.01: they count as bad epochs
    lrs = _plateau([1.0, 0.999, 0.998, 0.997], device, patience=1, threshold=0.01, threshold_mode="abs")
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1])
    # a relative threshold of 1% of the best: 0.995 is not enough below 1.0, 0.98 is
    lrs = _plateau([1.0, 0.995, 0.98, 0.979], device, patience=1, threshold=0.01)
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_plateau_respects_cooldown(device):
    # reduce at epoch 3; epochs 4 and 5 are cooldown (bad epochs not counted); reduce again at epoch 7
    lrs = _plateau([1.0] * 8, device, patience=1, cooldown=2, factor=0.5, threshold_mode="abs")
    assert lrs == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_plateau_respects_min_lr(device):
    lrs = _plateau([1.0] * 8, device, patience=0, factor=0.5, min_lr=0.3, threshold_mode="abs")
    assert lrs == pytest.approx([1.0, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    assert min(lrs) >= 0.3


@hyp(15)
@given(metrics=st.lists(st.integers(1, 4), min_size=1, max_size=25), patience=st.integers(0, 3),
       cooldown=st.integers(0, 2), mode=st.sampled_from(["min", "max"]),
       threshold_mode=st.sampled_from(["rel", "abs"]))
def test_plateau_matches_torch(metrics, patience, cooldown, mode, threshold_mode, device):
    torch = pytest.importorskip("torch")
    kwargs = dict(mode=mode, patience=patience, cooldown=cooldown, factor=0.5, min_lr=0.01,
                  threshold_mode=threshold_mode, threshold=0.1)
    ours = _plateau([float(m) for m in metrics], device, **kwargs)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=1.0)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    theirs = []
    for m in metrics:
        topt.step()
        tsched.step(float(m))
        theirs.append(tsched.get_last_lr()[0])
    assert ours == pytest.approx(theirs, rel=1e-12)


# ----------------------------------------------------------------- gradient clipping
def _with_grads(grads, device, dtype=tg.float64):
    params = [nn.Parameter(tg.zeros(*g.shape, dtype=dtype, device=device)) for g in grads]
    set_grads(params, grads)
    return params


def _total_norm(arrays, norm_type):
    flat = np.concatenate([np.ravel(a).astype(np.float64) for a in arrays])
    return np.abs(flat).max() if math.isinf(norm_type) else np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)


shapes = st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4)


@hyp()
@given(shapes=shapes, seed=st.integers(0, 2 ** 16), scale=st.sampled_from([0.1, 1.0, 30.0, 1e3]),
       fraction=st.floats(0.01, 0.9), norm_type=st.sampled_from([2.0, float("inf")]))
def test_clip_grad_norm_gives_the_asked_norm(shapes, seed, scale, fraction, norm_type, device):
    rng = np.random.default_rng(seed)
    grads = [scale * rng.standard_normal(s) for s in shapes]
    total = _total_norm(grads, norm_type)
    assume(total > 0.1)
    params = _with_grads(grads, device)
    max_norm = fraction * total
    returned = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert isinstance(returned, tg.Tensor) and returned.shape == ()
    assert float(returned) == pytest.approx(total, rel=1e-12)
    clipped = [p.grad.numpy() for p in params]
    # the scale is max_norm / (total + 1e-6), as in PyTorch: exact up to 1e-6 / total
    tol = 1e-6 / total + 1e-12
    assert _total_norm(clipped, norm_type) == pytest.approx(max_norm, rel=tol)
    # one scale for every gradient: the direction is kept
    factor = max_norm / total
    for g, c in zip(grads, clipped):
        np.testing.assert_allclose(c, g * factor, rtol=tol, atol=0)


@hyp()
@given(shapes=shapes, seed=st.integers(0, 2 ** 16), norm_type=st.sampled_from([1.0, 2.0, 3.0, float("inf")]))
def test_clip_grad_norm_leaves_small_gradients_alone(shapes, seed, norm_type, device):
    grads = [np.random.default_rng(seed).standard_normal(s) for s in shapes]
    total = _total_norm(grads, norm_type)
    params = _with_grads(grads, device)
    returned = clip_grad_norm_(params, 2 * total + 1e-3, norm_type=norm_type)
    assert float(returned) == pytest.approx(total, rel=1e-12)
    for g, p in zip(grads, params):
        np.testing.assert_array_equal(p.grad.numpy(), g)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type, device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    grads = [5 * rng.standard_normal(s) for s in [(3, 4), (5,), (2, 2, 2)]]
    params = _with_grads(grads, device)
    ours = clip_grad_norm_(params, 1.5, norm_type=norm_type)
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.tensor(g)
    theirs = torch.nn.utils.clip_grad_norm_(tparams, 1.5, norm_type=norm_type)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-12)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_details(device):
    params = _with_grads([np.full((2, 2), 3.0)], device, dtype=tg.float32)
    params.append(nn.Parameter(tg.zeros(3, device=device)))          # no grad: ignored
    total = clip_grad_norm_(params, 1.0)
    assert float(total) == pytest.approx(6.0)
    assert params[0].grad.dtype == tg.float32 and params[1].grad is None
    np.testing.assert_allclose(params[0].grad.numpy(), np.full((2, 2), 0.5), rtol=1e-5)
    single = _with_grads([np.array([3.0, 4.0])], device)[0]
    assert float(clip_grad_norm_(single, 1.0)) == pytest.approx(5.0)    # a lone tensor is accepted
    np.testing.assert_allclose(single.grad.numpy(), [0.6, 0.8], rtol=1e-5)
    assert float(clip_grad_norm_([nn.Parameter(tg.zeros(2, device=device))], 1.0)) == 0.0
    zero = _with_grads([np.zeros(3)], device)
    clip_grad_norm_(zero, 1.0)
    np.testing.assert_array_equal(zero[0].grad.numpy(), np.zeros(3))
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_(params, -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_(params, 1.0, norm_type=0)
    with pytest.raises(TypeError, match=r"parameters\[1\]"):
        clip_grad_norm_([params[0], np.ones(2)], 1.0)


def test_clipping_a_scalar_gradient_keeps_an_array(device):
    """A 0-d parameter (a learnable temperature, say) keeps a 0-d array as its gradient."""
    for clip in (lambda ps: clip_grad_norm_(ps, 0.5), lambda ps: clip_grad_value_(ps, 0.5)):
        p = nn.Parameter(tg.tensor(2.0, dtype=tg.float64, device=device))
        (p * p).backward()
        clip([p])
        assert p.grad.shape == ()
        np.testing.assert_allclose(p.grad.numpy(), 0.5, rtol=1e-5)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("norm_type", [2.0, float("inf")])
def test_clip_grad_norm_error_if_nonfinite(bad, norm_type, device):
    grads = [np.array([1.0, bad, 2.0]), np.ones(2)]
    params = _with_grads(grads, device)
    with pytest.raises((RuntimeError, ValueError), match="nan|inf"):
        clip_grad_norm_(params, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    for g, p in zip(grads, params):                       # nothing was scaled
        np.testing.assert_array_equal(p.grad.numpy(), g)
    with np.errstate(invalid="ignore"):
        clip_grad_norm_(params, 1.0, norm_type=norm_type)  # without the flag it does not raise


@hyp()
@given(shapes=shapes, seed=st.integers(0, 2 ** 16), clip=st.floats(0.0, 3.0))
def test_clip_grad_value(shapes, seed, clip, device):
    grads = [2 * np.random.default_rng(seed).standard_normal(s) for s in shapes]
    params = _with_grads(grads, device)
    assert clip_grad_value_(params, clip) is None
    for g, p in zip(grads, params):
        np.testing.assert_array_equal(p.grad.numpy(), np.clip(g, -clip, clip))


def test_clip_grad_value_errors(device):
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_(_with_grads([np.ones(2)], device), -0.5)
