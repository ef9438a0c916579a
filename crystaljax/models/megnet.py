"""MEGNet graph network (Chen et al. 2019) over padded ``jraph.GraphsTuple`` batches.

Follows the policy network of CrystalGym (matgl's MEGNet): element-token embedding,
focus-flag embedding, encoders, MEGNet blocks (edge, node, global updates with skip
connections), Set2Set readouts over nodes and edges, concatenated with the global state.

Input: the batch of :func:`crystaljax.to_graphs_tuple` (B graphs, N = B*S nodes,
M = B*E edges): ``nodes = {tokens int32 [N], focus bool [N], mask bool [N]}``,
``edges = {features f32 [M, R], distances f32 [M], mask bool [M]}``, ``globals f32 [B, G]``.
Padding nodes and edges (mask False) are ignored by every aggregation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from crystaljax.config import ConfigError, check, option
from crystaljax.models.graph_ops import DenseGraphOps, SegmentGraphOps
from crystaljax.models.layers import ACTIVATIONS, MLP, Part, Set2Set

#: valid values of MEGNetConfig.action_head
ACTION_HEADS = ("dense", "pairwise")


@dataclasses.dataclass(frozen=True)
class MEGNetConfig:
    """Sizes of the MEGNet torso and of the MLP heads on top of it.

    Defaults are the network that met the density criterion for every agent (BENCHMARKS.md,
    docs/AGENTS.md): node embedding 16, focus embedding 8, encoders (32, 32), 2 blocks with
    pre-dense (32, 32) and update MLPs (32, 32, 32), Set2Set with 2 iterations and 1 LSTM
    layer, head (32, 16), relu, element features, a pairwise action head and the
    composition readout. CrystalGym's original (REFERENCE.md: encoders (64, 32), 3 blocks,
    (64, 32) / (64, 64, 32), softplus, no element features, dense head) is
    ``crystaljax.agents.presets.CRYSTALGYM_NETWORK``, part of the ``crystalgym`` preset.

    Attributes:
      num_tokens: element vocabulary size V + 1 (the empty token); None = from the env.
      node_embed_dim: element-token embedding width.
      focus_embed_dim: focus-flag embedding width (concatenated to the token embedding).
      encoder_hidden: widths of the node, edge and global encoders.
      num_blocks: MEGNet blocks.
      block_hidden: widths of the dense layers before every block but the first.
      conv_hidden: widths of the edge, node and global update MLPs inside a block.
      set2set_iterations, set2set_layers: Set2Set processing steps and LSTM layers.
      head_hidden: hidden widths of the output MLP(s) on the 2*2*D + D readout.
      activation: name in ``crystaljax.models.layers.ACTIVATIONS``.
      element_features: also feed each site the fixed, normalised feature vector of its
        element (mass, Z, electronegativity, radius, group, period, oxidation states;
        ``EnvParams.element_features``) next to the learned embedding. Not in the
        original (False there); it lets the network read off e.g. masses for density.
        Envs without an element table (e.g. the probe envs) need False.
      action_head: 'dense' (the original: one output unit per action on the readout) or
        'pairwise' (each action is scored by the head MLP from the readout concatenated
        with that action's element embedding, plus its feature vector when
        ``element_features``). Pairwise heads share what they learn about one element with
        elements of similar features, e.g. Q(s, Rb) and Q(s, Sr) on the density task.
        Applies to Q-value, advantage and policy-logit heads alike.
      composition_readout: append to the readout the mean over the cell's sites of the
        fixed element feature vectors (empty sites count as zeros), i.e. the
        composition-weighted element properties of the partial crystal (Magpie-style
        descriptors). Needs ``element_features``. Not in the original; it hands the heads
        e.g. the cell's total mass exactly instead of leaving it to be learnt.
    """

    num_tokens: int | None = option(None, ge=2)
    node_embed_dim: int = option(16, ge=1)
    focus_embed_dim: int = option(8, ge=1)
    encoder_hidden: Sequence[int] = option((32, 32), ge=1)
    num_blocks: int = option(2, ge=1)
    block_hidden: Sequence[int] = option((32, 32), ge=1)
    conv_hidden: Sequence[int] = option((32, 32, 32), ge=1)
    set2set_iterations: int = option(2, ge=1)
    set2set_layers: int = option(1, ge=1)
    head_hidden: Sequence[int] = option((32, 16), ge=1)
    activation: str = option("relu", choices=tuple(ACTIVATIONS))
    element_features: bool = True
    action_head: str = option("pairwise", choices=ACTION_HEADS)
    composition_readout: bool = True

    def __post_init__(self):
        check(self)  # types and bounds of every field (ConfigError, a ValueError)
        for name in ("encoder_hidden", "block_hidden", "conv_hidden", "head_hidden"):
            object.__setattr__(self, name, tuple(int(w) for w in getattr(self, name)))
        needed = ("encoder_hidden", "conv_hidden") + (("block_hidden",) if self.num_blocks > 1 else ())
        for name in needed:
            if not getattr(self, name):
                raise ConfigError(f"{name} must have at least one width")
        if self.num_blocks > 1 and self.block_hidden[-1] != self.conv_hidden[-1]:
            raise ConfigError("block_hidden[-1] must equal conv_hidden[-1] (skip connections), got "
                              f"{self.block_hidden} and {self.conv_hidden}")
        if self.composition_readout and not self.element_features:
            raise ConfigError("composition_readout needs element_features=True (it averages the "
                              "element feature table over the sites); with element_features "
                              "false, set composition_readout false too")
        if self.encoder_hidden[-1] != self.conv_hidden[-1]:
            raise ConfigError("encoder_hidden[-1] must equal conv_hidden[-1] (skip connections), "
                              f"got {self.encoder_hidden} and {self.conv_hidden}")

    def readout_dim(self, num_element_features: int = 0) -> int:
        """Width of the torso output: Set2Set(nodes) + Set2Set(edges) + state, plus the
        ``num_element_features`` columns of the composition readout when it is on."""
        return 5 * self.conv_hidden[-1] + (num_element_features if self.composition_readout
                                           else 0)


def element_table(element_features) -> np.ndarray:
    """Per-token input features f32 [V + 1, F] from ``EnvParams.element_features`` [V, F]:
    each column divided by its largest magnitude over the vocabulary; the empty token
    (row V) is all zeros."""
    table = np.asarray(element_features, np.float32)
    scale = np.abs(table).max(axis=0)
    table = table / np.where(scale > 0, scale, 1.0)
    return np.concatenate([table, np.zeros((1, table.shape[1]), np.float32)])


class MEGNetBlock(nn.Module):
    """One MEGNet block: optional pre-dense layers, then edge -> node -> global updates,
    each an MLP on concatenated features with mean aggregations over unmasked rows,
    and a skip connection from the block input.

    The first layer of the edge and node updates is computed on the blocks of their
    input (:class:`~crystaljax.models.layers.Part`): node features are projected per node
    and then gathered onto the edges, the state per graph and then broadcast. Same
    parameters and numbers as the concatenation, with ~40% less arithmetic in a block."""

    config: MEGNetConfig
    pre_dense: bool

    @nn.compact
    def __call__(self, nodes: jax.Array, edges: jax.Array, state: jax.Array,
                 ops: SegmentGraphOps) -> tuple[jax.Array, jax.Array, jax.Array]:
        """nodes [N, D], edges [M, D], state [B, D] -> updated (nodes, edges, state)."""
        cfg = self.config
        inputs = (nodes, edges, state)
        if self.pre_dense:
            nodes = MLP(cfg.block_hidden, cfg.activation, name="node_dense")(nodes)
            edges = MLP(cfg.block_hidden, cfg.activation, name="edge_dense")(edges)
            state = MLP(cfg.block_hidden, cfg.activation, name="state_dense")(state)
        # input columns as in concat([sender, receiver, edge, state]) per edge
        edge_in = (Part(nodes, ops.sender_features), Part(nodes, ops.receiver_features),
                   Part(edges), Part(state, lambda x: ops.broadcast(x, "edge")))
        edges = MLP(cfg.conv_hidden, cfg.activation, name="edge_update")(edge_in)
        # concat([node, mean of incoming edges, state]) per node
        node_in = (Part(nodes), Part(ops.mean_incoming(edges)),
                   Part(state, lambda x: ops.broadcast(x, "node")))
        nodes = MLP(cfg.conv_hidden, cfg.activation, name="node_update")(node_in)
        state = MLP(cfg.conv_hidden, cfg.activation, name="state_update")(
            jnp.concatenate([state, ops.graph_mean(edges, "edge"), ops.graph_mean(nodes, "node")],
                            axis=-1))
        nodes, edges, state = nodes + inputs[0], edges + inputs[1], state + inputs[2]
        # padding rows carry zeros so they stay inert whatever the parameters
        return ops.zero_padding(nodes, "node"), ops.zero_padding(edges, "edge"), state


class MEGNet(nn.Module):
    """MEGNet torso: padded GraphsTuple -> graph embeddings [B, config.readout_dim(F)].

    ``element_table`` f32 [V + 1, F]: fixed per-token features (row V = empty), required
    when ``config.element_features``; see :func:`element_table`.
    ``graph_size=(S, E)`` declares that every graph has exactly S node rows and E edge
    rows (true for :func:`crystaljax.to_graphs_tuple`) and selects the faster dense
    primitives; None handles any GraphsTuple with segment sums. Both give the same
    numbers. Invariant to the order of sites and edges within a graph and to padding.
    """

    config: MEGNetConfig
    element_table: np.ndarray | None = None

    @nn.compact
    def __call__(self, graphs: jraph.GraphsTuple,
                 graph_size: tuple[int, int] | None = None) -> jax.Array:
        cfg = self.config
        if cfg.num_tokens is None:
            raise ValueError("MEGNetConfig.num_tokens is None: set it to the vocabulary size + 1")
        ops = (SegmentGraphOps(graphs) if graph_size is None
               else DenseGraphOps(graphs, *graph_size))
        tokens = nn.Embed(cfg.num_tokens, cfg.node_embed_dim, name="token_embed")(
            graphs.nodes["tokens"])
        focus = nn.Embed(2, cfg.focus_embed_dim, name="focus_embed")(
            graphs.nodes["focus"].astype(jnp.int32))
        node_inputs = [tokens, focus]
        if cfg.element_features:
            if self.element_table is None:
                raise ValueError("MEGNetConfig.element_features is set but no element_table "
                                 "was given (the env params have no element features; for such "
                                 "envs set network.element_features and "
                                 "network.composition_readout to false)")
            node_inputs.append(jnp.asarray(self.element_table)[graphs.nodes["tokens"]])
        enc = lambda name: MLP(cfg.encoder_hidden, cfg.activation, name=name)  # noqa: E731
        nodes = ops.zero_padding(enc("node_encoder")(jnp.concatenate(node_inputs, -1)), "node")
        edges = ops.zero_padding(enc("edge_encoder")(graphs.edges["features"]), "edge")
        state = enc("state_encoder")(graphs.globals)
        for i in range(cfg.num_blocks):
            nodes, edges, state = MEGNetBlock(cfg, pre_dense=i > 0, name=f"block_{i}")(
                nodes, edges, state, ops)
        set2set = lambda name: Set2Set(cfg.set2set_iterations, cfg.set2set_layers,  # noqa: E731
                                       name=name)
        node_readout = set2set("node_set2set")(nodes, ops, "node")
        edge_readout = set2set("edge_set2set")(edges, ops, "edge")
        readouts = [node_readout, edge_readout, state]
        if cfg.composition_readout:
            site_features = jnp.asarray(self.element_table)[graphs.nodes["tokens"]]
            readouts.append(ops.graph_mean(ops.zero_padding(site_features, "node"), "node"))
        return jnp.concatenate(readouts, axis=-1)
