"""EKF training (study/ekf.py): the update against dense-matrix linear algebra, the first
step against the textbook formula written out here in NumPy, one group against the
global filter, H_t against BPTT's derivative, and a filter that learns."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_rnn as tg
from tinygrad_rnn import nn
from tinygrad_rnn.study import bptt_gradients
from tinygrad_rnn.study.ekf import DecoupledEKF, ekf_update, weight_groups
from tinygrad_rnn.study.rtrl import output_sensitivity
from helpers import hyp

F64 = tg.float64


def dense_reference(w, P, H, e, R, q, same_group):
    """The EKF step on the full W x W covariance (P = blockdiag(P_i) expanded), then the
    covariances between groups dropped, which is what decoupling means."""
    S = R + H.T @ P @ H
    K = P @ H @ np.linalg.inv(S)
    P_new = (P - K @ H.T @ P + q * np.eye(len(w))) * same_group
    return w + K @ e, P_new


@hyp(25)
@given(size=st.integers(1, 8), m=st.integers(1, 3), n_groups=st.integers(1, 4), steps=st.integers(1, 4),
       noise=st.sampled_from(["scalar", "diagonal", "matrix"]), seed=st.integers(0, 2**16))
def test_update_equals_the_dense_matrix_reference(size, m, n_groups, steps, noise, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, min(n_groups, size), size)
    groups = [np.nonzero(labels == k)[0] for k in np.unique(labels)]
    same_group = labels[:, None] == labels[None, :]
    w = rng.standard_normal(size)
    P_dense = np.zeros((size, size))
    covariances = []
    for index in groups:
        a = rng.standard_normal((len(index), len(index)))
        covariances.append(a @ a.T + np.eye(len(index)))
        P_dense[np.ix_(index, index)] = covariances[-1]
    r = {"scalar": 0.3, "diagonal": rng.uniform(0.1, 1.0, m), "matrix": None}[noise]
    if noise == "matrix":
        b = rng.standard_normal((m, m))
        r = b @ b.T + 0.5 * np.eye(m)
    R = r * np.eye(m) if noise == "scalar" else (np.diag(r) if noise == "diagonal" else r)
    for _ in range(steps):
        H, e = rng.standard_normal((size, m)), rng.standard_normal(m)
        w_new, covariances = ekf_update(w, covariances, groups, H, e, r, 1e-3)
        w, P_dense = dense_reference(w, P_dense, H, e, R, 1e-3, same_group)
        np.testing.assert_allclose(w_new, w, rtol=1e-9, atol=1e-10)
        for index, P_i in zip(groups, covariances):
            np.testing.assert_allclose(P_i, P_dense[np.ix_(index, index)], rtol=1e-9, atol=1e-10)
            np.testing.assert_array_equal(P_i, P_i.T)


def jordan(rng, batch_scale=0.6, device="cpu"):
    cell = nn.JordanCell(2, 3, output_size=1, output_nonlinearity="identity", device=device, dtype=F64)
    params = {name: batch_scale * rng.standard_normal(p.shape) for name, p in cell.named_parameters()}
    cell.load_state_dict(params)
    return cell, params


def textbook_first_step(params, x, d, p0, q, r):
    """The first EKF step of a Jordan cell from y_0 = 0, with H written out by hand:
    h = tanh(W_ih x + b_ih), y = W_hy h + b_hy, so dy/dW_hy = h, dy/db_hy = 1,
    dy/db_ih = W_hy (1 - h^2), dy/dW_ih = (W_hy (1 - h^2))^T x^T, dy/dW_yh = . y_0 = 0.
    Parameters flattened in the cell's order: weight_ih, weight_yh, weight_hy, bias_ih, bias_hy."""
    columns, predictions = [], []
    for x_b in x:                                   # one column of H per stream (row of the batch)
        h = np.tanh(params["weight_ih"] @ x_b + params["bias_ih"])
        y = params["weight_hy"] @ h + params["bias_hy"]
        back = params["weight_hy"][0] * (1 - h ** 2)
        columns.append(np.concatenate([np.outer(back, x_b).ravel(), np.zeros(3), h, back, [1.0]]))
        predictions.append(y[0])
    H = np.stack(columns, axis=1)
    w = np.concatenate([params[k].ravel() for k in ("weight_ih", "weight_yh", "weight_hy", "bias_ih", "bias_hy")])
    P0 = p0 * np.eye(len(w))
    K = P0 @ H @ np.linalg.inv(H.T @ P0 @ H + r * np.eye(H.shape[1]))
    w1 = w + K @ (d - np.array(predictions))
    P1 = P0 - K @ H.T @ P0 + q * np.eye(len(w))
    return w1, P1, np.array(predictions)


@pytest.mark.parametrize("groups", ["global", "tensor", "neuron"])
def test_first_step_is_the_textbook_formula(device, groups):
    rng = np.random.default_rng(0)
    cell, params = jordan(rng, device=device)
    x, d = rng.standard_normal((2, 2)), rng.standard_normal(2)
    ekf = DecoupledEKF(cell, groups=groups, p0=3.0, q=1e-3, r=0.7)
    y = ekf.step(tg.tensor(x, dtype=F64, device=device), tg.tensor(d[:, None], dtype=F64, device=device))
    w1, P1, y_ref = textbook_first_step(params, x, d, 3.0, 1e-3, 0.7)
    np.testing.assert_allclose(y.numpy()[:, 0], y_ref, rtol=1e-12)
    w = np.concatenate([p.numpy().ravel() for p in cell.parameters()])
    np.testing.assert_allclose(w, w1, rtol=1e-10, atol=1e-12)     # P_0 = p0 I: every grouping moves w alike
    for index, P_i in zip(ekf.groups, ekf.covariances):
        index, P_i = (tg.backend.to_device(a, "cpu") for a in (index, P_i))
        np.testing.assert_allclose(P_i, P1[np.ix_(index, index)], rtol=1e-10, atol=1e-12)
    if groups == "global":
        np.testing.assert_allclose(tg.backend.to_device(ekf.covariances[0], "cpu"), P1, rtol=1e-10, atol=1e-12)


