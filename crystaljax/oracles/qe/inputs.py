"""Writing pw.x input files.

Lengths in the written input are in Å (``CELL_PARAMETERS angstrom``), positions
fractional (``ATOMIC_POSITIONS crystal``), cutoffs in Ry, smearing width in Ry.
k-points follow pymatgen's ``Kpoints.automatic_density`` divisions (k-points per
reciprocal atom, 1000 by default like the original CrystalGym), written as a
Gamma-centred grid so band extrema at Gamma are always sampled.

Spin: a crystal with an element of :data:`MAGNETIC_ELEMENTS` is computed spin-polarised
(``nspin = 2``) when ``PwSettings.spin`` is ``auto`` (the default), with a ferromagnetic
start: :data:`STARTING_MOMENT` Bohr magnetons on every atom of a magnetic species, none
on the others (:func:`starting_magnetization`), as high-throughput databases do. Such a
run needs smeared occupations (pw.x's fixed occupations would need the total
magnetisation fixed in advance); the recipes set them.
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
#: ``PwSettings.spin``: ``auto`` (spin-polarised when a magnetic element is present) or
#: ``off`` (always spin-degenerate, like the original CrystalGym)
Spin = Literal["auto", "off"]

#: Elements whose crystals are computed spin-polarised under ``spin: auto``: the 3d
#: elements with a magnetic ground state in their common compounds (V, Cr, Mn, Fe, Co,
#: Ni), the ones high-throughput databases start with a large moment.
MAGNETIC_ELEMENTS: frozenset[str] = frozenset({"V", "Cr", "Mn", "Fe", "Co", "Ni"})
#: Starting moment (Bohr magnetons) of each atom of a magnetic species: a high-spin
#: ferromagnetic start (the Materials Project's 5 uB for these elements); pw.x relaxes it.
STARTING_MOMENT = 5.0


#: pw.x ``outdir`` (relative to the run directory) and ``prefix`` of every run: its files
#: are written to ``OUTDIR/PREFIX.save``.
OUTDIR = "./out"
PREFIX = "pw"


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
      full_accuracy_empty_bands: converge empty bands as tightly as occupied ones
        (pw.x ``diago_full_acc``); by default pw.x converges them loosely, and the highest
        computed band can be off by tenths of an eV (measured on fcc Se: 0.62 eV).
      spin: ``auto``: spin-polarised (``nspin = 2``, ferromagnetic start) when the crystal
        has an element of :data:`MAGNETIC_ELEMENTS`; ``off``: never (``nspin = 1``).
      stress: compute the stress and the forces (pw.x ``tstress``, ``tprnfor``) of an
        ``scf``; a relaxation always computes them. The recipes' scf runs that read
        neither turn it off (band gap, the bulk modulus's energy scan, ``relax``'s E(V)
        points; stress and forces took 7 % of a spin-polarised MnSn scf at 80 Ry); the
        bulk modulus's pressure scan turns it on.
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
    spin: Spin = "auto"
    full_accuracy_empty_bands: bool = False
    stress: bool = True

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
    "stress": "set by the property's recipe (computed where it is read: the vc-relax, the "
              "bulk modulus's pressure scan)",
}


def kpoint_grid(structure: Structure, kppa: float) -> tuple[int, int, int]:
    """Monkhorst-Pack divisions with about ``kppa`` k-points per reciprocal atom."""
    kpoints = Kpoints.automatic_density(structure, kppa)
    return tuple(int(n) for n in kpoints.kpts[0])  # type: ignore[return-value]


def valence_electrons(structure: Structure, family: PseudoFamily) -> float:
    """Total valence electrons of ``structure`` with ``family``'s pseudopotentials."""
    return sum(family.spec(site.specie.symbol).z_valence for site in structure)


def spin_polarized(structure: Structure, settings: PwSettings) -> bool:
    """Whether ``structure`` is computed spin-polarised under ``settings`` (``spin: auto``
    and an element of :data:`MAGNETIC_ELEMENTS` present)."""
    if settings.spin == "off":
        return False
    return any(site.specie.symbol in MAGNETIC_ELEMENTS for site in structure)


