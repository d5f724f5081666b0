"""The numbers behind each panel of a recurrent model's page, read from the study tools.

Nothing here re-derives what a study module computes: the gradient norms and each
step's share of the parameter gradients come from :mod:`..telemetry` over a
:func:`..tracing.trace`, the gate values from ``telemetry.gate_values``, the Jacobian
spectra from :func:`..jacobians.jacobian_spectra`, the truncation bias from
:func:`..truncation.measure`, the RTRL gradients from :mod:`..rtrl`, the connectivity
map from forward-mode products (:func:`..forward_mode.jvp`), and the graph's clusters
from :mod:`..graph`. This module chooses what to run, on how many rows, and turns the
results into plain numbers.
"""
import time

import numpy as np

from ... import backend
from ...creation import tensor
from ...nn.recurrent import Recurrent, unroll
from ...tensor import Tensor
from ...xp import stack
from .. import jacobians, rtrl, telemetry, truncation
from ..forward_mode import jvp
from ..tracing import model_cells, time_major, trace
from . import unrolled
from .jsonable import plain, round_number

# what a panel may cost before it is left out of the page (with the reason shown there)
MAX_CONNECTIVITY_NUMBERS = 30_000_000     # floats in the tangents of the connectivity map
MAX_RTRL_PARAMETERS = 6_000               # RTRL costs O(P^2) per step: P = the number of parameters


def recurrent_run(model, x, loss_fn, targets, options):
    """Every panel's data for a cell or layer ``model`` on x; see :func:`..explore`."""
    cells = model_cells(model, "explore")
    tr = trace(model, x, options["state"])
    outputs = time_major(model, tr.output)
    loss = _scalar(loss_fn(outputs, targets), "loss_fn(outputs, targets)")
    gates = _gate_values(tr)
    run = {"kind": "recurrent", "model": _describe(model), "steps": tr.steps, "batch": tr.batch,
           "loss": round_number(float(loss.item())), "marks": _marks(options, tr.steps),
           "layers": [_layer_name(model, k, tr.directions) for k in range(tr.num_layers)],
           "cells": [type(c).__name__ for c in cells]}
    saved = _save_grads(model)
    try:
        loss.backward(retain_graph=options["graph"])      # kept for the graph's edge gradients, read after
        record = telemetry.record(tr)
        names = {key: {gate: values for gate, (values, _) in found.items()} for key, found in gates.items()}
        run["graph"] = (unrolled.collect(tr, loss, names, _outside_names(loss_fn)) if options["graph"]
                        else _left_out("turned off (graph=False)"))
    finally:
        _restore_grads(model, saved)
    run["gradients"] = gradient_data(record)
    run["gates"] = gate_data(tr, record, gates, options["rows"])
    run["jacobians"] = [jacobian_data(cells[k], tr, k, options) for k in range(tr.num_layers)]
    run["connectivity"] = connectivity_data(model, x, options["rows"])
    run["truncation"] = truncation_data(model, x, loss_fn, targets, options)
    run["rtrl"] = (rtrl_data(model, x, loss_fn, targets, options) if options["rtrl"]
                   else _left_out("turned off (rtrl=False)"))
    return run


# ------------------------------------------------------------------ per panel
def gradient_data(record):
    """||dL/dpart_t|| per layer and part, and each step's share of every parameter's gradient (norms)."""
    return {"norms": [plain(layer) for layer in record.grad_norms],
            "parts": [list(names) for names in record.part_names],
            "contributions": plain(record.contribution_norms)}


def gate_data(tr, record, gates, rows):
    """Per layer {gate: kind, values (units, T) of the first row, mean (T,) over rows and units,
    saturation (T,) from the telemetry}."""
    layers = []
    for k in range(tr.num_layers):
        per_gate = {}
        names = record.saturation[k].keys()
        for gate in names:
            values = [gates[(k, t)][gate][0] for t in range(tr.steps)]
            kind = gates[(k, 0)][gate][1]
            first = np.stack([_host(v)[0] for v in values], axis=1)
            mean = np.array([_host(v)[:rows].mean() for v in values])
            per_gate[gate] = {"kind": kind, "values": plain(first, 4), "mean": plain(mean),
                              "saturation": plain(record.saturation[k][gate])}
        layers.append(per_gate)
    return layers


