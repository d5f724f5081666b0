"""Shared fixtures: one ``device`` fixture runs a test on numpy and, where a GPU
and CuPy exist, on cupy; hypothesis profiles for CI and for local runs.

``TINYGRAD_RNN_TEST_CUPY=strict`` runs the cuda half on ``strict_cupy``, a CPU
stand-in for CuPy that enforces its host/device rules (no implicit conversion to
NumPy, no mixing with NumPy arrays) and counts device-to-host transfers. It is
installed into ``tinygrad_rnn.backend`` for the session, in place of cupy; those
runs are named ``cuda-standin`` and check device discipline, never CUDA itself."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import tinygrad_rnn as tg
from tinygrad_rnn import backend

settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

STAND_IN = os.environ.get("TINYGRAD_RNN_TEST_CUPY", "")
if STAND_IN not in ("", "strict"):
    raise pytest.UsageError(f"TINYGRAD_RNN_TEST_CUPY={STAND_IN!r}: the only value is 'strict' "
                            "(unset it to use CuPy itself where there is a GPU)")
_CUDA_ID = "cuda-standin" if STAND_IN else "cuda"


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda, id=_CUDA_ID)])
def device(request):
    if request.param == "cuda" and not tg.cuda_available():
        pytest.skip("CUDA is not available (no GPU or no CuPy)")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on the cuda device (skipped without a GPU)")
    if STAND_IN:
        import strict_cupy
        config._strict_cupy_restore = strict_cupy.install(backend)


def pytest_unconfigure(config):
    restore = getattr(config, "_strict_cupy_restore", None)
    if restore is not None:
        restore()


def pytest_report_header(config):
    if STAND_IN:
        return ("device cuda: tests/strict_cupy.py, a strict CPU stand-in for CuPy "
                "(TINYGRAD_RNN_TEST_CUPY=strict); these runs check host/device discipline, not CUDA")
