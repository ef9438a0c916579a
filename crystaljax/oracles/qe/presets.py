"""Named settings bundles of the QE oracle: pseudopotential variants and cutoffs.

``default`` is the production preset: GTH-PBE pseudopotentials from cp2k-data,
one variant per element (:data:`GTH_VARIANTS`), except for the elements that
QE's ``ld1.x`` generates from an input shipped with crystaljax
(:data:`LD1_INPUTS`: Na), with per-element cutoffs chosen
by measured convergence (``scripts/converge_cutoffs.py``; data and criteria in
``docs/PSEUDOPOTENTIALS.md``). ``fast`` caps the cutoffs and keeps the cheap
valence-only GTH Na (:data:`FAST_GTH_FALLBACK`). ``test`` is for fast tests: a
low uniform cutoff and a coarse k-grid; its numbers are not converged physics.

Every preset covers the large vocabulary (:data:`crystaljax.elements.LARGE`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from crystaljax.elements import LARGE
from crystaljax.oracles.qe.inputs import PwSettings
from crystaljax.oracles.qe.recipes import RecipeOptions

#: CP2K GTH-PBE entry used for each element where a preset does not generate it with
#: ld1.x (:attr:`Preset.generated`; the default preset generates Na). The valence-only
#: variants keep the plane-wave cutoff affordable (semicore GTH entries such as Na q9 or
#: Mg q10 have projector radii near 0.13 bohr and are not converged even at 200 Ry:
#: see docs/PSEUDOPOTENTIALS.md). Coinage metals and Zn keep their d shell.
GTH_VARIANTS: dict[str, str] = {
    "Li": "GTH-PBE-q1", "Na": "GTH-PBE-q1", "K": "GTH-PBE-q1", "Rb": "GTH-PBE-q1",
    "Cs": "GTH-PBE-q1", "Be": "GTH-PBE-q2", "Mg": "GTH-PBE-q2", "Ca": "GTH-PBE-q2",
    "Sr": "GTH-PBE-q2", "Ba": "GTH-PBE-q2", "H": "GTH-PBE-q1", "B": "GTH-PBE-q3",
    "C": "GTH-PBE-q4", "N": "GTH-PBE-q5", "O": "GTH-PBE-q6", "F": "GTH-PBE-q7",
    "Al": "GTH-PBE-q3", "Si": "GTH-PBE-q4", "P": "GTH-PBE-q5", "S": "GTH-PBE-q6",
    "Cl": "GTH-PBE-q7", "Ga": "GTH-PBE-q3", "Ge": "GTH-PBE-q4", "As": "GTH-PBE-q5",
    "Se": "GTH-PBE-q6", "Br": "GTH-PBE-q7", "In": "GTH-PBE-q3", "Sn": "GTH-PBE-q4",
    "Sb": "GTH-PBE-q5", "Te": "GTH-PBE-q6", "I": "GTH-PBE-q7", "Bi": "GTH-PBE-q5",
    "Ti": "GTH-PBE-q4", "V": "GTH-PBE-q5", "Cr": "GTH-PBE-q6", "Mn": "GTH-PBE-q7",
    "Fe": "GTH-PBE-q8", "Co": "GTH-PBE-q9", "Ni": "GTH-PBE-q10", "Cu": "GTH-PBE-q11",
    "Zn": "GTH-PBE-q12", "Y": "GTH-PBE-q3", "Zr": "GTH-PBE-q4", "Mo": "GTH-PBE-q6",
    "Rh": "GTH-PBE-q9", "Pd": "GTH-PBE-q10", "Ag": "GTH-PBE-q11", "Pt": "GTH-PBE-q10",
    "Au": "GTH-PBE-q11", "La": "GTH-PBE-q11",
}


#: Elements whose pseudopotential is generated at run time by QE's ``ld1.x`` from an input
#: in crystaljax/oracles/qe/ld1/ (:func:`crystaljax.oracles.qe.ld1.generate_ld1_pseudo`) instead of
#: converted from cp2k-data. Na: PAW with the 2s2p semicore shell in valence (9 electrons).
#: The valence-only GTH-PBE-q1 made rock-salt NaCl 4.5 % too dense; the semicore GTH q9
#: is not converged at 200 Ry (docs/PSEUDOPOTENTIALS.md, docs/VALIDATION.md).
LD1_INPUTS: dict[str, str] = {"Na": "Na.in"}

#: ``fast`` preset: elements that keep their :data:`GTH_VARIANTS` entry instead of the
#: ld1.x one, with that entry's measured cutoff (Ry; benchmarks/cutoff_convergence.json,
#: ``gth_alternatives``). Na GTH-PBE-q1 (1 electron, 30 Ry) instead of the PAW set
#: (9 electrons, 80 Ry): 2-4x cheaper per Na crystal on a 5-site cell, at screening
#: quality (NaCl relaxed density +4.5 % instead of -0.1 %; docs/PSEUDOPOTENTIALS.md).
FAST_GTH_FALLBACK: dict[str, float] = {"Na": 30}


def pseudo_variant(element: str, generated: Mapping[str, str] | None = None) -> str:
    """The pseudopotential of ``element``: ``ld1:<input>`` or a CP2K entry name.

    ``generated``: the preset's ld1.x elements (default: :data:`LD1_INPUTS`, the
    ``default`` preset's).
    """
    generated = LD1_INPUTS if generated is None else generated
    if element in generated:
        return f"ld1:{generated[element]}"
    return GTH_VARIANTS[element]


#: Measured per-element wavefunction cutoffs (Ry) of the ``default`` preset
#: (``ecutrho`` = 4 x ``ecutwfc``): ``scripts/converge_cutoffs.py`` wrote
#: benchmarks/cutoff_convergence.json, ``scripts/cutoff_table.py`` chose these
#: (rules and numbers in docs/PSEUDOPOTENTIALS.md).
DEFAULT_ECUTWFC: dict[str, float] = {
    "Li": 30, "Na": 80, "K": 30, "Rb": 30, "Cs": 30, "Be": 30, "Mg": 30, "Ca": 40, "Sr": 30,
    "Ba": 30, "H": 120, "B": 80, "C": 160, "N": 200, "O": 250, "F": 300, "Al": 40, "Si": 50,
    "P": 60, "S": 80, "Cl": 100, "Ga": 30, "Ge": 80, "As": 60, "Se": 80, "Br": 80, "In": 30,
    "Sn": 40, "Sb": 40, "Te": 50, "I": 50, "Bi": 40, "Ti": 80, "V": 100, "Cr": 120, "Mn": 160,
    "Fe": 160, "Co": 200, "Ni": 200, "Cu": 250, "Zn": 250, "Y": 30, "Zr": 40, "Mo": 80,
    "Rh": 160, "Pd": 80, "Ag": 100, "Pt": 80, "Au": 80, "La": 80,
}


#: ``fast`` preset: the default cutoffs capped at this value (Ry). Screening quality for
#: demos and quick runs: elements whose measured cutoff is higher (H, B, C, N, O, F, S,
#: Cl, Ti, V, Cr, Mn, Fe, Co, Ni, Cu, Zn, ...) are under-converged.
FAST_ECUTWFC_CAP = 60.0


@dataclasses.dataclass(frozen=True)
class Preset:
    """A complete, named configuration of the QE oracle's physics.

    Attributes:
      name: preset name.
      cutoffs: element -> (ecutwfc, ecutrho) in Ry; a crystal uses the maximum
        over its elements.
      settings: pw.x numerics (k-point density, thresholds, mixing).
      recipe: recipe knobs (vc-relax steps, volume scales, EOS).
      time_limit: wall-clock limit of one pw.x run (s).
      generated: element -> ld1.x input (crystaljax/oracles/qe/ld1/) for the elements
        whose pseudopotential ld1.x generates; the others use :data:`GTH_VARIANTS`.
    """

    name: str
    cutoffs: Mapping[str, tuple[float, float]]
    settings: PwSettings
    recipe: RecipeOptions
    time_limit: float
    generated: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _uniform(ecutwfc: float) -> dict[str, tuple[float, float]]:
    return {e: (ecutwfc, 4.0 * ecutwfc) for e in LARGE}


def _fast_cutoffs() -> dict[str, tuple[float, float]]:
    cutoffs = {**DEFAULT_ECUTWFC, **FAST_GTH_FALLBACK}
    return {e: (float(min(c, FAST_ECUTWFC_CAP)), 4.0 * min(c, FAST_ECUTWFC_CAP))
            for e, c in cutoffs.items()}


PRESETS: dict[str, Preset] = {
    "default": Preset(
        name="default",
        cutoffs={e: (float(c), 4.0 * c) for e, c in DEFAULT_ECUTWFC.items()},
        settings=PwSettings(kppa=1000.0, conv_thr_per_atom=1e-9),
        recipe=RecipeOptions(),
        time_limit=3600.0,
        generated=dict(LD1_INPUTS),
    ),
    "fast": Preset(
        name="fast",
        cutoffs=_fast_cutoffs(),
        settings=PwSettings(kppa=300.0, conv_thr_per_atom=1e-8, electron_maxstep=150),
        recipe=RecipeOptions(),
        time_limit=600.0,
        generated={e: f for e, f in LD1_INPUTS.items() if e not in FAST_GTH_FALLBACK},
    ),
    "test": Preset(
        name="test",
        cutoffs=_uniform(25.0),
        settings=PwSettings(kppa=60.0, conv_thr_per_atom=1e-7, electron_maxstep=100),
        recipe=RecipeOptions(),
        time_limit=120.0,
        generated=dict(LD1_INPUTS),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; raises ``KeyError`` listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown QE preset {name!r}; known: {sorted(PRESETS)}") from None