def _gate_values(tr):
    """{(k, t): {gate: (values, kind)}} from ``telemetry.gate_values`` (empty for cells without named gates)."""
    found = {}
    for k in range(tr.num_layers):
        for t in range(tr.steps):
            values = telemetry.gate_values(tr.cells[k], tr.projected[k][t], tr.previous_state(k, t))
            found[(k, t)] = values or {}
    return found


def jacobian_data(cell, tr, k, options):
    """Window-product norms against the bound and the singular values of every J_t (mean over rows)."""
    rows = options["rows"]
    steps = tr.steps
    inputs = stack([x_t[:rows] for x_t in tr.inputs[k]], axis=0).detach()
    state = _rows(tr.initial_states[k], rows)
    windows = options["windows"] or np.unique(np.linspace(1, steps, min(steps, 30)).round().astype(int))
    spectra = jacobians.jacobian_spectra(cell, inputs, state=state, windows=windows)
    return {"windows": plain(spectra.windows), "log_norms": plain(spectra.log_norms),
            "log_norms_std": plain(spectra.log_norms_std), "eta": plain(spectra.eta),
            "log_bound": plain(spectra.log_bound), "part_sizes": list(spectra.part_sizes),
            "singular_values": plain(spectra.singular_values.mean(axis=1), 4), "rows": int(inputs.shape[1])}


def connectivity_data(model, x, rows):
    """||dy_t/dx_s||: the Frobenius norm over the first ``rows`` examples of the Jacobian of the
    output at step t with respect to the input at step s, for every (t, s), from ONE forward-mode
    pass that pushes a tangent per input number (T * input_size directions)."""
    xs = time_major(model, x).detach()[:, :rows]
    steps, batch, features = xs.shape
    width = _output_width(model)
    count = steps * features * steps * batch * width
    if count > MAX_CONNECTIVITY_NUMBERS:
        return _left_out(f"{count:,} tangent numbers (T^2 * rows * input * output) is more than this page "
                         f"computes ({MAX_CONNECTIVITY_NUMBERS:,}); explore a shorter sequence")
    seeds = np.zeros((steps, features, steps, batch, features), dtype=xs.dtype)
    for s in range(steps):
        seeds[s, :, s, :, :] = np.eye(features)[:, None, :]
    seeds = backend.to_device(seeds.reshape(steps * features, steps, batch, features), xs.device)
    _, tangent = jvp(lambda inputs: _outputs(model, inputs), xs, seeds)
    t = _host(tangent.data).astype(np.float64).reshape(steps, features, steps, batch, -1)
    norms = np.sqrt((t * t).sum(axis=(1, 3, 4)))          # [s, t]
    return {"matrix": plain(norms.T, 4), "rows": batch}


def truncation_data(model, x, loss_fn, targets, options):
    """Cosine and relative error of truncated BPTT(k) against full BPTT, and ||D_lag||."""
    result = truncation.measure(model, x, loss_fn, targets=targets, ks=options["ks"], state=options["state"],
                                variant="sliding")
    return {"ks": list(result.ks), "cosine": plain(result.cosine), "relative_error": plain(result.relative_error),
            "lag_norms": plain(result.lag_norms), "variant": result.variant}


