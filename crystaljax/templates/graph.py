"""Periodic neighbour graphs of templates and the breadth-first fill orders.

Built once per template on the host (NumPy); the env gathers them by template id.
"""

from __future__ import annotations

import collections
import dataclasses
import warnings
from typing import Literal

import numpy as np

from crystaljax.config import ConfigError, check, option
from crystaljax.templates.core import CrystalTemplate, TemplateError


@dataclasses.dataclass(frozen=True)
class GraphConfig:
    """How neighbours are found.

    Attributes:
      method: 'crystalnn' (pymatgen CrystalNN on the exemplar, as CrystalGym) or
        'radius' (all neighbours within ``cutoff``, nearest ``max_neighbors`` kept).
      cutoff: radius in Å for 'radius'.
      max_neighbors: per-site cap for 'radius'.
    """

    method: Literal["crystalnn", "radius"] = "crystalnn"
    cutoff: float = option(5.0, gt=0)
    max_neighbors: int = option(12, ge=1)

    def __post_init__(self):
        if self.method not in ("crystalnn", "radius"):
            raise ConfigError(f"graph method must be 'crystalnn' or 'radius', got {self.method!r}")
        check(self, "graph")


@dataclasses.dataclass(frozen=True)
class NeighborGraph:
    """Directed periodic edges of one template (both directions present).

    senders, receivers: int ``[E]`` site indices; images: int ``[E, 3]`` lattice
    translation of the receiver; distances: float ``[E]`` in Å.
    """

    senders: np.ndarray
    receivers: np.ndarray
    images: np.ndarray
    distances: np.ndarray

    @property
    def num_edges(self) -> int:
        return len(self.senders)


def _radius_edges(template: CrystalTemplate, config: GraphConfig):
    structure = template.to_structure()
    centers, points, images, dists = structure.get_neighbor_list(config.cutoff)
    edges = []
    for i in range(template.num_sites):
        (idx,) = np.nonzero(centers == i)
        idx = idx[np.argsort(dists[idx], kind="stable")][: config.max_neighbors]
        edges += [(i, int(points[k]), tuple(int(x) for x in images[k])) for k in idx]
    return edges


def _crystalnn_edges(template: CrystalTemplate):
    from pymatgen.analysis.local_env import CrystalNN

    structure = template.to_structure()
    nn = CrystalNN()
    edges = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(template.num_sites):
            try:
                infos = nn.get_nn_info(structure, i)
            except Exception as exc:
                raise TemplateError(
                    f"template {template.name!r}: CrystalNN failed on site {i} "
                    f"({type(exc).__name__}: {exc}); use graph method 'radius' instead"
                ) from None
            edges += [(i, int(info["site_index"]), tuple(int(x) for x in info["image"]))
                      for info in infos]
    return edges


def neighbor_graph(template: CrystalTemplate, config: GraphConfig = GraphConfig()) -> NeighborGraph:
    """The template's periodic neighbour graph, symmetrised so every edge has its reverse."""
    raw = _crystalnn_edges(template) if config.method == "crystalnn" else _radius_edges(template, config)
    unique = set()
    for i, j, img in raw:
        if i == j and img == (0, 0, 0):
            continue
        unique.add((i, j, img))
        unique.add((j, i, tuple(-x for x in img)))
    edges = sorted(unique)
    if not edges:
        return NeighborGraph(np.zeros(0, np.int32), np.zeros(0, np.int32),
                             np.zeros((0, 3), np.int32), np.zeros(0, np.float64))
    senders = np.array([e[0] for e in edges], np.int32)
    receivers = np.array([e[1] for e in edges], np.int32)
    images = np.array([e[2] for e in edges], np.int32)
    cart = template.frac_coords @ template.lattice
    vec = cart[receivers] + images @ template.lattice - cart[senders]
    return NeighborGraph(senders, receivers, images, np.linalg.norm(vec, axis=1))


def bfs_order(num_sites: int, senders: np.ndarray, receivers: np.ndarray, start: int) -> np.ndarray:
    """Breadth-first visiting order over the graph from ``start``.

    Neighbours are visited in increasing site index. When the graph does not reach
    every site, the search restarts from the lowest unvisited site, so every site
    appears exactly once. Returns int32 ``[num_sites]``.
    """
    adjacency = [set() for _ in range(num_sites)]
    for s, r in zip(senders.tolist(), receivers.tolist()):
        if s != r:
            adjacency[s].add(r)
            adjacency[r].add(s)
    order: list[int] = []
    seen = [False] * num_sites
    roots = [start] + [i for i in range(num_sites) if i != start]
    for root in roots:
        if seen[root]:
            continue
        seen[root] = True
        queue = collections.deque([root])
        while queue:
            node = queue.popleft()
            order.append(node)
            for nb in sorted(adjacency[node]):
                if not seen[nb]:
                    seen[nb] = True
                    queue.append(nb)
    return np.array(order, np.int32)
