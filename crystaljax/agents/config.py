"""Fields and checks shared by the agent configs (each algorithm file holds its own config)."""

from __future__ import annotations

import dataclasses

from crystaljax.config import ConfigError, check, option
from crystaljax.models.megnet import MEGNetConfig


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """total_env_steps: length of a full run (sets the schedules); num_envs: envs stepped in
    parallel; gamma: discount; adam_eps, max_grad_norm: Adam epsilon and global-norm clip
    (None = none); network: MEGNet sizes (``num_tokens`` comes from the env).

    Defaults across the agent configs are the settings that met the density criterion
    (BENCHMARKS.md); ``preset: crystalgym`` (:mod:`crystaljax.agents.presets`) restores
    CrystalGym's hyperparameters and network."""

    total_env_steps: int = option(50_000, ge=1)
    num_envs: int = option(8, ge=1)
    gamma: float = option(0.99, ge=0.0, le=1.0)
    adam_eps: float = option(1e-8, gt=0.0)
    max_grad_norm: float | None = option(None, gt=0.0)
    network: MEGNetConfig = MEGNetConfig()

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class ReplayConfig(AgentConfig):
    """Replay and update schedule of DQN/Rainbow and SAC: a replay buffer of ``buffer_size``
    transitions (rounded down to a multiple of num_envs), ``batch_size`` per update, updates
    from ``learning_starts`` env steps on, one every ``train_frequency`` env steps; every
    ``target_update_interval`` env steps the target network moves ``tau`` of the way to
    the online one (1 = hard copy)."""

    buffer_size: int = option(20_000, ge=1)
    batch_size: int = option(64, ge=1)
    learning_starts: int = option(1000, ge=0)
    train_frequency: int = option(2, ge=1)
    target_update_interval: int = option(8, ge=1)
    tau: float = option(0.01, gt=0.0, le=1.0)

    def __post_init__(self):
        super().__post_init__()
        if self.num_envs % self.train_frequency and self.train_frequency % self.num_envs:
            raise ConfigError(f"one of num_envs ({self.num_envs}) and train_frequency "
                              f"({self.train_frequency}) must divide the other")

    #: gradient updates at an iteration where updates are due / iterations between those
    updates_per_iteration = property(lambda self: max(1, self.num_envs // self.train_frequency))
    update_every = property(lambda self: max(1, self.train_frequency // self.num_envs))
    #: time rows of the buffer (each holds one transition per env)
    buffer_rows = property(lambda self: self.buffer_size // self.num_envs)
    #: one iteration steps every env once
    env_steps_per_iteration = property(lambda self: self.num_envs)
    num_iterations = property(lambda self: max(1, self.total_env_steps // self.num_envs))
