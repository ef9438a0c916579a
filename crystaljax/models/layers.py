"""Building blocks of the graph networks: masked segment reductions, MLP, Set2Set,
factorised noisy linear layers.

Shapes: N = total nodes (or edges) of a batch of graphs, B = graphs, D = features.
Every reduction takes a boolean ``mask`` [N]; masked rows contribute nothing, so padding
never changes a result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

#: logit given to masked entries before a softmax or max (finite, so no inf - inf)
MASKED_LOGIT = -1e9

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "softplus": jax.nn.softplus,
    # matgl's SoftPlus2: softplus shifted to pass through 0
    "softplus2": lambda x: jax.nn.softplus(x) - np.log(2.0).astype(np.float32),
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Activation function by name (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def masked_segment_sum(data: jax.Array, segment_ids: jax.Array, mask: jax.Array,
                       num_segments: int) -> jax.Array:
    """Sum of the unmasked rows of ``data`` [N, D] per segment -> [num_segments, D]."""
    data = jnp.where(mask[:, None], data, 0.0)
    return jax.ops.segment_sum(data, segment_ids, num_segments=num_segments)


def masked_segment_mean(data: jax.Array, segment_ids: jax.Array, mask: jax.Array,
                        num_segments: int) -> jax.Array:
    """Mean of the unmasked rows of ``data`` [N, D] per segment -> [num_segments, D]
    (0 for a segment without unmasked rows)."""
    total = masked_segment_sum(data, segment_ids, mask, num_segments)
    count = jax.ops.segment_sum(mask.astype(data.dtype), segment_ids, num_segments=num_segments)
    return total / jnp.maximum(count, 1.0)[:, None]


def masked_segment_softmax(logits: jax.Array, segment_ids: jax.Array, mask: jax.Array,
                           num_segments: int) -> jax.Array:
    """Softmax of ``logits`` [N] within each segment over unmasked rows only.

    Masked rows get weight exactly 0; a segment without unmasked rows gets all zeros.
    """
    logits = jnp.where(mask, logits, MASKED_LOGIT)
    seg_max = jax.ops.segment_max(logits, segment_ids, num_segments=num_segments)
    shifted = logits - jax.lax.stop_gradient(seg_max)[segment_ids]
    weights = jnp.where(mask, jnp.exp(shifted), 0.0)
    denom = jax.ops.segment_sum(weights, segment_ids, num_segments=num_segments)
    return weights / jnp.maximum(denom, 1e-12)[segment_ids]


def shaped_param(module: nn.Module, name: str, init: Callable, shape: tuple[int, ...]
                 ) -> jax.Array:
    """``module.param(name, init, shape)`` (f32) without flax's per-parameter
    ``eval_shape`` of the initialiser when the parameter exists (apply): that check traced
    every initialiser again on every apply and took ~30% of the tracing time of a training
    chunk. The shape is still checked, here against ``shape``."""
    if module.has_variable("params", name):
        value = module.get_variable("params", name)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"parameter {'/'.join(module.scope.path)}/{name} has shape "
                             f"{tuple(value.shape)}, the module expects {tuple(shape)} (a "
                             "checkpoint of another network config?)")
        return value
    return module.param(name, init, shape, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Part:
    """One block of columns of a dense layer's input, given in its own rows.

    ``x`` [..., d]: the block's features; ``expand``: a linear map taking the block's
    projection ``x @ W_block`` to the rows of the layer's output (a gather of edge
    endpoints, a per-graph broadcast; None = already those rows). Parts may also differ
    in shape only by broadcasting (e.g. [B, 1, d1] and [1, A, d2] -> [B, A, width]).

    ``dense(concat(expand(x_i)), W) == sum_i expand_i(x_i @ W_i)`` exactly in real
    arithmetic, since each ``expand`` is linear: projecting 5 node rows and then
    gathering them onto 36 edges costs 7x less than projecting the 36 gathered rows.
    """

    x: jax.Array
    expand: Callable[[jax.Array], jax.Array] | None = None


def as_parts(x) -> tuple[Part, ...]:
    """An array, a Part or a sequence of Parts -> a tuple of Parts."""
    if isinstance(x, Part):
        return (x,)
    if isinstance(x, (tuple, list)):
        return tuple(x)
    return (Part(x),)


def dense_on_parts(parts: Sequence[Part], kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``concat([expand_i(x_i)], -1) @ kernel + bias`` computed block by block:
    ``sum_i expand_i(x_i @ kernel[rows of block i]) + bias``. kernel [sum d_i, F]."""
    out, start = None, 0
    for part in parts:
        width = part.x.shape[-1]
        y = part.x @ kernel[start:start + width]
        start += width
        if part.expand is not None:
            y = part.expand(y)
        out = y if out is None else out + y
    if start != kernel.shape[0]:
        raise ValueError(f"the parts have {start} input columns, the kernel {kernel.shape[0]}")
    return out + bias


class PartsDense(nn.Module):
    """``nn.Dense`` on an input given as :class:`Part` blocks (or a plain array), with the
    parameters of ``nn.Dense`` (``kernel`` [sum d_i, features], ``bias``; same
    initialisers), so either form reads the other's checkpoints."""

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x) -> jax.Array:
        parts = as_parts(x)
        in_dim = sum(part.x.shape[-1] for part in parts)
        kernel = shaped_param(self, "kernel", self.kernel_init, (in_dim, self.features))
        bias = shaped_param(self, "bias", self.bias_init, (self.features,))
        return dense_on_parts(parts, kernel, bias)


