"""Property recipes: the pw.x runs that compute one property of one crystal.

Each recipe takes a pymatgen ``Structure`` and returns an
:class:`~crystaljax.oracles.base.OracleResult` (it never raises for a bad
crystal). Every successful result carries ``extra["energy_per_atom"]`` (eV/atom).

* ``band_gap`` (eV): ``scf`` with fixed occupations; gap = lowest unoccupied -
  highest occupied Kohn-Sham level over the k-grid, clipped at 0. An odd
  electron count (spin off) is a metal: one smearing run, gap 0. If the
  fixed-occupation run fails (typical for metals) or its bands overlap, the
  crystal is recomputed with Marzari-Vanderbilt smearing and the gap read from
  band N/2 and N/2 + 1 (0 for a metal).
* ``density`` (g/cm3): ``vc-relax`` with ``nstep`` BFGS steps (1 like the
  original CrystalGym) and Gaussian smearing 0.001 Ry; mass / volume of the
  last cell pw.x printed.
* ``bulk_modulus`` (GPa): five ``scf`` runs with the template volume scaled
  by 0.98..1.02 (fractional coordinates fixed, cell shape fixed), E(V) fitted
  with :class:`ase.eos.EquationOfState` on the real cell volumes
  (Birch-Murnaghan by default), so the value is right for every lattice
  (unlike the original, which fed V^(1/3) to an fcc/bcc-specific tool). When
  E(V) has no minimum the fit is undetermined and the value is the bulk
  modulus at the template volume, V d2E/dV2 (see :func:`bulk_modulus_from_scan`).

Every pw.x run goes through :func:`_run`, which restarts a failed run with the remedies
of :mod:`crystaljax.oracles.qe.restarts` (lower mixing, another diagonaliser, more
bands, ...), up to ``max_restarts`` per run. A crystal's runs and restarts share one time
budget, ``Recipe.runs`` x the runner's time limit (the job's limit in the executor): no
attempt starts when less than a second of it is left, and the result is then a TIMEOUT
saying so. Numerical remedies that made a run succeed carry over to the crystal's next
run (the bulk-modulus scan, the band gap's smearing run). Every result carries
``extra["attempts"]`` (one record per pw.x attempt: failure class, remedy, settings
changed, seconds; see :class:`~crystaljax.oracles.qe.restarts.AttemptLog`) and
``extra["restarts"]``.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from ase.eos import EquationOfState, eos_names
from ase.units import GPa
from pymatgen.core import Lattice, Structure

from crystaljax.config import ConfigError, check, option
from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.qe.family import PseudoFamily
from crystaljax.oracles.qe.inputs import (
    Diagonalization,
    PwSettings,
    valence_electrons,
    write_pw_input,
)
from crystaljax.oracles.qe.parse import PwOutput, classify, output_tail, parse_output
from crystaljax.oracles.qe.restarts import (
    MIN_ATTEMPT_SECONDS,
    AttemptLog,
    Failure,
    RestartPlan,
    changed_settings,
    classify_failure,
)
from crystaljax.oracles.qe.runner import RunnerConfig, run_pw
from crystaljax.properties import get_property

AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


@dataclasses.dataclass(frozen=True)
class RecipeOptions:
    """Recipe-specific knobs (the pw.x numerics live in :class:`PwSettings`).

    Attributes:
      nstep: BFGS steps of the density ``vc-relax``.
      volume_scales: volume factors of the bulk-modulus E(V) scan.
      eos: :mod:`ase.eos` equation of state name.
      eos_trust: largest fractional distance of the fitted V0 from the template
        volume for which the fit's B0 is used (else the local B at the template).
      metal_smearing: smearing kind for metals / fallback runs.
      metal_degauss: its width (Ry).
      density_degauss: Gaussian smearing width of the density vc-relax (Ry).
      max_restarts: most restarts of one pw.x run after a failure (0: no restarts);
        see :mod:`crystaljax.oracles.qe.restarts`.
      diagonalizers: the diagonalisers a diagonalisation error tries, in order.
    """

    nstep: int = option(1, ge=1)
    volume_scales: tuple[float, ...] = option((0.98, 0.99, 1.0, 1.01, 1.02), gt=0)
    eos: str = option("birchmurnaghan", choices=eos_names)
    eos_trust: float = option(0.2, gt=0)
    metal_smearing: str = "mv"
    metal_degauss: float = option(0.01, gt=0)
    density_degauss: float = option(0.001, gt=0)
    max_restarts: int = option(3, ge=0)
    diagonalizers: tuple[str, ...] = ("cg", "ppcg", "paro")

    def __post_init__(self) -> None:
        check(self, "recipe")
        known = typing.get_args(Diagonalization)
        unknown = [d for d in self.diagonalizers if d not in known]
        if unknown:
            raise ConfigError(f"recipe.diagonalizers: unknown {unknown}; pw.x has {list(known)}")
        if len(set(self.volume_scales)) < 3:
            raise ConfigError("recipe.volume_scales needs at least 3 different volume factors, "
                              f"got {list(self.volume_scales)}")


@dataclasses.dataclass
class _Attempt:
    status: Status
    reason: str
    parsed: PwOutput
    seconds: float
    details: dict
    settings: PwSettings | None = None
    failure: Failure = Failure.OK
    note: str = ""


def _attempt(
    structure: Structure, settings: PwSettings, family: PseudoFamily, runner: RunnerConfig,
    label: str, input_text: str | None = None,
) -> _Attempt:
    """One pw.x run; the run directory is removed on success, kept (and named) on failure
    (the newest ``runner.keep_failed_runs`` of the scratch root). ``details["not_started"]``
    marks a program that could not be started (a machine failure, never cached)."""
    if input_text is None:
        input_text = write_pw_input(structure, settings, family)
    run = run_pw(input_text, runner, label=label)
    parsed = parse_output(run.output)
    status, reason = classify(run, parsed)
    failure, note = classify_failure(status, run.output, parsed, settings,
                                     not_started=bool(run.launch_error))
    details: dict = {}
    if status == Status.OK:  # (a run whose highest band is occupied too: usable, suspect)
        if runner.keep_on_success:
            details["scratch"] = str(run.workdir)
        else:
            run.cleanup()
    else:
        kept = run.keep_failed(runner.keep_failed_runs)
        if kept is not None:
            details["scratch"] = str(kept)
        details["output_tail"] = output_tail(run.output)
        if run.launch_error:
            details["not_started"] = True
        if status == Status.TIMEOUT:
            details["time_limit"] = runner.time_limit
    return _Attempt(status, reason, parsed, run.seconds, details, settings, failure, note)


def _budget_spent(log: AttemptLog, last: _Attempt | None, settings: PwSettings) -> _Attempt:
    """The outcome of a run stopped because the crystal's time budget is spent."""
    reason = (f"time budget of the crystal spent ({log.spent:.0f} of {log.budget:.0f} s, "
              f"{len(log.records)} pw.x attempts)")
    details = dict(last.details) if last is not None else {}
    if last is not None and last.reason:
        reason += f"; last attempt: {last.reason}"
    details.update(budget_spent=True, gave_up="time budget spent")
    parsed = last.parsed if last is not None else PwOutput()
    return _Attempt(Status.TIMEOUT, reason, parsed, 0.0, details, settings,
                    Failure.TIME_LIMIT)


