"""``crystaljax compute FILE --oracle qe|chgnet|chgnet-host`` (crystaljax/compute_cli.py)."""

from __future__ import annotations

import json

import pytest
from qe_helpers import requires_pw, rocksalt

from crystaljax.cli import main

pytestmark = pytest.mark.xdist_group("chgnet")

#: the keys of ``crystaljax dft --json``
DFT_KEYS = {"property", "value", "unit", "status", "seconds", "reason", "energy_per_atom",
            "magnetization"}


@pytest.fixture
def nacl(tmp_path):
    cif = tmp_path / "nacl.cif"
    rocksalt(5.69, "Na", "Cl").to(filename=str(cif))
    return str(cif)


def _json(capsys):
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one JSON object, nothing else on stdout
    return json.loads(out)


def test_chgnet_and_chgnet_host_json_agree(nacl, capsys):
    outs = {}
    for oracle in ("chgnet", "chgnet-host"):
        assert main(["compute", nacl, "--oracle", oracle, "--property", "energy",
                     "--relax", "none", "--json"]) == 0
        outs[oracle] = _json(capsys)
    for out in outs.values():
        assert set(out) == DFT_KEYS
        assert out["property"] == "energy" and out["unit"] == "eV/atom"
        assert out["status"] == "OK" and out["reason"] == "" and out["magnetization"] is None
        assert out["energy_per_atom"] == pytest.approx(out["value"], abs=1e-6)
        assert out["seconds"] > 0
    assert outs["chgnet"]["value"] == pytest.approx(outs["chgnet-host"]["value"], abs=1e-4)
    assert -4.0 < outs["chgnet-host"]["value"] < -3.0  # CHGNet's NaCl: -3.67 eV/atom


def test_chgnet_host_volume_relaxed_bulk_modulus_and_no_minimum(nacl, tmp_path, capsys):
    assert main(["compute", nacl, "--oracle", "chgnet-host", "--property", "bulk_modulus",
                 "--json"]) == 0
    out = _json(capsys)
    assert out["status"] == "OK" and 15 < out["value"] < 35  # CHGNet: 22.7 GPa
    # NaCl compressed to a = 5.3 Å has its minimum near s = 1.07: none in [0.8, 1.0]
    squeezed = tmp_path / "squeezed.cif"
    rocksalt(5.3, "Na", "Cl").to(filename=str(squeezed))
    assert main(["compute", str(squeezed), "--oracle", "chgnet-host", "--property", "density",
                 "-o", "max_scale=1.0", "--json"]) == 1
    out = _json(capsys)
    assert out["status"] == "NO_MINIMUM" and out["value"] is None and "max_scale" in out["reason"]
    assert main(["compute", nacl, "--oracle", "chgnet-host", "--property", "density",
                 "--relax", "full", "-o", "fmax=0.1"]) == 0
    assert "density:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--oracle", "chgnet", "--property", "density", "--relax", "full"], "--relax full"),
    (["--oracle", "chgnet-host", "--property", "density", "-o", "colour=red"], "colour"),
    (["--oracle", "chgnet", "--property", "density", "-o", "steps=0"], "steps"),
    (["--oracle", "chgnet", "--property", "band_gap"], "band_gap"),
    (["--oracle", "qe", "--property", "energy"], "energy"),
    (["--oracle", "qe", "--property", "density", "-o", "steps=3"], "--option"),
])
def test_unusable_options_exit_2_with_one_line(nacl, capsys, argv, message):
    assert main(["compute", nacl, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("crystaljax compute: error:") and message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_unreadable_file_and_unknown_element_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.cif"
    bad.write_text("this is not a CIF\n")
    americium = tmp_path / "amcl.cif"
    rocksalt(5.69, "Am", "Cl").to(filename=str(americium))
    for path, message in ((bad, "cannot read"), (tmp_path / "missing.cif", "no such file"),
                          (americium, "no element Am")):
        for oracle in ("chgnet", "chgnet-host"):
            assert main(["compute", str(path), "--oracle", oracle, "--property",
                         "density"]) == 2
            err = capsys.readouterr().err
            assert err.startswith("crystaljax compute: error:") and message in err
            assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["compute", str(bad), "--oracle", "qe", "--property", "density"]) == 2
    assert capsys.readouterr().err.startswith("crystaljax dft: error:")


@requires_pw
def test_qe_is_the_dft_code_path(nacl, capsys, isolated_cache_dir):
    assert main(["compute", nacl, "--oracle", "qe", "--property", "band_gap", "--preset",
                 "test", "--json"]) == 0
    out = _json(capsys)
    assert set(out) == DFT_KEYS
    assert out["property"] == "band_gap" and out["status"] == "OK" and out["value"] > 3.0
