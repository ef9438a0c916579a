"""Property recipes: the pw.x runs that compute one property of one crystal.

Each recipe takes a pymatgen ``Structure`` and returns an
:class:`~crystaljax.oracles.base.OracleResult` (it never raises for a bad
crystal). Every successful result carries ``extra["energy_per_atom"]`` (eV/atom).

* ``band_gap`` (eV): ``scf`` with fixed occupations; gap = lowest unoccupied -
  highest occupied Kohn-Sham level over the k-grid, clipped at 0. An odd
  electron count (spin off) is a metal: one smearing run, gap 0. If the
  fixed-occupation run fails (typical for metals) or its bands overlap, the
  crystal is recomputed with Marzari-Vanderbilt smearing and the gap read from
  band N/2 and N/2 + 1 (0 for a metal). A spin-polarised crystal (below) gets one
  smeared run, and the gap is taken over both spin channels: each channel's occupied
  bands are the ones below the Fermi level, the highest occupied level is the highest
  of either channel, the lowest unoccupied the lowest of either; a band crossing the
  Fermi level makes it a metal (:func:`spin_band_edges`).
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

``recipe.relax`` moves density and bulk modulus to the crystal's equilibrium volume:
``none`` (default) is the above; ``volume`` searches the E(V) minimum under isotropic
scaling (:func:`search_energy_minimum`: bounded lattice-constant range, at most
``relax_max_runs`` scf runs), fits the equation of state on the points around it and
reports B0 and the density mass / V0; ``full`` runs a vc-relax of ``relax_nstep`` steps
first and then ``volume`` from the relaxed cell (shape and positions). A crystal whose E(V)
has no minimum in the searched range gets :data:`Status.NO_MINIMUM` and no value (the
reward is the floor, not the failure penalty).

Spin: a crystal with an element of :data:`~crystaljax.oracles.qe.inputs.MAGNETIC_ELEMENTS`
is computed spin-polarised with a ferromagnetic start (``settings.spin: auto``; ``off``
turns it off), and its result carries ``magnetization`` and ``absolute_magnetization``
(Bohr magnetons per cell: of the band-gap run, the last vc-relax step, the scan's
template-volume run or the E(V) point nearest V0) and ``spin_polarized: true``.

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
    spin_polarized,
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

#: ``RecipeOptions.relax``: ``none`` (the CrystalGym-compatible scan at the template
#: volume), ``volume`` (E(V) minimum under isotropic scaling), ``full`` (vc-relax first)
Relax = typing.Literal["none", "volume", "full"]
#: Runs the E(V) minimum search keeps for the fit window once a minimum is bracketed.
REFINE_RUNS = 4


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
      relax: cell the density and bulk modulus are computed at: ``none`` (the template
        cell: the density's ``nstep`` vc-relax steps, the bulk modulus's scan around the
        template volume, as CrystalGym), ``volume`` (the E(V) minimum under isotropic
        scaling, :func:`search_energy_minimum`: B0 and V0 of the equation of state fitted
        around it, density at V0) or ``full`` (a vc-relax of ``relax_nstep`` steps first,
        then ``volume`` from the relaxed cell). A crystal without an E(V) minimum in the
        searched range gets status NO_MINIMUM and no value.
      relax_step: lattice-constant step of the minimum search (fraction; the first points
        are 1 - step, 1, 1 + step; steps towards falling energy double).
      relax_range: (smallest, largest) lattice-constant factor the search may reach.
      relax_max_runs: most scf runs of the search, the fit window included.
      relax_nstep: BFGS steps of the ``full`` vc-relax.
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
    relax: Relax = "none"
    relax_step: float = option(0.02, gt=0, le=0.1)
    relax_range: tuple[float, float] = option((0.8, 1.3), gt=0)
    relax_max_runs: int = option(12, ge=3 + REFINE_RUNS)
    relax_nstep: int = option(50, ge=1)

    def __post_init__(self) -> None:
        check(self, "recipe")
        low, high = self.relax_range
        if not low <= 1.0 - self.relax_step or not high >= 1.0 + self.relax_step:
            raise ConfigError(
                f"recipe.relax_range must hold 1 - relax_step and 1 + relax_step "
                f"(relax_step = {self.relax_step:g}), got {list(self.relax_range)}")
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


def occupied_bands(eigenvalues: np.ndarray, fermi: float) -> int | None:
    """Bands of one spin channel below the Fermi level (eV), when that number is the same
    at every k-point; ``None`` when a band crosses it (the channel is metallic).

    Args:
      eigenvalues: shape (n_k, n_bands), eV.
      fermi: the Fermi energy of the run (eV).
    """
    counts = (np.asarray(eigenvalues) < fermi).sum(axis=1)
    return int(counts[0]) if counts.size and (counts == counts[0]).all() else None


def channel_band_edges(channels: Sequence[np.ndarray], n_occupied: Sequence[int]
                       ) -> tuple[float, float]:
    """(highest occupied, lowest unoccupied) level (eV) over the spin channels: the
    highest occupied level of either channel and the lowest empty one of either.

    Args:
      channels: eigenvalues per channel, each of shape (n_k, n_bands), eV.
      n_occupied: occupied bands per channel.

    Raises:
      ValueError: no channel has an occupied band, or none has an empty one.
    """
    homos = [float(c[:, n - 1].max()) for c, n in zip(channels, n_occupied) if n > 0]
    lumos = [float(c[:, n].min()) for c, n in zip(channels, n_occupied) if n < c.shape[1]]
    if not homos or not lumos:
        raise ValueError("no occupied band or no empty band in the listing")
    return max(homos), min(lumos)


def spin_band_edges(channels: Sequence[np.ndarray], fermi: float
                    ) -> tuple[float, float] | None:
    """Band edges over both spin channels of a smeared run (see
    :func:`channel_band_edges`), each channel's occupied bands counted below the Fermi
    level; ``None`` for a metal (a band of a channel crosses the Fermi level)."""
    counts = [occupied_bands(c, fermi) for c in channels]
    if any(n is None for n in counts):
        return None
    return channel_band_edges(channels, counts)


def _spin_details(structure: Structure, settings: PwSettings | None, parsed: PwOutput) -> dict:
    """``spin_polarized``, ``magnetization`` and ``absolute_magnetization`` (Bohr magnetons
    per cell) of a spin-polarised run; nothing for a spin-degenerate one."""
    if settings is None or not spin_polarized(structure, settings):
        return {}
    return {"spin_polarized": True, "magnetization": parsed.magnetization,
            "absolute_magnetization": parsed.absolute_magnetization}


def _smeared(settings: PwSettings, options: RecipeOptions) -> PwSettings:
    """``settings`` for an scf with the metal smearing."""
    return settings.replace(calculation="scf", occupations="smearing",
                            smearing=options.metal_smearing, degauss=options.metal_degauss)


def _spin_band_gap(structure: Structure, family: PseudoFamily, settings: PwSettings,
                   runner: RunnerConfig, options: RecipeOptions, log: AttemptLog,
                   ) -> OracleResult:
    """The band gap of a spin-polarised crystal: one smeared scf, the gap taken over both
    spin channels (:func:`spin_band_edges`)."""
    attempt = _run(structure, _smeared(settings, options), family, runner, options, log,
                   "gap-spin")
    if attempt.status != Status.OK:
        return _failure(attempt, log)
    parsed = attempt.parsed
    details = {"energy_per_atom": parsed.energy_per_atom, "fermi": parsed.fermi,
               **_spin_details(structure, attempt.settings, parsed)}
    channels = parsed.channels()
    if parsed.fermi is None or not channels:
        return _parse_failure("no Fermi energy or eigenvalues in the spin-polarised pw.x "
                              "output", log, **details)
    try:
        edges = spin_band_edges(channels, parsed.fermi)
    except ValueError as exc:
        return _parse_failure(f"spin-polarised band edges: {exc}", log, **details)
    if edges is None:
        return _result(0.0, log, {**details, "metal": True})
    homo, lumo = edges
    return _result(max(lumo - homo, 0.0), log, {**details, "homo": homo, "lumo": lumo,
                                                "metal": lumo <= homo})


def band_gap(
    structure: Structure, family: PseudoFamily, settings: PwSettings, runner: RunnerConfig,
    options: RecipeOptions = RecipeOptions(),
) -> OracleResult:
    """Kohn-Sham band gap (eV), clipped at 0; see the module docstring."""
    n_el = valence_electrons(structure, family)
    log = AttemptLog(_two_runs(options) * runner.time_limit)
    if spin_polarized(structure, settings):
        return _spin_band_gap(structure, family, settings, runner, options, log)

    def smeared(base: PwSettings) -> PwSettings:
        return _smeared(base, options)

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


def _at_equilibrium(structure: Structure, family: PseudoFamily, settings: PwSettings,
                    runner: RunnerConfig, options: RecipeOptions, log, key: str
                    ) -> OracleResult:
    """The ``key`` value (``b0``, ``relaxed_density``) of :func:`_equilibrium`, or its
    failure (``NO_MINIMUM``, a failed run)."""
    found = _equilibrium(structure, family, settings, runner, options, log)
    return found if isinstance(found, OracleResult) else _result(found[key], log, found)


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
    """Bulk modulus (GPa): from an E(V) scan around the template volume (``relax:
    none``), or B0 at the E(V) minimum (``relax: volume`` / ``full``)."""
    log = AttemptLog(_scan_runs(options) * runner.time_limit)
    if options.relax != "none":
        return _at_equilibrium(structure, family, settings, runner, options, log, "b0")
    scf = _smeared(settings, options)
    volumes, energies = [], []
    energy_per_atom = None
    spin: dict = {}
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
            spin = _spin_details(cell, attempt.settings, attempt.parsed)
    value, details = bulk_modulus_from_scan(
        volumes, energies, structure.volume, options.eos, options.eos_trust
    )
    return _result(value, log, {
        "energy_per_atom": energy_per_atom, "volumes": volumes, "energies": energies,
        **details, **spin,
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


@dataclasses.dataclass
class MinimumSearch:
    """Outcome of :func:`search_energy_minimum`.

    Attributes:
      points: lattice-constant factor -> energy (eV), every point evaluated, in order.
      found: a minimum lies strictly inside the points (bracketed), and ``window`` holds
        the points to fit around it.
      best: the factor of the lowest energy.
      window: factors of the fit window around the minimum, ascending (empty unless found).
      reason: why no minimum was found ('' when found).
    """

    points: dict[float, float]
    found: bool
    best: float
    window: list[float]
    reason: str = ""


def search_energy_minimum(
    energy: Callable[[float], float], step: float = 0.02,
    bounds: tuple[float, float] = (0.8, 1.3), max_runs: int = 12,
) -> MinimumSearch:
    """Bracket and sample the minimum of E(s), s the factor on the lattice constants.

    1. Bracket: E at 1 - step, 1, 1 + step; while the lowest point is an end of the points,
       step beyond it (``step``, then doubling each time in that direction, clipped at
       ``bounds``; a step that reaches a bound is followed by one a ``step`` inside it).
       No minimum: the lowest point is a bound, or the next step would leave fewer than
       :data:`REFINE_RUNS` of ``max_runs``.
    2. Window: around the vertex of the parabola through the lowest point and its two
       neighbours (on the half-step grid, so points already run are reused), the five
       factors vertex + k x step / 2, k = -2..2, within ``bounds``; re-centred (up to
       twice, within ``max_runs``) when its lowest point is an end of it.

    Args:
      energy: s -> total energy (eV); an exception it raises propagates (a failed run).
      step: lattice-constant step (fraction).
      bounds: (smallest, largest) factor.
      max_runs: most calls of ``energy``.
    """
    low, high = bounds
    points: dict[float, float] = {}

    def grid(x: float) -> float:  # the half-step grid through 1, clipped to the bounds
        x = 1.0 + round((x - 1.0) / (step / 2)) * (step / 2)
        return round(min(max(x, low), high), 9)

    def at(x: float) -> float:
        x = round(min(max(x, low), high), 9)
        if x not in points:
            points[x] = float(energy(x))
        return x

    def lowest(keys) -> float:
        return min(keys, key=points.__getitem__)

    for x in (1.0 - step, 1.0, 1.0 + step):
        at(x)
    doubling = {-1: 0, 1: 0}
    while True:
        order = sorted(points)
        best = lowest(order)
        if best not in (order[0], order[-1]):
            break
        direction = -1 if best == order[0] else 1
        bound = low if direction < 0 else high
        inside = round(bound - direction * step, 9)
        if abs(best - bound) < 1e-9 and inside not in points \
                and len(points) + REFINE_RUNS < max_runs:
            at(inside)  # the step that reached the bound may have passed the minimum
            continue
        if abs(best - bound) < 1e-9:
            side = "smallest" if direction < 0 else "largest"
            return MinimumSearch(dict(points), False, best, [], (
                f"E(V) still falls at the {side} lattice-constant factor searched "
                f"({bound:g}): no minimum in {low:g}-{high:g}"))
        if len(points) + 1 + REFINE_RUNS > max_runs:
            return MinimumSearch(dict(points), False, best, [], (
                f"no E(V) minimum bracketed within {max_runs} runs (lattice-constant "
                f"factors {order[0]:g}-{order[-1]:g} searched)"))
        at(best + direction * step * 2 ** doubling[direction])
        doubling[direction] += 1
    order = sorted(points)
    i = order.index(best)
    xs = order[i - 1:i + 2]
    a, b, _ = np.polyfit(xs, [points[x] for x in xs], 2)
    centre = min(max(grid(float(-b / (2 * a)) if a > 0 else best), xs[0]), xs[2])
    for _ in range(3):
        window = sorted({grid(centre + k * step / 2) for k in range(-2, 3)})
        for x in window:
            if x not in points and len(points) < max_runs:
                at(x)
        window = [x for x in window if x in points]
        if not window:
            break
        best = lowest(window)
        if window[0] < best < window[-1] or len(points) >= max_runs:
            break
        centre = best
    # the lowest point of all is bracketed: fit at least it and its evaluated neighbours
    order = sorted(points)
    best = lowest(order)
    i = order.index(best)
    if i in (0, len(order) - 1):  # E(V) rose and fell again (more than one minimum)
        return MinimumSearch(dict(points), False, best, [], (
            f"no single E(V) minimum: the lowest energy is at the end ({best:g}) of the "
            f"lattice-constant factors searched ({order[0]:g}-{order[-1]:g})"))
    window = sorted(set(window) | {order[i - 1], best, order[i + 1]})
    return MinimumSearch(dict(points), True, best, window)


def relaxed_structure(structure: Structure, parsed: PwOutput) -> Structure:
    """``structure`` with the last cell (and fractional positions) a relaxation printed."""
    cell = parsed.cell if parsed.cell is not None else structure.lattice.matrix
    positions = parsed.positions
    if positions is None or positions.shape != (len(structure), 3):
        positions = structure.frac_coords
    return Structure(Lattice(cell), structure.species, positions)


class _ScanFailed(Exception):
    """A pw.x run of the E(V) search failed (carries the attempt and its factor)."""

    def __init__(self, attempt: _Attempt, factor: float) -> None:
        super().__init__(attempt.reason)
        self.attempt, self.factor = attempt, factor


def _no_minimum(reason: str, log: AttemptLog, details: dict) -> OracleResult:
    return OracleResult(float("nan"), Status.NO_MINIMUM, reason, log.spent,
                        {**details, **log.extra()})


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
    runs: dict[float, _Attempt] = {}

    def energy(factor: float) -> float:
        nonlocal current
        cell = scaled(start, factor ** 3)
        attempt = _run(cell, current, family, runner, options, log, f"eos-{factor:.4f}",
                       reference=scf)
        if attempt.status != Status.OK:
            raise _ScanFailed(attempt, factor)
        current = attempt.settings  # numerical remedies that worked carry over
        runs[factor] = attempt
        return attempt.parsed.total_energy

    try:
        search = search_energy_minimum(energy, options.relax_step, options.relax_range,
                                       options.relax_max_runs)
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
    nearest = min(runs, key=lambda f: abs(start.volume * f ** 3 - v0))
    details.update(
        b0=b0, v0=v0, e0=e0, lattice_factor=(v0 / start.volume) ** (1.0 / 3.0),
        relaxed_density=density_of(structure) * structure.volume / v0,
        energy_per_atom=e0 / len(structure), b_method="eos",
        **_spin_details(structure, runs[nearest].settings, runs[nearest].parsed))
    return details


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


def _two_runs(options: RecipeOptions) -> int:  # fixed occupations, then the smearing fallback
    return 2


def _relax_runs(options: RecipeOptions) -> int:  # the E(V) search (+ the vc-relax)
    return options.relax_max_runs + (options.relax == "full")


def _density_runs(options: RecipeOptions) -> int:
    return 1 if options.relax == "none" else _relax_runs(options)


def _scan_runs(options: RecipeOptions) -> int:
    return len(options.volume_scales) if options.relax == "none" else _relax_runs(options)


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
