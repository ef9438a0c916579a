"""Writing pw.x input files.

Lengths in the written input are in Å (``CELL_PARAMETERS angstrom``), positions
fractional (``ATOMIC_POSITIONS crystal``), cutoffs in Ry, smearing width in Ry.
k-points follow pymatgen's ``Kpoints.automatic_density`` divisions (k-points per
reciprocal atom, 1000 by default like the original CrystalGym), written as a
Gamma-centred grid so band extrema at Gamma are always sampled.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from pymatgen.core import Element, Structure
from pymatgen.io.vasp.inputs import Kpoints

from crystaljax.config import check, option
from crystaljax.oracles.qe.family import PseudoFamily

Calculation = Literal["scf", "vc-relax", "relax"]
#: pw.x 6.7's iterative diagonalisers (``&electrons diagonalization``)
Diagonalization = Literal["david", "cg", "ppcg", "paro"]
#: pw.x's charge-mixing modes (``&electrons mixing_mode``)
MixingMode = Literal["plain", "TF", "local-TF"]


@dataclasses.dataclass(frozen=True)
class PwSettings:
    """Numerical settings of one pw.x run (everything that is not the crystal).

    Attributes:
      calculation: ``scf``, ``relax`` or ``vc-relax``.
      ecutwfc: wavefunction cutoff (Ry); ``None`` = family's maximum over the
        crystal's elements.
      ecutrho: density cutoff (Ry); ``None`` = family's value.
      kppa: k-points per reciprocal atom (pymatgen ``automatic_density``).
      occupations: ``fixed`` or ``smearing``.
      smearing: pw.x smearing kind (``gaussian``, ``mv``, ...).
      degauss: smearing width (Ry).
      conv_thr_per_atom: SCF threshold per atom (Ry); multiplied by the atom count.
      mixing_beta: SCF mixing factor.
      mixing_mode: ``plain``, ``TF`` or ``local-TF`` charge mixing.
      diagonalization: iterative diagonaliser (``david``, ``cg``, ``ppcg``, ``paro``).
      electron_maxstep: maximum SCF iterations.
      nstep: ionic/cell steps of a relaxation.
      press_conv_thr: pressure threshold of ``vc-relax`` (kbar).
      extra_bands: empty bands above the occupied ones: at least this many, and at
        least ``extra_bands_fraction`` of the occupied count (4 and 20 % by default).
      extra_bands_fraction: see ``extra_bands``.
      kgrid: explicit Gamma-centred k-grid; overrides ``kppa`` when given.
    """

    calculation: Calculation = "scf"
    ecutwfc: float | None = option(None, gt=0)
    ecutrho: float | None = option(None, gt=0)
    kppa: float = option(1000.0, gt=0)
    occupations: Literal["fixed", "smearing"] = "fixed"
    smearing: str = "gaussian"
    degauss: float = option(0.001, gt=0)
    conv_thr_per_atom: float = option(1e-9, gt=0)
    mixing_beta: float = option(0.7, gt=0, le=1)
    mixing_mode: MixingMode = "plain"
    diagonalization: Diagonalization = "david"
    electron_maxstep: int = option(300, ge=1)
    nstep: int = option(1, ge=1)
    press_conv_thr: float = option(0.5, gt=0)
    extra_bands: int = option(4, ge=0)
    extra_bands_fraction: float = option(0.2, ge=0)
    kgrid: tuple[int, int, int] | None = option(None, ge=1)

    def __post_init__(self) -> None:
        check(self, "settings")

    def replace(self, **changes) -> "PwSettings":
        return dataclasses.replace(self, **changes)


#: PwSettings fields that every recipe sets itself (an override would have no effect),
#: with the option to use instead.
RECIPE_OWNED_SETTINGS = {
    "calculation": "set by the property's recipe",
    "occupations": "set by the property's recipe",
    "smearing": "use recipe.metal_smearing",
    "degauss": "use recipe.metal_degauss or recipe.density_degauss",
    "nstep": "use recipe.nstep",
}


def kpoint_grid(structure: Structure, kppa: float) -> tuple[int, int, int]:
    """Monkhorst-Pack divisions with about ``kppa`` k-points per reciprocal atom."""
    kpoints = Kpoints.automatic_density(structure, kppa)
    return tuple(int(n) for n in kpoints.kpts[0])  # type: ignore[return-value]


def valence_electrons(structure: Structure, family: PseudoFamily) -> float:
    """Total valence electrons of ``structure`` with ``family``'s pseudopotentials."""
    return sum(family.spec(site.specie.symbol).z_valence for site in structure)