def _run(
    structure: Structure, settings: PwSettings, family: PseudoFamily, runner: RunnerConfig,
    options: RecipeOptions, log: AttemptLog, label: str, reference: PwSettings | None = None,
    handled: frozenset[Failure] = frozenset(),
) -> _Attempt:
    """One pw.x run of a recipe with automatic restarts (:mod:`.restarts`).

    Each attempt is limited to the runner's time limit or what is left of the crystal's
    budget (``log``), whichever is less, and recorded in ``log`` with the settings changed
    relative to ``reference`` (default ``settings``). Failures in ``handled`` are returned
    at once (the recipe has its own fallback for them). The result is the successful
    attempt, or the last failed one with ``details["gave_up"]`` saying why the restarts
    stopped (a usable attempt whose highest band was occupied is kept over later failures).
    """
    reference = reference or settings
    plan = RestartPlan(options.diagonalizers, options.metal_smearing, options.metal_degauss)
    seen: set[str] = set()
    current, remedy = settings, None
    last: _Attempt | None = None
    usable: _Attempt | None = None
    for number in range(1, options.max_restarts + 2):
        if log.remaining < MIN_ATTEMPT_SECONDS:
            return usable or _budget_spent(log, last, current)
        limit = min(runner.time_limit, log.remaining)
        text = write_pw_input(structure, current, family)
        seen.add(text)
        limited = runner if limit >= runner.time_limit else runner.replace(time_limit=limit)
        last = _attempt(structure, current, family, limited, label, input_text=text)
        log.record(label, number, last.failure, last.status, last.reason or last.note,
                   last.seconds, limit, remedy, changed_settings(reference, current),
                   last.details.get("scratch") if last.status != Status.OK else None)
        if last.failure == Failure.OK:
            return last
        if last.status == Status.OK:
            usable = last
        if last.status == Status.TIMEOUT and limit < runner.time_limit:
            return usable or _budget_spent(log, last, current)
        if last.failure in handled:
            return last
        step = plan.next(last.failure, current,
                         lambda s: write_pw_input(structure, s, family) not in seen)
        if step is None:
            why = "no remedy left" if number > 1 else "no remedy"
            break
        if number > options.max_restarts:
            why = (f"max_restarts = {options.max_restarts} reached" if options.max_restarts
                   else "restarts off")
            break
        remedy, current = step[0].name, step[1]
    if usable is not None:
        usable.details["gave_up"] = why
        log.warnings.append(f"{label}: {usable.note}, kept ({why})")
        return usable
    last.details["gave_up"] = why
    if number > 1:
        last.reason = f"{last.reason} (after {number} attempts; {why})"
    return last


