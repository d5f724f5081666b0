"""Jacobian-product spectra (tinygrad_rnn.study.jacobians).

The VJP-built Jacobians are checked against float64 central finite differences
of the step for every built-in cell (fused and composed), the variants and
user-defined cells; against the hand-derived diag(1 - h_t^2) W_hh of a tanh RNN;
and, chained over a sequence, against finite differences of h_T with respect to
h_0. Window products and their log norms are checked against NumPy (including
products that overflow), the singular values against the eigenvalues of J J^T,
and the bound of Pascanu et al. (2013) against the measured norms.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn.study import jacobians as jac
from helpers import hyp

EPS = 1e-6


# ----------------------------------------------------------------- user-defined cells
class TwoPartCell(tg.nn.RecurrentCell):
    """A state of two parts of different sizes: h' = tanh(p + h A^T + m C^T), m' = m * sigmoid(h' D^T)."""

    def __init__(self, input_size, hidden_size, memory_size, device=None):
        self.input_size, self.hidden_size, self.memory_size = input_size, hidden_size, memory_size
        self.weight_ih = tg.nn.Parameter(tg.zeros(hidden_size, input_size, dtype=tg.float64, device=device))
        self.a = tg.nn.Parameter(tg.zeros(hidden_size, hidden_size, dtype=tg.float64, device=device))
        self.c = tg.nn.Parameter(tg.zeros(hidden_size, memory_size, dtype=tg.float64, device=device))
        self.d = tg.nn.Parameter(tg.zeros(memory_size, hidden_size, dtype=tg.float64, device=device))

    def project(self, x):
        return x @ self.weight_ih.T

    def initial_state(self, batch, like):
        return (tg.zeros(batch, self.hidden_size, dtype=like.dtype, device=like.device),
                tg.zeros(batch, self.memory_size, dtype=like.dtype, device=like.device))

    def step(self, p, state):
        h, m = state
        h = (p + h @ self.a.T + m @ self.c.T).tanh()
        return h, m * (h @ self.d.T).sigmoid()


class MemorylessCell(tg.nn.RecurrentCell):
    """h' = tanh(p): the new state does not depend on the old one, so J = 0."""

    def __init__(self, size):
        self.input_size = self.hidden_size = size

    def step(self, p, h):
        return p.tanh()


class ScaledRNNCell(tg.nn.RNNCell):
    """An RNNCell whose step is not Elman's (h' = 2 tanh(.)): the bound must not be claimed for it."""

    def step(self, p, h):
        return 2 * super().step(p, h)


# ----------------------------------------------------------------- helpers
def make_cell(kind, input_size, hidden_size, fused, device):
    kw = dict(device=device, dtype=tg.float64)
    if kind.startswith("rnn"):
        return tg.nn.RNNCell(input_size, hidden_size, nonlinearity=kind[4:], fused=fused, **kw)
    if kind in ("lstm", "gru"):
        return {"lstm": tg.nn.LSTMCell, "gru": tg.nn.GRUCell}[kind](input_size, hidden_size, fused=fused, **kw)
    if kind == "two_part":
        return TwoPartCell(input_size, hidden_size, max(1, hidden_size - 1), device=device)
    if kind == "memoryless":
        return MemorylessCell(input_size)
    variant = {"peephole": tg.nn.PeepholeLSTMCell, "coupled": tg.nn.CoupledLSTMCell, "jordan": tg.nn.JordanCell}
    return variant[kind](input_size, hidden_size, **kw)


def randomize(cell, rng, scale=0.7):
    cell.load_state_dict({name: scale * rng.standard_normal(p.shape) for name, p in cell.named_parameters()})


def parts(state):
    return list(state) if isinstance(state, tuple) else [state]


def random_state(cell, batch, rng, device):
    like = tg.zeros(1, dtype=tg.float64, device=device)
    zeros = cell.initial_state(batch, like)
    new = [tg.tensor(rng.standard_normal(z.shape), dtype=tg.float64, device=device) for z in parts(zeros)]
    return tuple(new) if isinstance(zeros, tuple) else new[0]


def flat_state(state):
    return np.concatenate([s.numpy() for s in parts(state)], axis=1)


def unflatten(flat, like, device):
    sizes = np.cumsum([s.shape[1] for s in parts(like)])[:-1]
    new = [tg.tensor(a, dtype=tg.float64, device=device) for a in np.split(flat, sizes, axis=1)]
    return tuple(new) if isinstance(like, tuple) else new[0]


def fd_jacobian(fn, state, device):
    """Central differences of fn(state) (-> flat (B, S')) in each unit of the flat state, all examples at once."""
    flat = flat_state(state)
    columns = []
    for j in range(flat.shape[1]):
        step = np.zeros_like(flat)
        step[:, j] = EPS
        plus, minus = fn(unflatten(flat + step, state, device)), fn(unflatten(flat - step, state, device))
        columns.append((plus - minus) / (2 * EPS))
    return np.stack(columns, axis=2)


def fd_step_jacobian(cell, p, state, device):
    def fn(s):
        with tg.no_grad():
            return flat_state(cell.step(p, s))
    return fd_jacobian(fn, state, device)


def tanh_rnn(input_size, hidden, rng, scale, nonlinearity="tanh", fused=True):
    cell = tg.nn.RNNCell(input_size, hidden, nonlinearity=nonlinearity, fused=fused, dtype=tg.float64)
    randomize(cell, rng, scale / np.sqrt(hidden))
    return cell


# ----------------------------------------------------------------- one step against finite differences
BUILT_IN = [(k, f) for k in ("rnn_tanh", "rnn_relu", "lstm", "gru") for f in (True, False)]
OTHERS = [(k, False) for k in ("peephole", "coupled", "jordan", "two_part", "memoryless")]


@pytest.mark.parametrize("kind, fused", BUILT_IN + OTHERS)
@hyp(3)
@given(batch=st.integers(1, 3), input_size=st.integers(1, 3), hidden=st.integers(1, 4), seed=st.integers(0, 99))
def test_step_jacobian_matches_finite_differences(device, kind, fused, batch, input_size, hidden, seed):
    rng = np.random.default_rng(seed)
    cell = make_cell(kind, input_size, hidden, fused, device)
    randomize(cell, rng)
    state = random_state(cell, batch, rng, device)
    with tg.no_grad():
        p = cell.project(tg.tensor(rng.standard_normal((batch, cell.input_size)), dtype=tg.float64, device=device))
    got = tg.backend.to_device(jac.step_jacobian(cell, p, state), "cpu")
    expected = fd_step_jacobian(cell, p, state, device)
    assert got.shape == expected.shape == (batch, expected.shape[1], expected.shape[1])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


def test_clockwork_jacobian_is_hand_derived(device):
    """At an odd step the period-2 module keeps its value (identity rows), the period-1 module is
    diag(1 - h'^2) (W_hh * mask) in h, and the step counter t' = t + 1 has the unit row and column."""
    rng = np.random.default_rng(1)
    cell = tg.nn.ClockworkRNNCell(2, 4, periods=(1, 2), device=device, dtype=tg.float64)
    randomize(cell, rng)
    h = tg.tensor(rng.standard_normal((3, 4)), dtype=tg.float64, device=device)
    state = (h, tg.ones(3, 1, dtype=tg.float64, device=device))
    with tg.no_grad():
        p = cell.project(tg.tensor(rng.standard_normal((3, 2)), dtype=tg.float64, device=device))
        new_h = cell.step(p, state)[0].numpy()
    got = tg.backend.to_device(jac.step_jacobian(cell, p, state), "cpu")
    w = cell.weight_hh.numpy() * cell._connectivity
    expected = np.zeros((3, 5, 5))
    expected[:, :2, :4] = (1 - new_h[:, :2, None] ** 2) * w[None, :2]
    expected[:, 2:4, 2:4] = np.eye(2)
    expected[:, 4, 4] = 1.0
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------- over a sequence
@pytest.mark.parametrize("fused", [True, False])
@hyp(4)
@given(steps=st.integers(1, 5), batch=st.integers(1, 3), hidden=st.integers(1, 5), seed=st.integers(0, 99))
def test_tanh_rnn_jacobians_are_diag_times_weight(device, fused, steps, batch, hidden, seed):
    """J_t = diag(1 - h_t^2) W_hh at the states the cell visits."""
    rng = np.random.default_rng(seed)
    cell = tg.nn.RNNCell(2, hidden, fused=fused, device=device, dtype=tg.float64)
    randomize(cell, rng)
    x = tg.tensor(rng.standard_normal((steps, batch, 2)), dtype=tg.float64, device=device)
    states = [s.numpy() for s in jac.state_sequence(cell, x)]
    w = cell.weight_hh.numpy()
    expected = np.stack([(1 - states[t + 1][:, :, None] ** 2) * w[None] for t in range(steps)])
    np.testing.assert_allclose(jac.state_jacobians(cell, x), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["lstm", "gru", "two_part"])
def test_chained_jacobians_equal_finite_differences_through_the_sequence(device, kind):
    """window_products(J, T)[0] = d h_T / d h_0, the whole unroll differentiated numerically;
    this fixes both the state each J_t is taken at and the order of the product."""
    rng = np.random.default_rng(3)
    steps, batch = 4, 2
    cell = make_cell(kind, 2, 3, False, device)
    randomize(cell, rng)
    x = tg.tensor(rng.standard_normal((steps, batch, 2)), dtype=tg.float64, device=device)
    h0 = random_state(cell, batch, rng, device)
    result = jac.jacobian_spectra(cell, x, h0)
    expected = fd_jacobian(lambda s: flat_state(jac.state_sequence(cell, x, s)[-1]), h0, device)
    np.testing.assert_allclose(jac.window_products(result.jacobians, steps)[0], expected, rtol=1e-6, atol=1e-8)
    first = fd_step_jacobian(cell, cell.project(x)[0], h0, device)
    size = result.part_sizes[0]
    np.testing.assert_allclose(result.hidden_jacobians[0], first[:, :size, :size], rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------- products, norms, singular values
@hyp(8)
@given(steps=st.integers(1, 6), batch=st.integers(1, 3), size=st.integers(1, 4), data=st.data())
def test_window_products_are_matrix_products(steps, batch, size, data):
    w = data.draw(st.integers(1, steps))
    jacobians = np.random.default_rng(steps * 31 + size).standard_normal((steps, batch, size, size))
    got = jac.window_products(jacobians, w)
    assert got.shape == (steps - w + 1, batch, size, size)
    for k in range(steps - w + 1):
        for b in range(batch):
            mats = [jacobians[s, b] for s in range(k + w - 1, k - 1, -1)]      # J_{k+w} ... J_{k+1}
            expected = mats[0] if w == 1 else np.linalg.multi_dot(mats)
            np.testing.assert_allclose(got[k, b], expected, rtol=1e-12, atol=1e-12)


@hyp(8)
@given(steps=st.integers(1, 6), batch=st.integers(1, 3), size=st.integers(1, 4), seed=st.integers(0, 99))
def test_window_log_norms_equal_log_of_largest_singular_value(steps, batch, size, seed):
    jacobians = np.random.default_rng(seed).standard_normal((steps, batch, size, size))
    windows = list(range(1, steps + 1))
    for w, got in zip(windows, jac.window_log_norms(jacobians, windows)):
        sigma = np.linalg.svd(jac.window_products(jacobians, w), compute_uv=False)[..., 0]
        np.testing.assert_allclose(got, np.log(sigma), rtol=1e-10, atol=1e-10)


def test_window_log_norms_survive_overflow():
    """For positive diagonal J_t the log norm of a product is max_i sum_t log d_ti, even past 1e308."""
    rng = np.random.default_rng(0)
    steps = 400
    diagonals = np.exp(rng.uniform(1.0, 3.0, size=(steps, 2, 3)))
    jacobians = diagonals[..., None] * np.eye(3)
    windows = [1, 50, 400]
    got = jac.window_log_norms(jacobians, windows)
    logs = np.log(diagonals)
    for w, values in zip(windows, got):
        expected = np.stack([logs[k:k + w].sum(axis=0).max(axis=1) for k in range(steps - w + 1)])
        np.testing.assert_allclose(values, expected, rtol=1e-10)
    with np.errstate(over="ignore", invalid="ignore"):
        naive = jac.window_products(jacobians, 400)[0]
    assert not np.isfinite(naive).any()          # the plain product is lost to overflow


def test_window_log_norms_of_a_zero_product_are_minus_infinity():
    jacobians = np.stack([np.eye(2)[None], np.zeros((1, 2, 2)), 2 * np.eye(2)[None]])
    got = jac.window_log_norms(jacobians, [1, 2, 3])
    np.testing.assert_allclose(got[0][:, 0], [0.0, -np.inf, np.log(2.0)], atol=1e-12)
    assert np.all(got[1] == -np.inf) and np.all(got[2] == -np.inf)


@hyp(4)
@given(steps=st.integers(1, 4), batch=st.integers(1, 3), hidden=st.integers(1, 5), seed=st.integers(0, 99))
def test_singular_values_match_eigenvalues_of_hand_derived_jacobian(steps, batch, hidden, seed):
    rng = np.random.default_rng(seed)
    cell = tanh_rnn(2, hidden, rng, 1.5)
    x = tg.tensor(rng.standard_normal((steps, batch, 2)), dtype=tg.float64)
    result = jac.jacobian_spectra(cell, x)
    states = [s.numpy() for s in jac.state_sequence(cell, x)]
    w = cell.weight_hh.numpy()
    for t in range(steps):
        for b in range(batch):
            j = (1 - states[t + 1][b, :, None] ** 2) * w
            expected = np.sqrt(np.clip(np.linalg.eigvalsh(j @ j.T)[::-1], 0, None))
            np.testing.assert_allclose(result.singular_values[t, b], expected, rtol=1e-8, atol=1e-10)


def test_result_averages_the_per_start_log_norms():
    rng = np.random.default_rng(5)
    cell = make_cell("lstm", 2, 3, True, "cpu")
    randomize(cell, rng)
    result = jac.jacobian_spectra(cell, tg.tensor(rng.standard_normal((6, 2, 2)), dtype=tg.float64), windows=[2, 5])
    assert result.part_sizes == (3, 3) and result.jacobians.shape == (6, 2, 6, 6)
    assert result.hidden_jacobians.shape == (6, 2, 3, 3)
    for w, mean, std in zip([2, 5], result.log_norms, result.log_norms_std):
        values = np.log(np.linalg.svd(jac.window_products(result.jacobians, w), compute_uv=False)[..., 0])
        assert values.shape == (6 - w + 1, 2)
        np.testing.assert_allclose([mean, std], [values.mean(), values.std()], rtol=1e-10)


# ----------------------------------------------------------------- the bound of Pascanu et al. (2013)
@hyp(8)
@given(steps=st.integers(1, 8), batch=st.integers(1, 3), hidden=st.integers(1, 6),
       scale=st.floats(0.1, 4.0), nonlinearity=st.sampled_from(["tanh", "relu"]), seed=st.integers(0, 99))
def test_pascanu_bound_bounds_every_product(steps, batch, hidden, scale, nonlinearity, seed):
    rng = np.random.default_rng(seed)
    cell = tanh_rnn(2, hidden, rng, scale, nonlinearity)
    x = tg.tensor(2 * rng.standard_normal((steps, batch, 2)), dtype=tg.float64)
    result = jac.jacobian_spectra(cell, x)
    w = cell.weight_hh.numpy()
    eta = np.sqrt(np.linalg.eigvalsh(w.T @ w).max())
    np.testing.assert_allclose(result.eta, eta, rtol=1e-10)
    np.testing.assert_allclose(result.log_bound, result.windows * np.log(eta), rtol=1e-10)
    for bound, values in zip(result.log_bound, jac.window_log_norms(result.jacobians, result.windows)):
        assert np.all(values <= bound + 1e-9)


@pytest.mark.parametrize("cell", [
    tg.nn.LSTMCell(2, 3), tg.nn.GRUCell(2, 3), tg.nn.PeepholeLSTMCell(2, 3), tg.nn.JordanCell(2, 3),
    ScaledRNNCell(2, 3), MemorylessCell(2)])
def test_pascanu_bound_is_none_where_it_does_not_apply(cell):
    assert jac.pascanu_bound(cell) is None


def test_pascanu_bound_of_an_irnn_is_one():
    cell = tg.nn.RNNCell(2, 4, nonlinearity="relu", dtype=tg.float64)
    tg.nn.init.eye_(cell.weight_hh)
    assert jac.pascanu_bound(cell) == pytest.approx(1.0, abs=1e-12)


# ----------------------------------------------------------------- plot and errors
def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((5, 2, 2)), dtype=tg.float64)
    for cell in (tanh_rnn(2, 3, rng, 1.0), make_cell("lstm", 2, 3, True, "cpu")):
        path = tmp_path / f"{type(cell).__name__}.png"
        assert jac.plot(jac.jacobian_spectra(cell, x), path) == path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _cell():
    return tg.nn.RNNCell(3, 4, dtype=tg.float64)


@pytest.mark.parametrize("call, error, words", [
    (lambda: jac.jacobian_spectra(object(), tg.zeros(2, 1, 3)), TypeError, "RecurrentCell, got object"),
    (lambda: jac.jacobian_spectra(_cell(), np.zeros((2, 1, 3))), TypeError, "Tensor, got ndarray"),
    (lambda: jac.jacobian_spectra(_cell(), tg.zeros(2, 3)), ValueError, "2 dims, expected 3"),
    (lambda: jac.jacobian_spectra(_cell(), tg.zeros(2, 1, 5)), ValueError, "5 features, expected input_size=3"),
    (lambda: jac.jacobian_spectra(_cell(), tg.zeros(0, 1, 3)), ValueError, "at least one step"),
    (lambda: jac.jacobian_spectra(_cell(), tg.zeros(3, 1, 3), windows=[4]), ValueError, "in [1, 3]"),
    (lambda: jac.jacobian_spectra(_cell(), tg.zeros(3, 1, 3), windows=[0]), ValueError, "in [1, 3]"),
    (lambda: jac.jacobian_spectra(_cell(), tg.zeros(3, 1, 3), windows=[1.5]), TypeError, "integers"),
    (lambda: jac.jacobian_spectra(_cell(), tg.zeros(3, 1, 3), windows=[]), ValueError, "empty"),
    (lambda: jac.jacobian_spectra(_cell(), tg.zeros(3, 2, 3), tg.zeros(1, 4)), ValueError, "expected (2, 4)"),
    (lambda: jac.jacobian_spectra(tg.nn.LSTMCell(3, 4), tg.zeros(3, 2, 3), tg.zeros(2, 4)), ValueError,
     "1 parts, expected 2"),
    (lambda: jac.window_products(np.zeros((3, 1, 2, 2)), 4), ValueError, "in [1, 3]"),
    (lambda: jac.window_log_norms(np.zeros((3, 2, 2))), ValueError, "expected (T, B, S, S)"),
    (lambda: jac.step_jacobian(_cell(), tg.zeros(2, 4), tg.zeros(2, 4, 1)), ValueError, "(batch, size)"),
    (lambda: jac.pascanu_bound("rnn"), TypeError, "RecurrentCell, got str"),
    (lambda: jac.plot({"windows": [1]}, "x.png"), TypeError, "JacobianSpectra, got dict"),
])
def test_bad_input_raises_clear_errors(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
