"""Layers and their building blocks: Module, Parameter, init, layers, cells, recurrent layers, clipping."""
from .. import functional
from . import bptt, init, utils
from .attention import Attention
from .cells import GatedCell, GateLayout, RecurrentCell
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell
from .trace_scan import named
from .layers import Dropout, Embedding, Linear
from .module import Module, ModuleList, Parameter
from .recurrent import GRU, LSTM, RNN, Recurrent, unroll
from .seq2seq import Seq2Seq
from .tree import ChildSumTreeLSTM, NaryTreeLSTM, RecursiveNN, Tree, TreeBatch, TreeNetwork
from .variants import ClockworkRNNCell, CoupledLSTMCell, JordanCell, PeepholeLSTMCell

__all__ = ["Attention", "bptt", "ChildSumTreeLSTM", "ClockworkRNNCell", "CoupledLSTMCell", "Dropout",
           "Embedding", "functional", "GatedCell", "GateLayout", "GRU", "GRUCell", "init", "JordanCell", "Linear",
           "LSTM", "LSTMCell", "Module", "ModuleList", "named", "NaryTreeLSTM", "Parameter", "PeepholeLSTMCell",
           "Recurrent", "RecurrentCell", "RecursiveNN", "RNN", "RNNCell", "Seq2Seq", "Tree", "TreeBatch",
           "TreeNetwork", "unroll", "utils"]