def _result(value: float, log: AttemptLog, details: dict) -> OracleResult:
    return OracleResult(value, Status.OK, "", log.spent, {**details, **log.extra()})


def _failure(attempt: _Attempt, log: AttemptLog, **extra) -> OracleResult:
    return OracleResult(float("nan"), attempt.status, attempt.reason, log.spent,
                        {**attempt.details, **extra, **log.extra()})


def _parse_failure(reason: str, log: AttemptLog, **extra) -> OracleResult:
    return OracleResult(float("nan"), Status.PARSE_ERROR, reason, log.spent,
                        {**extra, **log.extra()})


def band_edges(eigenvalues: np.ndarray, n_electrons: float) -> tuple[float, float]:
    """(highest occupied, lowest unoccupied) level (eV) for a spin-degenerate insulator.

    Args:
      eigenvalues: shape (n_k, n_bands), eV.
      n_electrons: valence electrons (even).
    """
    n_occ = int(round(n_electrons)) // 2
    return float(eigenvalues[:, n_occ - 1].max()), float(eigenvalues[:, n_occ].min())


def _gap_from(parsed: PwOutput, n_electrons: float) -> float | None:
    if parsed.eigenvalues is not None and parsed.eigenvalues.shape[1] > n_electrons // 2:
        homo, lumo = band_edges(parsed.eigenvalues, n_electrons)
        return lumo - homo
    if parsed.homo is not None and parsed.lumo is not None:
        return parsed.lumo - parsed.homo
    return None