def number_of_bands(n_electrons: float, extra_bands: int, fraction: float = 0.2) -> int:
    """Bands to compute (spin off): occupied ones plus max(extra_bands, fraction x occupied)
    empty ones."""
    occupied = math.ceil(n_electrons / 2)
    return occupied + max(extra_bands, math.ceil(fraction * occupied))


def _fortran(value) -> str:
    if isinstance(value, bool):
        return ".true." if value else ".false."
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _namelist(name: str, values: dict) -> str:
    body = "".join(f"  {key} = {_fortran(val)}\n" for key, val in values.items())
    return f"&{name}\n{body}/\n"


def write_pw_input(
    structure: Structure,
    settings: PwSettings,
    family: PseudoFamily,
    outdir: str = "./out",
    prefix: str = "pw",
) -> str:
    """The text of a pw.x input for ``structure``.

    Args:
      structure: the crystal (ordered; one element per site).
      settings: numerical settings.
      family: pseudopotentials; its directory becomes ``pseudo_dir``.
      outdir: pw.x scratch directory (relative to the run directory).
      prefix: pw.x file prefix.

    Raises:
      MissingPseudopotential: an element of ``structure`` is not in ``family``.
    """
    elements = sorted({site.specie.symbol for site in structure})
    specs = {e: family.spec(e) for e in elements}
    fam_wfc, fam_rho = family.cutoffs(elements)
    ecutwfc = settings.ecutwfc if settings.ecutwfc is not None else fam_wfc
    ecutrho = settings.ecutrho if settings.ecutrho is not None else max(fam_rho, 4.0 * ecutwfc)
    n_el = valence_electrons(structure, family)
    control = {
        "calculation": settings.calculation,
        "prefix": prefix,
        "outdir": outdir,
        "pseudo_dir": str(family.directory),
        "tprnfor": True,
        "tstress": True,
        "verbosity": "high",
        "disk_io": "low",
    }
    if settings.calculation != "scf":
        control["nstep"] = settings.nstep
    system = {
        "ibrav": 0,
        "nat": len(structure),
        "ntyp": len(elements),
        "ecutwfc": float(ecutwfc),
        "ecutrho": float(ecutrho),
        "nspin": 1,  # spin off: every recipe assumes spin-degenerate bands
        "nbnd": number_of_bands(n_el, settings.extra_bands, settings.extra_bands_fraction),
        "occupations": settings.occupations,
    }
    if settings.occupations == "smearing":
        system["smearing"] = settings.smearing
        system["degauss"] = float(settings.degauss)
    electrons = {
        "conv_thr": float(settings.conv_thr_per_atom * len(structure)),
        "mixing_beta": float(settings.mixing_beta),
        "mixing_mode": settings.mixing_mode,
        "diagonalization": settings.diagonalization,
        "electron_maxstep": settings.electron_maxstep,
    }
    text = _namelist("control", control) + _namelist("system", system)
    text += _namelist("electrons", electrons)
    if settings.calculation in ("relax", "vc-relax"):
        text += _namelist("ions", {"ion_dynamics": "bfgs"})
    if settings.calculation == "vc-relax":
        text += _namelist(
            "cell", {"cell_dynamics": "bfgs", "press_conv_thr": float(settings.press_conv_thr)}
        )
    text += "ATOMIC_SPECIES\n"
    for e in elements:
        text += f"  {e} {float(Element(e).atomic_mass):.6f} {specs[e].filename}\n"
    text += "CELL_PARAMETERS angstrom\n"
    for row in structure.lattice.matrix:
        text += "  " + " ".join(f"{x:.10f}" for x in row) + "\n"
    text += "ATOMIC_POSITIONS crystal\n"
    for site in structure:
        text += f"  {site.specie.symbol} " + " ".join(f"{x:.10f}" for x in site.frac_coords) + "\n"
    n1, n2, n3 = settings.kgrid or kpoint_grid(structure, settings.kppa)
    text += f"K_POINTS automatic\n  {n1} {n2} {n3} 0 0 0\n"
    return text