def series(rng, steps=40, batch=2):
    t = np.arange(steps + 1)[:, None] + rng.integers(0, 11, batch)[None, :]
    s = np.sin(2 * np.pi * t / 11.0)[..., None]
    return tg.tensor(s[:-1], dtype=F64), tg.tensor(s[1:], dtype=F64)


def test_one_group_holding_every_weight_is_the_global_filter():
    rng = np.random.default_rng(1)
    x, d = series(rng)
    runs = []
    for groups in ("global", [["bias_hy", "weight_hy", "bias_ih", "weight_yh", "weight_hh", "weight_ih"]]):
        tg.manual_seed(3)
        cell = nn.ElmanJordanCell(1, 3, 1, output_nonlinearity="identity", dtype=F64)
        ekf = DecoupledEKF(cell, groups=groups, p0=5.0, q=1e-4, r=0.5)
        predictions = [ekf.train(x, d).numpy() for _ in range(2)]
        runs.append((predictions, [p.numpy() for p in cell.parameters()]))
    for a, b in zip(runs[0][0] + runs[0][1], runs[1][0] + runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_H_is_the_derivative_through_all_earlier_steps():
    """Without targets nothing is updated, and H_t = dy_t/dw is BPTT's gradient of y_t."""
    rng = np.random.default_rng(2)
    cell = nn.ElmanJordanCell(2, 3, 1, output_nonlinearity="identity", dtype=F64)
    cell.load_state_dict({n: 0.6 * rng.standard_normal(p.shape) for n, p in cell.named_parameters()})
    x = tg.tensor(rng.standard_normal((5, 1, 2)), dtype=F64)
    ekf = DecoupledEKF(cell, groups="tensor")
    for t in range(5):
        ekf.step(x[t])
    H = output_sensitivity(cell, ekf.state, list(ekf.state), ekf.sensitivities).reshape(-1)
    _, grads = bptt_gradients(cell, x, step_loss=lambda t, y: y.sum() * (t == 4))
    np.testing.assert_allclose(H, np.concatenate([grads[n].numpy().ravel() for n in ekf.names]), rtol=1e-9,
                               atol=1e-12)


def test_the_filter_learns_a_sine():
    rng = np.random.default_rng(4)
    x, d = series(rng, steps=80, batch=1)
    tg.manual_seed(0)
    cell = nn.ElmanJordanCell(1, 4, 1, output_nonlinearity="identity", dtype=F64)
    ekf = DecoupledEKF(cell, groups="neuron", p0=10.0, q=1e-5, r=0.1)
    first = ekf.train(x, d, washout=3)
    for _ in range(2):
        last = ekf.train(x, d, washout=3)
    error = np.sqrt(np.mean((last.numpy()[3:] - d.numpy()[3:]) ** 2))
    assert error < 0.05 < np.sqrt(np.mean((first.numpy()[3:] - d.numpy()[3:]) ** 2))


def test_neuron_groups_are_the_weights_feeding_each_unit():
    cell = nn.ElmanJordanCell(2, 3, 2)
    groups = weight_groups(list(cell.named_parameters()), "neuron")
    # hidden unit k: row k of weight_ih (2), weight_hh (3), weight_yh (2), bias_ih (1); output unit j: 3 + 1
    assert sorted(len(g) for g in groups) == [4, 4, 8, 8, 8]
    assert sorted(np.concatenate(groups).tolist()) == list(range(sum(p.size for p in cell.parameters())))


def test_ekf_bad_inputs():
    cell = nn.JordanCell(2, 3, 1, dtype=F64)
    with pytest.raises(ValueError, match="groups must be one of"):
        DecoupledEKF(cell, groups="layer")
    with pytest.raises(ValueError, match="every parameter name exactly once"):
        DecoupledEKF(cell, groups=[["weight_ih", "weight_yh"], ["bias_ih"]])
    with pytest.raises(ValueError, match="p0 must be a positive number"):
        DecoupledEKF(cell, p0=0)
    with pytest.raises(TypeError, match="RecurrentCell"):
        DecoupledEKF(nn.Linear(2, 3))
    ekf = DecoupledEKF(cell)
    with pytest.raises(ValueError, match=r"x_t has shape \(4,\), expected \(batch, 2\)"):
        ekf.step(tg.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match=r"target has shape \(3, 2\), expected \(3, 1\)"):
        ekf.step(tg.zeros(3, 2, dtype=F64), tg.zeros(3, 2, dtype=F64))
    with pytest.raises(TypeError, match="x_t is float32 on cpu, expected float64"):
        ekf.step(tg.zeros(3, 2))
    with pytest.raises(ValueError, match="must share T and B"):
        ekf.train(tg.zeros(4, 3, 2, dtype=F64), tg.zeros(5, 3, 1, dtype=F64))

    class Gained(nn.RecurrentCell):
        input_size, hidden_size = 1, 1

        def __init__(self):
            self.gain = nn.Parameter(tg.ones(1, dtype=F64))

        def step(self, p, h):
            return (p * self.gain + h).tanh()

    with pytest.raises(ValueError, match="groups='neuron' needs parameters named"):
        DecoupledEKF(Gained())
