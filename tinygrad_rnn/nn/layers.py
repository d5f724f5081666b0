"""Basic layers: Linear, Embedding, Dropout, and the losses as Modules: CrossEntropyLoss, MSELoss."""
import math
import numbers

from .. import creation
from .. import functional as F
from . import init
from .module import Module, Parameter, check_size


def new_parameter(*shape, device=None, dtype=None):
    """An uninitialised (zero) parameter, to be filled by an initialiser."""
    return Parameter(creation.zeros(*shape, dtype=dtype, device=device or "cpu"))


class Linear(Module):
    """y = x W^T + b.

    Args: in_features, out_features, bias=True.
    Shape: input (*, in_features) -> output (*, out_features).
    Parameters: weight (out_features, in_features), bias (out_features,), both
    drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)) as in PyTorch.
    """

    def __init__(self, in_features, out_features, bias=True, *, device=None, dtype=None):
        in_features = check_size("Linear", "in_features", in_features, minimum=0)
        out_features = check_size("Linear", "out_features", out_features, minimum=0)
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = init.uniform_(new_parameter(out_features, in_features, device=device, dtype=dtype),
                                    -bound, bound)
        self.bias = init.uniform_(new_parameter(out_features, device=device, dtype=dtype),
                                  -bound, bound) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table picked by integer ids.

    Shape: ids (*) -> (*, embedding_dim). The weight starts N(0, 1); the row at
    ``padding_idx`` starts at zero and gets no gradient (as in PyTorch).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, device=None, dtype=None):
        num_embeddings = check_size("Embedding", "num_embeddings", num_embeddings, minimum=0)
        embedding_dim = check_size("Embedding", "embedding_dim", embedding_dim, minimum=0)
        if padding_idx is not None and not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(f"Embedding: padding_idx {padding_idx} is out of range for {num_embeddings} rows")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = None if padding_idx is None else padding_idx % num_embeddings
        self.weight = init.normal_(new_parameter(num_embeddings, embedding_dim, device=device, dtype=dtype))
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, ids):
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self):
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` while training; the identity in eval mode."""

    def __init__(self, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(owner, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


class CrossEntropyLoss(Module):
    """Softmax cross-entropy of class indices: :func:`functional.cross_entropy` as a Module.

    Args:
        ignore_index: a target value that adds nothing to the loss or the gradient
            and, with ``reduction="mean"``, is not counted. Default: -100.
        reduction: ``"mean"`` (over the targets not ignored), ``"sum"`` or ``"none"``.
            Default: ``"mean"``.
    The arguments are keyword-only, so that PyTorch's positional ``weight`` (not
    supported here, nor ``label_smoothing``) cannot land in ``ignore_index``.

    Shape:
        input: (N, C) or (N, C, d1, ...) logits; target: (N,) or (N, d1, ...) integer
        class ids in [0, C) or ``ignore_index``; output: () or, with
        ``reduction="none"``, the target's shape.

    Example::

        >>> loss_fn = tg.nn.CrossEntropyLoss(ignore_index=0)
        >>> logits = tg.randn(4, 5, requires_grad=True)
        >>> loss = loss_fn(logits, tg.tensor([1, 0, 4, 2]))      # the 0 is padding
        >>> loss.backward()
    """

    def __init__(self, *, ignore_index=-100, reduction="mean"):
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise TypeError(f"CrossEntropyLoss: ignore_index must be an int, got {ignore_index!r}")
        self.ignore_index = int(ignore_index)
        self.reduction = _check_reduction("CrossEntropyLoss", reduction)

    def forward(self, input, target):
        return F.cross_entropy(input, target, ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class MSELoss(Module):
    """Mean squared error: :func:`functional.mse_loss` as a Module.

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (keyword-only). Default: ``"mean"``.

    Shape:
        input: any shape; target: the same shape (no broadcasting, to catch a
        misplaced dim); output: () or, with ``reduction="none"``, the input's shape.

    Example::

        >>> loss = tg.nn.MSELoss()(tg.randn(4, 1, requires_grad=True), tg.zeros(4, 1))
        >>> loss.backward()
    """

    def __init__(self, *, reduction="mean"):
        self.reduction = _check_reduction("MSELoss", reduction)

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"
