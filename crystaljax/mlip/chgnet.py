"""CHGNet in JAX: energy of a crystal from its species, positions and lattice.

Our own implementation of the CHGNet architecture (Deng et al., Nat. Mach. Intell. 5,
1031 (2023); the ``chgnet`` package 0.3.0 model), evaluated with the pretrained weights
of :mod:`crystaljax.mlip.weights`. The parameters are the checkpoint's ``state_dict``
(a flat dict of arrays keyed by the torch names, a pytree), so the mapping to the
reference is one-to-one. Everything is pure ``jnp`` on the padded graph of
:mod:`crystaljax.mlip.graph`: jit, vmap and autodiff apply (forces = -dE/dx, stress =
dE/dstrain / V, bulk modulus = V d2E/dV2).

Architecture (0.3.0: 64 features, 31 radial and 31 angular bases, 4 interaction blocks):
atoms are embedded by atomic number; each bond by a smooth Bessel basis of its length
(6 Å in the atom graph, 3 Å in the bond graph, polynomial envelope of order 8); each
angle by a Fourier basis. Blocks 1-3 update atoms (messages over bonds), then bonds
(messages over angles), then angles; block 4 updates atoms only. The energy is the sum
of per-atom MLP readouts plus a composition reference (a linear fit per element).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: eV/Å^3 in GPa
EV_PER_A3_TO_GPA = 160.21766208
NUM_CONV = 4
LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default

Params = Mapping[str, jnp.ndarray]


def _matmul(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``a @ b`` in full float32: GPUs otherwise multiply float32 matrices in TF32 (10-bit
    mantissa), which moves the energy by more than the port's 1e-4 eV/atom and its second
    derivatives far more; on a CPU this is the plain product."""
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def to_params(state_dict: Mapping[str, np.ndarray]) -> dict[str, jnp.ndarray]:
    """The checkpoint's arrays as a float32 jnp pytree (keys unchanged)."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in state_dict.items()}


def _linear(p: Params, name: str, x: jnp.ndarray) -> jnp.ndarray:
    y = _matmul(x, p[f"{name}.weight"].T)
    bias = p.get(f"{name}.bias")
    return y if bias is None else y + bias


def _layer_norm(p: Params, name: str, x: jnp.ndarray) -> jnp.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + LAYER_NORM_EPS) * p[f"{name}.weight"] + p[f"{name}.bias"]


def _linear_indices(p: Params, name: str) -> list[int]:
    """Indices of the Linear layers of the torch ``nn.Sequential`` ``name``, in order."""
    return sorted({int(k[len(name) + 8:].split(".")[0]) for k in p
                   if k.startswith(f"{name}.layers.") and k.endswith(".weight")})


def _mlp(p: Params, name: str, x: jnp.ndarray, skip_first: bool = False) -> jnp.ndarray:
    """torch ``nn.Sequential`` of Linear layers with SiLU between them (dropout = 0);
    ``skip_first``: ``x`` is already the first layer's output."""
    linear = _linear_indices(p, name)
    for n, index in enumerate(linear):
        if not (skip_first and n == 0):
            x = _linear(p, f"{name}.layers.{index}", x)
        if n < len(linear) - 1:
            x = jax.nn.silu(x)
    return x