def rtrl_data(model, x, loss_fn, targets, options):
    """Per parameter: the gradient by BPTT and by RTRL (Williams & Zipser 1989) on the first rows,
    their norms and largest difference, and the time each took."""
    params = [p for _, p in model.named_parameters() if p.requires_grad]
    size = sum(p.size for p in params)
    if size > MAX_RTRL_PARAMETERS:
        return _left_out(f"{size:,} parameters: RTRL carries a {size:,} x {size:,} sensitivity product per step "
                         f"(O(P^2)); this page runs it up to {MAX_RTRL_PARAMETERS:,}")
    rows = options["rtrl_rows"]
    xs = time_major(model, x).detach()[:, :rows]
    xs_model = xs.swapaxes(0, 1) if isinstance(model, Recurrent) and model.batch_first else xs
    sub_targets = None if targets is None else _target_rows(targets, x, model, rows)

    def step_loss(t, output):
        return loss_fn(output.reshape((1,) + output.shape), None if sub_targets is None else sub_targets[t:t + 1])

    state = _rows_state(model, options["state"], rows)
    start = time.perf_counter()
    loss_b, bptt = rtrl.bptt_gradients(model, xs_model, step_loss=step_loss, state=state)
    middle = time.perf_counter()
    loss_r, forward = rtrl.rtrl_gradients(model, xs_model, step_loss=step_loss, state=state)
    end = time.perf_counter()
    table = []
    for name, g in bptt.items():
        a, b = _host(g.data).astype(np.float64), _host(forward[name].data).astype(np.float64)
        scale = float(np.abs(a).max()) if a.size else 0.0
        table.append({"name": name, "size": int(a.size), "bptt_norm": round_number(float(np.linalg.norm(a))),
                      "rtrl_norm": round_number(float(np.linalg.norm(b))),
                      "max_difference": round_number(float(np.abs(a - b).max()) if a.size else 0.0),
                      "relative_difference": round_number(float(np.abs(a - b).max()) / scale if scale > 0 else 0.0)})
    return {"params": table, "loss_bptt": round_number(loss_b), "loss_rtrl": round_number(loss_r), "rows": int(rows),
            "seconds_bptt": round_number(middle - start, 3), "seconds_rtrl": round_number(end - middle, 3),
            "parameters": int(size)}


# ------------------------------------------------------------------ helpers
def _left_out(reason):
    return {"left_out": reason}


def _scalar(loss, what):
    if not isinstance(loss, Tensor) or loss.size != 1:
        got = f"a Tensor of shape {loss.shape}" if isinstance(loss, Tensor) else f"a {type(loss).__name__}"
        raise ValueError(f"explore: {what} must return a one-element Tensor (the loss), got {got}")
    if not loss.requires_grad:
        raise ValueError(f"explore: {what} does not depend on the model's outputs (it needs no gradient)")
    return loss.reshape(())


def _outputs(model, xs):
    """The model's time-major outputs (T, B, out) on time-major inputs."""
    if isinstance(model, Recurrent):
        return model.time_major(xs)[0]
    return unroll(model, xs)[0]


def _output_width(model):
    if isinstance(model, Recurrent):
        cell = model.cells()[-1]
        return getattr(cell, "output_size", model.hidden_size) * model.directions
    return getattr(model, "output_size", None) or model.hidden_size


def _describe(model):
    return " ".join(repr(model).split())[:300]


def _layer_name(model, k, directions):
    if not isinstance(model, Recurrent):
        return "cell"
    layer, d = divmod(k, directions)
    return f"layer {layer}" + (" reverse" if d == 1 else "")


def _marks(options, steps):
    """Where the page draws truncation and checkpoint boundaries: every k steps."""
    marks = {}
    for key in ("truncate", "checkpoint"):
        k = options.get(key)
        marks[key] = None if k is None else list(range(k, steps, k))
    return marks


def _rows(state, rows):
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach()[:rows] for s in state)
    return state.detach()[:rows]


def _rows_state(model, state, rows):
    """The first rows of a user's initial state, for the model's layout (a layer's parts are (L*D, B, H))."""
    if state is None:
        return None
    cut = (lambda s: s.detach()[:, :rows]) if isinstance(model, Recurrent) else (lambda s: s.detach()[:rows])
    return tuple(cut(s) for s in state) if isinstance(state, tuple) else cut(state)


def _target_rows(targets, x, model, rows):
    """Time-major targets (T, B, ...) cut to their first rows (targets without a batch axis are kept)."""
    batch = time_major(model, x).shape[1]
    if targets.ndim >= 2 and targets.shape[1] == batch:
        return targets[:, :rows]
    return targets


def _outside_names(loss_fn):
    """{id(parameter): name} of a Module used as the loss function (its readout), else {}."""
    named = getattr(loss_fn, "named_parameters", None)
    if named is None:
        return {}
    return {id(p): f"loss.{name}" for name, p in named()}


def _save_grads(model):
    """Each parameter and a copy of its .grad (a backward may add into the array in place)."""
    return [(p, None if p.grad is None else tensor(p.grad.data.copy(), device=p.device)) for p in model.parameters()]


def _restore_grads(model, saved):
    """Put back each parameter's .grad as it was: exploring adds nothing to them."""
    for p, g in saved:
        p.grad = g


def _host(array):
    return backend.to_device(array, "cpu")
