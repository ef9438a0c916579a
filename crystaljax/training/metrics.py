"""Reduce an agent's per-iteration metrics over a chunk, by the schema the agents declare.

Every agent returns every key of ``crystaljax.agents.base.METRICS`` at every iteration
(NaN for the values an algorithm lacks); the schema says how a chunk reduces each one:
``sum`` (counters), ``last`` (cumulative values, schedules) or ``mean`` (losses, NaN-aware).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np


def reduce_chunk(metrics: Mapping[str, np.ndarray], schema: Mapping[str, str] | None = None,
                 axis: int = -1) -> dict[str, np.ndarray | float]:
    """Reduce metrics with an iteration axis (``axis``, default the last: [iterations] for
    one run, [seeds, iterations] for a vmapped sweep) to one value per run.

    Returns floats for unbatched input, arrays [seeds] otherwise. Keys not in the schema
    are left out; a ``mean`` over iterations that are all NaN is NaN (no warning).
    """
    if schema is None:
        from crystaljax.agents.base import METRICS as schema
    out: dict[str, np.ndarray | float] = {}
    for name, how in schema.items():
        if name not in metrics:
            continue
        values = np.asarray(metrics[name])
        if how == "sum":
            reduced = values.sum(axis=axis)
        elif how == "last":
            reduced = np.take(values, -1, axis=axis)
        elif how == "mean":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                reduced = np.nanmean(values.astype(np.float64), axis=axis)
        else:
            raise ValueError(f"metric {name!r}: unknown reduction {how!r}")
        out[name] = reduced.item() if np.ndim(reduced) == 0 else reduced
    return out


def mean_terminal_reward(reduced: Mapping[str, Any]) -> np.ndarray | float:
    """Mean terminal reward of a reduced chunk's training episodes (NaN where none ended);
    a float for one run, an array [seeds] for a sweep."""
    episodes = np.asarray(reduced["episodes_done"], float)
    total = np.asarray(reduced["terminal_reward_sum"], float)
    value = np.where(episodes > 0, total / np.maximum(episodes, 1), np.nan)
    return value.item() if value.ndim == 0 else value


__all__ = ["mean_terminal_reward", "reduce_chunk"]
