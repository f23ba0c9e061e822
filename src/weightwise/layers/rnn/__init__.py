"""Recurrent layers: the cells, the generic RNN over a cell, and SimpleRNN, LSTM and GRU."""

from __future__ import annotations

from weightwise.layers.rnn.dropout_cell import DropoutRNNCell
from weightwise.layers.rnn.gru import GRU, GRUCell
from weightwise.layers.rnn.lstm import LSTM, LSTMCell
from weightwise.layers.rnn.rnn import RNN
from weightwise.layers.rnn.simple_rnn import SimpleRNN, SimpleRNNCell
from weightwise.layers.rnn.stacked import StackedRNNCells

__all__ = ["GRU", "LSTM", "RNN", "DropoutRNNCell", "GRUCell", "LSTMCell", "SimpleRNN", "SimpleRNNCell",
           "StackedRNNCells"]
