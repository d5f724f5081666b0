"""Tools to look inside backpropagation through time.

Built on the engine and on ``tinygrad_rnn.nn``; nothing below this package imports it.
One module per question a student asks of an unrolled network:

    tracing       trace(model, x): run a cell or layer step by step, keeping every state
                  and every step's share of every parameter's gradient
    telemetry     how large dL/dh_t is at each step, what each step adds to dL/dW,
                  how saturated the gates are                                 (record, plot)
    jacobians     the state-to-state Jacobians J_t from VJPs, their spectra and the
                  growth of their products against the Pascanu et al. (2013) bound
    truncation    how far truncated-BPTT gradients are from full BPTT as k grows (measure, plot)
    graph         the unrolled graph as Graphviz DOT, clustered by layer and time step
    forward_mode  Jacobian-vector products walked forward over the recorded graph
    rtrl          real-time recurrent learning (Williams & Zipser 1989), equal to BPTT
    ekf           training by the (decoupled) extended Kalman filter, H_t from RTRL (Puskorius & Feldkamp 1994)
    explore       all of the above on one self-contained HTML page     (explore(...).save(path))
"""
from . import forward_mode, graph, jacobians, rtrl, telemetry, tracing, truncation
from .explore import explore
from .forward_mode import jvp
from .graph import render, to_dot
from .jacobians import jacobian_spectra
from .rtrl import bptt_gradients, rtrl_gradients
from .ekf import DecoupledEKF, ekf_update
from .tracing import Trace, trace
from .truncation import measure as truncation_bias

__all__ = ["Trace", "bptt_gradients", "explore", "forward_mode", "graph", "jacobian_spectra", "jacobians", "jvp",
           "render", "rtrl", "rtrl_gradients", "telemetry", "to_dot", "trace", "tracing", "truncation",
           "truncation_bias"]
__all__ += ["DecoupledEKF", "ekf_update"]
