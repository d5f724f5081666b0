"""The primitive ops: each a Function with its derivative beside it."""
from .elementwise import (Abs, Add, Cast, Clip, Div, Exp, Log, Maximum, Minimum, Mul, Neg, Pow, Relu,
                          Remainder, Sigmoid, Softplus, Sqrt, Sub, Tanh, ToDevice, Where)
from .discrete import Discrete
from .linalg import MatMul
from .reduce import Max, Min, Sum
from .shape import BroadcastTo, Concatenate, GetItem, IndexAdd, Reshape, Split, Stack, Transpose, Unbind, sum_to

__all__ = ["Abs", "Add", "BroadcastTo", "Cast", "Clip", "Concatenate", "Discrete", "Div", "Exp", "GetItem", "IndexAdd",
           "Log", "MatMul", "Max", "Maximum", "Min", "Minimum", "Mul", "Neg", "Pow", "Relu", "Remainder", "Reshape",
           "Sigmoid", "Softplus", "Split", "Sqrt", "Stack", "Sub", "Sum", "Tanh", "ToDevice", "Transpose", "Unbind",
           "Where",
           "sum_to"]
