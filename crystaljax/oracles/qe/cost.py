"""Expected cost of a pw.x job, to start a batch's longest jobs first (so the last wave is
short and every core stays busy).

The model is the usual plane-wave scaling, with constants dropped (only the order matters):
plane waves ``N_pw ~ V ecutwfc^1.5`` (V the cell volume in bohr^3, ecutwfc in Ry), bands
``N_b ~ n_electrons / 2``, and the work per SCF iteration ``~ N_k N_pw N_b^2`` (subspace
orthogonalisation dominates for small cells), ``N_k`` the k-points of the grid (the full
grid: symmetry is ignored), times 2 for a spin-polarised crystal.
"""

from __future__ import annotations

import math

from pymatgen.core import Structure

from crystaljax.oracles.qe.family import PseudoFamily
from crystaljax.oracles.qe.inputs import (
    PwSettings,
    kpoint_grid,
    spin_polarized,
    valence_electrons,
)

BOHR_PER_ANGSTROM = 1.0 / 0.529177210903


def expected_cost(structure: Structure, family: PseudoFamily, settings: PwSettings) -> float:
    """Relative cost of one SCF of ``structure`` (arbitrary units; larger is slower)."""
    ecutwfc, _ = family.cutoffs(site.specie.symbol for site in structure)
    volume = structure.volume * BOHR_PER_ANGSTROM**3
    n_pw = volume * ecutwfc**1.5 / (6.0 * math.pi**2)
    n_bands = max(1.0, valence_electrons(structure, family) / 2.0)
    n_k = math.prod(settings.kgrid or kpoint_grid(structure, settings.kppa))
    spin = 2.0 if spin_polarized(structure, settings) else 1.0  # two channels
    return float(spin * n_k * n_pw * n_bands**2)


__all__ = ["expected_cost"]
