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

from crystaljax.env.types import Observation
from crystaljax.graphs import to_graphs_tuple
from crystaljax.models.heads import HeadMLP, QHead
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
                     self.config.activation, self.noisy, self.sigma0, name="head")
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
        logits = HeadMLP(self.config.head_hidden, self.num_actions, self.config.activation,
                         name="head")(features)
        return mask_invalid(logits, obs.action_mask.reshape(-1, self.num_actions))


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
        raise ValueError("network.element_features needs env params with element_features "
                         "(crystal envs have them; probe envs do not)")
    return element_table(features)
