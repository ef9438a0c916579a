"""Automatic restarts of failed pw.x runs (restarts.py, attempts._run).

A fake pw.x (a shell script) fails the first call(s) with the real pw.x error text and
then runs the real pw.x, so each restart path is checked end to end: the next input has
the remedy, the result is OK, and every attempt is recorded.
"""

from __future__ import annotations

import math
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from qe_helpers import diamond, requires_pw

from crystaljax.config import ConfigError
from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.cache import ResultCache
from crystaljax.oracles.qe.band_gap import band_gap
from crystaljax.oracles.qe.family import write_gth_family
from crystaljax.oracles.qe.inputs import PwSettings, number_of_bands
from crystaljax.oracles.qe.parse import PwOutput
from crystaljax.oracles.qe.presets import GTH_VARIANTS, get_preset
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.recipes import density
from crystaljax.oracles.qe.restarts import (
    AttemptLog,
    Failure,
    RestartPlan,
    classify_failure,
    failure_counts,
    lower_mixing,
    more_bands,
    remedies,
    use_smearing,
)
from crystaljax.oracles.qe.runner import RunnerConfig

PRESET = get_preset("test")
SETTINGS = PRESET.settings
SI = diamond(5.43)

_HEAD = ("\n     Program PWSCF v.6.7 starts on  1Jan2024 at  0: 0: 0 \n\n"
         "     number of atoms/cell      =            2\n")
_BAR = " " + "%" * 78 + "\n"


def _error(routine: str, message: str) -> str:
    return (f"{_HEAD}\n{_BAR}     Error in routine {routine} (1):\n     {message}\n{_BAR}\n"
            "     stopping ...\n")


#: (text, exit status) of real pw.x 6.7 failures
SCF = (_HEAD + "\n     convergence NOT achieved after 100 iterations: stopping\n", 0)
S_MATRIX = (_error("cdiaghg", "S matrix not positive definite"), 1)
CHOLESKY = (_error("cdiaghg", "problems computing cholesky"), 1)
BANDS = (_error("c_bands", "too many bands are not converged"), 1)
FEW_BANDS = (_error("setup", "too few bands"), 1)
OTHER = (_error("readpp", "file Si.gth not found"), 1)
SILENT = ("", 139)


