"""Masked message-passing primitives over a batch of graphs, in two implementations.

* :class:`SegmentGraphOps`: any ``jraph.GraphsTuple`` (graphs of different sizes),
  with segment sums over global node/edge indices.
* :class:`DenseGraphOps`: batches where every graph has exactly S node rows and E edge
  rows (padding included), as :func:`crystaljax.to_graphs_tuple` builds them. It uses
  reshapes and small one-hot matmuls instead of scatters: the same numbers, much faster
  to compile and run on CPU.

Rows are flat: nodes [N, D] (N = B*S), edges [M, D] (M = B*E); ``kind`` is "node" or
"edge". Masked rows (padding) never contribute to a mean, softmax or sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph

from crystaljax.models.layers import (
    MASKED_LOGIT,
    masked_segment_mean,
    masked_segment_softmax,
    masked_segment_sum,
)


def graph_index(n_per_graph: jax.Array, total: int) -> jax.Array:
    """Graph id of each of ``total`` rows, from per-graph counts [B] -> int32 [total]."""
    num_graphs = n_per_graph.shape[0]
    return jnp.repeat(jnp.arange(num_graphs, dtype=jnp.int32), n_per_graph,
                      total_repeat_length=total)


class SegmentGraphOps:
    """Primitives for a general padded GraphsTuple (see the module docstring)."""

    def __init__(self, graphs: jraph.GraphsTuple):
        self.node_mask = graphs.nodes["mask"]
        self.edge_mask = graphs.edges["mask"]
        self.num_nodes, self.num_edges = self.node_mask.shape[0], self.edge_mask.shape[0]
        self.num_graphs = graphs.globals.shape[0]
        # padding edges may point anywhere; keep their endpoints in range
        self.senders = jnp.clip(graphs.senders, 0, self.num_nodes - 1)
        self.receivers = jnp.clip(graphs.receivers, 0, self.num_nodes - 1)
        self._graph = {"node": graph_index(graphs.n_node, self.num_nodes),
                       "edge": graph_index(graphs.n_edge, self.num_edges)}
        self._mask = {"node": self.node_mask, "edge": self.edge_mask}

    def sender_features(self, nodes: jax.Array) -> jax.Array:
        """[N, D] -> [M, D]: features of each edge's sender."""
        return nodes[self.senders]

    def receiver_features(self, nodes: jax.Array) -> jax.Array:
        """[N, D] -> [M, D]: features of each edge's receiver."""
        return nodes[self.receivers]

    def mean_incoming(self, edges: jax.Array) -> jax.Array:
        """[M, D] -> [N, D]: mean over each node's real incoming edges."""
        return masked_segment_mean(edges, self.receivers, self.edge_mask, self.num_nodes)

    def broadcast(self, per_graph: jax.Array, kind: str) -> jax.Array:
        """[B, D] -> rows of ``kind``: each row gets its graph's vector."""
        return per_graph[self._graph[kind]]

    def graph_mean(self, rows: jax.Array, kind: str) -> jax.Array:
        """Rows of ``kind`` -> [B, D]: mean over each graph's real rows."""
        return masked_segment_mean(rows, self._graph[kind], self._mask[kind], self.num_graphs)

    def graph_sum(self, rows: jax.Array, kind: str) -> jax.Array:
        """Rows of ``kind`` -> [B, D]: sum over each graph's real rows."""
        return masked_segment_sum(rows, self._graph[kind], self._mask[kind], self.num_graphs)

    def graph_softmax(self, scores: jax.Array, kind: str) -> jax.Array:
        """Scores [rows] -> weights [rows] summing to 1 over each graph's real rows."""
        return masked_segment_softmax(scores, self._graph[kind], self._mask[kind],
                                      self.num_graphs)

    def zero_padding(self, rows: jax.Array, kind: str) -> jax.Array:
        """Rows of ``kind`` with padding rows set to 0."""
        return jnp.where(self._mask[kind][:, None], rows, 0.0)


class DenseGraphOps(SegmentGraphOps):
    """Primitives for batches of equal-size graphs: S node rows and E edge rows each."""

    def __init__(self, graphs: jraph.GraphsTuple, nodes_per_graph: int, edges_per_graph: int):
        super().__init__(graphs)
        B, S, E = self.num_graphs, nodes_per_graph, edges_per_graph
        if self.num_nodes != B * S or self.num_edges != B * E:
            raise ValueError(f"expected {B} graphs of {S} nodes and {E} edges, got "
                             f"{self.num_nodes} nodes and {self.num_edges} edges")
        self.sizes = {"node": S, "edge": E}
        offsets = (jnp.arange(B, dtype=jnp.int32) * S)[:, None]
        local = lambda idx: jnp.clip(idx.reshape(B, E) - offsets, 0, S - 1)  # noqa: E731
        sites = jnp.arange(S)
        # one-hot incidence [B, E, S] (padding edges excluded from the receiver side)
        self._send = (local(self.senders)[..., None] == sites).astype(jnp.float32)
        recv = (local(self.receivers)[..., None] == sites) & self.edge_mask.reshape(B, E, 1)
        self._recv = recv.astype(jnp.float32)

    def _dense(self, rows: jax.Array, kind: str) -> jax.Array:
        return rows.reshape(self.num_graphs, self.sizes[kind], -1)

    def _dense_mask(self, kind: str) -> jax.Array:
        return self._mask[kind].reshape(self.num_graphs, self.sizes[kind], 1)

    def sender_features(self, nodes: jax.Array) -> jax.Array:
        out = jnp.einsum("bes,bsd->bed", self._send, self._dense(nodes, "node"))
        return out.reshape(self.num_edges, -1)

    def receiver_features(self, nodes: jax.Array) -> jax.Array:
        out = jnp.einsum("bes,bsd->bed", self._recv, self._dense(nodes, "node"))
        return out.reshape(self.num_edges, -1)

    def mean_incoming(self, edges: jax.Array) -> jax.Array:
        total = jnp.einsum("bes,bed->bsd", self._recv, self._dense(edges, "edge"))
        count = self._recv.sum(axis=1)[..., None]
        return (total / jnp.maximum(count, 1.0)).reshape(self.num_nodes, -1)

    def broadcast(self, per_graph: jax.Array, kind: str) -> jax.Array:
        return jnp.repeat(per_graph, self.sizes[kind], axis=0)

    def graph_sum(self, rows: jax.Array, kind: str) -> jax.Array:
        return jnp.sum(jnp.where(self._dense_mask(kind), self._dense(rows, kind), 0.0), axis=1)

    def graph_mean(self, rows: jax.Array, kind: str) -> jax.Array:
        count = self._dense_mask(kind).sum(axis=1).astype(rows.dtype)
        return self.graph_sum(rows, kind) / jnp.maximum(count, 1.0)

    def graph_softmax(self, scores: jax.Array, kind: str) -> jax.Array:
        mask = self._dense_mask(kind)[..., 0]
        dense = jnp.where(mask, scores.reshape(mask.shape), MASKED_LOGIT)
        shifted = dense - jax.lax.stop_gradient(jnp.max(dense, axis=1, keepdims=True))
        weights = jnp.where(mask, jnp.exp(shifted), 0.0)
        weights = weights / jnp.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        return weights.reshape(-1)
