"""A crystal at its E(V) minimum (``recipe.relax: volume`` / ``full``) with pw.x.

``volume`` finds the E(V) minimum under isotropic scaling (bounded lattice-constant range,
at most ``relax_max_runs`` scf runs), fits the equation of state on the points around it
and reports B0 (GPa), V0 (Å^3) and the density mass / V0 (g/cm3); ``full`` runs a vc-relax
of ``relax_nstep`` steps first and then ``volume`` from the relaxed cell (shape and
positions). How, by ``recipe.relax_search``:

* ``pressure`` (default): the zero of pw.x's pressure
  (:func:`~crystaljax.oracles.qe.equation_of_state.search_zero_pressure`; P = -dE/dV, so
  the same minimum at a converged basis) and a Birch-Murnaghan P(V) fit on the runs around
  it (:func:`~crystaljax.oracles.qe.equation_of_state.fit_equilibrium_pressures`), the runs
  with the stress at the pressure scan's SCF threshold: typically 3 runs;
* ``energy``: the E(V) minimum
  (:func:`~crystaljax.oracles.qe.equation_of_state.search_energy_minimum`) and an
  :mod:`ase.eos` E(V) fit: typically 5-8 runs.

A crystal without a minimum in the searched range gets
:data:`~crystaljax.oracles.base.Status.NO_MINIMUM` and no value.
"""

from __future__ import annotations

from pymatgen.core import Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.qe.attempts import (
    _Attempt,
    _failure,
    _parse_failure,
    _result,
    _run,
    _smeared,
    _spin_details,
    pressure_scan_settings,
)
from crystaljax.oracles.qe.cells import density_of, relaxed_structure, scaled
from crystaljax.oracles.qe.equation_of_state import (
    energy_at_volume,
    fit_bulk_modulus,
    fit_equilibrium_pressures,
    search_energy_minimum,
    search_zero_pressure,
)
from crystaljax.oracles.qe.family import PseudoFamily
from crystaljax.oracles.qe.inputs import PwSettings
from crystaljax.oracles.qe.parse import PwOutput
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.restarts import AttemptLog
from crystaljax.oracles.qe.runner import RunnerConfig
from crystaljax.oracles.qe.seeds import PRESSURE_SCAN_SEED_STEP, density_seeds


class _ScanFailed(Exception):
    """A pw.x run of the E(V) search failed (carries the attempt and its factor)."""

    def __init__(self, attempt: _Attempt, factor: float) -> None:
        super().__init__(attempt.reason)
        self.attempt, self.factor = attempt, factor


def _no_minimum(reason: str, log: AttemptLog, details: dict) -> OracleResult:
    return OracleResult(float("nan"), Status.NO_MINIMUM, reason, log.spent,
                        {**details, **log.extra()})


class _ScanRuns:
    """The scf runs of an equilibrium search around ``start``: ``scan(factor)`` runs the
    cell scaled by factor^3 in volume (label ``eos-<factor>``) and returns pw.x's parsed
    output; numerical remedies that worked carry over to the next run; a failed run raises
    :class:`_ScanFailed`. ``runs``: factor -> successful attempt. The attempts record their
    settings changes against ``reference`` (default ``settings``)."""

    def __init__(self, start: Structure, settings: PwSettings, family: PseudoFamily,
                 runner: RunnerConfig, options: RecipeOptions, log: AttemptLog, seeds,
                 loosest_conv_thr: float | None = None,
                 reference: PwSettings | None = None) -> None:
        self.start, self.reference, self.current = start, reference or settings, settings
        self.family, self.runner, self.options, self.log = family, runner, options, log
        self.seeds, self.loosest_conv_thr = seeds, loosest_conv_thr
        self.runs: dict[float, _Attempt] = {}

    def __call__(self, factor: float) -> PwOutput:
        cell = scaled(self.start, factor ** 3)
        attempt = _run(cell, self.current, self.family, self.runner, self.options, self.log,
                       f"eos-{factor:.4f}", reference=self.reference, seeds=self.seeds,
                       loosest_conv_thr=self.loosest_conv_thr)
        if attempt.status != Status.OK:
            raise _ScanFailed(attempt, factor)
        self.current = attempt.settings
        self.runs[factor] = attempt
        return attempt.parsed


