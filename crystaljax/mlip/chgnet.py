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


def to_params(state_dict: Mapping[str, np.ndarray]) -> dict[str, jnp.ndarray]:
    """The checkpoint's arrays as a float32 jnp pytree (keys unchanged)."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in state_dict.items()}


def _linear(p: Params, name: str, x: jnp.ndarray) -> jnp.ndarray:
    y = x @ p[f"{name}.weight"].T
    bias = p.get(f"{name}.bias")
    return y if bias is None else y + bias


def _layer_norm(p: Params, name: str, x: jnp.ndarray) -> jnp.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + LAYER_NORM_EPS) * p[f"{name}.weight"] + p[f"{name}.bias"]


def _mlp(p: Params, name: str, x: jnp.ndarray) -> jnp.ndarray:
    """torch ``nn.Sequential`` of Linear layers with SiLU between them (dropout = 0)."""
    linear = sorted({int(k[len(name) + 8:].split(".")[0]) for k in p
                     if k.startswith(f"{name}.layers.") and k.endswith(".weight")})
    for n, index in enumerate(linear):
        x = _linear(p, f"{name}.layers.{index}", x)
        if n < len(linear) - 1:
            x = jax.nn.silu(x)
    return x


def _gated_mlp(p: Params, name: str, x: jnp.ndarray) -> jnp.ndarray:
    core = jax.nn.silu(_layer_norm(p, f"{name}.bn1", _mlp(p, f"{name}.mlp_core", x)))
    gate = jax.nn.sigmoid(_layer_norm(p, f"{name}.bn2", _mlp(p, f"{name}.mlp_gate", x)))
    return core * gate


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
    edge_mask, bond_mask, angle_mask = graph["edge_mask"], graph["bond_mask"], graph["angle_mask"]
    num_atoms, num_bonds = positions.shape[0], bond_mask.shape[0]
    # directed edge vectors (neighbour -> center), safe on padding edges (far, finite)
    vectors = (positions[graph["center"]]
               - (positions[graph["neighbor"]] + graph["image"] @ lattice))
    far = jnp.array([2.0 * cutoffs[0], 0.0, 0.0], vectors.dtype)
    vectors = jnp.where(edge_mask[:, None], vectors, far)
    lengths = jnp.sqrt((vectors ** 2).sum(-1))
    units = vectors / lengths[:, None]
    bond_lengths = jnp.where(bond_mask, lengths[graph["bond_edge"]], 2.0 * cutoffs[0])
    rbf_ag = _bessel(p["bond_basis_expansion.rbf_expansion_ag.frequencies"], bond_lengths,
                     cutoffs[0])
    rbf_bg = _bessel(p["bond_basis_expansion.rbf_expansion_bg.frequencies"], bond_lengths,
                     cutoffs[1])
    cosine = (units[graph["angle_edge_i"]] * units[graph["angle_edge_j"]]).sum(-1) * (1 - 1e-6)
    angles = jnp.arccos(jnp.where(angle_mask, cosine, 0.0))

    atoms = p["atom_embedding.embedding.weight"][atomic_numbers - 1]
    bonds = _linear(p, "bond_embedding", rbf_ag)
    weights_ag = _linear(p, "bond_weights_ag", rbf_ag) * bond_mask[:, None]
    weights_bg = _linear(p, "bond_weights_bg", rbf_bg) * bond_mask[:, None]
    angle_feas = _linear(p, "angle_embedding",
                         _fourier(p["angle_basis_expansion.fourier_expansion.frequencies"], angles))

    center, neighbor, edge_bond = graph["center"], graph["neighbor"], graph["edge_bond"]
    a_center, a_i, a_j = graph["angle_center"], graph["angle_bond_i"], graph["angle_bond_j"]
    edge_weight = weights_ag[edge_bond] * edge_mask[:, None]
    angle_weight = weights_bg[a_i] * weights_bg[a_j] * angle_mask[:, None]

    def atom_conv(i, atoms, bonds):
        name = f"atom_conv_layers.{i}"
        messages = jnp.concatenate([atoms[center], bonds[edge_bond], atoms[neighbor]], axis=1)
        messages = _gated_mlp(p, f"{name}.twoBody_atom", messages) * edge_weight
        summed = jax.ops.segment_sum(messages, center, num_segments=num_atoms)
        return _mlp(p, f"{name}.mlp_out", summed) + atoms

    for i in range(NUM_CONV - 1):
        atoms = atom_conv(i, atoms, bonds)
        total = jnp.concatenate([bonds[a_i], bonds[a_j], angle_feas, atoms[a_center]], axis=1)
        update = _gated_mlp(p, f"bond_conv_layers.{i}.twoBody_bond", total) * angle_weight
        summed = jax.ops.segment_sum(update, a_i, num_segments=num_bonds)
        bonds = _mlp(p, f"bond_conv_layers.{i}.mlp_out", summed) + bonds
        total = jnp.concatenate([bonds[a_i], bonds[a_j], angle_feas, atoms[a_center]], axis=1)
        angle_feas = _gated_mlp(p, f"angle_layers.{i}.twoBody_bond", total) + angle_feas
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
    positions = frac_coords @ lattice
    return (site_energies(p, graph, atomic_numbers, positions, lattice).sum()
            + composition_energy(p, atomic_numbers, graph["atom_mask"]))


def energy_forces_stress(p: Params, graph: Mapping[str, jnp.ndarray], atomic_numbers: jnp.ndarray,
                         frac_coords: jnp.ndarray, lattice: jnp.ndarray) -> dict[str, Any]:
    """CHGNet's ``efs`` prediction of one crystal.

    Returns a dict with ``energy`` f32 [] (eV/atom), ``forces`` f32 [N, 3] (eV/Å, -dE/dx,
    0 on padding atoms) and ``stress`` f32 [3, 3] (GPa, CHGNet's sign: dE/dstrain / V).
    """
    mask = graph["atom_mask"]

    def strained(strain, positions):  # cell L (1 + strain), atoms carried along
        deform = jnp.eye(3) + strain
        return site_energies(p, graph, atomic_numbers, positions @ deform,
                             lattice @ deform).sum()

    positions = frac_coords @ lattice
    e_sites, (d_strain, d_pos) = jax.value_and_grad(strained, argnums=(0, 1))(
        jnp.zeros((3, 3)), positions)
    n = mask.sum()
    volume = jnp.abs(jnp.linalg.det(lattice))
    total = e_sites + composition_energy(p, atomic_numbers, mask)
    return {"energy": total / n, "forces": -d_pos * mask[:, None],
            "stress": d_strain / volume * EV_PER_A3_TO_GPA}


__all__ = ["EV_PER_A3_TO_GPA", "composition_energy", "energy", "energy_forces_stress",
           "site_energies", "to_params"]
