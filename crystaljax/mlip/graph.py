"""CHGNet's crystal graphs, built on the host once per template and padded to static shapes.

CHGNet reads two graphs of a crystal (Deng et al., Nat. Mach. Intell. 5, 1031 (2023)):

* the atom graph: a directed edge ``i -> j`` (with the lattice image of ``j``) for every
  pair closer than ``cutoff`` (6 Å in the 0.3.0 model); the two directions of a pair form
  one undirected bond, which carries the bond features;
* the bond graph: an angle ``(center, bond i, bond j)`` for every two distinct directed
  edges leaving the same atom, both shorter than ``bond_cutoff`` (3 Å).

The graph depends on the geometry only, never on the species, so one graph per template
serves every decoration. For the same reason every symmetry operation of the template that
maps each site onto itself (say the 8 of ``mmm`` in the cubic perovskite cell) is a
symmetry of every decoration: :func:`reduce_by_symmetry` keeps one directed edge, bond and
angle per orbit of these operations, with its orbit's size as a weight, which gives the
same energy at a fraction of the cost (isotropic scaling keeps the symmetry, so E(s) and
its derivatives stay exact; forces and stress need the full graph).

Under an isotropic scaling ``s >= min_scale`` a pair at distance ``d`` sits at ``s * d``:
building with the cut-offs divided by ``min_scale`` (the skin) keeps every pair the model
can see at any scale the oracle uses. Pairs beyond a cut-off
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

    Shapes: N atoms, E directed edges, U undirected bonds, A angles, M message edges (each
    padded). The directed edges give the geometry (lengths, angles); the atoms' messages run
    over the message edges, which are the directed edges themselves (weight 1) or, after
    :func:`reduce_by_symmetry`, one per orbit (weight: the orbit's size).

    Attributes:
      num_atoms: real atoms (int).
      atom_mask: bool [N].
      center, neighbor: int32 [E] atom indices of each directed edge (padding: 0, 0).
      image: f32 [E, 3] lattice translation of the neighbor (in lattice vectors).
      edge_bond: int32 [E] undirected bond of each directed edge (after
        :func:`reduce_by_symmetry`: the representative of its orbit).
      edge_mask: bool [E].
      bond_edge: int32 [U] one directed edge of each undirected bond (its length).
      bond_mask: bool [U].
      angle_center: int32 [A]; angle_bond_i, angle_bond_j: int32 [A] undirected bonds (after
        :func:`reduce_by_symmetry`: their orbits' representatives);
      angle_edge_i, angle_edge_j: int32 [A] the directed edges (both leave angle_center).
      angle_mask: bool [A].
      angle_weight: f32 [A] angles each stands for in the sum into ``angle_bond_i`` (0 on
        padding).
      message_center, message_neighbor, message_bond: int32 [M] atoms and bond of each
        message edge; message_weight: f32 [M] directed edges it stands for (0 on padding).
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
    angle_weight: np.ndarray
    message_center: np.ndarray
    message_neighbor: np.ndarray
    message_bond: np.ndarray
    message_weight: np.ndarray

    @property
    def sizes(self) -> tuple[int, int, int, int, int]:
        """(N, E, U, A, M) padded sizes."""
        return (self.atom_mask.shape[0], self.edge_mask.shape[0], self.bond_mask.shape[0],
                self.angle_mask.shape[0], self.message_weight.shape[0])

    @property
    def counts(self) -> tuple[int, int, int, int, int]:
        """(atoms, directed edges, bonds, angles, message edges) that are real."""
        return (self.num_atoms, int(self.edge_mask.sum()), int(self.bond_mask.sum()),
                int(self.angle_mask.sum()), int((self.message_weight > 0).sum()))


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
    center, neighbor, edge_bond = (x.astype(np.int32) for x in (center, neighbor, edge_bond))
    return CrystalGraph(
        num_atoms=n, atom_mask=np.ones(n, bool),
        center=center, neighbor=neighbor,
        image=image.astype(np.float32), edge_bond=edge_bond,
        edge_mask=np.ones(E, bool), bond_edge=bond_edge.astype(np.int32),
        bond_mask=np.ones(U, bool),
        angle_center=angles[:, 0].astype(np.int32), angle_bond_i=angles[:, 1].astype(np.int32),
        angle_edge_i=angles[:, 2].astype(np.int32), angle_bond_j=angles[:, 3].astype(np.int32),
        angle_edge_j=angles[:, 4].astype(np.int32), angle_mask=np.ones(A, bool),
        angle_weight=np.ones(A, np.float32), message_center=center.copy(),
        message_neighbor=neighbor.copy(), message_bond=edge_bond.copy(),
        message_weight=np.ones(E, np.float32))


def site_fixing_rotations(lattice: np.ndarray, frac_coords: np.ndarray, symprec: float = 1e-4
                          ) -> np.ndarray:
    """int [G, 3, 3] rotations (acting on fractional column vectors) of the symmetry
    operations of the cell that map every site onto itself up to a lattice vector (spglib,
    each site given a species of its own); the identity comes first."""
    import spglib

    frac_coords = np.asarray(frac_coords, float)
    cell = (np.asarray(lattice, float), frac_coords, np.arange(1, len(frac_coords) + 1))
    try:
        found = spglib.get_symmetry(cell, symprec=symprec)
    except Exception:  # spglib >= 2.x may raise where it returned None: no operations
        found = None
    rotations = np.eye(3, dtype=np.int64)[None]
    if found is not None:
        others = [r for r in np.asarray(found["rotations"], np.int64)
                  if not np.array_equal(r, np.eye(3, dtype=np.int64))]
        rotations = np.concatenate([rotations, np.asarray(others, np.int64).reshape(-1, 3, 3)])
    return rotations


def _orbits(permutations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(representative [K], orbit size [K]) of each of K items under the group generated by
    the permutations int [G, K]: the orbit's smallest index, and how many items it holds."""
    parent = np.arange(permutations.shape[1])

    def root(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for perm in permutations:
        for k, m in enumerate(perm):
            a, b = root(k), root(int(m))
            if a != b:
                parent[max(a, b)] = min(a, b)
    representative = np.asarray([root(k) for k in range(len(parent))], np.int64)
    size = np.bincount(representative, minlength=len(parent))[representative]
    return representative, size


def reduce_by_symmetry(graph: CrystalGraph, lattice: np.ndarray, frac_coords: np.ndarray,
                       symprec: float = 1e-4) -> CrystalGraph:
    """``graph`` (unpadded, of :func:`build_graph`) with one message edge, bond and angle per
    orbit of the site-fixing symmetry operations (:func:`site_fixing_rotations`), weighted by
    how many it stands for. The features of the network are invariants (species, lengths,
    angles), so they are equal on an orbit and CHGNet's sums over edges and angles are
    sums over orbits times their sizes: the same energy, for every decoration, at the
    template's geometry under any isotropic scaling. The directed edges (the geometry) are
    all kept.

    An operation that does not map the neighbour list and the bond graph onto themselves
    with lengths kept to 1e-4 Å (a tolerance problem) is left out; with the identity alone
    the graph itself is returned. Operations are found to spglib's ``symprec`` (Å), so a
    cell symmetric only to that tolerance gets energies equal to about that precision.
    After the reduction ``edge_bond``, ``angle_bond_i`` and ``angle_bond_j`` name the
    representative of their bond's orbit. Raises GraphError on a padded or reduced graph.
    """
    if not (graph.edge_mask.all() and graph.angle_mask.all() and graph.bond_mask.all()
            and np.array_equal(graph.message_weight, np.ones(len(graph.center), np.float32))):
        raise GraphError("reduce_by_symmetry takes the full, unpadded graph of build_graph")
    frac = np.asarray(frac_coords, float)
    lattice = np.asarray(lattice, float)
    center, neighbor = graph.center.astype(np.int64), graph.neighbor.astype(np.int64)
    image = np.rint(graph.image).astype(np.int64)
    index = {(int(i), int(j), *map(int, n)): e
             for e, (i, j, n) in enumerate(zip(center, neighbor, image))}
    angle_index = {(int(a), int(b)): k
                   for k, (a, b) in enumerate(zip(graph.angle_edge_i, graph.angle_edge_j))}
    offset = frac[neighbor] + image - frac[center]  # [E, 3] fractional edge vectors
    lengths = np.linalg.norm(offset @ lattice, axis=1)
    edge_perms, angle_perms = [], []
    for rotation in site_fixing_rotations(lattice, frac, symprec):
        moved = offset @ rotation.T
        shifted = moved + frac[center] - frac[neighbor]
        images = np.rint(shifted).astype(np.int64)
        if (np.abs(shifted - images).max(initial=0.0) > 1e-3
                or np.abs(np.linalg.norm(moved @ lattice, axis=1) - lengths).max(initial=0.0)
                > 1e-4):
            continue
        perm = np.asarray([index.get((int(i), int(j), *map(int, n)), -1)
                           for i, j, n in zip(center, neighbor, images)], np.int64)
        if perm.size and (perm.min() < 0 or len(set(perm.tolist())) != len(perm)):
            continue
        # the bond graph too: an operation must map every angle onto an angle
        angles = [angle_index.get((int(perm[a]), int(perm[b])), -1)
                  for a, b in zip(graph.angle_edge_i, graph.angle_edge_j)]
        if angles and min(angles) < 0:
            continue
        edge_perms.append(perm)
        angle_perms.append(angles)
    if len(edge_perms) <= 1:  # the identity alone (it always maps)
        return graph
    edge_perms = np.asarray(edge_perms, np.int64)  # [G, E]
    angle_perms = np.asarray(angle_perms, np.int64).reshape(len(edge_perms), -1)  # [G, A]
    edge_bond, bond_edge = graph.edge_bond.astype(np.int64), graph.bond_edge.astype(np.int64)
    edge_rep, edge_size = _orbits(edge_perms)
    bond_perms = edge_bond[edge_perms[:, bond_edge]]  # [G, U]
    bond_rep, bond_size = _orbits(bond_perms)
    bonds = np.flatnonzero(bond_rep == np.arange(len(bond_edge)))
    new_bond = np.full(len(bond_edge), -1, np.int64)
    new_bond[bonds] = np.arange(len(bonds))
    bond_of = new_bond[bond_rep]  # every old bond -> its orbit's new index
    angle_rep, angle_size = _orbits(angle_perms)
    first_bond = graph.angle_bond_i.astype(np.int64)
    # one member per angle orbit: one whose first bond is its bond orbit's representative;
    # it stands for the orbit's angles whose first bond is that bond
    on_rep = np.flatnonzero(bond_rep[first_bond] == first_bond)
    _, pick = np.unique(angle_rep[on_rep], return_index=True)
    kept = on_rep[pick]
    if len(kept) != len(np.unique(angle_rep)):
        raise GraphError("an angle orbit without an angle on a representative bond")
    weights = angle_size[kept] / bond_size[first_bond[kept]]
    if np.any(weights != np.rint(weights)):
        raise GraphError("an angle orbit is not a multiple of its bond's orbit")
    messages = np.flatnonzero(edge_rep == np.arange(len(center)))
    return dataclasses.replace(
        graph, edge_bond=bond_of[edge_bond].astype(np.int32),
        bond_edge=bond_edge[bonds].astype(np.int32), bond_mask=np.ones(len(bonds), bool),
        angle_center=graph.angle_center[kept], angle_edge_i=graph.angle_edge_i[kept],
        angle_edge_j=graph.angle_edge_j[kept],
        angle_bond_i=bond_of[graph.angle_bond_i[kept]].astype(np.int32),
        angle_bond_j=bond_of[graph.angle_bond_j[kept]].astype(np.int32),
        angle_mask=np.ones(len(kept), bool), angle_weight=np.asarray(weights, np.float32),
        message_center=graph.center[messages], message_neighbor=graph.neighbor[messages],
        message_bond=bond_of[edge_bond[messages]].astype(np.int32),
        message_weight=edge_size[messages].astype(np.float32))


def pad_graph(graph: CrystalGraph, sizes: tuple[int, int, int, int, int]) -> CrystalGraph:
    """``graph`` padded to (N, E, U, A, M); padding entries point at index 0 and are masked
    (weight 0)."""
    N, E, U, A, M = sizes
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
        angle_edge_j=pad(graph.angle_edge_j, A), angle_mask=pad(graph.angle_mask, A, False),
        angle_weight=pad(graph.angle_weight, A), message_center=pad(graph.message_center, M),
        message_neighbor=pad(graph.message_neighbor, M),
        message_bond=pad(graph.message_bond, M), message_weight=pad(graph.message_weight, M))


