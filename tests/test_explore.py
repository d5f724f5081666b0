"""study.explore: the page's numbers are the study tools' numbers, the file stands alone, and a
headless browser draws every panel without a script error."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import nn, study
from tinygrad_rnn.study import jacobians, rtrl, telemetry, truncation
from tinygrad_rnn.study.explore import Report, combine, explore
from tinygrad_rnn.study.explore.__main__ import main as explore_main
from tinygrad_rnn.study.explore.tasks import LastStepMSE, adding_problem, last_step_targets

F64 = tg.float64
RECURRENT_PANELS = {"graph", "gradients", "connectivity", "jacobians", "gates", "truncation", "rtrl"}
SEQ2SEQ_PANELS = {"attention", "beam"}
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and os.path.exists(p)), None)


def close(page_numbers, reference, rtol=2e-5):
    """The page's rounded numbers (None for NaN/inf) against the study function's array."""
    reference = np.asarray(reference, dtype=np.float64)
    page = np.array(page_numbers, dtype=np.float64)           # None -> nan
    assert page.shape == reference.shape
    both = np.isfinite(reference)
    assert np.array_equal(np.isfinite(page), both)
    np.testing.assert_allclose(page[both], reference[both], rtol=rtol, atol=1e-300)


def lstm_problem(steps=8, batch=3, hidden=4):
    tg.manual_seed(1)
    cell = nn.LSTMCell(2, hidden, dtype=F64)
    loss = LastStepMSE(nn.Linear(hidden, 1, dtype=F64))
    x, y = adding_problem(np.random.default_rng(0), steps, batch)
    return cell, loss, tg.tensor(x, dtype=F64), last_step_targets(y, steps, dtype=F64)


@pytest.fixture(scope="module")
def lstm_report():
    cell, loss, x, targets = lstm_problem()
    return cell, loss, x, targets, explore(cell, x, loss, targets, name="LSTM", rows=2, truncate=3)


# ------------------------------------------------------------------ the numbers are the study tools'
def test_gradient_panel_is_the_telemetry(lstm_report):
    cell, loss, x, targets, report = lstm_report
    tr = study.trace(cell, x)
    record = telemetry.record(tr, loss(tr.output, targets))
    run = report.runs[0]
    for part in ("h", "c"):
        close(run["gradients"]["norms"][0][part], record.grad_norms[0][part])
    for name, norms in record.contribution_norms.items():
        close(run["gradients"]["contributions"][name], norms)
    for gate, fraction in record.saturation[0].items():
        close(run["gates"][0][gate]["saturation"], fraction)


def test_gate_heatmap_is_what_the_step_names(lstm_report):
    cell, loss, x, targets, report = lstm_report
    tr = study.trace(cell, x)
    for t in range(tr.steps):
        gates = telemetry.gate_values(cell, tr.projected[0][t], tr.previous_state(0, t))
        for name, (values, kind) in gates.items():
            shown = report.runs[0]["gates"][0][name]
            assert shown["kind"] == kind
            close([row[t] for row in shown["values"]], values[0], rtol=6e-4)   # 4 digits on the page
            close([shown["mean"][t]], [values[:2].mean()])


def test_jacobian_panel_is_jacobian_spectra(lstm_report):
    cell, loss, x, targets, report = lstm_report
    shown = report.runs[0]["jacobians"][0]
    spectra = jacobians.jacobian_spectra(cell, x[:, :2], windows=shown["windows"])
    close(shown["log_norms"], spectra.log_norms)
    close(shown["log_norms_std"], spectra.log_norms_std)
    close(shown["singular_values"], spectra.singular_values.mean(axis=1), rtol=6e-4)
    assert shown["eta"] is None and shown["log_bound"] is None             # no Pascanu bound for an LSTM


def test_truncation_and_rtrl_panels(lstm_report):
    cell, loss, x, targets, report = lstm_report
    run = report.runs[0]
    bias = truncation.measure(cell, x, loss, targets=targets, variant="sliding")
    close(run["truncation"]["cosine"], bias.cosine)
    close(run["truncation"]["relative_error"], bias.relative_error)
    close(run["truncation"]["lag_norms"], bias.lag_norms)

    def step_loss(t, out):
        return loss(out.reshape((1,) + out.shape), targets[t:t + 1, :2])

    _, bptt = rtrl.bptt_gradients(cell, x[:, :2], step_loss=step_loss)
    _, forward = rtrl.rtrl_gradients(cell, x[:, :2], step_loss=step_loss)
    for row in run["rtrl"]["params"]:
        close([row["bptt_norm"]], [np.linalg.norm(bptt[row["name"]].numpy())])
        close([row["rtrl_norm"]], [np.linalg.norm(forward[row["name"]].numpy())])
        assert row["relative_difference"] < 1e-10


def test_connectivity_equals_reverse_mode(lstm_report):
    """||dy_t/dx_s|| from the page's forward-mode pass, against one reverse-mode pass per output unit."""
    cell, loss, x, targets, report = lstm_report
    steps, rows, hidden = x.shape[0], 2, cell.hidden_size
    xs = x[:, :rows].detach().requires_grad_()
    out, _ = nn.unroll(cell, xs)
    squares = np.zeros((steps, steps))
    for t in range(steps):
        for b in range(rows):
            for j in range(hidden):
                g, = tg.grad(out[t, b, j], xs, retain_graph=True)
                squares[t] += (g.numpy() ** 2).sum(axis=(1, 2))
    close(report.runs[0]["connectivity"]["matrix"], np.sqrt(squares), rtol=6e-4)
    assert np.all(np.triu(np.sqrt(squares), 1) == 0)                      # nothing flows back in time


