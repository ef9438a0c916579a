"""``crystaljax verify`` and ``crystaljax report`` on a tiny finished run (trained once per
module): verify.json and the table, the crystal pictures and report.html, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct
import uuid

import pytest
from qe_helpers import requires_pw
from test_training import tiny_config

from crystaljax.cli import main
from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.registry import ORACLES, OracleSpec
from crystaljax.properties import PROPERTIES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VERIFY_KEYS = {"run_dir", "property", "unit", "run_oracle", "oracle", "settings", "machine",
               "started", "finished", "wall_s", "oracle_stats", "summary", "crystals"}
CRYSTAL_KEYS = {"rank", "formula", "template", "symbols", "cif", "reward", "run_value",
                "run_oracle", "value", "oracle", "difference", "relative_difference", "status",
                "reason", "seconds", "extra"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished tiny DQN run (test_training's config, so its programs are compiled once
    per test run); its run directory."""
    tmp = tmp_path_factory.mktemp("verify")
    assert main(["train", tiny_config(tmp), "--quiet"]) == 0
    return tmp / "runs" / "tiny"


class ScaledDensity:
    """A host oracle: the structure's density x 1.1, a CRASH for the second crystal of a
    batch; records that it was closed."""

    unit = "g/cm3"
    instances: list = []

    def __init__(self, property_name):
        self.property_name = property_name
        self.closed = False
        ScaledDensity.instances.append(self)

    def evaluate(self, structures):
        return [OracleResult.failure(Status.CRASH, "fake crash\nsecond line") if i == 1
                else OracleResult(1.1 * float(s.density), seconds=0.01, extra={"note": "x"})
                for i, s in enumerate(structures)]

    def close(self):
        self.closed = True


@pytest.fixture
def scaled_oracle(monkeypatch):
    """A host oracle registered for density under a unique name (removed afterwards)."""
    name = f"test-scaled-{uuid.uuid4().hex[:6]}"
    monkeypatch.setitem(ORACLES, name, OracleSpec(name, False, None, lambda p, o: ScaledDensity(p)))
    density = PROPERTIES["density"]
    monkeypatch.setitem(PROPERTIES, "density",
                        dataclasses.replace(density, oracles=(*density.oracles, name)))
    ScaledDensity.instances.clear()
    return name


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def test_run_writes_pictures_and_report(finished_run, capsys):
    top = json.loads((finished_run / "crystals" / "top_crystals.json").read_text())
    html = (finished_run / "report.html").read_text()
    assert "learning_curve.png" in html and "<table" in html and "<script" not in html
    for rec in top:
        png = rec["cif"].replace(".cif", ".png")
        assert f'src="crystals/{png}"' in html and rec["formula"] in html
        width, height = png_size(finished_run / "crystals" / png)
        assert width >= 300 and height >= 300
    # regenerated from the command line, the images inside the page
    assert main(["report", str(finished_run), "--embed"]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    embedded = (finished_run / "report.html").read_text()
    assert embedded.count("data:image/png;base64,") == len(top) + 1  # crystals + curve
    assert main(["report", str(finished_run)]) == 0


def test_verify_writes_json_table_and_report(finished_run, scaled_oracle, capsys):
    assert main(["verify", str(finished_run), "--top", "2", "--oracle", scaled_oracle]) == 0
    out = capsys.readouterr().out
    assert "analytic" in out and scaled_oracle in out and "difference" in out
    assert "CRASH" in out and "fake crash" in out and "second line" not in out
    result = json.loads((finished_run / "verify.json").read_text())
    assert VERIFY_KEYS <= set(result) and len(result["crystals"]) == 2
    assert result["settings"]["top"] == 2 and result["settings"]["oracle"] == scaled_oracle
    assert result["property"] == "density" and result["run_oracle"] == "analytic"
    assert {"hostname", "cpus", "crystaljax"} <= set(result["machine"])
    ok, failed = result["crystals"]
    assert CRYSTAL_KEYS <= set(ok) and ok["rank"] == 1 and ok["status"] == "OK"
    top = json.loads((finished_run / "crystals" / "top_crystals.json").read_text())
    assert ok["run_value"] == pytest.approx(top[0]["density"])
    assert ok["value"] == pytest.approx(1.1 * top[0]["density"], rel=1e-4)
    assert ok["difference"] == pytest.approx(ok["value"] - ok["run_value"])
    assert ok["relative_difference"] == pytest.approx(0.1, rel=1e-3)
    assert failed["status"] == "CRASH" and failed["value"] is None and failed["difference"] is None
    assert failed["reason"].startswith("fake crash")
    assert result["summary"] == {**result["summary"], "crystals": 2, "ok": 1, "failed": 1}
    assert [o.closed for o in ScaledDensity.instances] == [True]
    html = (finished_run / "report.html").read_text()
    assert scaled_oracle in html and "CRASH" in html and "+10.0 %" in html

    assert main(["verify", str(finished_run), "--top", "1", "--oracle", scaled_oracle,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["ok"] == 1


def test_verify_from_python(finished_run, scaled_oracle):
    from crystaljax.training.verify import format_table, verify_run

    lines = []
    result = verify_run(str(finished_run), top=50, oracle=scaled_oracle, report=False,
                        progress=lines.append)
    top = json.loads((finished_run / "crystals" / "top_crystals.json").read_text())
    assert len(result["crystals"]) == len(top)  # all there are
    assert len(lines) == 1 and scaled_oracle in lines[0]
    assert "relative" in format_table(result)


@pytest.mark.parametrize("case, message", [
    ("missing", "no such run directory"),
    ("not-a-run", "not a run directory"),
    ("unfinished", "has not finished"),
    ("top-0", "--top must be >= 1"),
    ("unknown-oracle", "unknown oracle 'no-such-oracle'"),
    ("in-graph-oracle", "runs inside the env step"),
    ("preset-of-presetless", "has no presets"),
    ("bad-option", "unknown key"),
])
def test_bad_input_is_one_line_and_exit_2(finished_run, scaled_oracle, tmp_path, capsys, case,
                                          message):
    run = str(finished_run)
    argv = {"missing": [str(tmp_path / "nope")], "not-a-run": [str(tmp_path)],
            "unfinished": [str(tmp_path / "unfinished")], "top-0": [run, "--top", "0"],
            "unknown-oracle": [run, "--oracle", "no-such-oracle"],
            "in-graph-oracle": [run, "--oracle", "analytic"],
            "preset-of-presetless": [run, "--oracle", scaled_oracle, "--preset", "fast"],
            "bad-option": [run, "--option", "wrokers=2"]}[case]
    if case == "unfinished":
        (tmp_path / "unfinished").mkdir()
        shutil.copy(finished_run / "config.yaml", tmp_path / "unfinished")
    assert main(["verify", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("crystaljax: error:") and captured.err.count("\n") == 1
    assert message in captured.err and "Traceback" not in captured.err
    assert not ScaledDensity.instances  # nothing was started


def test_report_of_a_missing_run_is_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
@requires_pw
def test_verify_with_qe(finished_run, isolated_cache_dir, capsys):
    """The best crystal through the real QE oracle (``test`` preset, about a minute)."""
    assert main(["verify", str(finished_run), "--top", "1", "--preset", "test"]) == 0
    result = json.loads((finished_run / "verify.json").read_text())
    (entry,) = result["crystals"]
    assert result["oracle"] == "qe (test)" and result["settings"]["options"]["preset"] == "test"
    assert entry["status"] == "OK" and entry["value"] > 0 and entry["seconds"] > 0
