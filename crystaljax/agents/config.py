"""Agent configurations (frozen dataclasses) and dict overrides with clear errors."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from crystaljax.models.megnet import MEGNetConfig

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """DQN (double Q, target network, epsilon-greedy). Defaults are CrystalGym's
    CleanRL-style DQN (REFERENCE.md) unless noted.

    Steps are env steps summed over the ``num_envs`` vectorised envs; one training
    iteration steps every env once (``num_envs`` env steps).

    Attributes:
      total_env_steps: length of a full run (``make_train``); sets the schedules.
      num_envs: envs stepped per iteration (the original used 1).
      learning_rate, adam_eps, max_grad_norm: Adam (None = no gradient clipping).
      learning_rate_end: None = constant learning rate (the original); else annealed
        linearly to this value over the updates of a full run.
      gamma: discount.
      buffer_size: replay capacity in transitions (rounded down to a multiple of num_envs).
      batch_size: transitions per gradient update.
      learning_starts: env steps before the first update.
      train_frequency: env steps per gradient update (4 = one update every 4 env steps).
        With num_envs > train_frequency an iteration makes num_envs / train_frequency
        updates; one of the two must divide the other.
      target_update_interval: env steps between target updates.
      tau: target update step size (1 = hard copy, as the original; < 1 = Polyak).
      epsilon_start, epsilon_end, exploration_fraction: epsilon decays linearly over
        ``exploration_fraction * total_env_steps`` env steps.
      double_q: bootstrap action chosen by the online net, valued by the target net.
      dueling: dueling head (advantage mean subtracted per sample over valid actions).
      n_step: n-step returns (no bootstrapping across episode ends).
      loss: 'mse' (the original's) or 'huber' (scalar Q only).
      num_atoms: 1 = scalar Q; > 1 = C51 distribution on ``linspace(v_min, v_max)``.
      v_min, v_max: C51 support; None = the task's reward range.
      prioritised: proportional prioritised replay (priority = |TD| or the C51 KL divergence).
      priority_exponent: alpha of the sampling probabilities.
      importance_beta_start, importance_beta_end: importance-weight exponent, annealed
        linearly over the run.
      priority_eps: added to priorities so nothing gets probability 0.
      noisy: noisy linear layers in the head (factorised Gaussian).
      noisy_sigma0: initial noise scale.
      network: MEGNet sizes (``num_tokens`` is filled in from the env).
    """

    total_env_steps: int = 100_000
    num_envs: int = 1
    learning_rate: float = 2.5e-4
    learning_rate_end: float | None = None
    adam_eps: float = 1e-8
    max_grad_norm: float | None = None
    gamma: float = 0.99
    buffer_size: int = 2000
    batch_size: int = 64
    learning_starts: int = 1000
    train_frequency: int = 4
    target_update_interval: int = 500
    tau: float = 1.0
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    exploration_fraction: float = 0.2
    double_q: bool = True
    dueling: bool = False
    n_step: int = 1
    loss: str = "mse"
    num_atoms: int = 1
    v_min: float | None = None
    v_max: float | None = None
    prioritised: bool = False
    priority_exponent: float = 0.5
    importance_beta_start: float = 0.4
    importance_beta_end: float = 1.0
    priority_eps: float = 1e-6
    noisy: bool = False
    noisy_sigma0: float = 0.5
    network: MEGNetConfig = MEGNetConfig()

    def __post_init__(self):
        positive = ("total_env_steps", "num_envs", "buffer_size", "batch_size", "train_frequency",
                    "target_update_interval", "n_step", "num_atoms")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_envs % self.train_frequency and self.train_frequency % self.num_envs:
            raise ValueError(f"one of num_envs ({self.num_envs}) and train_frequency "
                             f"({self.train_frequency}) must divide the other")
        if self.buffer_size < self.num_envs * self.n_step:
            raise ValueError(f"buffer_size ({self.buffer_size}) must hold at least num_envs * "
                             f"n_step = {self.num_envs * self.n_step} transitions")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.loss not in ("mse", "huber"):
            raise ValueError(f"loss must be 'mse' or 'huber', got {self.loss!r}")
        if (self.v_min is None) != (self.v_max is None):
            raise ValueError("give both v_min and v_max, or neither")
        if self.v_min is not None and not self.v_min < self.v_max:
            raise ValueError(f"v_min must be < v_max, got {self.v_min}, {self.v_max}")
        if not isinstance(self.network, MEGNetConfig):
            raise ValueError(f"network must be a MEGNetConfig, got {type(self.network).__name__}")

    @property
    def updates_per_iteration(self) -> int:
        """Gradient updates made at an iteration where updates are due."""
        return max(1, self.num_envs // self.train_frequency)

    @property
    def update_every(self) -> int:
        """Iterations between iterations that make updates."""
        return max(1, self.train_frequency // self.num_envs)

    @property
    def buffer_rows(self) -> int:
        """Time rows of the replay buffer (each holds one transition per env)."""
        return self.buffer_size // self.num_envs

    @property
    def total_updates(self) -> int:
        """Gradient updates of a full run (for the learning-rate schedule)."""
        start = max(self.learning_starts, self.num_envs * self.n_step)
        return max(1, (self.total_env_steps - start) // self.train_frequency)

    @property
    def num_iterations(self) -> int:
        """Iterations of a full run (``total_env_steps // num_envs``)."""
        return max(1, self.total_env_steps // self.num_envs)

    @property
    def env_steps_per_iteration(self) -> int:
        """Env steps of one training iteration (every config has it; the Trainer uses it)."""
        return self.num_envs


@dataclasses.dataclass(frozen=True)
class RainbowConfig(DQNConfig):
    """Complete Rainbow (Hessel et al. 2018): C51 (51 atoms) + 3-step returns +
    prioritised replay (alpha 0.5, beta 0.4 -> 1) + dueling + noisy nets (sigma0 0.5) +
    double Q. Other defaults as DQNConfig (the original's).

    Two choices differ from the paper, both measured on the density task: Adam eps
    stays 1e-8 (the paper's 1.5e-4 dwarfs the small C51 gradients here and learning
    stalled), and epsilon-greedy exploration (1 -> 0.05, as DQN) is kept on top of the
    noisy layers (with noise alone the greedy crystal did not change for 8k env steps).
    """

    dueling: bool = True
    n_step: int = 3
    num_atoms: int = 51
    prioritised: bool = True
    noisy: bool = True


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO (clipped surrogate, GAE, clipped value loss, entropy bonus). Defaults are
    CrystalGym's CleanRL-style PPO (REFERENCE.md) unless noted.

    One training iteration collects a rollout of ``num_steps`` steps in each of the
    ``num_envs`` envs (``num_steps * num_envs`` env steps), then makes
    ``update_epochs * num_minibatches`` gradient steps on it. Every minibatch is a slice of
    ONE permutation of the flattened rollout applied to all of its fields (observations,
    actions, old log-probabilities, values, advantages, returns), so rows stay aligned
    (CrystalGym's PPO mixed them up, REFERENCE.md defect 2). Truncated episodes bootstrap
    from the value of their final observation; terminated ones do not.

    Attributes:
      total_env_steps: length of a full run; sets the learning-rate annealing.
      num_envs: envs stepped in parallel (the original used 1).
      num_steps: rollout length per env and iteration.
      learning_rate, adam_eps: Adam (one optimiser over actor and critic, CleanRL's).
      anneal_lr: decay the learning rate linearly to 0 over the run.
      gamma, gae_lambda: discount and GAE lambda.
      num_minibatches, update_epochs: minibatches per epoch and epochs per iteration.
      norm_adv: normalise advantages per minibatch (mean 0, std 1).
      clip_coef: surrogate ratio clip epsilon (also the value clip when ``clip_vloss``).
      clip_vloss: clipped value loss (max of clipped and unclipped squared errors).
      ent_coef, vf_coef: weights of the entropy bonus and the value loss.
      max_grad_norm: global gradient-norm clip (None = none).
      shared_torso: one MEGNet torso for policy and value (False = separate networks,
        as the original).
      network: MEGNet sizes (``num_tokens`` is filled in from the env).
    """

    total_env_steps: int = 100_000
    num_envs: int = 1
    num_steps: int = 32
    learning_rate: float = 2.5e-4
    adam_eps: float = 1e-5
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 2
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    shared_torso: bool = False
    network: MEGNetConfig = MEGNetConfig()

    def __post_init__(self):
        for name in ("total_env_steps", "num_envs", "num_steps", "num_minibatches",
                     "update_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"num_steps * num_envs ({self.batch_size}) must be a multiple of "
                             f"num_minibatches ({self.num_minibatches})")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gamma and gae_lambda must be in [0, 1], got {self.gamma}, "
                             f"{self.gae_lambda}")
        if self.clip_coef <= 0.0:
            raise ValueError(f"clip_coef must be > 0, got {self.clip_coef}")
        if not isinstance(self.network, MEGNetConfig):
            raise ValueError(f"network must be a MEGNetConfig, got {type(self.network).__name__}")

    @property
    def batch_size(self) -> int:
        """Transitions per rollout (``num_steps * num_envs``)."""
        return self.num_steps * self.num_envs

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def env_steps_per_iteration(self) -> int:
        """Env steps of one iteration: one rollout, ``num_steps * num_envs``."""
        return self.batch_size

    @property
    def num_iterations(self) -> int:
        """Iterations of a full run (``total_env_steps // env_steps_per_iteration``)."""
        return max(1, self.total_env_steps // self.batch_size)

    @property
    def total_updates(self) -> int:
        """Gradient steps of a full run (for the learning-rate annealing)."""
        return self.num_iterations * self.update_epochs * self.num_minibatches


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Discrete SAC (Christodoulou 2019): twin Q-networks with Polyak target networks, a
    categorical policy over the valid actions, expected-value losses (no sampling over
    actions), automatic temperature. Replay, schedule and optimiser defaults are
    CrystalGym's CleanRL-style SAC (REFERENCE.md) unless noted; see docs/SAC.md for
    what made it learn.

    Steps are env steps summed over the ``num_envs`` envs; one iteration steps every env
    once (``num_envs`` env steps) and makes the updates due.

    Attributes:
      total_env_steps: length of a full run.
      num_envs: envs stepped per iteration (the original used 1).
      q_learning_rate, policy_learning_rate, alpha_learning_rate, adam_eps: Adam for the
        twin critics, the actor and log(alpha).
      max_grad_norm: gradient-norm clip of critic and actor updates (None = none).
      gamma: discount.
      buffer_size, batch_size, learning_starts, train_frequency: replay as in DQNConfig
        (uniform random valid actions before ``learning_starts`` env steps).
      target_update_interval, tau: every this many env steps the target critics move
        ``tau`` of the way to the online ones (tau 1 = hard copy, the original's).
      alpha_init: initial temperature (the fixed one when ``autotune`` is False).
      autotune: learn log(alpha) so the policy's entropy tracks the target entropy.
      target_entropy_fraction: target entropy = this fraction x log(number of valid
        actions) of each state (CleanRL's scale 0.89).
      network: MEGNet sizes of the actor and of each critic.
    """

    total_env_steps: int = 100_000
    num_envs: int = 1
    q_learning_rate: float = 3e-4
    policy_learning_rate: float = 3e-4
    alpha_learning_rate: float = 3e-4
    adam_eps: float = 1e-4
    max_grad_norm: float | None = None
    gamma: float = 0.99
    buffer_size: int = 2000
    batch_size: int = 64
    learning_starts: int = 1000
    train_frequency: int = 4
    target_update_interval: int = 4
    tau: float = 0.005
    alpha_init: float = 0.2
    autotune: bool = True
    target_entropy_fraction: float = 0.2
    network: MEGNetConfig = MEGNetConfig()

    def __post_init__(self):
        for name in ("total_env_steps", "num_envs", "buffer_size", "batch_size",
                     "train_frequency", "target_update_interval"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_envs % self.train_frequency and self.train_frequency % self.num_envs:
            raise ValueError(f"one of num_envs ({self.num_envs}) and train_frequency "
                             f"({self.train_frequency}) must divide the other")
        if self.buffer_size < self.num_envs:
            raise ValueError(f"buffer_size ({self.buffer_size}) must hold at least num_envs "
                             f"= {self.num_envs} transitions")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.alpha_init <= 0.0:
            raise ValueError(f"alpha_init must be > 0, got {self.alpha_init}")
        if not 0.0 <= self.target_entropy_fraction <= 1.0:
            raise ValueError("target_entropy_fraction must be in [0, 1], got "
                             f"{self.target_entropy_fraction}")
        if not isinstance(self.network, MEGNetConfig):
            raise ValueError(f"network must be a MEGNetConfig, got {type(self.network).__name__}")

    @property
    def updates_per_iteration(self) -> int:
        """Gradient updates made at an iteration where updates are due."""
        return max(1, self.num_envs // self.train_frequency)

    @property
    def update_every(self) -> int:
        """Iterations between iterations that make updates."""
        return max(1, self.train_frequency // self.num_envs)

    @property
    def buffer_rows(self) -> int:
        """Time rows of the replay buffer (each holds one transition per env)."""
        return self.buffer_size // self.num_envs

    @property
    def env_steps_per_iteration(self) -> int:
        return self.num_envs

    @property
    def num_iterations(self) -> int:
        """Iterations of a full run (``total_env_steps // num_envs``)."""
        return max(1, self.total_env_steps // self.num_envs)


def config_keys(config_cls: type) -> list[str]:
    """Valid override keys of a config dataclass."""
    return sorted(f.name for f in dataclasses.fields(config_cls))


def _nest_dotted(overrides: dict) -> dict:
    """{'network.head_hidden': x} -> {'network': {'head_hidden': x}}."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            nested.setdefault(outer, {})
            if not isinstance(nested[outer], dict):
                raise ValueError(f"config key {outer!r} given both as a value and as {key!r}")
            nested[outer][inner] = value
        elif isinstance(value, dict) and isinstance(nested.get(key), dict):
            nested[key].update(value)
        else:
            nested[key] = value
    return nested


def apply_overrides(config: C, overrides: dict | None, where: str = "agent config") -> C:
    """``config`` with fields replaced by ``overrides`` (nested dicts or dotted keys reach
    nested dataclasses, e.g. ``{"network": {"head_hidden": [64]}}`` or
    ``{"network.head_hidden": [64]}``). Unknown keys raise ValueError listing valid ones."""
    if not overrides:
        return config
    if not isinstance(overrides, dict):
        raise ValueError(f"{where}: overrides must be a dict, got {type(overrides).__name__}")
    overrides = _nest_dotted(overrides)
    valid = config_keys(type(config))
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {valid}")
    values = {}
    for key, value in overrides.items():
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            value = apply_overrides(current, value, f"{where}.{key}")
        values[key] = value
    return dataclasses.replace(config, **values)
