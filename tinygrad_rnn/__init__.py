"""tinygrad_rnn: a small autograd engine on NumPy and CuPy, built for recurrent networks.

    import tinygrad_rnn as tg
    x = tg.randn(3, 4, requires_grad=True)
    (x.tanh() * x).sum().backward()
    x.grad                      # d/dx sum(x * tanh x)
"""
from . import backend
from .backend import bool_, cuda_available, float32, float64, int64
from .creation import (arange, default_generator, eye, full, manual_seed, ones, ones_like, rand, randn,
                       tensor, zeros, zeros_like)
from .engine import backward, grad
from .function import (Function, detect_anomaly, enable_grad, is_anomaly_enabled, is_grad_enabled, no_grad,
                       set_grad_enabled)
from .tensor import Tensor
from .xp import (abs, broadcast_to, chunk, clip, exp, log, matmul, max, maximum, mean, min, minimum, relu,
                 reshape, sigmoid, softplus, split, sqrt, squeeze, stack, sum, tanh, transpose, unbind, var, where)
from .xp import concatenate as cat
from .xp import expand_dims as unsqueeze
from . import functional  # noqa: E402
from .gradcheck import GradcheckError, gradcheck, gradgradcheck  # noqa: E402
from .serialization import load, save  # noqa: E402
from .checkpoint import checkpoint  # noqa: E402
from . import nn, optim  # noqa: E402

clamp = clip
permute = transpose

__version__ = "0.1.0"
