"""RL agents on crystaljax envs: a registry of names -> (config class, agent class).

``make_agent(name, env, env_params, config)`` builds an agent; ``make_train`` returns a
purejaxrl-style ``train(key)`` that runs a whole training run in one jittable call. The
defaults are the settings that met the density criterion; ``{"preset": "crystalgym"}`` in a
config dict gives CrystalGym's (:mod:`crystaljax.agents.presets`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crystaljax import config as _config
from crystaljax.agents.base import METRICS, Agent, BestCrystal
from crystaljax.agents.dqn import AgentState, DQNAgent, DQNConfig, QLearningAgent, RainbowConfig
from crystaljax.agents.ppo import PPOAgent, PPOConfig, PPOState
from crystaljax.agents.presets import PRESETS, list_presets, split_preset
from crystaljax.agents.sac import SACAgent, SACConfig, SACState
from crystaljax.config import ConfigError

#: agent name -> (config dataclass, agent class taking (name, env, env_params, config))
AGENTS: dict[str, tuple[type, type]] = {
    "dqn": (DQNConfig, DQNAgent),
    "rainbow": (RainbowConfig, DQNAgent),
    "ppo": (PPOConfig, PPOAgent),
    "sac": (SACConfig, SACAgent),
}


def apply_overrides(config: Any, overrides: dict | None, where: str = "agent config") -> Any:
    """``config`` with fields replaced by ``overrides`` (nested dicts or dotted keys reach
    ``network``), every value checked; ConfigError names a bad or unknown key."""
    return _config.replace(config, overrides, where)


def list_agents() -> list[str]:
    """Registered agent names."""
    return sorted(AGENTS)


def _config_class(name: str) -> type:
    if not isinstance(name, str) or name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r}; choose one of {list_agents()}")
    return AGENTS[name][0]


def agent_config(name: str, overrides: dict | None = None, where: str | None = None) -> Any:
    """The config dataclass of agent ``name``: its defaults, then the preset named by
    ``overrides["preset"]`` (if any), then the other overrides (nested dicts or dotted keys
    for ``network``), every value checked (ConfigError names the key)."""
    where = where or f"{name} config"
    preset, rest = split_preset(name, overrides)
    return apply_overrides(apply_overrides(_config_class(name)(), preset, where), rest, where)


def default_config(name: str, preset: str | None = None) -> Any:
    """The default config dataclass of agent ``name`` (of ``preset`` when given)."""
    return agent_config(name, None if preset is None else {"preset": preset})


def make_agent(name: str, env, env_params, config: dict | Any | None = None):
    """Build agent ``name`` for ``env``.

    Args:
      name: a registered name (``list_agents()``: 'dqn', 'ppo', 'rainbow', 'sac').
      env, env_params: from ``crystaljax.make`` (or any env with the same interface).
      config: None (defaults), a dict of overrides of the agent's config dataclass
        (nested dicts or dotted keys for ``network``; ``"preset"`` names a preset of
        :mod:`crystaljax.agents.presets` they apply on top of), or a config instance.

    Raises:
      crystaljax.config.ConfigError (a ValueError): unknown name, unknown config keys (the
      message lists the allowed keys) or invalid values (the message names the key).
    """
    config_cls = _config_class(name)
    cfg = config if isinstance(config, config_cls) else agent_config(name, config)
    return AGENTS[name][1](name, env, env_params, cfg)


def make_train(name: str, env, env_params, config: dict | Any | None = None
               ) -> Callable[[Any], tuple[AgentState, dict]]:
    """``train(key) -> (final AgentState, metrics)`` running ``total_env_steps`` in one
    ``lax.scan`` (purejaxrl style): ``jax.jit(train)`` or ``jax.jit(jax.vmap(train))(keys)``
    for many seeds. Metrics have leading axis ``config.num_iterations`` (= total_env_steps //
    config.env_steps_per_iteration: ``num_envs`` for the replay agents, one rollout of
    ``num_steps * num_envs`` for PPO)."""
    agent = make_agent(name, env, env_params, config)

    def train(key):
        state = agent.init(key)
        return agent.run_iterations(state, agent.config.num_iterations, start_iteration=0)

    return train


__all__ = ["AGENTS", "METRICS", "PRESETS", "Agent", "AgentState", "BestCrystal", "DQNAgent",
           "DQNConfig", "PPOAgent", "PPOConfig", "PPOState", "QLearningAgent", "RainbowConfig",
           "SACAgent", "SACConfig", "SACState", "agent_config", "apply_overrides",
           "default_config", "list_agents", "list_presets", "make_agent", "make_train"]