def test_graph_panel_carries_each_steps_share(lstm_report):
    """The edge from a parameter into step t's alias carries ||dL/dtheta_t||, the telemetry's share;
    every step's ops sit in its cluster, and the loss is the root."""
    cell, loss, x, targets, report = lstm_report
    g, run = report.runs[0]["graph"], report.runs[0]
    names = [leaf[0] for leaf in g["leaves"]]
    steps = run["steps"]
    for name, shares in run["gradients"]["contributions"].items():
        j = names.index(name)
        into = sorted((g["nodes"][dst][4], norm) for src, dst, norm in g["edges"] if src == -1 - j)
        assert [t for t, _ in into] == list(range(steps))
        close([n if n is not None else 0.0 for _, n in into], shares)
    per_step = [sum(1 for n in g["nodes"] if n[3] == 0 and n[4] == t) for t in range(steps)]
    assert len(set(per_step[1:-1])) == 1 and per_step[1] > 10           # the same ops in every step but the last,
    assert per_step[-1] < per_step[1]                                     # whose c the loss never reads
    assert g["nodes"][g["roots"][0]][0] == "Div" and g["nodes"][g["roots"][0]][3] == -1   # LastStepMSE's "/ B"
    labels = {n[1] for n in g["nodes"]}
    assert {"h_3", "c_3", "i", "f", "g", "o", "weight_hh"} <= labels


def test_page_embeds_the_report_json(lstm_report, tmp_path):
    report = lstm_report[-1]
    path = report.save(tmp_path / "page.html")
    text = open(path, encoding="utf-8").read()
    embedded = re.search(r'<script type="application/json" id="explore-data">(.*?)</script>', text, re.S).group(1)
    assert json.loads(embedded) == json.loads(report.to_json())


def test_explore_leaves_gradients_alone():
    cell, loss, x, targets = lstm_problem(steps=4, batch=2, hidden=3)
    cell.weight_hh.grad = tg.ones_like(cell.weight_hh)
    explore(cell, x, loss, targets, rtrl=False, graph=False)
    assert np.array_equal(cell.weight_hh.grad.numpy(), np.ones(cell.weight_hh.shape))
    assert cell.weight_ih.grad is None


