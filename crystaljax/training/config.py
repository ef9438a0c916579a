"""Training-run configuration: ``env``, ``agent`` and ``train`` sections, YAML + overrides."""

from __future__ import annotations

import copy
import dataclasses
import os
from typing import Any

import yaml

from crystaljax.env.config import ConfigError, EnvConfig


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How a run is driven (not the algorithm's hyperparameters).

    Attributes:
      seed: PRNG seed of the run.
      chunk_iterations: agent iterations per jitted chunk (an iteration is
        ``agent.config.env_steps_per_iteration`` env steps: one vectorised step for
        DQN/Rainbow/SAC, one rollout for PPO); logging,
        progress, checkpoints and evaluation happen between chunks.
      eval_episodes: greedy episodes per evaluation (0 disables).
      eval_every_chunks: evaluate every this many chunks (and always at the end).
      checkpoint_every_chunks: save a checkpoint every this many chunks (and at the end).
      top_k: how many best crystals to export.
      time_budget_minutes: wall-clock budget of the training loop (minutes), or None.
        Between chunks the run stops early, with a checkpoint and the final evaluation,
        once the next chunk plus that evaluation would end past the budget (estimated
        from the slowest chunk after the first, which includes compilation). A resumed
        run gets a fresh budget.
      runs_dir: parent folder of run directories.
      name: run name (default: config name + agent + timestamp).
    """

    seed: int = 0
    chunk_iterations: int = 250
    eval_episodes: int = 64
    eval_every_chunks: int = 4
    checkpoint_every_chunks: int = 1
    top_k: int = 10
    time_budget_minutes: float | None = None
    runs_dir: str = "runs"
    name: str | None = None


@dataclasses.dataclass
class RunConfig:
    """A whole training run: env config dict, agent name + overrides, train settings."""

    env: dict
    agent: dict
    train: TrainSettings
    source: str = "<dict>"

    def to_dict(self) -> dict:
        return {"env": _plain(self.env), "agent": dict(self.agent),
                "train": dataclasses.asdict(self.train)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


_SECTIONS = ("env", "agent", "train")
_ENV_KEYS = {f.name for f in dataclasses.fields(EnvConfig)} | {"task"}
_TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainSettings)}


def load_run_config(path_or_dict: str | dict, overrides: dict | None = None) -> RunConfig:
    """Load a run config and apply ``key=value`` overrides.

    Override keys may be dotted (``env.target``, ``agent.lr``, ``train.seed``) or bare:
    ``agent`` sets the algorithm name; other bare keys go to the section that knows
    them (env first, then train); unknown bare keys go to the agent, which validates them.
    """
    if isinstance(path_or_dict, str):
        if not os.path.isfile(path_or_dict):
            raise FileNotFoundError(f"config file not found: {path_or_dict}")
        try:
            with open(path_or_dict, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path_or_dict}: not valid YAML ({exc})") from None
        source = path_or_dict
    else:
        data, source = copy.deepcopy(path_or_dict), "<dict>"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with sections {list(_SECTIONS)}")
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; valid: {list(_SECTIONS)}")
    env = dict(data.get("env") or {})
    agent = dict(data.get("agent") or {})
    train = dict(data.get("train") or {})
    for key, value in (overrides or {}).items():
        section, dot, name = key.partition(".")
        if dot:
            if section not in _SECTIONS:
                raise ConfigError(f"override {key!r}: unknown section {section!r}")
            {"env": env, "agent": agent, "train": train}[section][name] = value
        elif key == "agent":
            agent["name"] = value
        elif key in _ENV_KEYS:
            env[key] = value
        elif key in _TRAIN_KEYS:
            train[key] = value
        else:
            agent[key] = value
    bad_train = sorted(set(train) - _TRAIN_KEYS)
    if bad_train:
        raise ConfigError(f"{source}: unknown train key(s) {bad_train}; valid: {sorted(_TRAIN_KEYS)}")
    agent.setdefault("name", "dqn")
    if train.get("time_budget_minutes") is not None:
        train["time_budget_minutes"] = _positive_minutes(train["time_budget_minutes"], source)
    return RunConfig(env=env, agent=agent, train=TrainSettings(**train), source=source)


def _positive_minutes(value: Any, source: str) -> float:
    """A time budget in minutes; YAML reads ``1e-3`` as a string, so strings are parsed."""
    try:
        minutes = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        minutes = float("nan")
    if not 0 < minutes < float("inf"):
        raise ConfigError(f"{source}: train.time_budget_minutes must be a positive number of "
                          f"minutes or null, got {value!r}")
    return minutes
