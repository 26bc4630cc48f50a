"""Process-wide setup: the device and the random seeds."""
from __future__ import annotations

import random

import numpy as np
import torch


def resolve_device(device_id: int) -> torch.device:
    """`cuda:{device_id}` when a GPU is available, else the CPU."""
    if torch.cuda.is_available():
        if device_id >= torch.cuda.device_count():
            raise ValueError(f"config key 'device_id' is {device_id}, but only {torch.cuda.device_count()} "
                             "CUDA device(s) are visible")
        return torch.device(f"cuda:{device_id}")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
