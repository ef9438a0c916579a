"""The density-cutoff (dual) scan (crystaljax.benchmarks.cutoff_duals): its choice on made-up
runs, its file checks and summary, and a real scan of Al with pw.x."""

from __future__ import annotations

import json
import shutil

import pytest

from crystaljax.benchmarks import cutoff_duals as duals


def _reference(ecut=60.0):
    return {"ecutwfc": ecut, "status": "OK", "seconds": 1.0, "atoms": 1,
            "volume_v0": 20.0, "volume_v1": 20.0 * 0.98**3, "volume_v2": 20.0 * 1.02**3,
            "pressure_v0": 0.0, "pressure_v1": 10.0, "energy_v0": -5.0,
            "energy_v1": -4.99, "energy_v2": -4.99, "bands_ev": [[-1.0, 0.5, 2.0]]}


def _record(ecuts=(25.0, 40.0)):
    return {"element": "Al", "probe": "equilibrium",
            "rows": [{**_reference(), "ecutwfc": e} for e in ecuts] + [_reference()]}


def _fake_rows(monkeypatch, pressure_error):
    """Rows like the reference, the V0 pressure off by ``pressure_error(ecut, dual)`` GPa
    (the volume criterion: |dP| / B with B about 165 GPa here)."""
    calls = []

    def property_row(ecut, cells, settings, family, runner, label):
        calls.append((ecut, settings.ecutrho / ecut))
        row = {**_reference(ecut)}
        row["pressure_v0"] = pressure_error(ecut, settings.ecutrho / ecut)
        return row

    monkeypatch.setattr(duals, "property_row", property_row)
    monkeypatch.setattr(duals, "_record_family", lambda *args: None)
    return calls


def test_the_lowest_dual_that_holds_with_every_dual_above_it(monkeypatch):
    # 1 % volume = 1.65 GPa here: dual 6 and 4 hold, 5 does not -> 6 for the full rule;
    # the band-gap rule reads only the bands -> 4
    calls = _fake_rows(monkeypatch, lambda ecut, dual: 3.0 if dual == 5 else 0.1)
    result = duals.scan_element_duals(_record(), {"density": {"Al": 40},
                                                  "band_gap": {"Al": 40}}, None, None, {})
    assert result["choices"]["density"]["dual"] == 6.0
    assert result["choices"]["band_gap"]["dual"] == 4.0
    assert set(result["choices"]["density"]["deviations"]) == {"volume", "bulk_modulus",
                                                                "bands_mev"}
    assert calls == [(40.0, 6.0), (40.0, 5.0), (40.0, 4.0)]  # shared, not rerun
    assert [r["dual"] for r in result["rows"]] == [6.0, 5.0, 4.0]


def test_no_lower_dual_keeps_the_scans_dual(monkeypatch):
    _fake_rows(monkeypatch, lambda ecut, dual: 5.0)
    result = duals.scan_element_duals(_record(), {"bulk_modulus": {"Al": 25}}, None, None, {})
    choice = result["choices"]["bulk_modulus"]
    assert choice == {"ecutwfc": 25.0, "dual": duals.SCAN_DUAL, "deviations": choice[
        "deviations"]} and choice["deviations"]["volume"] == 0.0  # the dual-8 row's own
    assert len(result["rows"]) == 1  # stopped at the first dual that fails


def test_a_failed_run_stops_the_descent(monkeypatch):
    def property_row(ecut, cells, settings, family, runner, label):
        return {**_reference(ecut), "status": "TIMEOUT"}

    monkeypatch.setattr(duals, "property_row", property_row)
    monkeypatch.setattr(duals, "_record_family", lambda *args: None)
    result = duals.scan_element_duals(_record(), {"density": {"Al": 40}}, None, None, {})
    assert result["choices"]["density"]["dual"] == duals.SCAN_DUAL
    assert len(result["rows"]) == 1  # no lower dual tried after the failed one


def test_bad_ladders_and_records_are_refused():
    with pytest.raises(ValueError, match="descend"):
        duals.scan_element_duals(_record(), {}, None, None, {}, duals=(4.0, 6.0))
    with pytest.raises(ValueError, match="below 8"):
        duals.scan_element_duals(_record(), {}, None, None, {}, duals=(8.0,))
    failed = _record()
    failed["rows"][-1]["status"] = "TIMEOUT"
    with pytest.raises(ValueError, match="no reference run"):
        duals.scan_element_duals(failed, {}, None, None, {})
    with pytest.raises(ValueError, match="no recorded run at 35 Ry"):
        duals.scan_element_duals(_record(), {"density": {"Al": 35}}, None, None, {})


