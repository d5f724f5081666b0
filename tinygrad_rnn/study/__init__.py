"""Tools to look inside backpropagation through time.

Built on the engine and on ``tinygrad_rnn.nn``; nothing below this package imports it.
"""
