"""One pw.x run of a recipe: its attempts, restarts and time budget, and the results.

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

Also the pieces the recipes share: :func:`_result` / :func:`_failure` /
:func:`_parse_failure` (the :class:`~crystaljax.oracles.base.OracleResult` of a crystal),
:func:`_smeared` (settings of a smeared scf) and :func:`_spin_details` (magnetisation, Bohr
magnetons per cell, of a spin-polarised run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from pymatgen.core import Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.qe.family import PseudoFamily
from crystaljax.oracles.qe.inputs import PwSettings, spin_polarized, write_pw_input
from crystaljax.oracles.qe.parse import PwOutput, classify, output_tail, parse_output
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.restarts import (
    MIN_ATTEMPT_SECONDS,
    AttemptLog,
    Failure,
    Remedy,
    RestartPlan,
    changed_settings,
    classify_failure,
)
from crystaljax.oracles.qe.runner import RunnerConfig, run_pw
from crystaljax.oracles.qe.seeds import DENSITY_READ, DensitySeeds


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
    read_density: bool = False  # pw.x started from a density file (recipe.reuse_density)


def _attempt(
    structure: Structure, settings: PwSettings, family: PseudoFamily, runner: RunnerConfig,
    label: str, input_text: str | None = None, prepare: Callable[[Path], None] | None = None,
    on_success: Callable[[Path, PwOutput], object] | None = None,
) -> _Attempt:
    """One pw.x run; the run directory is removed on success, kept (and named) on failure
    (the newest ``runner.keep_failed_runs`` of the scratch root). ``details["not_started"]``
    marks a program that could not be started (a machine failure, never cached).
    ``prepare(workdir)`` runs before pw.x, ``on_success(workdir, parsed)`` after a
    successful run,
    before its directory is removed."""
    if input_text is None:
        input_text = write_pw_input(structure, settings, family)
    run = run_pw(input_text, runner, label=label, prepare=prepare)
    parsed = parse_output(run.output)
    status, reason = classify(run, parsed)
    failure, note = classify_failure(status, run.output, parsed, settings,
                                     not_started=bool(run.launch_error))
    details: dict = {}
    if status == Status.OK:  # (a run whose highest band is occupied too: usable, suspect)
        if on_success is not None:
            on_success(run.workdir, parsed)
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
    return _Attempt(status, reason, parsed, run.seconds, details, settings, failure, note,
                    read_density=DENSITY_READ in run.output)


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
    handled: frozenset[Failure] = frozenset(), seeds: DensitySeeds | None = None,
    loosest_conv_thr: float | None = None,
) -> _Attempt:
    """One pw.x run of a recipe with automatic restarts (:mod:`.restarts`).

    Each attempt is limited to the runner's time limit or what is left of the crystal's
    budget (``log``), whichever is less, and recorded in ``log`` with the settings changed
    relative to ``reference`` (default ``settings``). Failures in ``handled`` are returned
    at once (the recipe has its own fallback for them). The result is the successful
    attempt, or the last failed one with ``details["gave_up"]`` saying why the restarts
    stopped (a usable attempt whose highest band was occupied is kept over later failures).

    ``seeds``: the crystal's converged densities (:mod:`.seeds`). The first attempt starts
    from the one of the nearest cell volume (its record's ``start`` names that run when
    pw.x read it), later attempts from atomic densities; a successful attempt's density is
    kept there. A seeded attempt that fails (other than by its time limit or a program that
    did not start) is repeated once with the same settings from atomic densities (remedy
    ``cold_start``; the seed may be what went wrong) before the failure's own remedies.
    A spin-polarised run is seeded only from a magnetic neighbour
    (:meth:`~crystaljax.oracles.qe.seeds.DensitySeed.seeds`); else it starts from the
    ferromagnetic guess.

    ``loosest_conv_thr``: the SCF threshold per atom a run whose threshold was tightened
    (a pressure run: :func:`pressure_scan_settings`) may fall back to. When such a run
    stops unconverged with its last estimated SCF accuracy within this threshold, the next
    attempt takes it (remedy ``preset_threshold``; a warning in the result says so)
    instead of the convergence remedies or a cold start: the tightened threshold lies
    below what the run can reach.
    """
    reference = reference or settings
    plan = RestartPlan(options.diagonalizers, options.metal_smearing, options.metal_degauss)
    magnetic = spin_polarized(structure, settings)
    seed = seeds.nearest(structure.volume, magnetic) if seeds is not None else None

    def keep(workdir: Path, parsed: PwOutput) -> None:
        moment = (parsed.absolute_magnetization or 0.0) if magnetic else None
        seeds.keep(label, structure.volume, workdir, moment)
    seen: set[str] = set()
    current, remedy = settings, None
    last: _Attempt | None = None
    usable: _Attempt | None = None
    for number in range(1, options.max_restarts + 2):
        if log.remaining < MIN_ATTEMPT_SECONDS:
            return usable or _budget_spent(log, last, current)
        limit = min(runner.time_limit, log.remaining)
        start = seed if seed is not None and seed.available() else None
        seed = None  # later attempts start from atomic densities
        text = write_pw_input(structure, current, family, starting_density=start is not None)
        seen.add(text)
        limited = runner if limit >= runner.time_limit else runner.replace(time_limit=limit)
        last = _attempt(structure, current, family, limited, label, input_text=text,
                        prepare=start.copy_into if start is not None else None,
                        on_success=keep if seeds is not None else None)
        log.record(label, number, last.failure, last.status, last.reason or last.note,
                   last.seconds, limit, remedy, changed_settings(reference, current),
                   last.details.get("scratch") if last.status != Status.OK else None,
                   start=start.label if start is not None and last.read_density else None)
        if last.failure == Failure.OK:
            return last
        if last.status == Status.OK:
            usable = last
        if last.status == Status.TIMEOUT and limit < runner.time_limit:
            return usable or _budget_spent(log, last, current)
        if last.failure in handled:
            return last
        looser = _looser_threshold(last, current, loosest_conv_thr, len(structure))
        if looser is None and start is not None and last.status != Status.OK \
                and number <= options.max_restarts \
                and last.failure not in (Failure.TIME_LIMIT, Failure.NOT_STARTED):
            remedy = "cold_start"
            continue
        step = looser or plan.next(last.failure, current,
                                   lambda s: write_pw_input(structure, s, family) not in seen)
        if step is None:
            why = "no remedy left" if number > 1 else "no remedy"
            break
        if number > options.max_restarts:
            why = (f"max_restarts = {options.max_restarts} reached" if options.max_restarts
                   else "restarts off")
            break
        remedy, current = step[0].name, step[1]
        if remedy == PRESET_THRESHOLD:
            log.warnings.append(
                f"{label}: the SCF stopped short of {settings.conv_thr_per_atom:g} Ry per "
                f"atom (last estimated accuracy "
                f"{last.parsed.scf_accuracy / len(structure):g} Ry per atom); run again, and "
                f"the crystal's later runs, at {current.conv_thr_per_atom:g} Ry per atom")
    if usable is not None:
        usable.details["gave_up"] = why
        log.warnings.append(f"{label}: {usable.note}, kept ({why})")
        return usable
    last.details["gave_up"] = why
    if number > 1:
        last.reason = f"{last.reason} (after {number} attempts; {why})"
    return last


#: the name of :func:`_looser_threshold`'s remedy (recorded as the attempt's ``remedy``)
PRESET_THRESHOLD = "preset_threshold"


def _looser_threshold(attempt: _Attempt, settings: PwSettings, loosest: float | None,
                      n_atoms: int) -> tuple[Remedy, PwSettings] | None:
    """The remedy that puts ``settings`` at the SCF threshold ``loosest`` (per atom), and
    the new settings, when ``attempt`` stopped unconverged below a tighter one with its
    last estimated accuracy within ``loosest``; else None."""
    if loosest is None or attempt.failure != Failure.SCF_NOT_CONVERGED \
            or settings.conv_thr_per_atom >= loosest:
        return None
    accuracy = attempt.parsed.scf_accuracy if attempt.parsed is not None else None
    if accuracy is None or accuracy > loosest * n_atoms:
        return None
    remedy = Remedy(PRESET_THRESHOLD, lambda s: s.replace(conv_thr_per_atom=loosest))
    return remedy, remedy.apply(settings)


def _result(value: float, log: AttemptLog, details: dict) -> OracleResult:
    return OracleResult(value, Status.OK, "", log.spent, {**details, **log.extra()})


def _failure(attempt: _Attempt, log: AttemptLog, **extra) -> OracleResult:
    return OracleResult(float("nan"), attempt.status, attempt.reason, log.spent,
                        {**attempt.details, **extra, **log.extra()})


def _parse_failure(reason: str, log: AttemptLog, **extra) -> OracleResult:
    return OracleResult(float("nan"), Status.PARSE_ERROR, reason, log.spent,
                        {**extra, **log.extra()})


def _spin_details(structure: Structure, settings: PwSettings | None, parsed: PwOutput) -> dict:
    """``spin_polarized``, ``magnetization`` and ``absolute_magnetization`` (Bohr magnetons
    per cell) of a spin-polarised run; nothing for a spin-degenerate one."""
    if settings is None or not spin_polarized(structure, settings):
        return {}
    return {"spin_polarized": True, "magnetization": parsed.magnetization,
            "absolute_magnetization": parsed.absolute_magnetization}


def _smeared(settings: PwSettings, options: RecipeOptions) -> PwSettings:
    """``settings`` for an scf with the metal smearing, without the stress (the pressure
    scan of the bulk modulus turns it on: :func:`pressure_scan_settings`)."""
    return settings.replace(calculation="scf", occupations="smearing", stress=False,
                            smearing=options.metal_smearing, degauss=options.metal_degauss)


def pressure_scan_settings(scf: PwSettings, options: RecipeOptions) -> PwSettings:
    """The scf settings of a run whose pressure is read (the bulk modulus's pressure scan,
    the zero-pressure search of ``relax``): with the stress, and the SCF threshold times
    ``options.pressure_conv_factor`` (the stress is first order in the density's error)."""
    return scf.replace(stress=True, conv_thr_per_atom=scf.conv_thr_per_atom
                       * options.pressure_conv_factor)