def test_the_scan_file_must_be_a_pslibrary_property_scan(tmp_path):
    energy = tmp_path / "energy.json"
    energy.write_text(json.dumps({"method": {"rule": "energy"}, "elements": {}}))
    with pytest.raises(ValueError, match="not a pslibrary property-rule scan"):
        duals.converge_duals(str(energy), str(tmp_path / "out.json"), {})
    scans = tmp_path / "scans.json"
    scans.write_text(json.dumps({"method": {"rule": "property", "family": "pslibrary"},
                                 "elements": {"Al": _record()}}))
    with pytest.raises(ValueError, match=r"no scan of \['Xx'\]"):
        duals.converge_duals(str(scans), str(tmp_path / "out.json"), {}, ["Xx"])


def test_summary_and_tables_read_back_the_choices(tmp_path, monkeypatch):
    _fake_rows(monkeypatch, lambda ecut, dual: 0.1)
    scans = tmp_path / "scans.json"
    scans.write_text(json.dumps({"method": {"rule": "property", "family": "pslibrary"},
                                 "elements": {"Al": _record()}}))
    out = tmp_path / "duals.json"
    tables = {"density": {"Al": 40}, "band_gap": {"Al": 25}}
    data = duals.converge_duals(str(scans), str(out), tables)
    assert duals.is_dual_scan(json.loads(out.read_text()))
    assert duals.dual_tables([str(out)]) == {"density": {"Al": 4.0}, "band_gap": {"Al": 4.0}}
    text = duals.summary([str(out)])
    assert "| Al | 25, 4 | 40, 4 |" in text and text.endswith(
        'DUALS_MEASURED = {"density": {"Al": 4.0}, "band_gap": {"Al": 4.0}}')
    # a second call skips what the file has
    again = duals.converge_duals(str(scans), str(out), tables)
    assert again["elements"] == data["elements"]


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="needs pw.x (make setup)")
def test_a_real_dual_scan_of_aluminium(tmp_path):
    """Real pw.x: Al's PAW set scanned at 25 and 40 Ry (dual 8), then its 25 Ry cells at dual
    4: the row records ecutrho 100 Ry's energies, close to the dual-8 ones (Al's
    augmentation charges are soft), and the band-gap choice is dual 4 exactly when its bands
    are within 20 meV of the reference's."""
    from crystaljax.benchmarks import cutoff_properties as props
    from crystaljax.benchmarks.cutoffs import family_inputs
    from crystaljax.oracles.qe.runner import RunnerConfig

    runner = RunnerConfig(time_limit=120.0)
    record = props.scan_element_properties("Al", (25, 40), tmp_path / "pseudos", runner,
                                           family_inputs("pslibrary"), dual=8.0)
    result = duals.scan_element_duals(record, {"band_gap": {"Al": 25}}, tmp_path / "pseudos",
                                      runner, family_inputs("pslibrary"), duals=(4.0,))
    (row,) = result["rows"]
    at_8 = record["rows"][0]
    assert row["status"] == "OK" and row["dual"] == 4.0 and row["ecutwfc"] == 25
    assert row["volume_v0"] == pytest.approx(at_8["volume_v0"])
    assert row["energy_v0"] != at_8["energy_v0"]  # another density grid
    assert abs(row["energy_v0"] - at_8["energy_v0"]) < 0.01  # eV/atom
    bands = props.property_deviations(row, record["rows"][-1])["bands_mev"]
    choice = result["choices"]["band_gap"]
    assert choice["dual"] == (4.0 if bands <= 20.0 else 8.0)
    if choice["dual"] == 4.0:
        assert choice["deviations"]["bands_mev"] == pytest.approx(bands, abs=1e-4)


def test_the_scripts_give_usage_errors_not_tracebacks(tmp_path, capsys):
    """scripts/converge_duals.py with a missing or wrong scan file, and
    scripts/cutoff_table.py on a dual-scan file (its measured table)."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]

    def load(name):
        spec = importlib.util.spec_from_file_location(name, root / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    converge = load("converge_duals")
    with pytest.raises(SystemExit) as exit_info:
        converge.main(["--scans", str(tmp_path / "missing.json"), "--out",
                       str(tmp_path / "out.json")])
    assert exit_info.value.code == 2 and "missing.json" in capsys.readouterr().err
    energy = tmp_path / "energy.json"
    energy.write_text(json.dumps({"method": {"rule": "energy"}, "elements": {}}))
    with pytest.raises(SystemExit):
        converge.main(["--scans", str(energy), "--out", str(tmp_path / "out.json")])
    assert "not a pslibrary property-rule scan" in capsys.readouterr().err
    load("cutoff_table").main([str(root / "benchmarks" / "cutoff_duals_pslibrary.json")])
    out = capsys.readouterr().out
    assert "| Mg | 35, 4 | 25, 4 | 35, 4 |" in out and "DUALS_MEASURED = " in out
