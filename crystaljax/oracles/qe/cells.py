"""Cells of a crystal for the recipes: volume-scaled copies, the cell a relaxation ended
in, and the mass density (g/cm3) of a structure's atoms in a cell (Å)."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Structure

from crystaljax.oracles.qe.parse import PwOutput

#: amu/Å^3 -> g/cm3
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def density_of(structure: Structure, cell: np.ndarray | None = None) -> float:
    """Mass density (g/cm3) of ``structure``'s atoms in ``cell`` (Å rows; default its own)."""
    volume = abs(np.linalg.det(cell)) if cell is not None else structure.volume
    mass = float(structure.composition.weight)
    return float(mass / volume * AMU_PER_A3_TO_G_PER_CM3)


def scaled(structure: Structure, volume_scale: float) -> Structure:
    """Copy of ``structure`` with its volume times ``volume_scale`` (shape and fractions kept)."""
    factor = volume_scale ** (1.0 / 3.0)
    lattice = Lattice(structure.lattice.matrix * factor)
    return Structure(lattice, structure.species, structure.frac_coords)


def relaxed_structure(structure: Structure, parsed: PwOutput) -> Structure:
    """``structure`` with the last cell (and fractional positions) a relaxation printed."""
    cell = parsed.cell if parsed.cell is not None else structure.lattice.matrix
    positions = parsed.positions
    if positions is None or positions.shape != (len(structure), 3):
        positions = structure.frac_coords
    return Structure(Lattice(cell), structure.species, positions)
