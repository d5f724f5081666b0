"""Layers and their building blocks: Module, Parameter, init, layers, cells, recurrent layers, clipping."""
from .. import functional
from . import bptt, init, utils
from .attention import Attention
from .cells import GatedCell, GateLayout, RecurrentCell
from .context import ContextCell, InitialState
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell
from .trace_scan import named
from .layers import CrossEntropyLoss, Dropout, Embedding, Linear, MSELoss
from .module import Module, ModuleList, Parameter, Sequential
from .recurrent import GRU, LSTM, RNN, Recurrent, unroll
from .seq2seq import Seq2Seq
from .tree import ChildSumTreeLSTM, NaryTreeLSTM, RecursiveNN, Tree, TreeBatch, TreeNetwork
from .teacher_forcing import Jordan, teacher_forced_unroll
from .variants import ClockworkRNNCell, CoupledLSTMCell, ElmanJordanCell, JordanCell, PeepholeLSTMCell

__all__ = ["Attention", "bptt", "ChildSumTreeLSTM", "ClockworkRNNCell", "ContextCell", "CoupledLSTMCell",
           "CrossEntropyLoss", "Dropout", "ElmanJordanCell", "Embedding", "functional", "GatedCell", "GateLayout",
           "GRU", "GRUCell", "init", "InitialState", "Jordan", "JordanCell", "Linear", "LSTM", "LSTMCell", "Module",
           "ModuleList", "MSELoss", "named", "NaryTreeLSTM", "Parameter", "PeepholeLSTMCell", "Recurrent",
           "RecurrentCell", "RecursiveNN", "RNN", "RNNCell", "Seq2Seq", "Sequential", "teacher_forced_unroll", "Tree",
           "TreeBatch", "TreeNetwork", "unroll", "utils"]
