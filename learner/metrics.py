"""Metrics: TensorBoard scalars (CleanRL-style names: ``charts/``, ``losses/``, ``actors/``) and a console line."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger("learner")


class EpisodeWindow:
    """Return, length and success of the most recent finished episodes (a moving window, as the paper logs)."""

    def __init__(self, size: int = 100) -> None:
        self.returns: deque[float] = deque(maxlen=size)
        self.lengths: deque[int] = deque(maxlen=size)
        self.successes: deque[float] = deque(maxlen=size)
        self.total = 0

    def add(self, episodes: Iterable[dict[str, Any]]) -> None:
        for ep in episodes:
            self.returns.append(float(ep["return"]))
            self.lengths.append(int(ep["length"]))
            if ep.get("success") is not None:
                self.successes.append(float(ep["success"]))
            self.total += 1

    @staticmethod
    def _mean(values: deque) -> float:
        return sum(values) / len(values) if values else math.nan

    @property
    def mean_return(self) -> float:
        return self._mean(self.returns)

    @property
    def mean_length(self) -> float:
        return self._mean(self.lengths)

    @property
    def success_rate(self) -> float:
        return self._mean(self.successes)


class Metrics:
    def __init__(self, run_dir: Path) -> None:
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