# ------------------------------------------------------------------ Seq2Seq
def seq2seq_report():
    tg.manual_seed(3)
    model = nn.Seq2Seq(10, 8, embed_size=6, hidden_size=8, cell="gru", attention="bahdanau")
    src = tg.tensor([[5, 6, 7, 8, 9], [9, 4, 3, 0, 0]])
    return model, src, explore(model, src, lengths=[5, 3], beam_size=3, max_len=5, name="seq2seq",
                               tgt_labels="_^$abcde")


def test_seq2seq_panels_are_what_generate_returns():
    model, src, report = seq2seq_report()
    labels = "_^$abcde"
    greedy, greedy_maps = model.generate(src, [5, 3], max_len=5)
    beam, beam_maps = model.generate(src, [5, 3], max_len=5, beam_size=3)
    for b, example in enumerate(report.runs[0]["examples"]):
        assert example["greedy"] == [labels[i] for i in greedy[b]]
        assert example["beam"] == [labels[i] for i in beam[b]]
        close(example["greedy_attention"], greedy_maps[b], rtol=6e-4)
        close(example["beam_attention"], beam_maps[b], rtol=6e-4)
        nodes = example["tree"]["nodes"]
        path = [n[0] for n in nodes if n[5]][1:]                         # the bold path, BOS left out
        assert [p for p in path if p != "<eos>"] == example["beam"]
        assert all(0 <= n[1] < i for i, n in enumerate(nodes) if i)      # parents come first: a tree
        assert sum(1 for n in nodes if n[2] == 0) <= 3                   # at most beam_size per step


# ------------------------------------------------------------------ the file stands alone
EXTERNAL = [r"https?://", r"\bsrc\s*=", r"\bhref\s*=", r"@import", r"url\(", r"<link\b", r"<iframe\b", r"\bfetch\(",
            r"XMLHttpRequest", r"<img\b", r"//\s*[a-z0-9-]+\.[a-z]{2,}/"]


def test_page_has_no_external_reference(lstm_report):
    s2s = seq2seq_report()[-1]
    text = combine(lstm_report[-1], s2s).html()
    for pattern in EXTERNAL:
        assert not re.search(pattern, text, re.I), f"the page matches {pattern!r}"
    assert len(text.encode()) < 3_000_000


# ------------------------------------------------------------------ it renders
def render(page, tmp_path, run, screenshot=None):
    """The DOM of ``page`` showing run ``run``, after its scripts ran in headless Chromium."""
    profile = tmp_path / f"profile{run}"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--window-size=1280,3600"]
    url = f"file://{page}?run={run}&open=0,1&play"        # steps 0 and 1 open, the backward pass playing
    if screenshot:
        subprocess.run(flags + [f"--screenshot={screenshot}", url], capture_output=True, timeout=60)
    proc = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True, timeout=60)
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_every_panel_renders_in_chromium(lstm_report, tmp_path):
    layer = nn.GRU(2, 3, num_layers=2, bidirectional=True, dtype=F64)
    tg.manual_seed(0)
    layered = explore(layer, tg.randn(5, 2, 2, dtype=F64), lambda out, _: (out ** 2).sum(), name="biGRU x2")
    rnn = explore(nn.RNNCell(2, 3, dtype=F64), tg.randn(5, 2, 2, dtype=F64), lambda out, _: (out ** 2).sum(),
                  name="RNN")
    report = combine(lstm_report[-1], layered, rnn, seq2seq_report()[-1], title="explore test")
    page = tmp_path / "explore.html"
    report.save(page)
    screenshot = tmp_path / "explore.png"
    for run, expected in enumerate([RECURRENT_PANELS] * 3 + [SEQ2SEQ_PANELS]):
        dom = render(page, tmp_path, run, screenshot if run == 0 else None)
        status = re.search(r'<body[^>]*data-explore="(\w+)"', dom)
        assert status, f"run {run}: the page's script did not finish:\n{dom[:2000]}"
        errors = re.search(r'<pre id="explore-status">(.*?)</pre>', dom, re.S).group(1)
        assert status.group(1) == "ok", f"run {run}: {errors}"
        rendered = set(re.search(r'data-rendered="([^"]*)"', dom).group(1).split())
        assert rendered == expected, f"run {run}: drew {rendered}"
        for panel in expected:
            body = re.search(rf'id="panel-{panel}".*?<div class="body">(.*?)</section>', dom, re.S).group(1)
            assert "<svg" in body or "<canvas" in body or "<table" in body, f"run {run}: {panel} is empty"
        if expected is RECURRENT_PANELS:
            assert dom.count('class="step open"') == 2, f"run {run}: steps 0 and 1 did not open into their ops"
            assert "backward pass at step" in dom, f"run {run}: the backward pass did not start"
    assert screenshot.is_file() and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ the command, an example and bad input
