"""CHGNet's crystal graphs, built on the host once per template and padded to static shapes.

CHGNet reads two graphs of a crystal (Deng et al., Nat. Mach. Intell. 5, 1031 (2023)):

* the atom graph: a directed edge ``i -> j`` (with the lattice image of ``j``) for every
  pair closer than ``cutoff`` (6 Å in the 0.3.0 model); the two directions of a pair form
  one undirected bond, which carries the bond features;
* the bond graph: an angle ``(center, bond i, bond j)`` for every two distinct directed
  edges leaving the same atom, both shorter than ``bond_cutoff`` (3 Å).

The graph depends on the geometry only, never on the species, so one graph per template
serves every decoration. Under an isotropic scaling ``s >= min_scale`` a pair at distance
``d`` sits at ``s * d``: building with the cut-offs divided by ``min_scale`` (the skin)
keeps every pair the model can see at any scale the oracle uses. Pairs beyond a cut-off
at the current scale contribute exactly zero (CHGNet's smooth cut-off is 0 there), so
the extra edges and angles change nothing but the cost.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Lattice, Structure

ATOM_CUTOFF = 6.0  # Å, CHGNet 0.3.0's atom graph
BOND_CUTOFF = 3.0  # Å, CHGNet 0.3.0's bond graph


class GraphError(ValueError):
    """A template whose CHGNet graph cannot be built (isolated atom, too many edges)."""


@dataclasses.dataclass(frozen=True)
class CrystalGraph:
    """CHGNet graph of one template, padded (NumPy; stack several with :func:`stack_graphs`).

    Shapes: N atoms, E directed edges, U undirected bonds, A angles (each padded).

    Attributes:
      num_atoms: real atoms (int).
      atom_mask: bool [N].
      center, neighbor: int32 [E] atom indices of each directed edge (padding: 0, 0).
      image: f32 [E, 3] lattice translation of the neighbor (in lattice vectors).
      edge_bond: int32 [E] undirected bond of each directed edge.
      edge_mask: bool [E].
      bond_edge: int32 [U] one directed edge of each undirected bond (its length).
      bond_mask: bool [U].
      angle_center: int32 [A]; angle_bond_i, angle_bond_j: int32 [A] undirected bonds;
      angle_edge_i, angle_edge_j: int32 [A] the directed edges (both leave angle_center).
      angle_mask: bool [A].
    """

    num_atoms: int
    atom_mask: np.ndarray
    center: np.ndarray
    neighbor: np.ndarray
    image: np.ndarray
    edge_bond: np.ndarray
    edge_mask: np.ndarray
    bond_edge: np.ndarray
    bond_mask: np.ndarray
    angle_center: np.ndarray
    angle_bond_i: np.ndarray
    angle_bond_j: np.ndarray
    angle_edge_i: np.ndarray
    angle_edge_j: np.ndarray
    angle_mask: np.ndarray

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """(N, E, U, A) padded sizes."""
        return (self.atom_mask.shape[0], self.edge_mask.shape[0], self.bond_mask.shape[0],
                self.angle_mask.shape[0])

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(atoms, directed edges, bonds, angles) that are real."""
        return (self.num_atoms, int(self.edge_mask.sum()), int(self.bond_mask.sum()),
                int(self.angle_mask.sum()))


def _pair_edges(center, neighbor, image) -> tuple[np.ndarray, np.ndarray]:
    """(edge_bond [E], bond_edge [U]): each directed edge i->j (image n) and its reverse
    j->i (image -n) share one undirected bond."""
    index = {(int(i), int(j), tuple(int(x) for x in n)): e
             for e, (i, j, n) in enumerate(zip(center, neighbor, image))}
    edge_bond = np.full(len(center), -1, np.int64)
    bond_edge: list[int] = []
    for e, (i, j, n) in enumerate(zip(center, neighbor, image)):
        if edge_bond[e] >= 0:
            continue
        reverse = index.get((int(j), int(i), tuple(-int(x) for x in n)))
        if reverse is None:
            raise GraphError(f"edge {i}->{j} {tuple(n)} has no reverse in the neighbour list")
        edge_bond[e] = edge_bond[reverse] = len(bond_edge)
        bond_edge.append(e)
    return edge_bond, np.asarray(bond_edge, np.int64)