def band_gap(
    structure: Structure, family: PseudoFamily, settings: PwSettings, runner: RunnerConfig,
    options: RecipeOptions = RecipeOptions(),
) -> OracleResult:
    """Kohn-Sham band gap (eV), clipped at 0; see the module docstring."""
    n_el = valence_electrons(structure, family)
    log = AttemptLog(_two_runs(options) * runner.time_limit)

    def smeared(base: PwSettings) -> PwSettings:
        return base.replace(calculation="scf", occupations="smearing",
                            smearing=options.metal_smearing, degauss=options.metal_degauss)

    extra: dict = {}
    if int(round(n_el)) % 2 == 1:
        attempt = _run(structure, smeared(settings), family, runner, options, log, "gap-smear")
        if attempt.status != Status.OK:
            return _failure(attempt, log)
        return _result(0.0, log, {
            "energy_per_atom": attempt.parsed.energy_per_atom, "metal": True,
            "odd_electrons": True, "fermi": attempt.parsed.fermi,
        })
    fixed = settings.replace(calculation="scf", occupations="fixed")
    # An SCF that does not converge with fixed occupations (or a wrong charge) is the sign
    # of a metal: the smearing run below is the remedy, not a restart of this one.
    attempt = _run(structure, fixed, family, runner, options, log, "gap-fixed",
                   handled=frozenset({Failure.SCF_NOT_CONVERGED, Failure.CHARGE_WRONG}))
    base = settings
    if attempt.status == Status.OK:
        gap = _gap_from(attempt.parsed, n_el)
        if gap is None:
            return _parse_failure("no band edges in pw.x output", log)
        if gap > 0:
            homo, lumo = (band_edges(attempt.parsed.eigenvalues, n_el)
                          if attempt.parsed.eigenvalues is not None
                          else (attempt.parsed.homo, attempt.parsed.lumo))
            return _result(gap, log, {
                "energy_per_atom": attempt.parsed.energy_per_atom, "homo": homo, "lumo": lumo,
                "metal": False,
            })
        extra["fixed_occupations"] = "bands overlap"
        base = attempt.settings  # numerical remedies that worked carry over
    elif attempt.status == Status.TIMEOUT or attempt.details.get("not_started"):
        return _failure(attempt, log)
    else:
        extra["fixed_occupations"] = f"{attempt.status.name}: {attempt.reason}"
    attempt = _run(structure, smeared(base), family, runner, options, log, "gap-smear",
                   reference=smeared(settings))
    if attempt.status != Status.OK:
        return _failure(attempt, log, **extra)
    gap = _gap_from(attempt.parsed, n_el)
    if gap is None:
        return _parse_failure("no eigenvalues in pw.x output", log, **extra)
    return _result(max(gap, 0.0), log, {
        **extra, "energy_per_atom": attempt.parsed.energy_per_atom, "fallback": "smearing",
        "metal": gap <= 0, "fermi": attempt.parsed.fermi,
    })


def density_of(structure: Structure, cell: np.ndarray | None = None) -> float:
    """Mass density (g/cm3) of ``structure``'s atoms in ``cell`` (Å rows; default its own)."""
    volume = abs(np.linalg.det(cell)) if cell is not None else structure.volume
    mass = float(structure.composition.weight)
    return float(mass / volume * AMU_PER_A3_TO_G_PER_CM3)


def density(
    structure: Structure, family: PseudoFamily, settings: PwSettings, runner: RunnerConfig,
    options: RecipeOptions = RecipeOptions(),
) -> OracleResult:
    """Density (g/cm3) after ``options.nstep`` vc-relax steps; see the module docstring."""
    relax = settings.replace(
        calculation="vc-relax", nstep=options.nstep, occupations="smearing",
        smearing="gaussian", degauss=options.density_degauss,
    )
    log = AttemptLog(_one_run(options) * runner.time_limit)
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
    })


def scaled(structure: Structure, volume_scale: float) -> Structure:
    """Copy of ``structure`` with its volume times ``volume_scale`` (shape and fractions kept)."""
    factor = volume_scale ** (1.0 / 3.0)
    lattice = Lattice(structure.lattice.matrix * factor)
    return Structure(lattice, structure.species, structure.frac_coords)


