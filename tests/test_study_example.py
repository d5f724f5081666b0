"""Smoke test of examples/study_vanishing.py: a tiny run exits 0 and writes its figures and graphs."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "study_vanishing.py")
FIGURES = ["vanishing_gradients.png", "vanishing_jacobians.png", "vanishing_truncation.png"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_tiny_run_writes_figures_and_graphs(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    proc = subprocess.run([sys.executable, SCRIPT, "--steps", "8", "--hidden", "4", "--batch", "2",
                           "--jacobian-batch", "2", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in FIGURES:
        path = tmp_path / name
        assert path.is_file(), f"{name} missing; stdout:\n{proc.stdout}"
        assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{name} is not a PNG"
    for cell in ("rnn", "lstm"):
        dot = (tmp_path / f"vanishing_graph_{cell}.dot").read_text()
        assert dot.startswith("digraph") and "cluster_l0_t4" in dot, cell
    for model in ("tanh RNN", "tanh RNN, orthogonal", "IRNN", "LSTM", "GRU"):
        assert f"\n{model} " in proc.stdout, f"no table row for {model}"
    assert "nan" not in proc.stdout.lower().split("spectral radius")[0], proc.stdout
