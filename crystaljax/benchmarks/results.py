"""The one results file of the agent benchmarks: sweeps (``SweepResult.to_json``) with a small
header, read and written by both scripts/bench_agents.py and scripts/benchmark_table.py, and
the per-agent benchmark settings (configs/benchmark_agents.yaml).

File layout::

    {"format": "crystaljax-sweeps/1",
     "meta": {...},          # settings of the producing script (settings file, QE budget)
     "runs": [SweepResult.to_json(), ...]}
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from crystaljax.config import ConfigError, load_yaml
from crystaljax.training.sweep import SweepResult

FORMAT = "crystaljax-sweeps/1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETTINGS = os.path.join(ROOT, "configs", "benchmark_agents.yaml")


@dataclasses.dataclass
class Results:
    """Sweeps, one per (agent, task, target), in the order they were added."""

    runs: list[SweepResult] = dataclasses.field(default_factory=list)
    meta: dict = dataclasses.field(default_factory=dict)

    def add(self, run: SweepResult) -> None:
        """Add ``run``, replacing an earlier run with the same key."""
        self.runs = [r for r in self.runs if r.key != run.key] + [run]

    def to_json(self) -> dict:
        return {"format": FORMAT, "meta": dict(self.meta), "runs": [r.to_json() for r in self.runs]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "results") -> Results:
        if data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a {FORMAT} results file (format "
                              f"{data.get('format')!r})")
        return cls([SweepResult.from_json(r) for r in data["runs"]], dict(data.get("meta", {})))

    def save(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)

    @classmethod
    def load(cls, path: str) -> Results:
        with open(path) as f:
            return cls.from_json(json.load(f), path)

    @classmethod
    def merge(cls, paths: Iterable[str]) -> Results:
        """Combine results files (e.g. one process per agent, or runs on two machines): a
        run of a later file replaces an earlier run with the same key; later headers win."""
        merged = cls()
        for path in paths:
            part = cls.load(path)
            merged.meta.update(part.meta)
            for run in part.runs:
                merged.add(run)
        return merged


def load_settings(path: str | None = SETTINGS) -> dict[str, dict]:
    """Per-agent benchmark settings ``{agent: {"env_steps": int, **overrides}}`` with the
    ``common`` section merged under every agent's own (nested mappings key by key).
    ``None`` or ``"none"``: no settings (package defaults)."""
    if path in (None, "none"):
        return {}
    raw = dict(load_yaml(path) or {})
    common = raw.pop("common", None) or {}
    out = {}
    for name, own in raw.items():
        merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in common.items()}
        for key, value in (own or {}).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = value
        if "env_steps" not in merged:
            raise ConfigError(f"{path}: agent {name!r} has no env_steps")
        out[name] = merged
    return out


def split_settings(settings: Mapping[str, Any]) -> tuple[int | None, dict]:
    """(env_steps, agent overrides) of one agent's settings."""
    own = dict(settings)
    steps = own.pop("env_steps", None)
    return (None if steps is None else int(steps)), own


def settings_label(path: str | None) -> str | None:
    """The settings file as the reports name it (relative to the repository)."""
    return None if path in (None, "none") else os.path.relpath(path, ROOT)


def settings_source(results: Results, path: str | None) -> str | None:
    """The settings file of merged runs when every run's overrides are exactly what that file
    gives its agent (command-line overrides included), else a pointer to the per-run list."""
    settings = load_settings(path)
    for run in results.runs:
        if split_settings(settings.get(run.agent, {}))[1] != run.overrides:
            return "see each agent below; they differ from the settings file"
    return settings_label(path)


__all__ = ["FORMAT", "ROOT", "SETTINGS", "Results", "load_settings", "settings_label",
           "settings_source", "split_settings"]