def fake_pw(tmp_path: Path, *failures: tuple[str, int], then: str = "real",
            sleep: float = 0.0) -> str:
    """A pw.x whose first calls print ``failures`` (text, exit status; each after
    ``sleep`` s) and whose later calls run the real pw.x (``then="real"``), repeat the
    last failure (``"fail"``) or hang (``"hang"``). Call N saves its input as
    ``calls/N.in``."""
    calls = tmp_path / "calls"
    calls.mkdir()
    for i, (text, code) in enumerate(failures, start=1):
        (calls / f"fail-{i}.txt").write_text(text)
        (calls / f"exit-{i}").write_text(str(code))
    last = len(failures)
    later = {"real": f'exec {shutil.which("pw.x") or "pw.x"} "$@"',
             "fail": f'cat "$d/fail-{last}.txt"; exit $(cat "$d/exit-{last}")',
             "hang": "sleep 60"}[then]
    script = tmp_path / "pw.x"
    script.write_text(f"""#!/bin/bash
d={calls}
n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 ))
echo $n > "$d/count"
cp pw.in "$d/$n.in"
if [ -f "$d/fail-$n.txt" ]; then
  sleep {sleep}
  cat "$d/fail-$n.txt"
  exit $(cat "$d/exit-$n")
fi
{later}
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def _input(tmp_path: Path, n: int) -> str:
    return (tmp_path / "calls" / f"{n}.in").read_text()


def _calls(tmp_path: Path) -> int:
    return int((tmp_path / "calls" / "count").read_text())


def _value(text: str, key: str) -> str:
    return re.search(rf"^\s*{key} = (\S+)$", text, re.MULTILINE).group(1)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    return write_gth_family(tmp_path_factory.mktemp("pp"), PRESET.cutoffs, GTH_VARIANTS)


def _runner(tmp_path: Path, pw: str, time_limit: float = PRESET.time_limit) -> RunnerConfig:
    return RunnerConfig(pw_command=pw, time_limit=time_limit,
                        scratch_root=str(tmp_path / "scratch"))


# -- end to end with the fake pw.x ----------------------------------------------------------

@requires_pw
def test_scf_not_converged_restarts_with_lower_mixing_and_more_steps(family, tmp_path):
    pw = fake_pw(tmp_path, SCF)
    result = density(SI, family, SETTINGS, _runner(tmp_path, pw))
    assert result.status == Status.OK, result.reason
    assert 2.0 < result.value < 2.7
    first, second = _input(tmp_path, 1), _input(tmp_path, 2)
    assert _value(first, "mixing_beta") == "0.7" and _value(second, "mixing_beta") == "0.35"
    assert _value(first, "electron_maxstep") == "100"
    assert _value(second, "electron_maxstep") == "200"
    attempts = result.extra["attempts"]
    assert [a["failure"] for a in attempts] == ["scf_not_converged", "ok"]
    assert [a["remedy"] for a in attempts] == [None, "lower_mixing"]
    assert attempts[1]["changes"] == {"mixing_beta": 0.35, "electron_maxstep": 200}
    assert attempts[0]["status"] == "SCF_NOT_CONVERGED" and "NOT achieved" in attempts[0]["reason"]
    assert result.extra["restarts"] == 1
    assert result.seconds == pytest.approx(sum(a["seconds"] for a in attempts))


def _scf_stopped_at(accuracy: float) -> tuple[str, int]:
    """pw.x stopping unconverged after its SCF accuracy fell to ``accuracy`` (Ry)."""
    steps = "".join(f"     estimated scf accuracy    <       {a:.8f} Ry\n\n"
                    for a in (1e-2, 1e-4, 1e-6))
    return (_HEAD + steps + f"     estimated scf accuracy    <          {accuracy:.1E} Ry\n\n"
            "     convergence NOT achieved after 100 iterations: stopping\n", 0)


@requires_pw
def test_a_pressure_run_short_of_its_tightened_threshold_falls_back_to_the_presets(
        family, tmp_path):
    """The pressure scan tightens the SCF threshold 100-fold; a run that stops short of it
    after reaching the preset's threshold is run again at the preset's (not with the
    convergence remedies), and the result says so."""
    from crystaljax.oracles.qe.recipes import bulk_modulus

    loose = SETTINGS.conv_thr_per_atom * len(SI)  # Ry per cell
    # between the per-atom and the per-cell threshold: the test tells the units apart
    pw = fake_pw(tmp_path, _scf_stopped_at(0.75 * loose))
    result = bulk_modulus(SI, family, SETTINGS, _runner(tmp_path, pw), RecipeOptions())
    assert result.status == Status.OK, result.reason
    first, second, third = (_input(tmp_path, n) for n in (1, 2, 3))
    assert float(_value(first, "conv_thr")) == pytest.approx(0.01 * loose)
    assert float(_value(second, "conv_thr")) == pytest.approx(loose)
    assert _value(second, "mixing_beta") == _value(first, "mixing_beta")
    assert float(_value(third, "conv_thr")) == pytest.approx(loose)  # carried to 1.02
    attempts = result.extra["attempts"]
    assert [a["remedy"] for a in attempts] == [None, "preset_threshold", None]
    assert attempts[1]["changes"] == {"conv_thr_per_atom": SETTINGS.conv_thr_per_atom}
    assert "stopped short of" in result.extra["warnings"][0]


@requires_pw
def test_a_pressure_run_far_from_any_threshold_gets_the_convergence_remedies(family, tmp_path):
    from crystaljax.oracles.qe.recipes import bulk_modulus

    loose = SETTINGS.conv_thr_per_atom * len(SI)
    pw = fake_pw(tmp_path, _scf_stopped_at(1.5 * loose))  # just short of the preset's
    result = bulk_modulus(SI, family, SETTINGS, _runner(tmp_path, pw), RecipeOptions())
    assert result.status == Status.OK, result.reason
    assert float(_value(_input(tmp_path, 2), "conv_thr")) == pytest.approx(0.01 * loose)
    assert [a["remedy"] for a in result.extra["attempts"]][:2] == [None, "lower_mixing"]
    assert "warnings" not in result.extra


@requires_pw
def test_diagonalization_error_switches_to_cg(family, tmp_path):
    pw = fake_pw(tmp_path, S_MATRIX)
    result = band_gap(SI, family, SETTINGS, _runner(tmp_path, pw))
    assert result.status == Status.OK and result.value > 0.1, result.reason
    assert _value(_input(tmp_path, 1), "diagonalization") == "'david'"
    assert _value(_input(tmp_path, 2), "diagonalization") == "'cg'"
    attempts = result.extra["attempts"]
    # the smeared run restarts with cg; Si has a gap, so the fixed-occupation run follows,
    # from the reference settings (a remedy is not carried from one run to the next)
    assert [(a["run"], a["failure"], a["remedy"]) for a in attempts] == [
        ("gap-smear", "diagonalization", None), ("gap-smear", "ok", "diagonalization:cg"),
        ("gap-fixed", "ok", None)]
    assert attempts[1]["changes"] == {"diagonalization": "cg"}
    assert _value(_input(tmp_path, 3), "diagonalization") == "'david'"
    assert "S matrix not positive definite" in attempts[0]["reason"]
    assert "scratch" in attempts[0]  # the failed attempt's directory is kept


@requires_pw
def test_too_few_bands_gets_more_bands(family, tmp_path):
    pw = fake_pw(tmp_path, FEW_BANDS)
    result = band_gap(SI, family, SETTINGS, _runner(tmp_path, pw))
    assert result.status == Status.OK, result.reason
    assert _value(_input(tmp_path, 1), "nbnd") == "8"  # 4 occupied + 4
    assert _value(_input(tmp_path, 2), "nbnd") == "12"  # 4 occupied + 8
    attempts = result.extra["attempts"]
    # the smeared run (the first) gets more bands; the fixed-occupation run that follows
    # starts from the reference settings again
    assert [(a["run"], a["failure"], a["remedy"]) for a in attempts] == [
        ("gap-smear", "too_few_bands", None), ("gap-smear", "ok", "more_bands"),
        ("gap-fixed", "ok", None)]
    assert attempts[1]["changes"] == {"extra_bands": 8, "extra_bands_fraction": 0.4}
    assert _value(_input(tmp_path, 3), "nbnd") == "8"


@requires_pw
def test_silent_crash_is_rerun_once_unchanged(family, tmp_path):
    pw = fake_pw(tmp_path, SILENT)
    result = density(SI, family, SETTINGS, _runner(tmp_path, pw))
    assert result.status == Status.OK, result.reason
    assert _input(tmp_path, 1) == _input(tmp_path, 2)
    assert [(a["failure"], a["remedy"], a["changes"]) for a in result.extra["attempts"]] == [
        ("crash", None, {}), ("ok", "rerun", {})]


@requires_pw
def test_a_smearing_run_with_its_highest_band_occupied_gets_more_bands(family, tmp_path):
    """Real pw.x, no fake: bcc Mg (4 electrons) with 3 bands under smearing converges,
    but its third band is partly occupied, so the run had too few bands."""
    mg = Structure(Lattice.cubic(3.5), ["Mg", "Mg"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    few = SETTINGS.replace(extra_bands=1, extra_bands_fraction=0.0)
    runner = _runner(tmp_path, "pw.x")
    kept = density(mg, family, few, runner, RecipeOptions(max_restarts=0))
    assert kept.status == Status.OK  # usable: kept, with a warning, when no restart is left
    (attempt,) = kept.extra["attempts"]
    assert attempt["failure"] == "too_few_bands" and attempt["status"] == "OK"
    assert attempt["reason"].startswith("highest band occupied")
    assert kept.extra["warnings"] == [f"density: {attempt['reason']}, kept (restarts off)"]
    fixed = density(mg, family, few, runner)
    assert fixed.status == Status.OK and "warnings" not in fixed.extra
    assert [(a["failure"], a["remedy"]) for a in fixed.extra["attempts"]] == [
        ("too_few_bands", None), ("ok", "more_bands")]
    assert fixed.value == pytest.approx(kept.value, rel=0.02)


@requires_pw
def test_a_real_run_that_succeeds_records_one_attempt_and_round_trips_the_cache(
        family, tmp_path):
    result = band_gap(SI, family, SETTINGS, _runner(tmp_path, "pw.x"))
    assert result.status == Status.OK and result.value > 0.1, result.reason
    assert result.extra["restarts"] == 0
    smear, fixed = result.extra["attempts"]  # smearing first; Si has a gap: fixed occupations
    assert (smear["run"], fixed["run"]) == ("gap-smear", "gap-fixed")
    for attempt in (smear, fixed):
        assert attempt["attempt"] == 1 and attempt["remedy"] is None
        assert attempt["failure"] == "ok" and attempt["status"] == "OK"
        assert attempt["changes"] == {} and attempt["time_limit"] == PRESET.time_limit
    assert result.seconds == pytest.approx(smear["seconds"] + fixed["seconds"])
    assert result.extra["smeared_gap"] == pytest.approx(result.value, abs=0.1)
    cache = ResultCache(tmp_path / "cache.sqlite")
    key = cache.structure_key(SI)
    assert cache.put(key, "h", "band_gap", result, "Si2", PRESET.time_limit)
    again = cache.get(key, "h", PRESET.time_limit)
    assert again.extra["attempts"] == result.extra["attempts"] and again.extra["restarts"] == 0
    cache.close()


# -- giving up ------------------------------------------------------------------------------

def test_an_unfixable_diagonalization_error_stops_after_every_diagonalizer(family, tmp_path):
    pw = fake_pw(tmp_path, CHOLESKY, then="fail")
    result = density(SI, family, SETTINGS, _runner(tmp_path, pw))
    assert result.status == Status.CRASH and math.isnan(result.value)
    assert _calls(tmp_path) == 4
    assert [_value(_input(tmp_path, n), "diagonalization") for n in range(1, 5)] == [
        "'david'", "'cg'", "'ppcg'", "'paro'"]
    assert [a["remedy"] for a in result.extra["attempts"]] == [
        None, "diagonalization:cg", "diagonalization:ppcg", "diagonalization:paro"]
    assert {a["failure"] for a in result.extra["attempts"]} == {"diagonalization"}
    assert "cholesky" in result.reason and "after 4 attempts; no remedy left" in result.reason
    assert result.extra["gave_up"] == "no remedy left" and "output_tail" in result.extra


def test_an_error_without_a_remedy_is_not_restarted(family, tmp_path):
    pw = fake_pw(tmp_path, OTHER, then="fail")
    result = density(SI, family, SETTINGS, _runner(tmp_path, pw))
    assert result.status == Status.CRASH and _calls(tmp_path) == 1
    assert result.reason == "pw.x error in readpp: file Si.gth not found"
    assert result.extra["gave_up"] == "no remedy"
    assert [a["failure"] for a in result.extra["attempts"]] == ["pw_error"]


def test_max_restarts_bounds_the_attempts(family, tmp_path):
    pw = fake_pw(tmp_path, SCF, then="fail")
    options = RecipeOptions(max_restarts=1)
    result = density(SI, family, SETTINGS, _runner(tmp_path, pw), options)
    assert result.status == Status.SCF_NOT_CONVERGED and _calls(tmp_path) == 2
    assert result.extra["gave_up"] == "max_restarts = 1 reached"
    off = density(SI, family, SETTINGS, _runner(tmp_path, pw), RecipeOptions(max_restarts=0))
    assert off.status == Status.SCF_NOT_CONVERGED and len(off.extra["attempts"]) == 1
    assert off.extra["gave_up"] == "restarts off" and _calls(tmp_path) == 3


def test_band_gap_smearing_run_restarts_and_no_fixed_run_follows_its_failure(family,
                                                                              tmp_path):
    """Every run fails: the smearing run (the first) uses its restarts, then the crystal
    fails; no fixed-occupation run is made without a smeared answer."""
    pw = fake_pw(tmp_path, SCF, then="fail")
    result = band_gap(SI, family, SETTINGS, _runner(tmp_path, pw))
    assert result.status == Status.SCF_NOT_CONVERGED
    runs = [(a["run"], a["remedy"]) for a in result.extra["attempts"]]
    assert runs == [("gap-smear", None), ("gap-smear", "lower_mixing"),
                    ("gap-smear", "local_tf"), ("gap-smear", "lower_mixing")]
    assert _value(_input(tmp_path, 4), "mixing_beta") == "0.175"
    assert _value(_input(tmp_path, 4), "mixing_mode") == "'local-TF'"
    assert _value(_input(tmp_path, 4), "electron_maxstep") == "400"
    assert result.extra["gave_up"] == "no remedy left"


@requires_pw
def test_band_gap_keeps_the_smeared_gap_when_the_fixed_scf_times_out(family, tmp_path):
    """The fixed-occupation run of a crystal with a smeared gap hangs past its time limit:
    the smeared run's gap is kept (with the reason), not lost to a TIMEOUT."""
    pw = tmp_path / "pw.x"
    pw.write_text(f"""#!/bin/bash
if grep -q "occupations = 'fixed'" pw.in; then
  sleep 60
fi
exec {shutil.which("pw.x") or "pw.x"} "$@"
""")
    pw.chmod(pw.stat().st_mode | stat.S_IEXEC)
    result = band_gap(SI, family, SETTINGS, _runner(tmp_path, str(pw), time_limit=10.0))
    assert result.status == Status.OK, result.reason
    assert [(a["run"], a["failure"]) for a in result.extra["attempts"]] == [
        ("gap-smear", "ok"), ("gap-fixed", "time_limit")]
    assert result.extra["fixed_occupations"].startswith("TIMEOUT")
    assert result.value == pytest.approx(result.extra["smeared_gap"]) and result.value > 0.1


@requires_pw
def test_band_gap_keeps_the_smeared_gap_when_the_fixed_scf_fails_and_does_not_restart_it(
        family, tmp_path):
    """A fixed-occupation SCF that does not converge is the sign of a metal, not a run to
    restart: the smeared run's gap stands (here Si's, from a real smeared run)."""
    pw = tmp_path / "pw.x"
    pw.write_text(f"""#!/bin/bash
if grep -q "occupations = 'fixed'" pw.in; then
  printf '%s' {SCF[0]!r}
  exit 0
fi
exec {shutil.which("pw.x") or "pw.x"} "$@"
""")
    pw.chmod(pw.stat().st_mode | stat.S_IEXEC)
    result = band_gap(SI, family, SETTINGS, _runner(tmp_path, str(pw)))
    assert result.status == Status.OK, result.reason
    assert [(a["run"], a["failure"], a["remedy"]) for a in result.extra["attempts"]] == [
        ("gap-smear", "ok", None), ("gap-fixed", "scf_not_converged", None)]
    assert result.extra["fixed_occupations"].startswith("SCF_NOT_CONVERGED")
    assert result.extra["fallback"] == "smearing" and not result.extra["metal"]
    assert result.value == pytest.approx(result.extra["smeared_gap"]) and result.value > 0.1


def test_the_time_budget_stops_retries(family, tmp_path):
    # density: one run, so the crystal's budget is one time limit (2 s); the first
    # attempt uses 1.3 s of it, which leaves less than a second: no retry starts
    pw = fake_pw(tmp_path, SCF, then="fail", sleep=1.3)
    result = density(SI, family, SETTINGS, _runner(tmp_path, pw, time_limit=2.0))
    assert result.status == Status.TIMEOUT and _calls(tmp_path) == 1
    assert result.reason.startswith("time budget of the crystal spent")
    assert "convergence NOT achieved" in result.reason
    assert result.extra["budget_spent"] and result.extra["gave_up"] == "time budget spent"
    assert [a["failure"] for a in result.extra["attempts"]] == ["scf_not_converged"]


def test_a_retry_gets_only_what_is_left_of_the_budget(family, tmp_path):
    pw = fake_pw(tmp_path, SCF, then="hang", sleep=1.0)
    result = density(SI, family, SETTINGS, _runner(tmp_path, pw, time_limit=3.5))
    assert result.status == Status.TIMEOUT and result.extra["budget_spent"]
    first, second = result.extra["attempts"]
    assert first["time_limit"] == 3.5
    assert second["time_limit"] == pytest.approx(3.5 - first["seconds"])
    assert second["failure"] == "time_limit" and second["remedy"] == "lower_mixing"
    assert result.seconds < 3.5 + 1.0


# -- classes and remedies (no pw.x) ---------------------------------------------------------

@pytest.mark.parametrize("failure, status, text", [
    (Failure.SCF_NOT_CONVERGED, Status.SCF_NOT_CONVERGED, SCF[0]),
    (Failure.DIAGONALIZATION, Status.CRASH, S_MATRIX[0]),
    (Failure.DIAGONALIZATION, Status.CRASH, CHOLESKY[0]),
    (Failure.DIAGONALIZATION, Status.CRASH, _error("cegterg", "cannot allocate ...")),
    (Failure.DIAGONALIZATION, Status.CRASH, BANDS[0]),  # c_bands: the diagonaliser failed
    (Failure.TOO_FEW_BANDS, Status.CRASH, FEW_BANDS[0]),
    (Failure.TOO_FEW_BANDS, Status.CRASH, _error("efermig", "internal error, cannot bracket Ef")),
    (Failure.SCF_NOT_CONVERGED, Status.CRASH, _error("broyden", "factorization")),
    (Failure.CHARGE_WRONG, Status.CHARGE_WRONG,
     _error("electrons", "charge is wrong: smearing is needed")),
    (Failure.PW_ERROR, Status.CRASH, OTHER[0]),
    (Failure.CRASH, Status.CRASH, ""),
    (Failure.BAD_OUTPUT, Status.PARSE_ERROR, "\x00 garbage\n"),
    (Failure.TIME_LIMIT, Status.TIMEOUT, ""),
])
def test_failure_classes(failure, status, text):
    assert classify_failure(status, text) == (failure, "")


def test_a_smearing_run_with_its_highest_band_occupied_had_too_few_bands():
    occupations = np.array([[1.0, 0.5, 0.02], [1.0, 0.3, 0.0]])
    parsed = PwOutput(eigenvalues=np.zeros((2, 3)), occupations=occupations)
    smeared = PwSettings(occupations="smearing")
    failure, note = classify_failure(Status.OK, "", parsed, smeared)
    assert failure == Failure.TOO_FEW_BANDS and "highest band occupied (0.02)" in note
    parsed.occupations[0, 2] = 1e-4
    assert classify_failure(Status.OK, "", parsed, smeared) == (Failure.OK, "")
    assert classify_failure(Status.CRASH, "", not_started=True) == (Failure.NOT_STARTED, "")


def test_remedies_are_pure_and_ordered():
    base = PwSettings(mixing_beta=0.7, electron_maxstep=300)
    assert lower_mixing(base) == base.replace(mixing_beta=0.35, electron_maxstep=600)
    assert lower_mixing(base.replace(mixing_beta=0.05)) is None  # at the floor
    assert lower_mixing(base.replace(electron_maxstep=900)).electron_maxstep == 1000  # capped
    assert use_smearing(base, "mv", 0.02) == base.replace(
        occupations="smearing", smearing="mv", degauss=0.02)
    assert use_smearing(base.replace(occupations="smearing")) is None
    more = more_bands(base)
    for n_el in (2, 8, 40, 100, 301):  # nbnd always grows
        assert number_of_bands(n_el, more.extra_bands, more.extra_bands_fraction) > \
            number_of_bands(n_el, base.extra_bands, base.extra_bands_fraction)
    assert base == PwSettings(mixing_beta=0.7, electron_maxstep=300)  # unchanged
    names = [r.name for r in remedies(Failure.SCF_NOT_CONVERGED)]
    assert names == ["lower_mixing", "local_tf", "smearing", "lower_mixing"]
    assert [r.name for r in remedies(Failure.DIAGONALIZATION, ("paro", "cg"))] == [
        "diagonalization:paro", "diagonalization:cg"]
    assert remedies(Failure.TIME_LIMIT) == () and remedies(Failure.PW_ERROR) == ()


def test_plan_skips_remedies_that_change_nothing():
    plan = RestartPlan()
    cg = PwSettings(diagonalization="cg")
    remedy, new = plan.next(Failure.DIAGONALIZATION, cg)
    assert remedy.name == "diagonalization:ppcg" and new.diagonalization == "ppcg"
    remedy, new = plan.next(Failure.DIAGONALIZATION, new)
    assert remedy.name == "diagonalization:paro"
    assert plan.next(Failure.DIAGONALIZATION, new) is None
    smeared = PwSettings(occupations="smearing")  # the smearing remedy does not apply
    plan = RestartPlan()
    steps = []
    settings = smeared
    while (step := plan.next(Failure.SCF_NOT_CONVERGED, settings)) is not None:
        steps.append(step[0].name)
        settings = step[1]
    assert steps == ["lower_mixing", "local_tf", "lower_mixing"]
    rerun = RestartPlan()
    assert rerun.next(Failure.CRASH, cg)[1] == cg and rerun.next(Failure.CRASH, cg) is None


def test_recipe_options_of_the_restarts_are_checked():
    assert RecipeOptions().max_restarts == 3  # on by default
    with pytest.raises(ConfigError, match="max_restarts"):
        RecipeOptions(max_restarts=-1)
    with pytest.raises(ConfigError, match="diagonalizers"):
        RecipeOptions(diagonalizers=("cg", "lanczos"))
    with pytest.raises(ConfigError, match="diagonalization"):
        PwSettings(diagonalization="lanczos")


def test_attempts_aggregate_into_failure_counts():
    log = AttemptLog(budget=10.0)
    log.record("density", 1, Failure.SCF_NOT_CONVERGED, Status.SCF_NOT_CONVERGED, "x", 2.0,
               10.0, None, {})
    log.record("density", 2, Failure.OK, Status.OK, "", 3.0, 8.0, "lower_mixing",
               {"kgrid": (2, 2, 2)})
    assert log.spent == 5.0 and log.remaining == 5.0 and log.restarts == 1
    assert log.records[1]["changes"] == {"kgrid": [2, 2, 2]}  # JSON-ready
    results = [OracleResult(1.0, extra=log.extra()), OracleResult.failure(Status.INVALID_INPUT, "")]
    assert failure_counts(results) == {"scf_not_converged": 1, "ok": 1}
    assert failure_counts([r.extra for r in results]) == {"scf_not_converged": 1, "ok": 1}
