"""Every example stays alive: each runs its whole code path with ``--smoke`` (tiny sizes, a
few steps) and writes its figures. An example is skipped only when an optional package it
asks for with ``require(...)`` (or matplotlib/tqdm, which every example uses) is missing."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
SCRIPTS = sorted(name for name in os.listdir(EXAMPLES) if name.endswith(".py") and not name.startswith("_"))
REQUIRED = re.compile(r"""require\(\s*["']([\w.]+)["']""")


def optional_packages(script):
    """The top-level packages ``script`` imports through ``_common.require``, plus the two every
    example's figure and progress bar need."""
    with open(os.path.join(EXAMPLES, script), encoding="utf-8") as f:
        source = f.read()
    return sorted({"matplotlib", "tqdm"} | {m.split(".")[0] for m in REQUIRED.findall(source)})


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_in_smoke_mode_and_writes_its_figures(script, tmp_path):
    for package in optional_packages(script):
        pytest.importorskip(package)
    # One BLAS thread: smoke sizes are tiny matmuls, where threads only add overhead.
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{script} --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    written = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.endswith((".png", ".html")) for name in written), \
        f"{script} --smoke wrote no figure (wrote {written}); stdout:\n{proc.stdout[-2000:]}"
