"""`CrystalTemplate`: the fixed lattice and sites an agent decorates, and its loaders."""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import warnings
from collections.abc import Sequence

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer


class TemplateError(ValueError):
    """A template that cannot be used (unreadable file, disorder, bad geometry...)."""


@dataclasses.dataclass(frozen=True, eq=False)
class CrystalTemplate:
    """A crystal template: lattice and fractional site coordinates, species left open.

    Attributes:
      name: identifier used in logs, task ids and exported files.
      lattice: lattice vectors as rows, float64 ``[3, 3]`` in Å.
      frac_coords: fractional site coordinates, float64 ``[N, 3]``.
      species: exemplar element of each site (the crystal the template came from);
        used only to build the neighbour graph with CrystalNN, never by the agent.
      spacegroup: international space-group number (1..230) of the exemplar.
      source: where the template came from (file path, 'prototype', 'MP-20 row 7', ...).
    """

    name: str
    lattice: np.ndarray
    frac_coords: np.ndarray
    species: tuple[str, ...]
    spacegroup: int
    source: str = ""

    def __post_init__(self):
        lattice = np.asarray(self.lattice, dtype=np.float64)
        frac = np.asarray(self.frac_coords, dtype=np.float64)
        if lattice.shape != (3, 3):
            raise TemplateError(f"template {self.name!r}: lattice must be 3x3, got {lattice.shape}")
        if frac.ndim != 2 or frac.shape[1] != 3 or len(frac) == 0:
            raise TemplateError(
                f"template {self.name!r}: frac_coords must be [N, 3] with N >= 1, got {frac.shape}"
            )
        if len(self.species) != len(frac):
            raise TemplateError(
                f"template {self.name!r}: {len(self.species)} species for {len(frac)} sites"
            )
        if abs(np.linalg.det(lattice)) < 1e-6:
            raise TemplateError(f"template {self.name!r}: lattice vectors are degenerate")
        object.__setattr__(self, "lattice", lattice)
        object.__setattr__(self, "frac_coords", frac)
        object.__setattr__(self, "species", tuple(str(s) for s in self.species))

    @property
    def num_sites(self) -> int:
        return len(self.frac_coords)

    @property
    def volume(self) -> float:
        """Cell volume in Å^3."""
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def lattice_parameters(self) -> tuple[float, float, float, float, float, float]:
        """(a, b, c) in Å and (alpha, beta, gamma) in degrees."""
        lat = Lattice(self.lattice)
        return (*lat.abc, *lat.angles)

    def to_structure(self, symbols: Sequence[str] | None = None) -> Structure:
        """The template decorated with ``symbols`` (default: its exemplar species)."""
        symbols = self.species if symbols is None else tuple(symbols)
        if len(symbols) != self.num_sites:
            raise ValueError(
                f"template {self.name!r} has {self.num_sites} sites, got {len(symbols)} symbols"
            )
        return Structure(Lattice(self.lattice), list(symbols), self.frac_coords)

    def __repr__(self) -> str:
        a, b, c, al, be, ga = self.lattice_parameters
        return (
            f"CrystalTemplate({self.name!r}, sites={self.num_sites}, sg={self.spacegroup}, "
            f"abc=({a:.3f}, {b:.3f}, {c:.3f}) Å, angles=({al:.2f}, {be:.2f}, {ga:.2f}))"
        )


def _spacegroup_number(structure: Structure) -> int:
    try:
        return int(SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number())
    except Exception:  # spglib gives up on some odd cells; P1 is then the honest answer
        return 1


def from_structure(
    structure: Structure, name: str | None = None, source: str = "structure",
    spacegroup: int | None = None,
) -> CrystalTemplate:
    """Make a template from an ordered pymatgen Structure (its species become the exemplar).

    Raises:
      TemplateError: partial occupancy or disorder on any site, or an empty structure.
    """
    if len(structure) == 0:
        raise TemplateError(f"{source}: the structure has no sites")
    if not structure.is_ordered:
        bad = [i for i, site in enumerate(structure) if not site.is_ordered]
        raise TemplateError(
            f"{source}: site(s) {bad} have partial occupancy or mixed species (disorder); "
            "a template needs exactly one element per site"
        )
    symbols = tuple(site.specie.symbol for site in structure)
    return CrystalTemplate(
        name=name or structure.composition.reduced_formula,
        lattice=structure.lattice.matrix,
        frac_coords=structure.frac_coords,
        species=symbols,
        spacegroup=spacegroup if spacegroup is not None else _spacegroup_number(structure),
        source=source,
    )


def _structure_from_cif_text(text: str, where: str) -> Structure:
    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parser = CifParser.from_str(text, occupancy_tolerance=1.0)
            structures = parser.parse_structures(primitive=False, on_error="raise")
        except Exception as exc:  # pymatgen raises many kinds; name the file instead
            raise TemplateError(f"{where}: not a readable CIF ({type(exc).__name__}: {exc})") from None
    if not structures:
        raise TemplateError(f"{where}: the CIF contains no crystal structure")
    return structures[0]


def from_cif(path: str | os.PathLike, name: str | None = None, niggli: bool = False) -> CrystalTemplate:
    """Load a template from a CIF file (first data block).

    Args:
      path: CIF file.
      name: template name (default: the file's stem).
      niggli: Niggli-reduce the cell (keeps all sites; not a primitive reduction).

    Raises:
      FileNotFoundError: no such file. TemplateError: unreadable CIF or disorder.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIF file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as f:
        structure = _structure_from_cif_text(f.read(), path)
    if niggli:
        structure = structure.get_reduced_structure()
    stem = os.path.splitext(os.path.basename(path))[0]
    return from_structure(structure, name=name or stem, source=path)


MP20_REQUIRED_COLUMNS = ("material_id", "cif")


def from_mp20_csv(path: str | os.PathLike, index: int, niggli: bool = True) -> CrystalTemplate:
    """Load row ``index`` (0-based, the original's ``env.index``) of an MP-20 style CSV.

    The CSV needs columns ``material_id`` and ``cif``; ``spacegroup.number`` is used
    when present. Like CrystalGym, the cell is Niggli-reduced but not primitivized.

    Raises:
      FileNotFoundError, TemplateError (missing column, bad CIF), IndexError (row).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"MP-20 CSV not found: {path}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MP20_REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise TemplateError(
                f"{path}: missing column(s) {missing}; an MP-20 CSV needs {list(MP20_REQUIRED_COLUMNS)}"
            )
        if index < 0:
            raise IndexError(f"{path}: row index must be >= 0, got {index}")
        row = None
        count = 0
        for count, candidate in enumerate(reader, start=1):
            if count - 1 == index:
                row = candidate
                break
    if row is None:
        raise IndexError(f"{path}: row {index} requested but the file has {count} data rows")
    where = f"{path} row {index} ({row['material_id']})"
    structure = _structure_from_cif_text(row["cif"], where)
    if niggli:
        structure = structure.get_reduced_structure()
    sg = row.get("spacegroup.number")
    spacegroup = int(float(sg)) if sg not in (None, "") else None
    return from_structure(structure, name=row["material_id"], source=where, spacegroup=spacegroup)