def test_command_writes_a_page_before_and_after_training(tmp_path, capsys):
    out = tmp_path / "bptt.html"
    assert explore_main(["--cell", "gru", "--steps", "6", "--hidden", "3", "--batch", "2", "--train", "2",
                         "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="explore-data">(.*?)</script>', text, re.S).group(1))
    assert [r["name"] for r in data["runs"]] == ["gru, as initialised", "gru, after 2 batches"]
    assert "wrote" in capsys.readouterr().out


def test_adding_problem_smoke_writes_its_page(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "examples", "adding_problem.py"), "--smoke", "--out",
                           str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (tmp_path / "adding_problem.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="explore-data">(.*?)</script>', text, re.S).group(1))
    assert [r["name"] for r in data["runs"]] == [f"{m}, {when}" for m in ("LSTM", "GRU", "tanh RNN")
                                                 for when in ("as initialised", "trained")]


@pytest.mark.parametrize("call, error", [
    (lambda c, x, l: explore(nn.Linear(2, 2), x, l), TypeError),
    (lambda c, x, l: explore(c, x, "loss"), TypeError),
    (lambda c, x, l: explore(c, x, lambda out, _: out), ValueError),
    (lambda c, x, l: explore(c, x, lambda out, _: tg.tensor(1.0)), ValueError),
    (lambda c, x, l: explore(c, x, l, rows=0), ValueError),
    (lambda c, x, l: explore(c, x, l, truncate=-2), ValueError),
    (lambda c, x, l: explore(c, x[0], l), ValueError),
    (lambda c, x, l: explore(c, x, l, lengths=[4, 3]), TypeError),
    (lambda c, x, l: explore(nn.Seq2Seq(5, 5, 4, 4), tg.tensor([[3, 4]]), l), TypeError),
    (lambda c, x, l: combine(), ValueError),
    (lambda c, x, l: combine(explore(c, x, l, rtrl=False), explore(c, x, l, rtrl=False)), ValueError),
    (lambda c, x, l: Report([], title=3), TypeError),
])
def test_bad_input_is_named(call, error):
    cell = nn.RNNCell(2, 3, dtype=F64)
    with pytest.raises(error):
        call(cell, tg.randn(4, 2, 2, dtype=F64), lambda out, _: (out ** 2).sum())


def test_explore_runs_on_each_device(device):
    """Every panel is computed where the model lives (on cuda, or on the strict stand-in for CuPy
    that refuses implicit copies to the host), and gives the numbers it gives on the cpu."""
    pages = []
    for where in ("cpu", device):
        tg.manual_seed(4)
        cell = nn.GRUCell(2, 3, dtype=F64, device=where)
        loss = LastStepMSE(nn.Linear(3, 1, dtype=F64, device=where))
        x, y = adding_problem(np.random.default_rng(1), 5, 2)
        report = explore(cell, tg.tensor(x, dtype=F64, device=where), loss, last_step_targets(y, 5, where, F64))
        pages.append(report.runs[0])
    cpu, other = pages
    close(other["gradients"]["norms"][0]["h"], cpu["gradients"]["norms"][0]["h"], rtol=1e-9)
    close(other["connectivity"]["matrix"], cpu["connectivity"]["matrix"], rtol=1e-9)
    close(other["truncation"]["cosine"], cpu["truncation"]["cosine"], rtol=1e-9)
    assert [p["rtrl_norm"] for p in other["rtrl"]["params"]] == [p["rtrl_norm"] for p in cpu["rtrl"]["params"]]
