"""Tiny agent configs that solve the probe envs, and a helper that trains one.

The tests train each agent once per session with these (vmapped over two seeds) and
check the learnt values against the probes' known ones.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from crystaljax.testing.probes import ProbeEnv

#: a MEGNet small enough to compile quickly and still solve every probe (token embeddings
#: only: the probe envs have no element table)
TINY_NET: dict[str, Any] = {"node_embed_dim": 8, "focus_embed_dim": 4, "encoder_hidden": (16, 16),
                            "num_blocks": 1, "block_hidden": (16, 16), "conv_hidden": (16, 16),
                            "head_hidden": (16,), "set2set_iterations": 1,
                            "activation": "softplus", "element_features": False,
                            "action_head": "dense", "composition_readout": False}
#: the discount of every probe config
GAMMA = 0.9
_REPLAY = {"num_envs": 8, "learning_starts": 64, "train_frequency": 2, "buffer_size": 512,
           "batch_size": 32, "gamma": GAMMA, "network": TINY_NET}
_DQN = {**_REPLAY, "total_env_steps": 2000, "learning_rate": 3e-3, "learning_rate_end": None,
        "target_update_interval": 64, "tau": 1.0, "exploration_fraction": 0.5}
#: agent name -> overrides of its defaults that solve ProbeEnv() within the budget
PROBE_CONFIGS: dict[str, dict[str, Any]] = {
    "dqn": _DQN,
    # C51's distributions need more updates than DQN's scalars: at 2,000 env steps one
    # cue of the one-step probe was still valued 0.75 instead of 1 (3,000 and, with
    # noisy_sigma0 0.1, 2,000 both reach 1.0 +- 0.01)
    "rainbow": {**_DQN, "total_env_steps": 3000},
    # entropy 0.03: with near-uniform initial policy heads and CrystalGym's 0.01, one
    # seed's actor collapses onto a cue-blind action
    "ppo": {"total_env_steps": 16 * 8 * 40, "num_envs": 16, "num_steps": 8,
            "num_minibatches": 4, "learning_rate": 3e-3, "gamma": GAMMA, "network": TINY_NET,
            "ent_coef": 0.03},
    "sac": {**_REPLAY, "total_env_steps": 1200, "q_learning_rate": 3e-3,
            "policy_learning_rate": 3e-3, "alpha_learning_rate": 3e-3, "tau": 0.05,
            "target_update_interval": 8},
}


class ProbeRun(NamedTuple):
    """A finished probe training run: env, agent, final state and metrics (leaves with a
    leading seed axis; metrics as NumPy arrays [seeds, iterations])."""

    env: ProbeEnv
    agent: Any
    state: Any
    metrics: dict[str, np.ndarray]

    def seed(self, i: int) -> Any:
        """The final state of seed ``i``."""
        return jax.tree.map(lambda x: x[i], self.state)


def train_probe(name: str, num_seeds: int = 2, overrides: dict | None = None) -> ProbeRun:
    """Train agent ``name`` with PROBE_CONFIGS[name] (+ overrides) on ProbeEnv() for its
    whole budget, ``num_seeds`` seeds vmapped in one jitted ``make_train``."""
    from crystaljax.agents import make_agent, make_train

    env = ProbeEnv()
    config = {**PROBE_CONFIGS[name], **(overrides or {})}
    agent = make_agent(name, env, None, config)
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    state, metrics = jax.jit(jax.vmap(make_train(name, env, None, agent.config)))(keys)
    return ProbeRun(env, agent, state, jax.tree.map(np.asarray, metrics))


__all__ = ["GAMMA", "PROBE_CONFIGS", "TINY_NET", "ProbeRun", "train_probe"]
