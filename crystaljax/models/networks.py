"""Networks on observations: MEGNet torso + a head, with invalid actions masked.

All take an :class:`~crystaljax.env.types.Observation` with one leading batch axis
(B envs) and flatten it with :func:`crystaljax.to_graphs_tuple`.
A = number of actions, K = atoms.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from crystaljax.config import ConfigError
from crystaljax.env.types import Observation
from crystaljax.graphs import to_graphs_tuple
from crystaljax.models.heads import HeadMLP, PairwiseHead, QHead
from crystaljax.models.layers import MASKED_LOGIT
from crystaljax.models.megnet import MEGNet, MEGNetConfig, element_table


@struct.dataclass
class QOutput:
    """q_values f32 [B, A] (invalid actions = MASKED_LOGIT); logits f32 [B, A, K]
    (C51: per-action logits over the atoms; scalar Q: the unmasked values with K = 1)."""

    q_values: jax.Array
    logits: jax.Array


def graph_size(obs: Observation) -> tuple[int, int]:
    """(S, E): node and edge rows of every graph of ``to_graphs_tuple(obs)``."""
    return obs.tokens.shape[-1], obs.senders.shape[-1]


def mask_invalid(values: jax.Array, action_mask: jax.Array) -> jax.Array:
    """Replace entries of invalid actions by MASKED_LOGIT (values, action_mask: [B, A])."""
    return jnp.where(action_mask, values, MASKED_LOGIT)


class QNetwork(nn.Module):
    """Q-network: MEGNet + QHead. ``__call__(obs, deterministic) -> QOutput``.

    With ``num_atoms > 1`` it is a C51 network on the support
    ``linspace(v_min, v_max, num_atoms)`` and ``q_values`` are the means.
    ``element_table``: see :class:`~crystaljax.models.megnet.MEGNet`.
    ``deterministic`` turns noisy layers to their mean weights (otherwise the
    ``'noise'`` RNG stream is required).
    """

    config: MEGNetConfig
    num_actions: int
    num_atoms: int = 1
    v_min: float = -1.0
    v_max: float = 1.0
    dueling: bool = False
    noisy: bool = False
    sigma0: float = 0.5
    element_table: np.ndarray | None = None

    @property
    def atoms(self) -> jax.Array:
        """The C51 support f32 [K]."""
        return jnp.linspace(self.v_min, self.v_max, self.num_atoms, dtype=jnp.float32)

    @nn.compact
    def __call__(self, obs: Observation, deterministic: bool = True) -> QOutput:
        features = MEGNet(self.config, self.element_table, name="megnet")(
            to_graphs_tuple(obs), graph_size(obs))
        mask = obs.action_mask.reshape(-1, self.num_actions)
        head = QHead(self.num_actions, self.config.head_hidden, self.num_atoms, self.dueling,
                     self.config.activation, self.noisy, self.sigma0,
                     pairwise=self.config.action_head == "pairwise",
                     embed_dim=self.config.node_embed_dim,
                     action_table=action_table(self.element_table, self.num_actions),
                     name="head")
        logits = head(features, mask, deterministic)
        if self.num_atoms == 1:
            q = logits[..., 0]
        else:
            q = jnp.sum(jax.nn.softmax(logits, axis=-1) * self.atoms, axis=-1)
        return QOutput(q_values=mask_invalid(q, mask), logits=logits)


class ValueNetwork(nn.Module):
    """State-value network: MEGNet + MLP head with one output. obs -> f32 [B]."""

    config: MEGNetConfig
    element_table: np.ndarray | None = None

    @nn.compact
    def __call__(self, obs: Observation) -> jax.Array:
        features = MEGNet(self.config, self.element_table, name="megnet")(
            to_graphs_tuple(obs), graph_size(obs))
        return HeadMLP(self.config.head_hidden, 1, self.config.activation, name="head")(
            features)[:, 0]


class PolicyNetwork(nn.Module):
    """Categorical policy: MEGNet + MLP head. obs -> logits f32 [B, A], invalid = MASKED_LOGIT."""

    config: MEGNetConfig
    num_actions: int
    element_table: np.ndarray | None = None

    @nn.compact
    def __call__(self, obs: Observation) -> jax.Array:
        features = MEGNet(self.config, self.element_table, name="megnet")(
            to_graphs_tuple(obs), graph_size(obs))
        logits = policy_head(self.config, self.num_actions, self.element_table, "head")(features)
        return mask_invalid(logits, obs.action_mask.reshape(-1, self.num_actions))


class ActorCriticNetwork(nn.Module):
    """Policy logits and state value for actor-critic agents (PPO).

    ``shared=False`` (CrystalGym's choice): a :class:`PolicyNetwork` and a
    :class:`ValueNetwork`, each with its own MEGNet torso (parameters under ``actor`` and
    ``critic``). ``shared=True``: one MEGNet torso (``torso``) feeding a policy head and a
    value head. ``__call__(obs) -> (logits f32 [B, A] with invalid = MASKED_LOGIT,
    value f32 [B])``; ``value(obs) -> f32 [B]`` runs only what the value needs.
    """

    config: MEGNetConfig
    num_actions: int
    shared: bool = False
    element_table: np.ndarray | None = None

    def setup(self):
        cfg = self.config
        if self.shared:
            self.torso = MEGNet(cfg, self.element_table)
            self.policy_head = policy_head(cfg, self.num_actions, self.element_table)
            self.value_head = HeadMLP(cfg.head_hidden, 1, cfg.activation)
        else:
            self.actor = PolicyNetwork(cfg, self.num_actions, self.element_table)
            self.critic = ValueNetwork(cfg, self.element_table)

    def __call__(self, obs: Observation) -> tuple[jax.Array, jax.Array]:
        if not self.shared:
            return self.actor(obs), self.critic(obs)
        features = self.torso(to_graphs_tuple(obs), graph_size(obs))
        logits = mask_invalid(self.policy_head(features),
                              obs.action_mask.reshape(-1, self.num_actions))
        return logits, self.value_head(features)[:, 0]

    def value(self, obs: Observation) -> jax.Array:
        """State values f32 [B]."""
        if not self.shared:
            return self.critic(obs)
        return self.value_head(self.torso(to_graphs_tuple(obs), graph_size(obs)))[:, 0]


#: initial weight scale of the output layer of policy heads (near-uniform fresh policies)
POLICY_INIT_SCALE = 0.01


class PairwiseLogits(nn.Module):
    """Policy logits from a :class:`PairwiseHead` with one output per (state, action):
    [B, F] -> [B, A]."""

    config: MEGNetConfig
    num_actions: int
    element_table: np.ndarray | None = None

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        cfg = self.config
        return PairwiseHead(self.num_actions, cfg.head_hidden, 1, cfg.node_embed_dim,
                            action_table(self.element_table, self.num_actions), cfg.activation,
                            out_init_scale=POLICY_INIT_SCALE, name="pairwise")(features)[..., 0]


def policy_head(config: MEGNetConfig, num_actions: int, element_table: np.ndarray | None,
                name: str | None = None) -> nn.Module:
    """The logits head [B, F] -> [B, A] that ``config.action_head`` asks for: an MLP with
    one output per action ('dense') or :class:`PairwiseLogits` ('pairwise')."""
    if config.action_head == "pairwise":
        return PairwiseLogits(config, num_actions, element_table, name=name)
    return HeadMLP(config.head_hidden, num_actions, config.activation,
                   out_init_scale=POLICY_INIT_SCALE, name=name)


def action_table(element_table: np.ndarray | None, num_actions: int) -> np.ndarray | None:
    """Fixed per-action features [A, F] for pairwise heads: the element rows of the token
    table (actions are tokens 0..A-1; the empty token is dropped), or None without one."""
    if element_table is None:
        return None
    return np.asarray(element_table, np.float32)[:num_actions]


def megnet_config_for(env, config: MEGNetConfig | None = None) -> MEGNetConfig:
    """``config`` (default MEGNetConfig()) with ``num_tokens`` set to the env's V + 1."""
    config = config or MEGNetConfig()
    return dataclasses.replace(config, num_tokens=env.num_actions + 1)


def element_table_for(config: MEGNetConfig, env_params) -> np.ndarray | None:
    """The fixed per-token feature table when ``config.element_features`` (else None),
    from ``env_params.element_features``; ValueError if the params have none."""
    if not config.element_features:
        return None
    features = getattr(env_params, "element_features", None)
    if features is None:
        raise ConfigError("network.element_features needs env params with element_features "
                          "(crystal envs have them; probe envs do not: set "
                          "network.element_features and network.composition_readout to false)")
    return element_table(features)
