"""examples/clockwork_waveform.py: the parameter counts that make its comparison fair, and the waveform."""
import os
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

import tinygrad_rnn as tg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))
import clockwork_waveform as example  # noqa: E402

KINDS = ("tanh RNN", "LSTM", "CW-RNN")


def entries_that_learn(model, steps):
    """How many parameter entries get a nonzero gradient from a generic loss on the output."""
    out = model(steps)
    (out * tg.tensor(np.linspace(1.0, 2.0, steps), dtype=out.dtype)).sum().backward()
    return sum(int(np.count_nonzero(p.grad.numpy())) for p in model.parameters() if p.grad is not None)


@given(kind=st.sampled_from(KINDS), modules=st.integers(1, 4), size=st.integers(1, 3), seed=st.integers(0, 99))
def test_effective_parameters_are_exactly_the_entries_that_learn(kind, modules, size, seed):
    """The count excludes the input weights (zero input) and the masked clockwork weights, and
    nothing else: each counted entry gets a gradient, each excluded one none."""
    tg.manual_seed(seed)
    model = example.build(kind, modules * size, modules, "cpu")
    steps = 2 ** modules + 3                     # every module ticks at least twice
    assert example.effective_parameters(model) == entries_that_learn(model, steps)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("budget", [50, 400, 1000])
def test_hidden_size_for_is_the_closest_to_the_budget(kind, budget):
    hidden = example.hidden_size_for(kind, budget, 4)
    step = 4 if kind == "CW-RNN" else 1

    def gap(h):
        return abs(example.effective_parameters(example.build(kind, h, 4, "cpu")) - budget)
    neighbours = [h for h in (hidden - step, hidden + step) if h >= step]
    assert all(gap(hidden) <= gap(h) for h in neighbours)


def test_waveform_is_decimated_by_block_means_and_scaled_to_unit_range():
    recording = np.arange(12, dtype=np.float64) ** 2
    wave = example.waveform(recording, samples=4, factor=3)
    means = recording.reshape(4, 3).mean(axis=1)
    np.testing.assert_allclose(wave, 2 * (means - means[0]) / (means[-1] - means[0]) - 1)
    assert wave.min() == -1 and wave.max() == 1


def test_waveform_names_a_recording_too_short():
    with pytest.raises(ValueError, match="need 12 recorded samples, the recording has 11"):
        example.waveform(np.arange(11.0), samples=4, factor=3)