GRAPH_FIELDS = ("atom_mask", "center", "neighbor", "image", "edge_bond", "edge_mask",
                "bond_edge", "bond_mask", "angle_center", "angle_bond_i", "angle_bond_j",
                "angle_edge_i", "angle_edge_j", "angle_mask", "angle_weight", "message_center",
                "message_neighbor", "message_bond", "message_weight")


def stack_graphs(graphs: Sequence[CrystalGraph],
                 sizes: tuple[int, int, int, int, int] | None = None) -> dict[str, np.ndarray]:
    """Pad ``graphs`` to common sizes (default: the largest of each) and stack every field
    along a new leading axis [T, ...]; the dict also holds ``num_atoms`` int32 [T]."""
    if not graphs:
        raise GraphError("no graph to stack")
    if sizes is None:
        sizes = tuple(int(max(g.sizes[k] for g in graphs)) for k in range(5))
    padded = [pad_graph(g, sizes) for g in graphs]
    table = {f: np.stack([getattr(g, f) for g in padded]) for f in GRAPH_FIELDS}
    table["num_atoms"] = np.asarray([g.num_atoms for g in graphs], np.int32)
    return table


__all__ = ["ATOM_CUTOFF", "BOND_CUTOFF", "CrystalGraph", "GRAPH_FIELDS", "GraphError",
           "build_graph", "pad_graph", "reduce_by_symmetry", "site_fixing_rotations",
           "stack_graphs"]