def _at_minimum(structure: Structure, start: Structure, scan: _ScanRuns, b0: float,
                v0: float, e0: float) -> dict:
    """The details both searches report at the minimum V0 (Å^3) of ``start``'s scaling."""
    nearest = scan.runs[min(scan.runs, key=lambda f: abs(start.volume * f ** 3 - v0))]
    return dict(b0=b0, v0=v0, e0=e0, lattice_factor=(v0 / start.volume) ** (1.0 / 3.0),
                relaxed_density=density_of(structure) * structure.volume / v0,
                energy_per_atom=e0 / len(structure), b_method="eos",
                **_spin_details(structure, nearest.settings, nearest.parsed))


def _equilibrium(
    structure: Structure, family: PseudoFamily, settings: PwSettings, runner: RunnerConfig,
    options: RecipeOptions, log: AttemptLog,
) -> dict | OracleResult:
    """``relax: volume`` / ``full``: the E(V) minimum of ``structure`` and the equation of
    state fitted around it, as result details (``b0`` GPa, ``v0`` Å^3, ``e0`` eV,
    ``relaxed_density`` g/cm3, ...), or the failed result (a run failed: its status; no
    minimum: NO_MINIMUM)."""
    scf = _smeared(settings, options)
    start, current = structure, scf
    details: dict = {"relax": options.relax, "template_volume": structure.volume,
                     "template_density": density_of(structure)}
    if options.relax == "full":
        vc = scf.replace(calculation="vc-relax", nstep=options.relax_nstep)
        attempt = _run(structure, vc, family, runner, options, log, "relax-vc")
        if attempt.status != Status.OK:
            return _failure(attempt, log, **details)
        start = relaxed_structure(structure, attempt.parsed)
        current = attempt.settings.replace(calculation="scf", nstep=scf.nstep)
        details.update(vc_relax_volume=start.volume,
                       vc_relax_converged=attempt.parsed.relax_converged,
                       vc_relax_pressure_gpa=attempt.parsed.pressure,
                       vc_relax_energy=attempt.parsed.total_energy)
    if options.relax_search == "pressure":
        return _zero_pressure(structure, start, current, family, runner, options, log, details)
    with density_seeds(runner, options) as seeds:
        scan = _ScanRuns(start, current, family, runner, options, log, seeds, reference=scf)
        try:
            search = search_energy_minimum(lambda f: scan(f).total_energy, options.relax_step,
                                           options.relax_range, options.relax_max_runs)
        except _ScanFailed as exc:
            return _failure(exc.attempt, log, lattice_factor=exc.factor, **details)
    factors = sorted(search.points)
    details.update(start_volume=start.volume, lattice_factors=factors,
                   volumes=[start.volume * f ** 3 for f in factors],
                   energies=[search.points[f] for f in factors], eos=options.eos)
    if not search.found:
        return _no_minimum(search.reason, log, details)
    volumes = [start.volume * f ** 3 for f in search.window]
    energies = [search.points[f] for f in search.window]
    details.update(fit_volumes=volumes, fit_energies=energies)
    try:
        b0, v0, e0 = fit_bulk_modulus(volumes, energies, options.eos)
    except ValueError as exc:
        return _no_minimum(f"no E(V) minimum: {exc}", log, details)
    if not (min(volumes) <= v0 <= max(volumes)) or b0 <= 0:
        return _no_minimum(
            f"no E(V) minimum: the {options.eos} fit gives V0 = {v0:.4g} Å^3, B0 = "
            f"{b0:.4g} GPa outside the fitted volumes {min(volumes):.4g}-{max(volumes):.4g}",
            log, details)
    details.update(_at_minimum(structure, start, scan, b0, v0, e0))
    return details