def build_graph(lattice: np.ndarray, frac_coords: np.ndarray, *, cutoff: float = ATOM_CUTOFF,
                bond_cutoff: float = BOND_CUTOFF, min_scale: float = 1.0) -> CrystalGraph:
    """The (unpadded) CHGNet graph of a crystal, valid at every isotropic scale >= min_scale.

    Args:
      lattice: f [3, 3] Å, rows are lattice vectors.
      frac_coords: f [n, 3] fractional coordinates.
      cutoff, bond_cutoff: Å, at scale 1 (CHGNet 0.3.0: 6 and 3).
      min_scale: smallest isotropic scale factor of the lattice the graph must serve
        (above 1 the graph is smaller than the template's own and serves only s >= it).
    """
    if not 0 < min_scale < np.inf:
        raise GraphError(f"min_scale must be positive and finite, got {min_scale}")
    frac_coords = np.asarray(frac_coords, float)
    n = len(frac_coords)
    structure = Structure(Lattice(np.asarray(lattice, float)), ["H"] * n, frac_coords)
    reach, bond_reach = cutoff / min_scale, bond_cutoff / min_scale
    center, neighbor, image, distance = structure.get_neighbor_list(r=reach, numerical_tol=1e-8)
    isolated = sorted(set(range(n)) - set(center.tolist()))
    if isolated:
        raise GraphError(f"sites {isolated} have no neighbour within {reach:.2f} Å: CHGNet "
                         "cannot describe an isolated atom")
    image = np.rint(image).astype(np.int64)
    edge_bond, bond_edge = _pair_edges(center, neighbor, image)
    by_center: dict[int, list[int]] = {}
    for e, i in enumerate(center):
        if distance[e] < bond_reach:
            by_center.setdefault(int(i), []).append(e)
    bond_edges: dict[int, list[int]] = {}
    for e, u in enumerate(edge_bond):
        bond_edges.setdefault(int(u), []).append(e)
    angles = []
    for u, e_first in enumerate(bond_edge):
        if distance[e_first] > bond_reach:
            continue
        for e in bond_edges[u]:  # the bond's two directed edges, each at its own center
            c = int(center[e])
            for other in by_center.get(c, ()):
                if other != e:
                    angles.append((c, u, e, int(edge_bond[other]), other))
    angles = np.asarray(angles, np.int64).reshape(-1, 5)
    E, U, A = len(center), len(bond_edge), len(angles)
    return CrystalGraph(
        num_atoms=n, atom_mask=np.ones(n, bool),
        center=center.astype(np.int32), neighbor=neighbor.astype(np.int32),
        image=image.astype(np.float32), edge_bond=edge_bond.astype(np.int32),
        edge_mask=np.ones(E, bool), bond_edge=bond_edge.astype(np.int32),
        bond_mask=np.ones(U, bool),
        angle_center=angles[:, 0].astype(np.int32), angle_bond_i=angles[:, 1].astype(np.int32),
        angle_edge_i=angles[:, 2].astype(np.int32), angle_bond_j=angles[:, 3].astype(np.int32),
        angle_edge_j=angles[:, 4].astype(np.int32), angle_mask=np.ones(A, bool))


def pad_graph(graph: CrystalGraph, sizes: tuple[int, int, int, int]) -> CrystalGraph:
    """``graph`` padded to (N, E, U, A); padding entries point at index 0 and are masked."""
    N, E, U, A = sizes
    have = graph.sizes
    if any(h > s for h, s in zip(have, sizes)):
        raise GraphError(f"graph sizes {have} exceed the padding {sizes}")

    def pad(x, size, value=0):
        widths = [(0, size - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
        return np.pad(x, widths, constant_values=value)

    return CrystalGraph(
        num_atoms=graph.num_atoms, atom_mask=pad(graph.atom_mask, N, False),
        center=pad(graph.center, E), neighbor=pad(graph.neighbor, E), image=pad(graph.image, E),
        edge_bond=pad(graph.edge_bond, E), edge_mask=pad(graph.edge_mask, E, False),
        bond_edge=pad(graph.bond_edge, U), bond_mask=pad(graph.bond_mask, U, False),
        angle_center=pad(graph.angle_center, A), angle_bond_i=pad(graph.angle_bond_i, A),
        angle_bond_j=pad(graph.angle_bond_j, A), angle_edge_i=pad(graph.angle_edge_i, A),
        angle_edge_j=pad(graph.angle_edge_j, A), angle_mask=pad(graph.angle_mask, A, False))


GRAPH_FIELDS = ("atom_mask", "center", "neighbor", "image", "edge_bond", "edge_mask",
                "bond_edge", "bond_mask", "angle_center", "angle_bond_i", "angle_bond_j",
                "angle_edge_i", "angle_edge_j", "angle_mask")


def stack_graphs(graphs: Sequence[CrystalGraph], sizes: tuple[int, int, int, int] | None = None
                 ) -> dict[str, np.ndarray]:
    """Pad ``graphs`` to common sizes (default: the largest of each) and stack every field
    along a new leading axis [T, ...]; the dict also holds ``num_atoms`` int32 [T]."""
    if not graphs:
        raise GraphError("no graph to stack")
    if sizes is None:
        sizes = tuple(int(max(g.sizes[k] for g in graphs)) for k in range(4))
    padded = [pad_graph(g, sizes) for g in graphs]
    table = {f: np.stack([getattr(g, f) for g in padded]) for f in GRAPH_FIELDS}
    table["num_atoms"] = np.asarray([g.num_atoms for g in graphs], np.int32)
    return table


__all__ = ["ATOM_CUTOFF", "BOND_CUTOFF", "CrystalGraph", "GRAPH_FIELDS", "GraphError",
           "build_graph", "pad_graph", "stack_graphs"]
