"""A library of named prototype templates, built from space group + Wyckoff positions.

Each entry gives an exemplar compound with its experimental lattice constants (Å) and
one representative coordinate per Wyckoff orbit; pymatgen expands the orbits and the
cell is reduced to its primitive form where noted. The three cells of CrystalGym's
shipped results (REFERENCE.md) are listed by explicit coordinates under ``cg-*`` names.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from pymatgen.core import Lattice, Structure

from crystaljax.templates.core import CrystalTemplate, from_structure


@dataclasses.dataclass(frozen=True)
class PrototypeSpec:
    """Recipe of one prototype.

    ``lattice`` is (a, b, c, alpha, beta, gamma) in Å and degrees. With a space group,
    ``coords`` holds one fractional coordinate per Wyckoff orbit; without one
    (``spacegroup=None``) it lists every site.
    """

    description: str
    lattice: tuple[float, float, float, float, float, float]
    species: tuple[str, ...]
    coords: tuple[tuple[float, float, float], ...]
    spacegroup: str | None
    primitive: bool
    expected_sites: int
    expected_spacegroup: int
    crystal_system: str


def _cubic(a):
    return (a, a, a, 90.0, 90.0, 90.0)


def _tetragonal(a, c):
    return (a, a, c, 90.0, 90.0, 90.0)


def _hexagonal(a, c):
    return (a, a, c, 90.0, 90.0, 120.0)


_CG_PEROVSKITE_SITES = ((0, 0, 0), (0.5, 0.5, 0.5), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0))

PROTOTYPES: dict[str, PrototypeSpec] = {
    # --- the three CrystalGym cells (REFERENCE.md) ---
    "cg-perovskite-4.27": PrototypeSpec(
        "CrystalGym 5-site cubic cell (Pm-3m perovskite arrangement), a = 4.2748 Å",
        _cubic(4.2748), ("Sr", "Ti", "O", "O", "O"), _CG_PEROVSKITE_SITES, None, False, 5, 221,
        "cubic"),
    "cg-perovskite-4.54": PrototypeSpec(
        "CrystalGym 5-site cubic cell (Pm-3m perovskite arrangement), a = 4.5443 Å",
        _cubic(4.5443), ("Sr", "Ti", "O", "O", "O"), _CG_PEROVSKITE_SITES, None, False, 5, 221,
        "cubic"),
    "cg-bcc4-5.17": PrototypeSpec(
        "CrystalGym 4-site cell on bcc primitive vectors, a = 5.1693 Å, angles 109.4712°",
        (5.1693, 5.1693, 5.1693, 109.4712, 109.4712, 109.4712), ("Sr", "H", "C", "Se"),
        ((0, 0, 0), (0.5, 0.5, 0), (0, 0.5, 0.5), (0.5, 0, 0.5)), None, False, 4, 71,
        "cubic"),  # bcc lattice; the exemplar decoration has Immm symmetry
    # --- cubic ---
    "rocksalt": PrototypeSpec("NaCl (B1)", _cubic(5.640), ("Na", "Cl"),
                              ((0, 0, 0), (0.5, 0.5, 0.5)), "Fm-3m", True, 2, 225, "cubic"),
    "cesium_chloride": PrototypeSpec("CsCl (B2)", _cubic(4.123), ("Cs", "Cl"),
                                     ((0, 0, 0), (0.5, 0.5, 0.5)), "Pm-3m", False, 2, 221, "cubic"),
    "zincblende": PrototypeSpec("ZnS sphalerite (B3)", _cubic(5.409), ("Zn", "S"),
                                ((0, 0, 0), (0.25, 0.25, 0.25)), "F-43m", True, 2, 216, "cubic"),
    "diamond": PrototypeSpec("Si diamond (A4)", _cubic(5.431), ("Si", "Si"),
                             ((0, 0, 0), (0.25, 0.25, 0.25)), "F-43m", True, 2, 227, "cubic"),
    "fluorite": PrototypeSpec("CaF2 (C1)", _cubic(5.463), ("Ca", "F"),
                              ((0, 0, 0), (0.25, 0.25, 0.25)), "Fm-3m", True, 3, 225, "cubic"),
    "perovskite": PrototypeSpec("SrTiO3 cubic perovskite (E2_1)", _cubic(3.905),
                                ("Sr", "Ti", "O"), ((0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)),
                                "Pm-3m", False, 5, 221, "cubic"),
    "full_heusler": PrototypeSpec("Cu2MnAl full Heusler (L2_1)", _cubic(5.95),
                                  ("Cu", "Mn", "Al"),
                                  ((0.25, 0.25, 0.25), (0, 0, 0), (0.5, 0.5, 0.5)),
                                  "Fm-3m", True, 4, 225, "cubic"),
    "half_heusler": PrototypeSpec("MgAgAs half Heusler (C1_b)", _cubic(6.24),
                                  ("Ag", "Mg", "As"),
                                  ((0, 0, 0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                                  "F-43m", True, 3, 216, "cubic"),
    "spinel": PrototypeSpec("MgAl2O4 spinel (H1_1)", _cubic(8.083), ("Mg", "Al", "O"),
                            ((0, 0, 0), (0.625, 0.625, 0.625), (0.3874, 0.3874, 0.3874)),  # origin choice 1
                            "Fd-3m", True, 14, 227, "cubic"),
    "cu3au": PrototypeSpec("Cu3Au (L1_2)", _cubic(3.749), ("Au", "Cu"),
                           ((0, 0, 0), (0, 0.5, 0.5)), "Pm-3m", False, 4, 221, "cubic"),
    "a15": PrototypeSpec("Cr3Si A15", _cubic(4.556), ("Si", "Cr"),
                         ((0, 0, 0), (0.25, 0, 0.5)), "Pm-3n", False, 8, 223, "cubic"),
    "pyrite": PrototypeSpec("FeS2 pyrite (C2)", _cubic(5.417), ("Fe", "S"),
                            ((0, 0, 0), (0.385, 0.385, 0.385)), "Pa-3", False, 12, 205, "cubic"),
    # --- tetragonal ---
    "rutile": PrototypeSpec("TiO2 rutile (C4)", _tetragonal(4.594, 2.959), ("Ti", "O"),
                            ((0, 0, 0), (0.3053, 0.3053, 0)), "P4_2/mnm", False, 6, 136,
                            "tetragonal"),
    "cuau_l10": PrototypeSpec("CuAu (L1_0)", _tetragonal(2.80, 3.67), ("Cu", "Au"),
                              ((0, 0, 0), (0.5, 0.5, 0.5)), "P4/mmm", False, 2, 123, "tetragonal"),
    "thcr2si2": PrototypeSpec("BaFe2As2 (ThCr2Si2 type)", _tetragonal(3.963, 13.02),
                              ("Ba", "Fe", "As"), ((0, 0, 0), (0, 0.5, 0.25), (0, 0, 0.3545)),
                              "I4/mmm", True, 5, 139, "tetragonal"),
    "chalcopyrite": PrototypeSpec("CuFeS2 chalcopyrite (E1_1)", _tetragonal(5.289, 10.423),
                                  ("Cu", "Fe", "S"), ((0, 0, 0), (0, 0, 0.5), (0.2574, 0.25, 0.125)),
                                  "I-42d", True, 8, 122, "tetragonal"),
    # --- hexagonal ---
    "wurtzite": PrototypeSpec("ZnO wurtzite (B4)", _hexagonal(3.250, 5.207), ("Zn", "O"),
                              ((1 / 3, 2 / 3, 0), (1 / 3, 2 / 3, 0.3819)), "P6_3mc", False, 4, 186,
                              "hexagonal"),
    "hcp": PrototypeSpec("Mg hcp (A3)", _hexagonal(3.209, 5.211), ("Mg",),
                         ((1 / 3, 2 / 3, 0.25),), "P6_3/mmc", False, 2, 194, "hexagonal"),
    "nickel_arsenide": PrototypeSpec("NiAs (B8_1)", _hexagonal(3.619, 5.034), ("Ni", "As"),
                                     ((0, 0, 0), (1 / 3, 2 / 3, 0.25)), "P6_3/mmc", False, 4, 194,
                                     "hexagonal"),
    "alb2": PrototypeSpec("AlB2 (C32)", _hexagonal(3.009, 3.262), ("Al", "B"),
                          ((0, 0, 0), (1 / 3, 2 / 3, 0.5)), "P6/mmm", False, 3, 191, "hexagonal"),
    # --- trigonal ---
    "cadmium_iodide": PrototypeSpec("CdI2 (C6)", _hexagonal(4.24, 6.84), ("Cd", "I"),
                                    ((0, 0, 0), (1 / 3, 2 / 3, 0.25)), "P-3m1", False, 3, 164,
                                    "trigonal"),
    "corundum": PrototypeSpec("Al2O3 corundum (D5_1)", _hexagonal(4.759, 12.991), ("Al", "O"),
                              ((0, 0, 0.3522), (0.3064, 0, 0.25)), "R-3c", True, 10, 167,
                              "trigonal"),
    "delafossite": PrototypeSpec("CuFeO2 delafossite", _hexagonal(3.035, 17.166),
                                 ("Cu", "Fe", "O"), ((0, 0, 0), (0, 0, 0.5), (0, 0, 0.1066)),
                                 "R-3m", True, 4, 166, "trigonal"),
    # --- orthorhombic ---
    "marcasite": PrototypeSpec("FeS2 marcasite (C18)", (4.443, 5.424, 3.387, 90, 90, 90),
                               ("Fe", "S"), ((0, 0, 0), (0.2002, 0.3779, 0)), "Pnnm", False, 6, 58,
                               "orthorhombic"),
    "alpha_uranium": PrototypeSpec("alpha-U (A20)", (2.854, 5.869, 4.955, 90, 90, 90), ("U",),
                                   ((0, 0.1025, 0.25),), "Cmcm", True, 2, 63, "orthorhombic"),
    "chromium_boride": PrototypeSpec("CrB (B_f)", (2.969, 7.858, 2.932, 90, 90, 90), ("Cr", "B"),
                                     ((0, 0.146, 0.25), (0, 0.440, 0.25)), "Cmcm", True, 4, 63,
                                     "orthorhombic"),
}


def list_prototypes() -> list[str]:
    """Names of the built-in prototype templates."""
    return sorted(PROTOTYPES)


@functools.cache
def prototype(name: str) -> CrystalTemplate:
    """The built-in prototype template called ``name`` (see :func:`list_prototypes`).

    Raises:
      KeyError: unknown name (the message lists the known ones).
    """
    if name not in PROTOTYPES:
        raise KeyError(f"unknown prototype {name!r}; known prototypes: {', '.join(list_prototypes())}")
    spec = PROTOTYPES[name]
    lattice = Lattice.from_parameters(*spec.lattice)
    if spec.spacegroup is None:
        structure = Structure(lattice, list(spec.species), np.array(spec.coords, dtype=float))
    else:
        structure = Structure.from_spacegroup(
            spec.spacegroup, lattice, list(spec.species), np.array(spec.coords, dtype=float)
        )
        if spec.primitive:
            structure = structure.get_primitive_structure()
    return from_structure(structure, name=name, source=f"prototype: {spec.description}")