class MLP(nn.Module):
    """Dense layers of widths ``features`` with ``activation`` between them (and after the
    last when ``activate_last``). [..., D_in] -> [..., features[-1]].

    The input is an array or a sequence of :class:`Part` blocks (the first layer is then
    computed block by block; same parameters and, in exact arithmetic, same numbers).
    """

    features: Sequence[int]
    activation: str = "softplus"
    activate_last: bool = True

    @nn.compact
    def __call__(self, x) -> jax.Array:
        act = get_activation(self.activation)
        for i, width in enumerate(self.features):
            # the names nn.Dense would get automatically, so checkpoints keep their layout
            x = PartsDense(width, name=f"Dense_{i}")(x)
            if i < len(self.features) - 1 or self.activate_last:
                x = act(x)
        return x


def orthogonal_init(scale: float = 1.0):
    """Orthogonal initializer (the distribution of ``flax.linen.initializers.orthogonal``)
    computed by modified Gram-Schmidt in plain ``jnp`` instead of a LAPACK QR.

    A Gaussian matrix is orthonormalised column by column, which gives the Q of its QR
    decomposition with a positive diagonal of R, as flax's sign-corrected QR does (equal to
    float32 rounding). Why not flax's: under ``vmap`` (seeds initialised together) XLA CPU
    runs a batched QR through LAPACK in its intra-op thread pool, and two of them at once
    deadlocked that pool on this 2-core machine (SAC with the QE oracle hung in ``init``).
    Shape (rows, cols): orthonormal columns if rows >= cols, else orthonormal rows.
    """

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        if len(shape) != 2:
            raise ValueError(f"orthogonal_init takes a 2-D shape, got {tuple(shape)}")
        rows, cols = shape
        tall = (rows, cols) if rows >= cols else (cols, rows)  # orthonormal columns
        a = jax.random.normal(key, tall, jnp.float32)

        def step(j, q):
            earlier = q * (jnp.arange(tall[1]) < j)  # the columns done so far, others 0
            v = q[:, j] - earlier @ (earlier.T @ q[:, j])
            return q.at[:, j].set(v / jnp.linalg.norm(v))

        q = jax.lax.fori_loop(0, tall[1], step, a)
        return (scale * (q if rows >= cols else q.T)).astype(dtype)

    return init


class Set2Set(nn.Module):
    """Set2Set readout (Vinyals et al. 2016) with masked attention.

    ``x`` [rows, D]: the node or edge rows (``kind``) of B graphs; ``ops``: a graph-ops
    object (``crystaljax.models.graph_ops``) giving per-graph broadcast, masked softmax
    and sum. Returns [B, 2D]: the LSTM query and the attention-weighted sum of the set.
    Invariant to the order of rows and to masked rows.
    """

    num_iterations: int = 2
    num_layers: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, ops, kind: str) -> jax.Array:
        dim = x.shape[-1]
        num_graphs = ops.num_graphs
        cells = [nn.OptimizedLSTMCell(dim, recurrent_kernel_init=orthogonal_init(),
                                      name=f"lstm_{i}") for i in range(self.num_layers)]
        carries = [(jnp.zeros((num_graphs, dim), x.dtype), jnp.zeros((num_graphs, dim), x.dtype))
                   for _ in range(self.num_layers)]
        q_star = jnp.zeros((num_graphs, 2 * dim), x.dtype)
        for _ in range(self.num_iterations):
            h = q_star
            for i, cell in enumerate(cells):
                carries[i], h = cell(carries[i], h)
            scores = jnp.sum(x * ops.broadcast(h, kind), axis=-1)
            attention = ops.graph_softmax(scores, kind)
            readout = ops.graph_sum(attention[:, None] * x, kind)
            q_star = jnp.concatenate([h, readout], axis=-1)
        return q_star


def _scaled_noise(key: jax.Array, size: int) -> jax.Array:
    eps = jax.random.normal(key, (size,))
    return jnp.sign(eps) * jnp.sqrt(jnp.abs(eps))


class NoisyDense(nn.Module):
    """Linear layer with factorised Gaussian parameter noise (Fortunato et al. 2018).

    ``deterministic=True`` uses the mean weights (greedy evaluation); otherwise draws
    fresh noise from the ``'noise'`` RNG stream, shared across the batch.
    [..., D_in] -> [..., features]; ``x`` may also be a sequence of :class:`Part` blocks.
    """

    features: int
    sigma0: float = 0.5

    @nn.compact
    def __call__(self, x, deterministic: bool = False) -> jax.Array:
        parts = as_parts(x)
        d_in = sum(part.x.shape[-1] for part in parts)
        bound = 1.0 / np.sqrt(d_in)
        uniform = lambda key, shape, dtype: jax.random.uniform(  # noqa: E731
            key, shape, dtype, minval=-bound, maxval=bound)
        sigma_init = nn.initializers.constant(self.sigma0 / np.sqrt(d_in))
        w_mu = shaped_param(self, "w_mu", uniform, (d_in, self.features))
        b_mu = shaped_param(self, "b_mu", uniform, (self.features,))
        w_sigma = shaped_param(self, "w_sigma", sigma_init, (d_in, self.features))
        b_sigma = shaped_param(self, "b_sigma", sigma_init, (self.features,))
        if deterministic:
            return dense_on_parts(parts, w_mu, b_mu)
        k_in, k_out = jax.random.split(self.make_rng("noise"))
        eps_in, eps_out = _scaled_noise(k_in, d_in), _scaled_noise(k_out, self.features)
        w = w_mu + w_sigma * jnp.outer(eps_in, eps_out)
        b = b_mu + b_sigma * eps_out
        return dense_on_parts(parts, w, b)
