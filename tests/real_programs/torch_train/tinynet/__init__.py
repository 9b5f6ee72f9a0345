"""A tiny MLP, its data and its training step: the code traced in full (--scope)."""

from tinynet.data import batches, make_dataset
from tinynet.model import TinyMLP
from tinynet.training import evaluate, train_epoch

__all__ = ["TinyMLP", "batches", "evaluate", "make_dataset", "train_epoch"]
