"""Turn a (vmapped) batch of observations into one padded ``jraph.GraphsTuple``."""

from __future__ import annotations

import jax.numpy as jnp
import jraph

from crystaljax.env.types import Observation


def to_graphs_tuple(obs: Observation) -> jraph.GraphsTuple:
    """Flatten observations with any leading batch axes into one GraphsTuple (jittable).

    Every env contributes a graph of exactly S nodes and E edges (its padding
    included), so ``n_node = [S] * B`` and ``n_edge = [E] * B``; padding is marked by
    ``nodes['mask']`` and ``edges['mask']`` and must be masked by the model.

    Node fields: ``tokens`` int32 [B*S], ``focus`` bool, ``mask`` bool.
    Edge fields: ``features`` f32 [B*E, R], ``distances`` f32 [B*E], ``mask`` bool.
    Globals: f32 [B, G]. Senders/receivers are offset by ``b * S``.
    """
    S = obs.tokens.shape[-1]
    E = obs.senders.shape[-1]
    batch_shape = obs.tokens.shape[:-1]
    B = 1
    for d in batch_shape:
        B *= d
    offsets = (jnp.arange(B, dtype=jnp.int32) * S)[:, None]
    senders = (obs.senders.reshape(B, E) + offsets).reshape(-1)
    receivers = (obs.receivers.reshape(B, E) + offsets).reshape(-1)
    return jraph.GraphsTuple(
        nodes={
            "tokens": obs.tokens.reshape(B * S),
            "focus": obs.focus.reshape(B * S),
            "mask": obs.node_mask.reshape(B * S),
        },
        edges={
            "features": obs.edge_features.reshape(B * E, -1),
            "distances": obs.distances.reshape(B * E),
            "mask": obs.edge_mask.reshape(B * E),
        },
        senders=senders,
        receivers=receivers,
        globals=obs.globals.reshape(B, -1),
        n_node=jnp.full((B,), S, jnp.int32),
        n_edge=jnp.full((B,), E, jnp.int32),
    )
