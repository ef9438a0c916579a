"""``crystaljax dft`` sub-command (add_dft_parser / run_dft)."""

from __future__ import annotations

import argparse
import json

import pytest
from qe_helpers import requires_pw, rocksalt

from crystaljax.oracles.qe.cli import add_dft_parser, run_dft


def _parse(argv):
    parser = argparse.ArgumentParser(prog="crystaljax")
    add_dft_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@requires_pw
def test_json_and_text_output(tmp_path, capsys, isolated_cache_dir):
    cif = tmp_path / "nacl.cif"
    rocksalt(5.69, "Na", "Cl").to(filename=str(cif))
    common = ["dft", str(cif), "--property", "band_gap", "--preset", "test",
              "--cache", str(tmp_path / "cache.sqlite")]
    args = _parse([*common, "--json"])
    assert args.func is run_dft
    assert run_dft(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"property", "value", "unit", "status", "seconds"} <= set(out)
    assert out["property"] == "band_gap" and out["unit"] == "eV" and out["status"] == "OK"
    assert out["value"] > 3.0 and out["seconds"] > 0
    # the same crystal as text (from the cache): value, status and the cutoffs used
    assert run_dft(_parse(common)) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"band_gap: {out['value']:.4f} eV") and "status: OK" in text
    assert "cutoffs: ecutwfc 35 Ry, ecutrho 140 Ry" in text  # the preset's, per property


def test_unreadable_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a CIF\n")
    for path in (bad, tmp_path / "missing.cif"):
        assert run_dft(_parse(["dft", str(path), "--property", "density"])) == 2
        err = capsys.readouterr().err
        assert err.startswith("crystaljax dft: error:") and err.count("\n") == 1
        assert "Traceback" not in err


def test_unknown_property_is_an_argparse_error():
    with pytest.raises(SystemExit) as exc:
        _parse(["dft", "x.cif", "--property", "hardness"])
    assert exc.value.code == 2


@requires_pw
def test_failed_dft_exits_1_with_reason(tmp_path, capsys, isolated_cache_dir):
    cif = tmp_path / "naxe.cif"
    rocksalt(5.69, "Na", "Xe").to(filename=str(cif))
    assert run_dft(_parse(["dft", str(cif), "--property", "density", "--preset", "test"])) == 1
    out = capsys.readouterr().out
    assert "INVALID_INPUT" in out and "Xe" in out


@pytest.mark.parametrize("flag, message", [(["--time-limit", "-1"], "time_limit must be > 0"),
                                           (["--mpi-ranks", "0"], "mpi_ranks must be >= 1"),
                                           (["--preset", "turbo"], "preset must be one of")])
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, flag, message):
    cif = tmp_path / "nacl.cif"
    rocksalt(5.69, "Na", "Cl").to(filename=str(cif))
    assert run_dft(_parse(["dft", str(cif), "--property", "density", *flag])) == 2
    err = capsys.readouterr().err
    assert err.startswith("crystaljax dft: error:") and message in err and err.count("\n") == 1


@requires_pw
def test_relax_search_reaches_the_recipe(tmp_path, capsys, isolated_cache_dir):
    """``--relax volume --relax-search pressure`` runs the zero-pressure search (the
    ``test`` preset's own is the E(V) search): the cached result has the runs' pressures
    and fewer runs; both searches agree."""
    import sqlite3

    from qe_helpers import fcc

    cif = tmp_path / "al.cif"
    fcc(4.0, "Al").to(filename=str(cif))
    found = {}
    for search in ("pressure", "energy"):
        cache = tmp_path / f"{search}.sqlite"
        argv = ["dft", str(cif), "--property", "bulk_modulus", "--preset", "test", "--relax",
                "volume", "--relax-search", search, "--json", "--cache", str(cache)]
        assert run_dft(_parse(argv)) == 0
        found[search] = json.loads(capsys.readouterr().out)
        assert found[search]["status"] == "OK"
        with sqlite3.connect(cache) as db:
            (extra,), = db.execute("SELECT extra FROM results").fetchall()
        found[search]["extra"] = json.loads(extra)
    assert found["pressure"]["value"] == pytest.approx(found["energy"]["value"], rel=0.05)
    pressure, energy = found["pressure"]["extra"], found["energy"]["extra"]
    assert pressure["relax_search"] == "pressure" and "pressures" in pressure
    assert "relax_search" not in energy and "fit_energies" in energy
    assert len(pressure["attempts"]) < len(energy["attempts"])
