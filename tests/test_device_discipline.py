"""Host/device discipline on the cuda device, checked with the strict CuPy stand-in.

Under ``TINYGRAD_RNN_TEST_CUPY=strict`` (as ``.ci/run`` sets) the cuda device is
``tests/strict_cupy.py``, which counts device-to-host transfers. On a GPU every
transfer is a synchronisation, so a recurrent layer must make a fixed number of them
per call, however long the sequence: never one per time step."""
import numpy as np
import pytest

import tinygrad_rnn as tg
from tinygrad_rnn import backend

strict_cupy = pytest.importorskip("strict_cupy")

pytestmark = pytest.mark.skipif(
    not (tg.cuda_available() and strict_cupy.is_stand_in(backend.cupy())),
    reason="counts transfers only on the strict CuPy stand-in (TINYGRAD_RNN_TEST_CUPY=strict)")

LAYERS = {
    "lstm kernel, 2 layers, bidirectional": lambda: tg.nn.LSTM(3, 4, num_layers=2, bidirectional=True),
    "gru kernel": lambda: tg.nn.GRU(3, 4),
    "rnn kernel": lambda: tg.nn.RNN(3, 4),
    "lstm traced": lambda: tg.nn.LSTM(3, 4, fused=False),
    "peephole traced": lambda: tg.nn.Recurrent(tg.nn.PeepholeLSTMCell, 3, 4),
    "lstm per step": lambda: tg.nn.LSTM(3, 4, fused=False, per_step=True),
}


def transfers_for(make, steps):
    """Device-to-host transfers of one forward and backward over ``steps`` steps, ragged lengths."""
    layer = make().to("cuda")
    x = tg.randn(steps, 2, 3, device="cuda", requires_grad=True)
    with strict_cupy.counting() as counter:
        out, _ = layer(x, lengths=[steps, steps - 2])
        out.sum().backward()
    return counter.to_host, dict(counter.sites)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_host_transfers_do_not_grow_with_the_sequence(name):
    short, sites = transfers_for(LAYERS[name], 4)
    long, long_sites = transfers_for(LAYERS[name], 40)
    assert long == short, f"{name}: {short} transfers at T=4, {long} at T=40 ({long_sites})"
    assert short <= 8, f"{name}: {short} transfers per call ({sites})"


def test_the_stand_in_refuses_implicit_conversion_and_mixing():
    """What the counts rely on: a device array cannot slip to the host unseen."""
    a = tg.randn(3, device="cuda").data
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Unsupported type"):
        a + np.ones(3)
    with strict_cupy.counting() as counter:
        host = a.get()
        float(a.sum())
    assert counter.to_host == 2 and isinstance(host, np.ndarray)