def _gated_mlp(p: Params, name: str, blocks: list[tuple[jnp.ndarray, jnp.ndarray]]
               ) -> jnp.ndarray:
    """CHGNet's GatedMLP of the concatenation of gathered blocks, ``concat_b x_b[index_b]``.

    The first Linear layer of the core and gate MLPs is applied to each block before its
    gather (``(x_b W_b^T)[index_b]``, summed), not to the concatenation: the same numbers
    in float32 rounding, at a fraction of the FLOPs when a block has fewer rows than the
    gather (5 atoms, ~100 bonds against ~1,000 angles).

    Args:
      blocks: ``(x_b f32 [R_b, F_b], index_b int32 [M] or None)``; None takes ``x_b`` as
        it is (``R_b = M``). The widths add up to the layer's input width.
    Returns: f32 [M, 64].
    """
    core, gate = f"{name}.mlp_core", f"{name}.mlp_gate"
    first = [_linear_indices(p, core)[0], _linear_indices(p, gate)[0]]
    weight = jnp.concatenate([p[f"{core}.layers.{first[0]}.weight"],
                              p[f"{gate}.layers.{first[1]}.weight"]])  # [2H, F]
    hidden = jnp.concatenate([p[f"{core}.layers.{first[0]}.bias"],
                              p[f"{gate}.layers.{first[1]}.bias"]])
    start = 0
    for x, index in blocks:
        part = _matmul(x, weight[:, start:start + x.shape[-1]].T)
        hidden = hidden + (part if index is None else part[index])
        start += x.shape[-1]
    if start != weight.shape[1]:
        raise ValueError(f"{name}: blocks of width {start}, the layer takes {weight.shape[1]}")
    h_core, h_gate = jnp.split(hidden, 2, axis=-1)
    core_out = _mlp(p, core, h_core, skip_first=True)
    gate_out = _mlp(p, gate, h_gate, skip_first=True)
    return (jax.nn.silu(_layer_norm(p, f"{name}.bn1", core_out))
            * jax.nn.sigmoid(_layer_norm(p, f"{name}.bn2", gate_out)))


def _bessel(frequencies: jnp.ndarray, r: jnp.ndarray, cutoff: float, order: int = 8
            ) -> jnp.ndarray:
    """Smooth radial Bessel basis f32 [..., R] of distances ``r`` [...] (Å)."""
    x = r / cutoff
    basis = jnp.sqrt(2.0 / cutoff) * jnp.sin(frequencies * x[..., None]) / r[..., None]
    a = -(order + 1) * (order + 2) / 2
    b = order * (order + 2)
    c = -order * (order + 1) / 2
    envelope = 1 + a * x ** order + b * x ** (order + 1) + c * x ** (order + 2)
    return basis * jnp.where(x < 1, envelope, 0.0)[..., None]


def _fourier(frequencies: jnp.ndarray, angle: jnp.ndarray) -> jnp.ndarray:
    """Fourier basis f32 [A, 1 + 2K] of angles (rad): [1/sqrt2, sin(k t), cos(k t)] / sqrt(pi)."""
    t = angle[:, None] * frequencies
    const = jnp.full(angle.shape + (1,), 1 / np.sqrt(2.0))
    return jnp.concatenate([const, jnp.sin(t), jnp.cos(t)], axis=1) / np.sqrt(np.pi)