def fit_bulk_modulus(
    volumes: Sequence[float], energies: Sequence[float], eos: str = "birchmurnaghan"
) -> tuple[float, float, float]:
    """Equation-of-state fit on real volumes.

    Args:
      volumes: cell volumes (Å^3).
      energies: total energies (eV).
      eos: :mod:`ase.eos` name (``birchmurnaghan``, ``murnaghan``, ``vinet``, ...).

    Returns:
      (B0 in GPa, V0 in Å^3, E0 in eV).

    Raises:
      ValueError: the fit failed or gave non-finite numbers.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            v0, e0, b0 = EquationOfState(list(volumes), list(energies), eos=eos).fit()
        except Exception as exc:  # scipy's curve_fit raises RuntimeError / others
            raise ValueError(f"equation-of-state fit failed: {exc}") from exc
    b_gpa = float(b0) / GPa
    if not np.isfinite([b_gpa, v0, e0]).all():
        raise ValueError("equation-of-state fit gave non-finite parameters")
    return b_gpa, float(v0), float(e0)


def local_bulk_modulus(volumes: Sequence[float], energies: Sequence[float], v: float) -> float:
    """B = V d2E/dV2 (GPa) at volume ``v`` from a quadratic fit of E(V)."""
    c2 = np.polyfit(np.asarray(volumes), np.asarray(energies), 2)[0]
    return float(2.0 * c2 * v / GPa)


def bulk_modulus(
    structure: Structure, family: PseudoFamily, settings: PwSettings, runner: RunnerConfig,
    options: RecipeOptions = RecipeOptions(),
) -> OracleResult:
    """Bulk modulus (GPa) from an E(V) scan around the template volume."""
    scf = settings.replace(
        calculation="scf", occupations="smearing", smearing=options.metal_smearing,
        degauss=options.metal_degauss,
    )
    volumes, energies = [], []
    energy_per_atom = None
    log = AttemptLog(_scan_runs(options) * runner.time_limit)
    current = scf
    for scale in options.volume_scales:
        cell = scaled(structure, scale)
        attempt = _run(cell, current, family, runner, options, log, f"bulk-{scale:.3f}",
                       reference=scf)
        if attempt.status != Status.OK:
            return _failure(attempt, log, volume_scale=scale)
        current = attempt.settings  # numerical remedies that worked carry over
        volumes.append(cell.volume)
        energies.append(attempt.parsed.total_energy)
        if abs(scale - 1.0) < 1e-9:
            energy_per_atom = attempt.parsed.energy_per_atom
    value, details = bulk_modulus_from_scan(
        volumes, energies, structure.volume, options.eos, options.eos_trust
    )
    return _result(value, log, {
        "energy_per_atom": energy_per_atom, "volumes": volumes, "energies": energies,
        **details,
    })


def bulk_modulus_from_scan(
    volumes: Sequence[float], energies: Sequence[float], template_volume: float,
    eos: str = "birchmurnaghan", trust: float = 0.2,
) -> tuple[float, dict]:
    """Bulk modulus (GPa) from an E(V) scan, and how it was obtained.

    The value is B0 of the equation-of-state fit (``b_method = "eos"``) when the
    fit succeeds and its equilibrium volume V0 lies within ``trust`` (fraction)
    of the template volume. Otherwise E(V) has no usable minimum (typical for a
    crystal far from equilibrium, e.g. under high pressure at the template
    volume) and B0 would be an extrapolation far outside the +-2 % scan; the
    value is then the bulk modulus at the template volume, V d2E/dV2 from a
    quadratic fit (``b_method = "local"``, with the reason in ``eos_error``).
    ``b_local`` is reported in both cases, and ``mechanically_unstable`` is true
    when it is not positive: E(V) is concave at the template volume, so the
    crystal would expand or collapse there (a negative returned value means this).
    """
    b_local = local_bulk_modulus(volumes, energies, template_volume)
    details: dict = {"b_local": b_local, "eos": eos, "mechanically_unstable": b_local <= 0.0}
    try:
        b_gpa, v0, e0 = fit_bulk_modulus(volumes, energies, eos)
    except ValueError as exc:
        details.update(b_method="local", eos_error=str(exc))
        return b_local, details
    details.update(v0=v0, e0=e0, v0_in_range=bool(min(volumes) <= v0 <= max(volumes)))
    if abs(v0 / template_volume - 1.0) > trust:
        details.update(b_method="local", eos_error=(
            f"fitted V0 = {v0:.4g} Å^3 is more than {trust:.0%} from the template volume"))
        return b_local, details
    details["b_method"] = "eos"
    return b_gpa, details


RecipeFn = Callable[[Structure, PseudoFamily, PwSettings, RunnerConfig, RecipeOptions],
                    OracleResult]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one property is computed.

    Attributes:
      name: the property's registry name (:mod:`crystaljax.properties`).
      compute: ``(structure, family, settings, runner, options) -> OracleResult``.
      runs: the pw.x runs one crystal takes under the given options when none fails
        (bounds a job's wall time: its runs and their restarts share runs x time limit).
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


def _two_runs(options: RecipeOptions) -> int:  # fixed occupations, then the smearing fallback
    return 2


def _one_run(options: RecipeOptions) -> int:
    return 1


def _scan_runs(options: RecipeOptions) -> int:
    return len(options.volume_scales)


#: property name -> recipe
RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        Recipe("band_gap", band_gap, _two_runs),
        Recipe("density", density, _one_run),
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
