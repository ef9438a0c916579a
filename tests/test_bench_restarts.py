"""The restarts benchmark (crystaljax/benchmarks/restarts.py): real pw.x behind a fake that
fails every first attempt, so each crystal restarts with the lower mixing and fails when
computed again without restarts; and the tables of a results file."""

from __future__ import annotations

import json
import shutil
import stat

import pytest
from qe_helpers import requires_pw

from crystaljax.benchmarks import restarts

#: a 2-site task, so the real pw.x runs take a second or two (its property is not used)
TINY_TASK = {"template": "rocksalt", "vocab": ["Li", "Na", "F", "Cl"], "property": "density",
             "target": 1.12}


def _scf_fails_at_default_mixing(tmp_path) -> str:
    """A pw.x that says "convergence NOT achieved" for an input with the default
    mixing_beta (0.7) and runs the real pw.x for any other."""
    script = tmp_path / "pw.x"
    script.write_text(f"""#!/bin/bash
if grep -Eq '^ *mixing_beta = 0.7$' pw.in; then
  echo "     Program PWSCF v.6.7 starts on fake"
  echo "     convergence NOT achieved after 100 iterations: stopping"
  exit 0
fi
exec {shutil.which("pw.x") or "pw.x"} "$@"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@requires_pw
def test_measure_records_restarts_and_the_same_crystals_without(tmp_path):
    out = tmp_path / "r.json"
    options = {"pw_command": _scf_fails_at_default_mixing(tmp_path),
               "cache_path": str(tmp_path / "cache.sqlite"),
               "scratch_root": str(tmp_path / "scratch")}
    data = restarts.measure(str(out), TINY_TASK, num=3, batch=2, preset="test", workers=1,
                            progress=False, oracle_options=options)
    assert [b["crystals"] for b in data["batches"]] == [2, 1]
    assert all(0.0 < b["utilisation"] <= 1.0 and b["busy_core_s"] > 0 for b in data["batches"])
    for crystal in data["crystals"]:
        assert crystal["status"] == "OK" and crystal["restarts"] >= 1, crystal
        assert crystal["attempts"][0]["failure"] == "scf_not_converged"
        # the smearing run (the band-gap recipe's first) restarts with the lower mixing;
        # the fixed-occupation run of a crystal with a gap fails and is not restarted
        assert [(a["run"], a["remedy"], a["status"]) for a in crystal["attempts"][:2]] == [
            ("gap-smear", None, "SCF_NOT_CONVERGED"), ("gap-smear", "lower_mixing", "OK")]
        assert crystal["without_restarts"]["status"] == "SCF_NOT_CONVERGED"
        assert crystal["without_restarts"]["failure"] == "scf_not_converged"
    assert restarts.before_after(data) == {"ok": (0, 3), "scf_not_converged": (3, 0)}
    assert restarts.rescues(data) == {"lower_mixing": 3}
    assert json.loads(out.read_text()) == data
    # a re-run with the same header continues the file: nothing left to compute
    again = restarts.measure(str(out), TINY_TASK, num=3, batch=2, preset="test", workers=1,
                             progress=False, oracle_options=options)
    assert again["crystals"] == data["crystals"] and len(again["batches"]) == 2


def _crystal(status, failure, restarts_=0, before=None, remedies=()):
    attempts = [{"run": "scf", "attempt": 1, "failure": failure if not remedies else
                 "scf_not_converged", "status": status, "remedy": None, "seconds": 1.0}]
    attempts += [{"run": "scf", "attempt": i + 2, "failure": "ok", "status": "OK",
                  "remedy": r, "seconds": 1.0} for i, r in enumerate(remedies)]
    row = {"formula": "NaCl", "status": status, "failure": failure, "restarts": restarts_,
           "attempts": attempts}
    if before is not None:
        row["without_restarts"] = {"status": before[0], "failure": before[1]}
    return row


def test_tables_count_failures_before_and_after_and_write_one_section(tmp_path):
    data = {"task": "t", "num": 4, "batch": 2, "preset": "fast", "seed": 0, "workers": 2,
            "cores_per_job": 1,
            "batches": [{"crystals": 2, "wall_s": 10.0, "busy_core_s": 15.0,
                         "utilisation": 0.75, "cache_hits": 0}] * 2,
            "crystals": [
                _crystal("OK", "ok"),
                _crystal("OK", "ok", 2, ("SCF_NOT_CONVERGED", "scf_not_converged"),
                         ("lower_mixing", "local_tf")),
                _crystal("SCF_NOT_CONVERGED", "scf_not_converged", 3,
                         ("SCF_NOT_CONVERGED", "scf_not_converged")),
                _crystal("TIMEOUT", "time_limit")]}
    assert restarts.before_after(data) == {"ok": (1, 2), "scf_not_converged": (2, 1),
                                           "time_limit": (1, 1)}
    assert restarts.rescues(data) == {"local_tf": 1}
    text = restarts.table(data)
    assert "| scf_not_converged | 2 (50%) | 1 (25%) |" in text
    assert "| **failed** | **3 (75%)** | **2 (50%)** |" in text
    assert "| all | 4 | 20 | 30 | 0.750 | 0 |" in text
    source, md = tmp_path / "r.json", tmp_path / "B.md"
    source.write_text(json.dumps(data))
    md.write_text("# B\n\nkept\n")
    restarts.write_section(str(source), str(md))
    restarts.write_section(str(source), str(md))
    text = md.read_text()
    assert text.count("<!-- qe-restarts:start -->") == 1 and "kept" in text


def test_gap_recipe_table_gives_ratios_and_the_largest_gap_difference():
    from crystaljax.benchmarks import gap_recipe

    def variant(wall, dft, gaps, runs):
        return {"wall_s": wall, "dft_seconds": dft, "crystals": [
            {"formula": "X", "status": "OK" if g is not None else "SCF_NOT_CONVERGED",
             "gap_eV": g, "seconds": 1.0, "runs": r} for g, r in zip(gaps, runs)]}

    data = {"variants": {
        "fixed first (baseline)": variant(30.0, 60.0, [0.0, 1.25, None],
                                          [["gap-fixed", "gap-smear"], ["gap-fixed"], ["a"]]),
        "smearing first": variant(10.0, 20.0, [0.0, 1.2, 0.0],
                                  [["gap-smear"], ["gap-smear", "gap-fixed"], ["gap-smear"]])}}
    text = gap_recipe.table(data)
    assert "| fixed first (baseline) | 30.0 | 60.0 | 4 | 1 | 1 | 1 |" in text
    assert "| smearing first | 10.0 | 20.0 | 4 | 2 | 1 | 0 |" in text
    assert "wall 3.00x, DFT core-seconds 3.00x. Same status for 2 of 3 crystals" in text
    assert "over the 2 computed by both: 0.05 eV." in text


def test_the_baseline_checkout_is_removed_afterwards():
    import subprocess
    from pathlib import Path

    from crystaljax.benchmarks import gap_recipe
    from crystaljax.benchmarks.results import ROOT

    if not (Path(ROOT) / ".git").exists():
        pytest.skip("not a git checkout")

    def worktrees() -> str:
        return subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], check=True,
                              capture_output=True, text=True).stdout

    with gap_recipe.baseline_checkout("HEAD") as path:
        assert (Path(path) / "crystaljax" / "benchmarks" / "gap_recipe.py").exists()
        assert path in worktrees()
    assert not Path(path).exists()
    assert path not in worktrees()