def starting_magnetization(structure: Structure, family: PseudoFamily) -> dict[str, float]:
    """pw.x's ``starting_magnetization`` per magnetic species of ``structure``: the
    fraction (at most 1) of the species' valence charge that :data:`STARTING_MOMENT`
    is. Species not in :data:`MAGNETIC_ELEMENTS` are left out (pw.x's default, 0)."""
    out = {}
    for element in sorted({site.specie.symbol for site in structure}):
        if element in MAGNETIC_ELEMENTS:
            z = family.spec(element).z_valence
            out[element] = min(1.0, STARTING_MOMENT / z) if z > 0 else 0.0
    return out


def starting_moment(structure: Structure, family: PseudoFamily) -> float:
    """Total starting moment of the cell (Bohr magnetons) of a spin-polarised run."""
    fractions = starting_magnetization(structure, family)
    return sum(fractions[s.specie.symbol] * family.spec(s.specie.symbol).z_valence
               for s in structure if s.specie.symbol in fractions)


def number_of_bands(n_electrons: float, extra_bands: int, fraction: float = 0.2,
                    magnetization: float = 0.0) -> int:
    """Bands to compute (per spin channel): the occupied ones plus max(extra_bands,
    fraction x occupied) empty ones. ``magnetization``: the starting moment of a
    spin-polarised run (Bohr magnetons); the majority channel holds (N + m) / 2 electrons."""
    m = min(max(magnetization, 0.0), n_electrons)
    occupied = math.ceil((n_electrons + m) / 2 - 1e-9)
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


def plane_wave_cutoffs(structure: Structure, settings: PwSettings, family: PseudoFamily
                       ) -> tuple[float, float]:
    """(ecutwfc, ecutrho) in Ry of ``structure``'s pw.x runs: the settings' where given,
    else the family's maximum over the crystal's elements (``ecutrho`` at least 4
    ``ecutwfc``). Raises :class:`MissingPseudopotential` for an element the family lacks."""
    fam_wfc, fam_rho = family.cutoffs({site.specie.symbol for site in structure})
    ecutwfc = settings.ecutwfc if settings.ecutwfc is not None else fam_wfc
    ecutrho = settings.ecutrho if settings.ecutrho is not None else max(fam_rho, 4.0 * ecutwfc)
    return float(ecutwfc), float(ecutrho)


def write_pw_input(
    structure: Structure,
    settings: PwSettings,
    family: PseudoFamily,
    outdir: str = OUTDIR,
    prefix: str = PREFIX,
    starting_density: bool = False,
) -> str:
    """The text of a pw.x input for ``structure``.

    Args:
      structure: the crystal (ordered; one element per site).
      settings: numerical settings.
      family: pseudopotentials; its directory becomes ``pseudo_dir``.
      outdir: pw.x scratch directory (relative to the run directory).
      prefix: pw.x file prefix.
      starting_density: start the SCF from the density in ``outdir/prefix.save``
        (``startingpot = 'file'``; :mod:`crystaljax.oracles.qe.seeds`) instead of
        superposed atomic densities.

    Raises:
      MissingPseudopotential: an element of ``structure`` is not in ``family``.
      ValueError: a spin-polarised run (:func:`spin_polarized`) with fixed occupations.
    """
    elements = sorted({site.specie.symbol for site in structure})
    specs = {e: family.spec(e) for e in elements}
    ecutwfc, ecutrho = plane_wave_cutoffs(structure, settings, family)
    n_el = valence_electrons(structure, family)
    spin = spin_polarized(structure, settings)
    if spin and settings.occupations == "fixed":
        raise ValueError("a spin-polarised pw.x run needs smeared occupations "
                         "(fixed ones need the total magnetisation); use spin: off or smearing")
    magnetic = starting_magnetization(structure, family) if spin else {}
    moment = starting_moment(structure, family) if spin else 0.0
    stress = settings.stress or settings.calculation != "scf"
    control = {
        "calculation": settings.calculation,
        "prefix": prefix,
        "outdir": outdir,
        "pseudo_dir": str(family.directory),
        "tprnfor": stress,
        "tstress": stress,
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
        "nspin": 2 if spin else 1,
        "nbnd": number_of_bands(n_el, settings.extra_bands, settings.extra_bands_fraction,
                                moment),
        "occupations": settings.occupations,
    }
    if spin:
        for index, element in enumerate(elements, start=1):
            if element in magnetic:
                system[f"starting_magnetization({index})"] = float(magnetic[element])
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
    if settings.full_accuracy_empty_bands:
        electrons["diago_full_acc"] = True
    if starting_density:
        electrons["startingpot"] = "file"
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
