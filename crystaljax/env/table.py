"""Host-side construction of the padded :class:`TemplateTable` (once per env)."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from crystaljax.env.types import TemplateTable
from crystaljax.templates.core import CrystalTemplate, TemplateError
from crystaljax.templates.graph import GraphConfig, NeighborGraph, bfs_order, neighbor_graph


def build_template_table(
    templates: Sequence[CrystalTemplate],
    graph_config: GraphConfig,
    max_sites: int | None = None,
    max_edges: int | None = None,
) -> tuple[TemplateTable, list[NeighborGraph], int, int]:
    """Pad templates and their graphs to common static shapes.

    Returns the table, the per-template graphs, and the (S, E) used.

    Raises:
      TemplateError: a template with more sites than ``max_sites`` or more edges
        than ``max_edges``.
    """
    graphs = [neighbor_graph(t, graph_config) for t in templates]
    need_sites = max(t.num_sites for t in templates)
    need_edges = max(max(g.num_edges for g in graphs), 1)
    S = need_sites if max_sites is None else int(max_sites)
    E = need_edges if max_edges is None else int(max_edges)
    for t, g in zip(templates, graphs):
        if t.num_sites > S:
            raise TemplateError(
                f"template {t.name!r} has {t.num_sites} sites, more than max_sites={S}; "
                "raise max_sites or choose a smaller cell"
            )
        if g.num_edges > E:
            raise TemplateError(
                f"template {t.name!r} has {g.num_edges} edges, more than max_edges={E}; "
                "raise max_edges or lower the graph cutoff / max_neighbors"
            )
    T = len(templates)
    num_sites = np.array([t.num_sites for t in templates], np.int32)
    lattice = np.stack([t.lattice for t in templates]).astype(np.float32)
    frac = np.zeros((T, S, 3), np.float32)
    lattice_features = np.zeros((T, 7), np.float32)
    senders = np.zeros((T, E), np.int32)
    receivers = np.zeros((T, E), np.int32)
    distances = np.zeros((T, E), np.float32)
    edge_mask = np.zeros((T, E), bool)
    orders = np.full((T, S, S), -1, np.int32)
    for k, (t, g) in enumerate(zip(templates, graphs)):
        n, m = t.num_sites, g.num_edges
        frac[k, :n] = t.frac_coords
        a, b, c, al, be, ga = t.lattice_parameters
        lattice_features[k] = [a / 10, b / 10, c / 10, *np.cos(np.radians([al, be, ga])),
                               t.spacegroup / 230]
        senders[k, :m], receivers[k, :m] = g.senders, g.receivers
        distances[k, :m], edge_mask[k, :m] = g.distances, True
        for start in range(S):
            orders[k, start, :n] = bfs_order(n, g.senders, g.receivers, start % n)
    table = TemplateTable(
        num_sites=jnp.asarray(num_sites),
        lattice=jnp.asarray(lattice),
        frac_coords=jnp.asarray(frac),
        volume=jnp.asarray(np.array([t.volume for t in templates], np.float32)),
        lattice_features=jnp.asarray(lattice_features),
        senders=jnp.asarray(senders),
        receivers=jnp.asarray(receivers),
        distances=jnp.asarray(distances),
        edge_mask=jnp.asarray(edge_mask),
        fill_orders=jnp.asarray(orders),
    )
    return table, graphs, S, E
