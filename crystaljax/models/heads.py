"""Output heads on the MEGNet embedding: Q-values (plain, dueling, C51), value, logits.

Shapes: B = batch, F = embedding width, A = actions, K = atoms of the C51 support.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from crystaljax.models.layers import NoisyDense, Part, PartsDense, get_activation, shaped_param


class HeadMLP(nn.Module):
    """MLP head [B, F] -> [B, out] with optional noisy linear layers (all layers).

    ``out_init_scale`` scales the initial weights of the output layer (flax's default
    LeCun-normal init times the scale); policy heads use 0.01 so that a fresh policy is
    close to uniform (a PPO implementation detail: with unit-scale logits the first
    rollouts already favour arbitrary elements and the policy can lock onto them).
    ``x`` may be a sequence of :class:`~crystaljax.models.layers.Part` blocks (the first
    layer is then computed block by block, see PairwiseHead).
    """

    hidden: Sequence[int]
    out: int
    activation: str = "softplus"
    noisy: bool = False
    sigma0: float = 0.5
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(self, x, deterministic: bool = True) -> jax.Array:
        act = get_activation(self.activation)
        last = len(self.hidden)
        for i, width in enumerate((*self.hidden, self.out)):
            if self.noisy:
                x = NoisyDense(width, self.sigma0, name=f"noisy_{i}")(x, deterministic)
            else:
                scale = self.out_init_scale if i == last else 1.0
                init = nn.initializers.variance_scaling(scale ** 2, "fan_in", "truncated_normal")
                x = PartsDense(width, kernel_init=init, name=f"dense_{i}")(x)
            if i < len(self.hidden):
                x = act(x)
        return x


class PairwiseHead(nn.Module):
    """Scores every action from the state embedding and the action's own embedding:
    ``out[b, a] = MLP([features[b], embed(a), action_table[a]])``. [B, F] -> [B, A, out].

    ``embed`` is a learned table [A, embed_dim]; ``action_table`` f32 [A, Fa] holds fixed
    per-action features (e.g. the normalised element features) or is None.
    The first layer is applied to the state part [B, F] and the action part [A, .]
    separately and the two summed ([B, 1, H] + [1, A, H]): the same numbers as on the
    concatenated [B, A, F + .] pairs, for about 1/A of the arithmetic.
    """

    num_actions: int
    hidden: Sequence[int]
    out: int
    embed_dim: int = 16
    action_table: np.ndarray | None = None
    activation: str = "softplus"
    noisy: bool = False
    sigma0: float = 0.5
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(self, features: jax.Array, deterministic: bool = True) -> jax.Array:
        actions = shaped_param(self, "action_embedding", nn.initializers.normal(1.0),
                               (self.num_actions, self.embed_dim))
        if self.action_table is not None:
            table = jnp.asarray(self.action_table, jnp.float32)
            if table.shape[0] != self.num_actions:
                raise ValueError(f"action_table has {table.shape[0]} rows for "
                                 f"{self.num_actions} actions")
            actions = jnp.concatenate([actions, table], axis=-1)
        pairs = (Part(features[:, None, :]), Part(actions[None]))  # [B, 1, F], [1, A, .]
        return HeadMLP(self.hidden, self.out, self.activation, self.noisy, self.sigma0,
                       self.out_init_scale, name="mlp")(pairs, deterministic)


def masked_mean(x: jax.Array, mask: jax.Array, axis: int) -> jax.Array:
    """Mean of ``x`` over ``axis`` where ``mask`` (broadcast to x) is True (keepdims)."""
    mask = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    total = jnp.sum(x * mask, axis=axis, keepdims=True)
    return total / jnp.maximum(jnp.sum(mask, axis=axis, keepdims=True), 1.0)


def dueling_combine(value: jax.Array, advantage: jax.Array, action_mask: jax.Array) -> jax.Array:
    """Q = V + A - mean_a A, the mean taken per sample over its valid actions only.

    value [B, 1, K], advantage [B, A, K], action_mask bool [B, A] -> [B, A, K]
    (K = 1 for scalar Q). CrystalGym subtracted the mean over the whole batch (defect 4).
    """
    return value + advantage - masked_mean(advantage, action_mask[:, :, None], axis=1)


class QHead(nn.Module):
    """Q-value head: per-action logits over ``num_atoms`` (1 = scalar Q) from [B, F].

    Returns [B, A, K] (K = num_atoms); dueling combines a value and an advantage stream
    with the per-sample mean over valid actions. ``pairwise`` scores the actions (or the
    advantages) with a :class:`PairwiseHead` (``embed_dim``, ``action_table``) instead of
    one output unit per action.
    """

    num_actions: int
    hidden: Sequence[int]
    num_atoms: int = 1
    dueling: bool = False
    activation: str = "softplus"
    noisy: bool = False
    sigma0: float = 0.5
    pairwise: bool = False
    embed_dim: int = 16
    action_table: np.ndarray | None = None

    @nn.compact
    def __call__(self, features: jax.Array, action_mask: jax.Array,
                 deterministic: bool = True) -> jax.Array:
        A, K = self.num_actions, self.num_atoms
        mlp = lambda out, name: HeadMLP(self.hidden, out, self.activation, self.noisy,  # noqa: E731
                                        self.sigma0, name=name)

        def per_action(name):
            if self.pairwise:
                return PairwiseHead(A, self.hidden, K, self.embed_dim, self.action_table,
                                    self.activation, self.noisy, self.sigma0,
                                    name=name)(features, deterministic)
            return mlp(A * K, name)(features, deterministic).reshape(-1, A, K)

        if not self.dueling:
            return per_action("q")
        value = mlp(K, "value")(features, deterministic).reshape(-1, 1, K)
        return dueling_combine(value, per_action("advantage"), action_mask)
