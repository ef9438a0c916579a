"""Training-run configuration: a typed ``RunConfig(env, agent, train)`` from YAML + overrides.

Every value is checked when the config is loaded (before anything is built or written):
the env section by :class:`~crystaljax.env.config.EnvConfig` (oracle options included),
the agent section by the agent's config dataclass, the train section by
:class:`TrainSettings`. Errors are :class:`~crystaljax.config.ConfigError` with one line
naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from crystaljax.config import ConfigError, check, from_mapping, load_yaml, option, parse_overrides
from crystaljax.env.config import EnvConfig


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How a run is driven (not the algorithm's hyperparameters).

    Attributes:
      seed: PRNG seed of the run (an integer).
      chunk_iterations: agent iterations per jitted chunk (>= 1; an iteration is
        ``agent.config.env_steps_per_iteration`` env steps: one vectorised step for
        DQN/Rainbow/SAC, one rollout for PPO); logging, progress, checkpoints and
        evaluation happen between chunks.
      chunk_env_steps: env steps per chunk instead (rounded down to whole iterations, at
        least one), or None (default: ``chunk_iterations``). One value suits every agent,
        whose iterations differ by 100x (a DQN step of 16 envs, a PPO rollout of 2,400).
      eval_episodes: greedy episodes per evaluation (>= 1).
      eval_every_chunks: evaluate every this many chunks (and always at the end).
      checkpoint_every_chunks: save a checkpoint every this many chunks (and at the end).
      top_k: how many best crystals to export.
      time_budget_minutes: wall-clock budget of the training loop (minutes > 0), or None.
        Between chunks the run stops early, with a checkpoint and the final evaluation,
        once the next chunk plus that evaluation would end past the budget (estimated
        from the slowest chunk after the first, which includes compilation). A resumed
        run gets a fresh budget.
      runs_dir: parent folder of run directories.
      name: run directory name inside ``runs_dir`` (default: config name + agent +
        timestamp); a plain name, no path separators or '..'.
    """

    seed: int = 0
    chunk_iterations: int = option(250, ge=1)
    chunk_env_steps: int | None = option(None, ge=1)
    eval_episodes: int = option(64, ge=1)
    eval_every_chunks: int = option(4, ge=1)
    checkpoint_every_chunks: int = option(1, ge=1)
    top_k: int = option(10, ge=1)
    time_budget_minutes: float | None = option(None, gt=0)
    runs_dir: str = "runs"
    name: str | None = None

    def __post_init__(self):
        check(self, "train")
        if self.name is not None:
            bad = (not self.name.strip() or self.name in (".", "..") or "/" in self.name
                   or os.sep in self.name or (os.altsep and os.altsep in self.name))
            if bad:
                raise ConfigError(f"train.name must be a plain directory name (no '/' or '..'), "
                                  f"got {self.name!r}")

    def iterations_per_chunk(self, env_steps_per_iteration: int) -> int:
        """Agent iterations per chunk for an agent whose iteration is that many env steps."""
        if self.chunk_env_steps is None:
            return int(self.chunk_iterations)
        return max(1, int(self.chunk_env_steps) // int(env_steps_per_iteration))


SECTIONS = ("env", "agent", "train")
_ENV_KEYS = {f.name for f in dataclasses.fields(EnvConfig)} | {"task"}
_TRAIN_KEYS = {f.name for f in dataclasses.fields(TrainSettings)}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A whole training run, checked.

    Attributes:
      env: the env config (validated; oracle options included).
      agent_name: a registered agent (``crystaljax.agents.list_agents()``).
      agent: that agent's config dataclass.
      train: :class:`TrainSettings`.
      sections: the sections as given (after overrides), written to the run's config.yaml
        so that ``--resume`` rebuilds the same run.
      source: the YAML path, or '<dict>'.
    """

    env: EnvConfig
    agent_name: str
    agent: Any
    train: TrainSettings
    sections: dict
    source: str = "<dict>"

    def to_dict(self) -> dict:
        return copy.deepcopy(self.sections)

    def resolved_dict(self) -> dict:
        """The sections with the agent section spelt out in full (every field of the agent
        config, presets expanded): what a run directory's config.yaml records, so that
        ``--resume`` and ``evaluate`` rebuild the same agent whatever later versions change
        in the package defaults."""
        from crystaljax.config import to_dict

        out = self.to_dict()
        out["agent"] = {"name": self.agent_name, **to_dict(self.agent)}
        return out


def _route_overrides(env: dict, agent: dict, train: dict, overrides: Mapping[str, Any]) -> None:
    """Put each override in its section: dotted keys are explicit (``env.target``,
    ``agent.network.num_blocks``, nested as mappings); ``agent`` sets the algorithm; other
    bare keys go to the section that knows them (env, then train), else to the agent,
    whose config names the allowed keys when it does not know one."""
    sections = {"env": env, "agent": agent, "train": train}
    for key, value in overrides.items():
        section, dot, name = key.partition(".")
        if dot:
            if section not in SECTIONS:
                raise ConfigError(f"override {key!r}: unknown section {section!r}; "
                                  f"use one of {list(SECTIONS)}")
            target, path = sections[section], name
        elif key == "agent":
            target, path = agent, "name"
        else:
            target = env if key in _ENV_KEYS else train if key in _TRAIN_KEYS else agent
            path = key
        *outer, last = path.split(".")
        for part in outer:
            sub = target.setdefault(part, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"override {key!r}: {part!r} is not a mapping")
            target = sub
        target[last] = value


def load_run_config(path_or_dict: str | Mapping, overrides: Sequence[str] | Mapping | None = None
                    ) -> RunConfig:
    """Load a run config (YAML path or dict) with ``key=value`` overrides (strings as on the
    command line, or a dict) and check every value. Raises ConfigError or FileNotFoundError."""
    if isinstance(path_or_dict, (str, os.PathLike)):
        data, source = load_yaml(path_or_dict) or {}, os.fspath(path_or_dict)
    elif isinstance(path_or_dict, Mapping):
        data, source = copy.deepcopy(dict(path_or_dict)), "<dict>"
    else:
        raise ConfigError(f"a run config is a YAML path or a mapping, got {path_or_dict!r}")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with sections {list(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; valid: {list(SECTIONS)}")
    sections = {}
    for name in SECTIONS:
        value = data.get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping, got {value!r}")
        sections[name] = copy.deepcopy(value)
    env, agent, train = sections["env"], sections["agent"], sections["train"]
    _route_overrides(env, agent, train, parse_overrides(overrides))
    agent.setdefault("name", "dqn")

    from crystaljax.agents import AGENTS, list_agents
    from crystaljax.agents import agent_config as build_agent_config
    from crystaljax.env.registry import resolve_config

    name = agent["name"]
    if not isinstance(name, str) or name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r}; choose one of {list_agents()}")
    try:
        env_config = resolve_config(dict(env))
    except ConfigError as exc:
        raise ConfigError(f"env: {exc}".replace("env: config: ", "env: ")) from None
    agent_config = build_agent_config(name, {k: v for k, v in agent.items() if k != "name"},
                                      "agent")
    train_settings = from_mapping(TrainSettings, train, "train")
    return RunConfig(env=env_config, agent_name=name, agent=agent_config, train=train_settings,
                     sections=sections, source=source)


__all__ = ["RunConfig", "SECTIONS", "TrainSettings", "load_run_config"]