def geometry_features(p: Params, graph: Mapping[str, jnp.ndarray], positions: jnp.ndarray,
                      lattice: jnp.ndarray, cutoffs: tuple[float, float] = (6.0, 3.0)
                      ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """What the network reads of the geometry: bond lengths f32 [B] (Å; ``2 x cutoff`` on
    padding bonds) and the embedded angle basis f32 [A, 64] of the bond graph's angles.

    Args: as :func:`site_energies`. Under an isotropic scaling of the cell the lengths scale
    and the angles do not, which :func:`energy_at_scale` uses.
    """
    edge_mask, bond_mask, angle_mask = graph["edge_mask"], graph["bond_mask"], graph["angle_mask"]
    # directed edge vectors (neighbour -> center), safe on padding edges (far, finite)
    vectors = (positions[graph["center"]]
               - (positions[graph["neighbor"]] + _matmul(graph["image"], lattice)))
    far = jnp.array([2.0 * cutoffs[0], 0.0, 0.0], vectors.dtype)
    vectors = jnp.where(edge_mask[:, None], vectors, far)
    lengths = jnp.sqrt((vectors ** 2).sum(-1))
    units = vectors / lengths[:, None]
    bond_lengths = jnp.where(bond_mask, lengths[graph["bond_edge"]], 2.0 * cutoffs[0])
    cosine = (units[graph["angle_edge_i"]] * units[graph["angle_edge_j"]]).sum(-1) * (1 - 1e-6)
    angles = jnp.arccos(jnp.where(angle_mask, cosine, 0.0))
    angle_feas = _linear(p, "angle_embedding",
                         _fourier(p["angle_basis_expansion.fourier_expansion.frequencies"], angles))
    return bond_lengths, angle_feas


def site_energies(p: Params, graph: Mapping[str, jnp.ndarray], atomic_numbers: jnp.ndarray,
                  positions: jnp.ndarray, lattice: jnp.ndarray,
                  cutoffs: tuple[float, float] = (6.0, 3.0)) -> jnp.ndarray:
    """Per-atom energies f32 [N] (eV, 0 on padding atoms), before the composition reference.

    Args:
      p: CHGNet parameters (:func:`to_params`).
      graph: one padded graph as arrays (fields of :class:`~crystaljax.mlip.graph.CrystalGraph`).
      atomic_numbers: int32 [N] (any value >= 1 on padding atoms).
      positions: f32 [N, 3] Cartesian positions (Å).
      lattice: f32 [3, 3] Å, rows are lattice vectors.
      cutoffs: (atom graph, bond graph) cut-offs in Å.
    """
    bond_lengths, angle_feas = geometry_features(p, graph, positions, lattice, cutoffs)
    return site_energies_of_features(p, graph, atomic_numbers, bond_lengths, angle_feas,
                                     cutoffs)


def site_energies_of_features(p: Params, graph: Mapping[str, jnp.ndarray],
                              atomic_numbers: jnp.ndarray, bond_lengths: jnp.ndarray,
                              angle_feas: jnp.ndarray, cutoffs: tuple[float, float] = (6.0, 3.0)
                              ) -> jnp.ndarray:
    """Per-atom energies f32 [N] from :func:`geometry_features`' bond lengths f32 [B] and
    angle features f32 [A, 64]: the interaction blocks and the readout."""
    bond_mask = graph["bond_mask"]
    num_atoms, num_bonds = atomic_numbers.shape[0], bond_mask.shape[0]
    rbf_ag = _bessel(p["bond_basis_expansion.rbf_expansion_ag.frequencies"], bond_lengths,
                     cutoffs[0])
    rbf_bg = _bessel(p["bond_basis_expansion.rbf_expansion_bg.frequencies"], bond_lengths,
                     cutoffs[1])

    atoms = p["atom_embedding.embedding.weight"][atomic_numbers - 1]
    bonds = _linear(p, "bond_embedding", rbf_ag)
    weights_ag = _linear(p, "bond_weights_ag", rbf_ag) * bond_mask[:, None]
    weights_bg = _linear(p, "bond_weights_bg", rbf_bg) * bond_mask[:, None]

    # messages run over the message edges; an edge or angle standing for an orbit of equal
    # ones (graph.reduce_by_symmetry) counts its orbit's size in the sums
    center, neighbor = graph["message_center"], graph["message_neighbor"]
    edge_bond = graph["message_bond"]
    a_center, a_i, a_j = graph["angle_center"], graph["angle_bond_i"], graph["angle_bond_j"]
    edge_weight = weights_ag[edge_bond] * graph["message_weight"][:, None]
    angle_weight = weights_bg[a_i] * weights_bg[a_j] * graph["angle_weight"][:, None]

    def atom_conv(i, atoms, bonds):
        name = f"atom_conv_layers.{i}"
        messages = _gated_mlp(p, f"{name}.twoBody_atom", [
            (atoms, center), (bonds, edge_bond), (atoms, neighbor)]) * edge_weight
        summed = jax.ops.segment_sum(messages, center, num_segments=num_atoms)
        return _mlp(p, f"{name}.mlp_out", summed) + atoms

    for i in range(NUM_CONV - 1):
        atoms = atom_conv(i, atoms, bonds)
        update = _gated_mlp(p, f"bond_conv_layers.{i}.twoBody_bond", [
            (bonds, a_i), (bonds, a_j), (angle_feas, None), (atoms, a_center)]) * angle_weight
        summed = jax.ops.segment_sum(update, a_i, num_segments=num_bonds)
        bonds = _mlp(p, f"bond_conv_layers.{i}.mlp_out", summed) + bonds
        angle_feas = _gated_mlp(p, f"angle_layers.{i}.twoBody_bond", [
            (bonds, a_i), (bonds, a_j), (angle_feas, None), (atoms, a_center)]) + angle_feas
    atoms = atom_conv(NUM_CONV - 1, atoms, bonds)
    atoms = _layer_norm(p, "readout_norm", atoms)
    return _mlp(p, "mlp", atoms)[:, 0] * graph["atom_mask"]


def composition_energy(p: Params, atomic_numbers: jnp.ndarray, atom_mask: jnp.ndarray
                       ) -> jnp.ndarray:
    """Composition reference f32 [] in eV per cell: sum of per-element reference energies."""
    reference = p["composition_model.fc.weight"][0]
    return (reference[atomic_numbers - 1] * atom_mask).sum()


def energy(p: Params, graph: Mapping[str, jnp.ndarray], atomic_numbers: jnp.ndarray,
           frac_coords: jnp.ndarray, lattice: jnp.ndarray) -> jnp.ndarray:
    """Total energy f32 [] of the cell in eV (CHGNet's energy per atom x atoms)."""
    positions = _matmul(frac_coords, lattice)
    return (site_energies(p, graph, atomic_numbers, positions, lattice).sum()
            + composition_energy(p, atomic_numbers, graph["atom_mask"]))


def scale_reference(p: Params, graph: Mapping[str, jnp.ndarray], frac_coords: jnp.ndarray,
                    lattice: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """The geometry of a cell at scale 1 for :func:`energy_at_scale`: ``bond_lengths`` f32
    [B] (Å) and ``angle_feas`` f32 [A, 64] (:func:`geometry_features`)."""
    lengths, angle_feas = geometry_features(p, graph, _matmul(frac_coords, lattice), lattice)
    return {"bond_lengths": lengths, "angle_feas": angle_feas}


def energy_at_scale(p: Params, graph: Mapping[str, jnp.ndarray], atomic_numbers: jnp.ndarray,
                    reference: Mapping[str, jnp.ndarray], scale: jnp.ndarray,
                    cutoffs: tuple[float, float] = (6.0, 3.0)) -> jnp.ndarray:
    """Total energy f32 [] (eV) of the cell of ``reference`` (:func:`scale_reference`) with
    its lattice scaled by ``scale`` (fractional coordinates fixed): equal to :func:`energy`
    on ``scale x lattice`` up to float32 rounding. Bond lengths scale and angles do not, so
    the geometry (edge vectors, angles, their Fourier basis and embedding) is computed once
    per cell, not at every scale nor in every derivative pass."""
    lengths = jnp.where(graph["bond_mask"], scale * reference["bond_lengths"], 2.0 * cutoffs[0])
    return (site_energies_of_features(p, graph, atomic_numbers, lengths,
                                      reference["angle_feas"], cutoffs).sum()
            + composition_energy(p, atomic_numbers, graph["atom_mask"]))


def energy_forces_stress(p: Params, graph: Mapping[str, jnp.ndarray], atomic_numbers: jnp.ndarray,
                         frac_coords: jnp.ndarray, lattice: jnp.ndarray) -> dict[str, Any]:
    """CHGNet's ``efs`` prediction of one crystal (on a full graph: forces and stress break
    the symmetry that ``graph.reduce_by_symmetry`` relies on).

    Returns a dict with ``energy`` f32 [] (eV/atom), ``forces`` f32 [N, 3] (eV/Å, -dE/dx,
    0 on padding atoms) and ``stress`` f32 [3, 3] (GPa, CHGNet's sign: dE/dstrain / V).
    """
    mask = graph["atom_mask"]

    def strained(strain, positions):  # cell L (1 + strain), atoms carried along
        deform = jnp.eye(3) + strain
        return site_energies(p, graph, atomic_numbers, _matmul(positions, deform),
                             _matmul(lattice, deform)).sum()

    positions = _matmul(frac_coords, lattice)
    e_sites, (d_strain, d_pos) = jax.value_and_grad(strained, argnums=(0, 1))(
        jnp.zeros((3, 3)), positions)
    n = mask.sum()
    volume = jnp.abs(jnp.linalg.det(lattice))
    total = e_sites + composition_energy(p, atomic_numbers, mask)
    return {"energy": total / n, "forces": -d_pos * mask[:, None],
            "stress": d_strain / volume * EV_PER_A3_TO_GPA}


__all__ = ["EV_PER_A3_TO_GPA", "composition_energy", "energy", "energy_at_scale",
           "energy_forces_stress", "geometry_features", "scale_reference", "site_energies",
           "site_energies_of_features", "to_params"]
