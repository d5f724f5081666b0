"""Smoke test of benchmarks/overhead.py: a --quick run exits 0 and writes its JSON."""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = {"add", "mul", "matmul", "tanh", "sigmoid", "exp", "sum", "reshape", "getitem"}


def positive(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def positive_or_none(x):
    return x is None or positive(x)


def test_overhead_quick_run_writes_json(tmp_path):
    out = tmp_path / "overhead.json"
    proc = subprocess.run([sys.executable, "benchmarks/overhead.py", "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())

    assert set(data["per_op"]) == OPS
    for name, row in data["per_op"].items():
        assert positive(row["tinygrad_us"]) and positive(row["numpy_us"]) and positive(row["tinygrad_over_numpy"]), name
        assert positive_or_none(row["torch_us"]) and positive_or_none(row["tinygrad_over_torch"]), name

    head = data["headline"]
    assert positive(head["tinygrad_us_per_op"]) and positive(head["numpy_us_per_op"])
    assert positive_or_none(head["torch_us_per_op"]) and head["target_us_per_op"] == 6.0

    for impl in ("tinygrad", "numpy"):
        rows = data["scaling"][impl]
        assert [r["steps"] for r in rows] == [1000, 10_000, 100_000]
        for r in rows:
            assert positive(r["fwd_us_per_step"]) and positive(r["bwd_us_per_step"]), (impl, r)
            assert positive(r["peak_bytes_per_step"]) or (r["steps"] > 10_000 and r["peak_bytes_per_step"] is None)
    assert positive(data["tinygrad_gc_off"]["fwd_us_per_step"])
    assert data["recursion_ok"] is True
    assert data["gradients_agree"] is True


def test_student_loop_quick_run_prints_every_length():
    proc = subprocess.run([sys.executable, "benchmarks/student_loop.py", "--quick", "--repeats", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("rnn ", "lstm "))]
    assert [(r[0], r[1]) for r in rows] == [("rnn", "100"), ("rnn", "1,000"), ("lstm", "100"), ("lstm", "1,000")]
    assert all(positive(float(r[4])) for r in rows), proc.stdout
