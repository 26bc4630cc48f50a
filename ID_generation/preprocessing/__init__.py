"""Preprocessing: raw files of each source → sequences, item texts, and the leave-one-out split."""
from .pipeline import ProcessedData, preprocess
from .split import Split, leave_one_out

__all__ = ["ProcessedData", "preprocess", "Split", "leave_one_out"]
