"""Property recipes: the pw.x runs that compute one property of one crystal.

Each recipe takes a pymatgen ``Structure`` and returns an
:class:`~crystaljax.oracles.base.OracleResult` (it never raises for a bad
crystal). Every successful result carries ``extra["energy_per_atom"]`` (eV/atom).
This module holds the registry (:data:`RECIPES`, :func:`get_recipe`) and the density and
bulk-modulus recipes; the rest lives in one module per job and is re-exported here:

* ``band_gap`` (eV): :mod:`~crystaljax.oracles.qe.band_gap` (fixed occupations, the
  smearing fallback for metals, both spin channels of a spin-polarised crystal).
* ``density`` (g/cm3): ``vc-relax`` with ``nstep`` BFGS steps (1 like the
  original CrystalGym) and Gaussian smearing 0.001 Ry; mass / volume of the
  last cell pw.x printed.
* ``bulk_modulus`` (GPa): ``scf`` runs with the template volume scaled (fractional
  coordinates and cell shape fixed), the equation of state fitted on the real cell volumes,
  so the value is right for every lattice (unlike the original, which fed V^(1/3) to an
  fcc/bcc-specific tool). ``recipe.eos_data: pressure`` (default): two runs at 0.98 and
  1.02 with the stress, a Birch-Murnaghan P(V) (:func:`bulk_modulus_from_pressures`);
  ``energy``: five runs at 0.98..1.02, E(V) fitted with :class:`ase.eos.EquationOfState`
  (Birch-Murnaghan by default; CrystalGym's recipe, :func:`bulk_modulus_from_scan`). When
  the fit has no equilibrium within ``eos_trust`` of the template, the value is the bulk
  modulus at the template volume (-V dP/dV or V d2E/dV2). The result's
  ``energy_per_atom`` is at the template volume (interpolated by the pressure's work
  between the two pressure runs).

``recipe.relax`` moves density and bulk modulus to the crystal's equilibrium volume
(:mod:`~crystaljax.oracles.qe.equilibrium`): ``none`` (default) is the above; ``volume``
searches the E(V) minimum under isotropic scaling (:func:`search_energy_minimum`) and
reports B0 and the density mass / V0; ``full`` runs a vc-relax first. A crystal whose E(V)
has no minimum in the searched range gets :data:`Status.NO_MINIMUM` and no value (the
reward is the floor, not the failure penalty).

Spin: a crystal with an element of :data:`~crystaljax.oracles.qe.inputs.MAGNETIC_ELEMENTS`
is computed spin-polarised with a ferromagnetic start (``settings.spin: auto``; ``off``
turns it off), and its result carries ``magnetization`` and ``absolute_magnetization``
(Bohr magnetons per cell: of the band-gap run, the last vc-relax step, the scan's
run nearest the template volume or the E(V) point nearest V0) and ``spin_polarized: true``.

Module map: :mod:`.recipe_options` (:class:`RecipeOptions`, runs per recipe),
:mod:`.attempts` (every pw.x run with its restarts and the crystal's time budget; results
carry ``extra["attempts"]`` and ``extra["restarts"]``), :mod:`.band_gap`,
:mod:`.equation_of_state` (E(V) and P(V) fits and the minimum search, no pw.x), :mod:`.equilibrium`
(the E(V) minimum with pw.x), :mod:`.cells` (scaled and relaxed cells, mass density).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from pymatgen.core import Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.qe.attempts import (
    _failure,
    _parse_failure,
    _result,
    _run,
    _smeared,
    _spin_details,
    pressure_scan_settings,
)
from crystaljax.oracles.qe.band_gap import (
    band_edges,
    band_gap,
    channel_band_edges,
    occupied_bands,
    spin_band_edges,
)
from crystaljax.oracles.qe.cells import (
    AMU_PER_A3_TO_G_PER_CM3,
    density_of,
    relaxed_structure,
    scaled,
)
from crystaljax.oracles.qe.equation_of_state import (
    REFINE_RUNS,
    MinimumSearch,
    bulk_modulus_from_pressures,
    bulk_modulus_from_scan,
    energy_at_volume,
    fit_bulk_modulus,
    local_bulk_modulus,
    search_energy_minimum,
)
from crystaljax.oracles.qe.equilibrium import _at_equilibrium
from crystaljax.oracles.qe.family import PseudoFamily
from crystaljax.oracles.qe.inputs import PwSettings
from crystaljax.oracles.qe.recipe_options import (
    RecipeOptions,
    Relax,
    _density_runs,
    _scan_runs,
    _two_runs,
)
from crystaljax.oracles.qe.restarts import AttemptLog
from crystaljax.oracles.qe.runner import RunnerConfig
from crystaljax.oracles.qe.seeds import PRESSURE_SCAN_SEED_STEP, density_seeds
from crystaljax.properties import get_property


def density(
    structure: Structure, family: PseudoFamily, settings: PwSettings, runner: RunnerConfig,
    options: RecipeOptions = RecipeOptions(),
) -> OracleResult:
    """Density (g/cm3): after ``options.nstep`` vc-relax steps (``relax: none``), or at the
    E(V) minimum (``relax: volume`` / ``full``); see the module docstring."""
    log = AttemptLog(_density_runs(options) * runner.time_limit)
    if options.relax != "none":
        return _at_equilibrium(structure, family, settings, runner, options, log,
                               "relaxed_density")
    relax = settings.replace(
        calculation="vc-relax", nstep=options.nstep, occupations="smearing",
        smearing="gaussian", degauss=options.density_degauss,
    )
    attempt = _run(structure, relax, family, runner, options, log, "density")
    if attempt.status != Status.OK:
        return _failure(attempt, log)
    cell = attempt.parsed.cell
    value = density_of(structure, cell)
    return _result(value, log, {
        "energy_per_atom": attempt.parsed.energy_per_atom,
        "volume": float(abs(np.linalg.det(cell))) if cell is not None else structure.volume,
        "template_density": density_of(structure), "pressure_gpa": attempt.parsed.pressure,
        "cell_updated": cell is not None,
        **_spin_details(structure, attempt.settings, attempt.parsed),
    })


def bulk_modulus(
    structure: Structure, family: PseudoFamily, settings: PwSettings, runner: RunnerConfig,
    options: RecipeOptions = RecipeOptions(),
) -> OracleResult:
    """Bulk modulus (GPa): from a pressure or E(V) scan around the template volume
    (``relax: none``; ``options.eos_data``), or B0 at the E(V) minimum (``relax: volume``
    / ``full``)."""
    log = AttemptLog(_scan_runs(options) * runner.time_limit)
    if options.relax != "none":
        return _at_equilibrium(structure, family, settings, runner, options, log, "b0")
    scf = _smeared(settings, options)
    pressure = options.eos_data == "pressure"
    if pressure:
        scf = pressure_scan_settings(scf, options)
    volumes, energies, pressures = [], [], []
    runs: list = []  # (volume, attempt), in scan order
    current = scf
    with density_seeds(runner, options,
                       PRESSURE_SCAN_SEED_STEP if pressure else None) as seeds:
        for scale in options.scan_scales:
            cell = scaled(structure, scale)
            attempt = _run(cell, current, family, runner, options, log, f"bulk-{scale:.3f}",
                           reference=scf, seeds=seeds,
                           loosest_conv_thr=settings.conv_thr_per_atom if pressure else None)
            if attempt.status != Status.OK:
                return _failure(attempt, log, volume_scale=scale)
            if pressure and attempt.parsed.pressure is None:
                return _parse_failure("pw.x printed no pressure (stress) for the bulk "
                                      "modulus's pressure scan", log, volume_scale=scale)
            current = attempt.settings  # numerical remedies that worked carry over
            volumes.append(cell.volume)
            energies.append(attempt.parsed.total_energy)
            pressures.append(attempt.parsed.pressure)
            runs.append((cell, attempt))
    template = structure.volume
    # the run nearest the template volume; of equally near ones the first run (rounded:
    # 0.98 and 1.02 are equally near)
    nearest_cell, nearest = min(runs, key=lambda r: round(abs(r[0].volume / template - 1), 9))
    spin = _spin_details(nearest_cell, nearest.settings, nearest.parsed)
    if pressure:
        value, details = bulk_modulus_from_pressures(volumes, pressures, template,
                                                     options.eos_trust)
        energy = energy_at_volume(volumes, energies, pressures, template)
        details.update(pressures=pressures)
    else:
        value, details = bulk_modulus_from_scan(volumes, energies, template, options.eos,
                                                options.eos_trust)
        at_template = abs(nearest_cell.volume / template - 1.0) < 1e-9
        energy = nearest.parsed.total_energy if at_template else None  # no run there
    return _result(value, log, {
        "energy_per_atom": energy / len(structure) if energy is not None else None,
        "volumes": volumes, "energies": energies, "eos_data": options.eos_data,
        **details, **spin,
    })


RecipeFn = Callable[[Structure, PseudoFamily, PwSettings, RunnerConfig, RecipeOptions],
                    OracleResult]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one property is computed.

    Attributes:
      name: the property's registry name (:mod:`crystaljax.properties`).
      compute: ``(structure, family, settings, runner, options) -> OracleResult``.
      runs: the pw.x runs one crystal takes under the given options when none fails (at
        most, for the E(V) minimum search of ``relax``); bounds a job's wall time: its runs
        and their restarts share runs x time limit.
    """

    name: str
    compute: RecipeFn
    runs: Callable[[RecipeOptions], int]

    @property
    def unit(self) -> str:
        """Unit of the value (the property registry's)."""
        return get_property(self.name).unit

    def __call__(self, structure: Structure, family: PseudoFamily, settings: PwSettings,
                 runner: RunnerConfig, options: RecipeOptions = RecipeOptions()) -> OracleResult:
        return self.compute(structure, family, settings, runner, options)


#: property name -> recipe
RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        Recipe("band_gap", band_gap, _two_runs),
        Recipe("density", density, _density_runs),
        Recipe("bulk_modulus", bulk_modulus, _scan_runs),
    )
}


def get_recipe(property_name: str) -> Recipe:
    """The recipe of ``property_name`` (ValueError listing the known ones otherwise)."""
    try:
        return RECIPES[property_name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown property {property_name!r}; expected one of {sorted(RECIPES)}"
        ) from None


__all__ = [
    "AMU_PER_A3_TO_G_PER_CM3", "RECIPES", "REFINE_RUNS", "MinimumSearch", "Recipe", "RecipeFn",
    "RecipeOptions", "Relax", "band_edges", "band_gap", "bulk_modulus", "bulk_modulus_from_scan",
    "channel_band_edges", "density", "density_of", "fit_bulk_modulus", "get_recipe",
    "local_bulk_modulus", "occupied_bands", "pressure_scan_settings", "relaxed_structure",
    "scaled", "search_energy_minimum",
    "spin_band_edges",
]