class _NoPressure(Exception):
    """A run of the zero-pressure search printed no pressure."""

    def __init__(self, factor: float) -> None:
        super().__init__(f"pw.x printed no pressure (stress) at lattice-constant factor "
                         f"{factor:.4f} of the zero-pressure search")
        self.factor = factor


def _zero_pressure(
    structure: Structure, start: Structure, settings: PwSettings, family: PseudoFamily,
    runner: RunnerConfig, options: RecipeOptions, log: AttemptLog, details: dict,
) -> dict | OracleResult:
    """``relax_search: pressure``: the zero of P under isotropic scaling of ``start`` and a
    Birch-Murnaghan P(V) fit around it, as :func:`_equilibrium`'s details (``b0``, ``v0``,
    ``e0`` from the energies and pressures of the runs around V0, ``b_prime``, ...)."""
    def pressure(factor: float) -> float:
        parsed = scan(factor)
        if parsed.pressure is None:
            raise _NoPressure(factor)
        return parsed.pressure

    with density_seeds(runner, options, PRESSURE_SCAN_SEED_STEP) as seeds:
        scan = _ScanRuns(start, pressure_scan_settings(settings, options), family, runner,
                         options, log, seeds, loosest_conv_thr=settings.conv_thr_per_atom)
        try:
            search = search_zero_pressure(pressure, options.relax_step, options.relax_range,
                                          options.relax_max_runs)
        except _ScanFailed as exc:
            return _failure(exc.attempt, log, lattice_factor=exc.factor, **details)
        except _NoPressure as exc:
            return _parse_failure(str(exc), log, lattice_factor=exc.factor, **details)
    factors = sorted(search.points)
    volumes = [start.volume * f ** 3 for f in factors]
    energies = [scan.runs[f].parsed.total_energy for f in factors]
    pressures = [search.points[f] for f in factors]
    details.update(start_volume=start.volume, lattice_factors=factors, volumes=volumes,
                   energies=energies, pressures=pressures, eos="birchmurnaghan-pressure",
                   relax_search="pressure")
    if not search.found:
        return _no_minimum(search.reason, log, details)
    fit_volumes = [start.volume * f ** 3 for f in search.window]
    fit_pressures = [search.points[f] for f in search.window]
    details.update(fit_volumes=fit_volumes, fit_pressures=fit_pressures)
    try:
        b0, v0, b_prime, fitted = fit_equilibrium_pressures(fit_volumes, fit_pressures,
                                                            options.relax_step)
    except ValueError as exc:
        return _no_minimum(f"no E(V) minimum: {exc}", log, details)
    if not (min(fit_volumes) <= v0 <= max(fit_volumes)):
        return _no_minimum(
            f"no E(V) minimum: the pressure fit gives V0 = {v0:.4g} Å^3, B0 = {b0:.4g} GPa "
            f"outside the fitted volumes {min(fit_volumes):.4g}-{max(fit_volumes):.4g}",
            log, details)
    e0 = energy_at_volume(volumes, energies, pressures, v0)
    details.update(b_prime=b_prime, b_prime_fitted=fitted,
                   **_at_minimum(structure, start, scan, b0, v0, e0))
    return details


def _at_equilibrium(structure: Structure, family: PseudoFamily, settings: PwSettings,
                    runner: RunnerConfig, options: RecipeOptions, log, key: str
                    ) -> OracleResult:
    """The ``key`` value (``b0``, ``relaxed_density``) of :func:`_equilibrium`, or its
    failure (``NO_MINIMUM``, a failed run)."""
    found = _equilibrium(structure, family, settings, runner, options, log)
    return found if isinstance(found, OracleResult) else _result(found[key], log, found)
