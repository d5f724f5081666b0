"""Module and Parameter: named, nested collections of trainable tensors.

A Module finds its parameters and sub-modules by looking at its own attributes,
in the order they were assigned (as PyTorch registers them), so a layer is
just a class that assigns Parameters in ``__init__`` and computes in ``forward``.
"""
from collections.abc import Mapping

import numpy as np

from .. import backend
from ..function import no_grad
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module trains: a leaf that requires grad by default."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def check_size(owner, name, value, minimum=1):
    """``value`` as an int >= ``minimum``; TypeError for a non-integer (a float, a bool), ValueError
    below the minimum, each naming the argument, as PyTorch's layers do."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be at least {minimum}, got {value}")
    return int(value)


class Module:
    """Base class of layers. Subclasses assign Parameters and Modules as
    attributes in ``__init__`` and define ``forward``; call the module to run it."""

    training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ----- traversal -----
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) pairs, each parameter once, in assignment order."""
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    # ----- state -----
    def state_dict(self):
        """{dotted name: NumPy array copy} of every parameter."""
        return {name: p.numpy().copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state, strict=True):
        """Copy arrays (NumPy arrays, Tensors, PyTorch tensors, or nested lists of numbers)
        into the parameters, keeping each parameter's dtype and device.
        ``strict`` requires the keys to match exactly; shapes must always match, and
        each value must convert to its parameter's dtype (numbers only, no overflow
        to inf). Everything is checked before anything is assigned, so on an error
        the model is unchanged. Returns (missing keys, unexpected keys)."""
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict into {type(self).__name__}: expected a mapping of names to arrays, "
                            f"got {type(state).__name__}")
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        new, wrong, bad = {}, [], []
        for k, v in state.items():
            if k in own:
                try:
                    new[k] = backend.to_device(_converted(v, own[k]), own[k].device)
                except _ShapeMismatch as e:
                    wrong.append(f"{k}: {e}")
                except (TypeError, ValueError) as e:
                    bad.append(f"{k}: {e}")
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if wrong:
            problems.append(f"shape mismatch for {'; '.join(wrong)}")
        if bad:
            problems.append(f"cannot convert {'; '.join(bad)}")
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems) +
                             " (nothing was loaded)")
        for k, array in new.items():           # every array is ready: nothing below can fail
            own[k].data = array
        return missing, unexpected

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = Tensor._make(backend.get_array_module(p.grad.data).zeros_like(p.grad.data), False, None, 0)

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device=None, dtype=None):
        """Move and/or cast every parameter in place (the Parameter objects stay the same)."""
        dt = backend.check_dtype(dtype) if dtype is not None else None
        if dt is not None and dt.kind != "f":
            raise TypeError(f"Module.to: dtype must be a float dtype, got {dt.name}")
        dev = backend.check_device(device) if device is not None else None
        with no_grad():
            for p in self.parameters():
                data = p.data if dt is None else p.data.astype(dt)
                p.data = data if dev is None else backend.to_device(data, dev)
                p.grad = None
        return self

    # ----- printing -----
    def extra_repr(self):
        return ""

    def __repr__(self):
        children = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + (")" if not children else "\n" + "\n".join(children) + "\n)")


class ModuleList(Module):
    """A list of modules, registered under the names "0", "1", ... ."""

    def __init__(self, modules=()):
        for m in modules:
            self.append(m)

    def append(self, module):
        return self._add(str(len(self)), module)

    def _add(self, name, module):
        kind = type(self).__name__
        if not isinstance(module, Module):
            raise TypeError(f"{kind} holds Modules, got {type(module).__name__}")
        if not isinstance(name, str) or not name or "." in name or hasattr(self, name):
            raise ValueError(f"{kind}: a module name must be a new, non-empty string without '.', got {name!r}")
        setattr(self, name, module)
        return self

    def __len__(self):
        return sum(1 for _ in self.named_children())

    def __getitem__(self, i):
        return list(self.children())[i]

    def __iter__(self):
        return self.children()


class _ShapeMismatch(ValueError):
    pass


def _converted(v, p):
    """``v`` as a new NumPy array of p's shape and dtype, or a ValueError/TypeError saying why not."""
    array = np.asarray(_host(v))
    if array.dtype.kind not in "biuf":
        raise TypeError(f"holds {array.dtype} values ({type(v).__name__}), expected numbers")
    if array.shape != p.shape:
        raise _ShapeMismatch(f"expected {p.shape}, got {array.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = array.astype(p.dtype)                  # always a copy
    if p.dtype.kind == "f":
        lost = np.isfinite(array) & ~np.isfinite(out)
        if lost.any():
            raise ValueError(f"{int(lost.sum())} finite value(s) overflow {p.dtype.name}, "
                             f"e.g. {array[lost].flat[0].item()!r}")
    elif not np.array_equal(out.astype(array.dtype), array):
        raise ValueError(f"its values do not fit {p.dtype.name} exactly")
    return out


class Sequential(ModuleList):
    """Modules applied in order: ``Sequential(a, b, c)(x)`` is ``c(b(a(x)))``.

    Args:
        *modules: the modules, registered under the names "0", "1", ...; or a single
            ``OrderedDict`` (or dict) of name -> module, registered under its names.

    Shape:
        input: what the first module takes; output: what the last one gives (an
        empty Sequential returns its input).

    Indexing, ``len``, iteration and ``append`` work as on a ModuleList; a slice is
    a Sequential of those modules under their names.

    Example::

        >>> model = tg.nn.Sequential(tg.nn.Linear(3, 8), tg.nn.Dropout(0.1), tg.nn.Linear(8, 1))
        >>> model(tg.randn(4, 3)).shape
        (4, 1)
        >>> [name for name, _ in model.named_parameters()]
        ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], Mapping):
            for name, module in modules[0].items():
                self._add(name, module)
        else:
            super().__init__(modules)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(dict(list(self.named_children())[i]))
        return super().__getitem__(i)

    def forward(self, x):
        for module in self:
            x = module(x)
        return x


def _host(v):
    if isinstance(v, Tensor):
        return v.numpy()
    if hasattr(v, "__cuda_array_interface__"):
        return backend.to_device(v, "cpu")
    if hasattr(v, "detach") and hasattr(v, "cpu"):      # a torch.Tensor
        return v.detach().cpu().numpy()
    return v
