"""Automatic restarts of failed pw.x runs: failure classes, remedies, the crystal's budget.

Every pw.x run of every recipe goes through this (``attempts._run``): a failed run is
put in a :class:`Failure` class (:func:`classify_failure`), and the next remedy of that
class that changes the input is applied and the run repeated, until it succeeds, the
class has no remedy left, ``max_restarts`` restarts were made, or the crystal's time
budget is spent. The remedies follow the error handlers of AiiDA's ``PwBaseWorkChain``
(aiida-quantumespresso), restarting from scratch each time:

* ``scf_not_converged``: ``lower_mixing`` (mixing_beta x 0.5, electron_maxstep x 2),
  ``local_tf`` (mixing_mode local-TF), ``smearing`` (fixed occupations only),
  ``lower_mixing`` again;
* ``diagonalization``: another diagonaliser, ``diagonalizers`` in order (cg, ppcg, paro
  by default), one not tried yet;
* ``too_few_bands``: ``more_bands`` twice (more empty bands, so nbnd grows), then the
  diagonalisers;
* ``charge_wrong``: ``smearing`` (fixed occupations only: pw.x says "smearing is
  needed");
* ``crash``, ``bad_output``: ``rerun``, the same input once (pw.x died without saying
  why, or left an unreadable output: perhaps the machine);
* ``pw_error``, ``time_limit``, ``not_started``: none (pw.x named another error, which the
  same input repeats; the run used its whole time limit; the program could not be
  started, a failure of the machine, not the crystal).

A pressure run whose SCF threshold was tightened stops short of it after reaching the
preset's: ``attempts._run`` runs it again at the preset's threshold (remedy
``preset_threshold``) before this module's remedies.

Remedies are cumulative (each applies on top of the ones before); one that leaves the
pw.x input unchanged, or gives an input already run, is skipped. Unlike AiiDA, the
diagonalisers start with ``cg``, the most robust (and slowest) one: a crystal gets few
restarts and a failed attempt costs a whole run. A successful run with smearing whose
highest band is occupied (above :data:`BAND_OCCUPATION_LIMIT`) is put in
``too_few_bands`` too (AiiDA's sanity check); if no remedy helps, its result is kept (with
a warning in the result).

Each attempt is recorded (:class:`AttemptLog`): run label, failure class, status, reason,
seconds, time limit, remedy and the settings changed; the recipes put the list in
``OracleResult.extra["attempts"]``, so failure rates per class are one pass over results.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Sequence

from crystaljax.oracles.base import Status
from crystaljax.oracles.qe.inputs import PwSettings
from crystaljax.oracles.qe.parse import PwOutput

#: No attempt starts with less of the crystal's time budget left than this (s).
MIN_ATTEMPT_SECONDS = 1.0
#: A successful smearing run whose highest band is occupied above this (0..1) had too few
#: bands.
BAND_OCCUPATION_LIMIT = 0.005
#: ``lower_mixing``: factor on mixing_beta, its floor, factor on electron_maxstep, its cap.
MIXING_FACTOR = 0.5
MIN_MIXING_BETA = 0.05
STEPS_FACTOR = 2
MAX_ELECTRON_STEPS = 1000
#: ``more_bands``: empty bands at least max(2 x, + 4) of ``extra_bands``, and a fraction of
#: the occupied count 0.2 larger.
MORE_BANDS_MIN = 4
MORE_BANDS_FRACTION = 0.2


class Failure(enum.Enum):
    """Failure class of one pw.x attempt (the value is what the attempt record holds)."""

    OK = "ok"
    SCF_NOT_CONVERGED = "scf_not_converged"
    DIAGONALIZATION = "diagonalization"
    TOO_FEW_BANDS = "too_few_bands"
    CHARGE_WRONG = "charge_wrong"
    TIME_LIMIT = "time_limit"
    NOT_STARTED = "not_started"
    PW_ERROR = "pw_error"  # pw.x stopped with another error message
    CRASH = "crash"  # non-zero exit without an error message
    BAD_OUTPUT = "bad_output"  # no normal end, no energy: unreadable output


_ERROR_ROUTINE = re.compile(r"Error in routine\s+(\S+)\s*\(")
_BANDS_MARKERS = ("too few bands", "cannot bracket ef")
# "too many bands are not converged" (c_bands) is the iterative diagonaliser failing, as in
# AiiDA's PwBaseWorkChain (handle_diagonalization_errors): another diagonaliser, not more bands
_DIAG_MARKERS = ("too many bands are not converged", "s matrix not positive definite",
                 "problems computing cholesky",
                 "cholesky failed", "eigenvectors failed to converge", "zhegvd failed",
                 "qr(x, 0) failed")
#: pw.x / LAXlib routines of the iterative and dense diagonalisation
_DIAG_ROUTINES = ("cdiaghg", "rdiaghg", "pcdiaghg", "prdiaghg", "cegterg", "regterg",
                  "ccgdiagg", "rcgdiagg", "ppcg_k", "ppcg_gamma", "paro_k", "paro_gamma",
                  "cdiagh", "rdiagh", "laxlib_cdiaghg", "laxlib_rdiaghg")
#: the charge mixing (Broyden factorisation): a convergence problem, remedied like one
_MIXING_ROUTINES = ("broyden", "mix_rho", "approx_screening2")


def highest_band_occupation(parsed: PwOutput) -> float | None:
    """Largest occupation (0..1) of the highest computed band over the k-points, or None
    when the output has no occupations (fixed occupations, or not printed)."""
    if parsed.occupations is None or parsed.occupations.size == 0:
        return None
    return float(parsed.occupations[:, -1].max())


def classify_failure(
    status: Status, output: str, parsed: PwOutput | None = None,
    settings: PwSettings | None = None, not_started: bool = False,
) -> tuple[Failure, str]:
    """The :class:`Failure` class of one attempt and a note ('' unless the class says more
    than the status's reason: a successful run whose highest band is occupied).

    Args:
      status: :func:`crystaljax.oracles.qe.parse.classify` of the run.
      output: pw.x's output text.
      parsed: its :func:`~crystaljax.oracles.qe.parse.parse_output` (for the band check).
      settings: the run's settings (the band check applies to smearing runs only).
      not_started: the program could not be started.
    """
    status = Status(status)
    if not_started:
        return Failure.NOT_STARTED, ""
    if status == Status.OK:
        if parsed is not None and settings is not None and settings.occupations == "smearing":
            top = highest_band_occupation(parsed)
            if top is not None and top > BAND_OCCUPATION_LIMIT:
                return Failure.TOO_FEW_BANDS, f"highest band occupied ({top:.3g})"
        return Failure.OK, ""
    if status == Status.TIMEOUT:
        return Failure.TIME_LIMIT, ""
    if status == Status.SCF_NOT_CONVERGED:
        return Failure.SCF_NOT_CONVERGED, ""
    if status == Status.CHARGE_WRONG:
        return Failure.CHARGE_WRONG, ""
    if status == Status.PARSE_ERROR:
        return Failure.BAD_OUTPUT, ""
    text = output.lower()
    routines = [m.lower() for m in _ERROR_ROUTINE.findall(output)]
    if any(marker in text for marker in _BANDS_MARKERS):
        return Failure.TOO_FEW_BANDS, ""
    if any(marker in text for marker in _DIAG_MARKERS) or any(
            r in _DIAG_ROUTINES for r in routines):
        return Failure.DIAGONALIZATION, ""
    if any(r in _MIXING_ROUTINES for r in routines):
        return Failure.SCF_NOT_CONVERGED, ""
    if routines:
        return Failure.PW_ERROR, ""
    return Failure.CRASH, ""


# -- remedies: pure functions PwSettings -> PwSettings (None: does not apply) -----------------

def lower_mixing(settings: PwSettings) -> PwSettings | None:
    """mixing_beta x :data:`MIXING_FACTOR` (floor :data:`MIN_MIXING_BETA`) and
    electron_maxstep x :data:`STEPS_FACTOR` (cap :data:`MAX_ELECTRON_STEPS`)."""
    if settings.mixing_beta <= MIN_MIXING_BETA:
        return None
    return settings.replace(
        mixing_beta=max(MIN_MIXING_BETA, round(settings.mixing_beta * MIXING_FACTOR, 6)),
        electron_maxstep=max(settings.electron_maxstep,
                             min(MAX_ELECTRON_STEPS, settings.electron_maxstep * STEPS_FACTOR)),
    )


def local_tf_mixing(settings: PwSettings) -> PwSettings | None:
    """Local Thomas-Fermi screening in the charge mixing (inhomogeneous systems)."""
    if settings.mixing_mode == "local-TF":
        return None
    return settings.replace(mixing_mode="local-TF")


def use_smearing(settings: PwSettings, smearing: str = "mv",
                 degauss: float = 0.01) -> PwSettings | None:
    """Smeared occupations (``smearing``, ``degauss`` Ry) for a fixed-occupation run."""
    if settings.occupations == "smearing":
        return None
    return settings.replace(occupations="smearing", smearing=smearing, degauss=degauss)


def more_bands(settings: PwSettings) -> PwSettings | None:
    """More empty bands: at least max(2 x, + :data:`MORE_BANDS_MIN`) of ``extra_bands`` and
    :data:`MORE_BANDS_FRACTION` more of the occupied count."""
    return settings.replace(
        extra_bands=max(2 * settings.extra_bands, settings.extra_bands + MORE_BANDS_MIN),
        extra_bands_fraction=round(settings.extra_bands_fraction + MORE_BANDS_FRACTION, 6),
    )


def use_diagonalizer(settings: PwSettings, name: str) -> PwSettings | None:
    """The iterative diagonaliser ``name`` (``david``, ``cg``, ``ppcg``, ``paro``)."""
    if settings.diagonalization == name:
        return None
    return settings.replace(diagonalization=name)


def same_input(settings: PwSettings) -> PwSettings:
    """The same settings (a rerun)."""
    return settings


@dataclasses.dataclass(frozen=True)
class Remedy:
    """One remedy: its name (recorded) and the settings change.

    Attributes:
      name: e.g. ``lower_mixing``, ``diagonalization:cg``.
      apply: ``PwSettings -> PwSettings``, or ``None`` when it does not apply.
      rerun: the remedy may repeat an input already run (a possibly transient failure).
    """

    name: str
    apply: Callable[[PwSettings], PwSettings | None]
    rerun: bool = False


def remedies(failure: Failure, diagonalizers: Sequence[str] = ("cg", "ppcg", "paro"),
             smearing: str = "mv", degauss: float = 0.01) -> tuple[Remedy, ...]:
    """The ordered remedies of a failure class (see the module docstring).

    Args:
      failure: the class.
      diagonalizers: diagonalisers to try, in order.
      smearing, degauss: the smearing of the ``smearing`` remedy (the recipes' metal
        smearing).
    """
    diag = tuple(Remedy(f"diagonalization:{d}", lambda s, d=d: use_diagonalizer(s, d))
                 for d in diagonalizers)
    smear = Remedy("smearing", lambda s: use_smearing(s, smearing, degauss))
    mixing = Remedy("lower_mixing", lower_mixing)
    bands = Remedy("more_bands", more_bands)
    rerun = Remedy("rerun", same_input, rerun=True)
    return {
        Failure.SCF_NOT_CONVERGED: (mixing, Remedy("local_tf", local_tf_mixing), smear, mixing),
        Failure.DIAGONALIZATION: diag,
        Failure.TOO_FEW_BANDS: (bands, bands, *diag),
        Failure.CHARGE_WRONG: (smear,),
        Failure.CRASH: (rerun,),
        Failure.BAD_OUTPUT: (rerun,),
    }.get(failure, ())


class RestartPlan:
    """The remedies one pw.x run has used so far (each class's chain is walked once).

    Args:
      diagonalizers, smearing, degauss: see :func:`remedies`.
    """

    def __init__(self, diagonalizers: Sequence[str] = ("cg", "ppcg", "paro"),
                 smearing: str = "mv", degauss: float = 0.01) -> None:
        self._args = (tuple(diagonalizers), smearing, degauss)
        self._position: dict[Failure, int] = {}
        self._tried: set[PwSettings] = set()
        self._reruns = 0

    def next(self, failure: Failure, settings: PwSettings,
             accept: Callable[[PwSettings], bool] | None = None,
             ) -> tuple[Remedy, PwSettings] | None:
        """The next remedy of ``failure``'s chain that applies to ``settings`` and gives
        settings not tried yet in this run (and that ``accept`` takes, e.g. an input text
        not run yet), with the new settings; ``None`` when the chain is exhausted. A rerun
        is given once per run."""
        self._tried.add(settings)
        chain = remedies(failure, *self._args)
        position = self._position.get(failure, 0)
        while position < len(chain):
            remedy = chain[position]
            position += 1
            new = remedy.apply(settings)
            if new is None:
                continue
            if remedy.rerun:
                if self._reruns:
                    continue
                self._reruns += 1
            elif new in self._tried or (accept is not None and not accept(new)):
                continue
            self._position[failure] = position
            return remedy, new
        self._position[failure] = position
        return None


def changed_settings(reference: PwSettings, settings: PwSettings) -> dict:
    """Fields of ``settings`` that differ from ``reference`` (name -> new value)."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
            if getattr(settings, f.name) != getattr(reference, f.name)}


@dataclasses.dataclass
class AttemptLog:
    """The pw.x attempts of one crystal and its time budget.

    Attributes:
      budget: seconds of pw.x run time the crystal may use, restarts included (the
        recipes: pw.x runs x the runner's time limit, the job's limit in the executor).
      records: one dict per attempt, in order: ``run`` (the recipe's run label),
        ``attempt`` (1, 2, ... within the run), ``failure`` (a :class:`Failure` value),
        ``status`` (a :class:`Status` name), ``reason``, ``seconds``, ``time_limit`` (of
        this attempt), ``remedy`` (applied before it; ``None`` for a run's first
        attempt), ``changes`` (settings that differ from the run's reference settings),
        ``scratch`` for a kept failed run directory, and ``start`` for an attempt that
        started from the converged density of an earlier run (that run's label;
        :mod:`~crystaljax.oracles.qe.seeds`).
      warnings: runs whose result was kept although suspect (a successful run whose
        highest band stayed occupied when no remedy was left).
    """

    budget: float
    records: list[dict] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def spent(self) -> float:
        """Seconds used by the attempts so far."""
        return float(sum(r["seconds"] for r in self.records))

    @property
    def remaining(self) -> float:
        return self.budget - self.spent

    @property
    def restarts(self) -> int:
        """Attempts that repeated a run."""
        return sum(1 for r in self.records if r["attempt"] > 1)

    def record(self, run: str, attempt: int, failure: Failure, status: Status, reason: str,
               seconds: float, time_limit: float, remedy: str | None, changes: dict,
               scratch: str | None = None, start: str | None = None) -> dict:
        entry = {"run": run, "attempt": attempt, "failure": failure.value,
                 "status": Status(status).name, "reason": reason, "seconds": float(seconds),
                 "time_limit": float(time_limit), "remedy": remedy,
                 "changes": {k: list(v) if isinstance(v, tuple) else v
                             for k, v in changes.items()}}
        if scratch is not None:
            entry["scratch"] = scratch
        if start is not None:
            entry["start"] = start
        self.records.append(entry)
        return entry

    def extra(self) -> dict:
        """What a result carries: ``attempts`` (the records), ``restarts`` and, when there
        are any, ``warnings``."""
        out = {"attempts": [dict(r) for r in self.records], "restarts": self.restarts}
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out


def failure_counts(results: Sequence) -> dict[str, int]:
    """Attempts per failure class over ``results`` (OracleResults or their ``extra``
    dicts; results without attempts, e.g. rejected inputs, count nothing)."""
    counts: dict[str, int] = {}
    for result in results:
        extra = result if isinstance(result, dict) else getattr(result, "extra", {})
        for record in extra.get("attempts", ()):
            counts[record["failure"]] = counts.get(record["failure"], 0) + 1
    return counts


__all__ = ["BAND_OCCUPATION_LIMIT", "MIN_ATTEMPT_SECONDS", "AttemptLog", "Failure", "Remedy",
           "RestartPlan", "changed_settings", "classify_failure", "failure_counts",
           "highest_band_occupation", "local_tf_mixing", "lower_mixing", "more_bands",
           "remedies", "same_input", "use_diagonalizer", "use_smearing"]
