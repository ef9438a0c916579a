"""Starting densities (``recipe.reuse_density``): each scf of a crystal after its first
starts from the converged density of its nearest earlier cell (crystaljax.oracles.qe.seeds)."""

from __future__ import annotations

import dataclasses

import pytest
from qe_helpers import bcc, diamond, fcc, requires_pw, rocksalt

from crystaljax.benchmarks.dft import parse_column
from crystaljax.config import ConfigError
from crystaljax.oracles.base import Status
from crystaljax.oracles.qe import attempts
from crystaljax.oracles.qe import seeds as seeds_module
from crystaljax.oracles.qe.attempts import _Attempt, _run, _smeared
from crystaljax.oracles.qe.family import write_gth_family
from crystaljax.oracles.qe.inputs import write_pw_input
from crystaljax.oracles.qe.oracle import QEOracle, recipe_key
from crystaljax.oracles.qe.parse import PwOutput
from crystaljax.oracles.qe.presets import GTH_VARIANTS, PSLIBRARY_INPUTS, get_preset
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.recipes import band_gap, bulk_modulus
from crystaljax.oracles.qe.restarts import AttemptLog, Failure
from crystaljax.oracles.qe.runner import OWNER_FILE, PwRun, RunnerConfig
from crystaljax.oracles.qe.seeds import (
    DENSITY_READ,
    PRESSURE_SCAN_SEED_STEP,
    SAVE_DIR,
    SEED_FILES,
    DensitySeeds,
)

PRESET = get_preset("test")
OFF = RecipeOptions(reuse_density=False)


def _finished_run(path, density: bytes = b"rho", paw: bytes | None = b"becsum"):
    """A run directory as pw.x leaves it: ``out/pw.save`` with the density (and PAW file)."""
    save = path / SAVE_DIR
    save.mkdir(parents=True)
    (save / "charge-density.dat").write_bytes(density)
    (save / "wfc1.dat").write_bytes(b"not kept")
    if paw is not None:
        (save / "paw.txt").write_bytes(paw)
    return path


# -- the store, no pw.x -----------------------------------------------------------------

def test_the_nearest_volume_is_the_seed_and_close_removes_the_files(tmp_path):
    runner = RunnerConfig(scratch_root=str(tmp_path / "scratch"))
    with DensitySeeds(runner) as seeds:
        assert seeds.nearest(10.0) is None
        for i, volume in enumerate((10.0, 11.0, 12.5)):
            seed = seeds.keep(f"run{i}", volume, _finished_run(tmp_path / f"w{i}", b"%d" % i))
            assert seed is not None and seed.volume == volume
        assert seeds.nearest(11.4).label == "run1" and seeds.nearest(12.0).label == "run2"
        assert seeds.nearest(1.0).label == "run0"
        kept = seeds.nearest(11.0).directory
        assert sorted(p.name for p in kept.iterdir()) == sorted(SEED_FILES)  # no wavefunctions
        assert seeds.nearest(11.0, spin_polarized=True) is None  # only the same kind of run
        seeds.keep("weak", 11.0, _finished_run(tmp_path / "weak"), magnetization=0.05)
        seeds.keep("magnet", 13.0, _finished_run(tmp_path / "magnet"), magnetization=-2.2)
        assert seeds.nearest(11.0, spin_polarized=True).label == "magnet"  # 0.05 < MIN
        assert seeds.nearest(11.0, spin_polarized=True).magnetization == 2.2
        assert seeds.nearest(11.0).label == "run1"
        target = tmp_path / "next"
        seeds.nearest(11.0).copy_into(target)
        assert (target / SAVE_DIR / "charge-density.dat").read_bytes() == b"1"
        assert (target / SAVE_DIR / "paw.txt").read_bytes() == b"becsum"
    assert not kept.exists() and not any((tmp_path / "scratch").iterdir())


def test_a_run_without_a_density_keeps_nothing_and_a_norm_conserving_one_no_paw_file(tmp_path):
    runner = RunnerConfig(scratch_root=str(tmp_path / "scratch"))
    with DensitySeeds(runner) as seeds:
        empty = tmp_path / "empty"
        empty.mkdir()
        assert seeds.keep("failed", 10.0, empty) is None and seeds.nearest(10.0) is None
        seed = seeds.keep("gth", 10.0, _finished_run(tmp_path / "gth", paw=None))
        target = tmp_path / "next"
        seed.copy_into(target)
        assert [p.name for p in (target / SAVE_DIR).iterdir()] == ["charge-density.dat"]


def test_a_seed_whose_files_are_gone_leaves_nothing_to_read(tmp_path):
    runner = RunnerConfig(scratch_root=str(tmp_path / "scratch"))
    seeds = DensitySeeds(runner)
    seed = seeds.keep("run", 10.0, _finished_run(tmp_path / "w"))
    seeds.close()  # the files are removed: the next run must not read a partial density
    target = tmp_path / "next"
    seed.copy_into(target)
    assert not (target / SAVE_DIR / "charge-density.dat").exists()


def test_the_input_asks_for_the_density_file_only_when_seeded(tmp_path):
    family = write_gth_family(tmp_path / "pp", PRESET.cutoffs, GTH_VARIANTS)
    si = diamond(5.47)
    assert "startingpot" not in write_pw_input(si, PRESET.settings, family)
    assert "startingpot = 'file'" in write_pw_input(si, PRESET.settings, family,
                                                    starting_density=True)


def test_reuse_density_is_an_option_but_not_part_of_the_cache_key(tmp_path):
    assert RecipeOptions().reuse_density is True
    assert "reuse_density" not in recipe_key(RecipeOptions(), "bulk_modulus")
    assert recipe_key(OFF, "bulk_modulus") == recipe_key(RecipeOptions(), "bulk_modulus")
    hashes = set()
    for reuse in (True, False):
        with QEOracle("bulk_modulus", preset="test", cache=str(tmp_path / "cache"), workers=1,
                      recipe={"reuse_density": reuse}) as oracle:
            assert oracle.recipe.reuse_density is reuse
            hashes.add(oracle.settings_hash)
    assert len(hashes) == 1  # results computed either way answer both


# -- the run loop with a scripted pw.x (no pw.x) -----------------------------------------

OK_OUTPUT = ("     number of atoms/cell      =            2\n{read}\n"
             "!    total energy              =     -31.50000000 Ry\n"
             "     convergence has been achieved in   7 iterations\n\n   JOB DONE.\n")
CRASH_OUTPUT = ("     number of atoms/cell      =            2\n{read}\n"
                "     Error in routine cdiaghg (3):\n     S matrix not positive definite\n")

SCF_OUTPUT = ("     number of atoms/cell      =            2\n{read}\n"
              "     estimated scf accuracy    <          {accuracy} Ry\n\n"
              "     convergence NOT achieved after 100 iterations: stopping\n")

MAGNETIC = ("\n     total magnetization       =     {m} Bohr mag/cell\n"
            "     absolute magnetization    =     {m} Bohr mag/cell\n\n   JOB DONE")


class ScriptedPw:
    """Stands in for ``run_pw``: answers each call with the next of ``outcomes`` ("ok",
    "ok-<magnetisation>", "crash"), reads the starting density as pw.x would and writes one on success."""

    def __init__(self, tmp_path, outcomes):
        self.tmp_path, self.outcomes, self.inputs = tmp_path, list(outcomes), []

    def __call__(self, text, config, label="pw", prepare=None):
        workdir = self.tmp_path / f"run{len(self.inputs)}"
        workdir.mkdir(parents=True)
        if prepare is not None:
            prepare(workdir)
        self.inputs.append(text)
        seeded = (workdir / SAVE_DIR / "charge-density.dat").is_file()
        read = (DENSITY_READ + " :") if "startingpot" in text and seeded else \
            "     Cannot read rho : file not found"
        outcome = self.outcomes.pop(0)
        if outcome == "crash":
            return PwRun(workdir, 1, False, 0.5, CRASH_OUTPUT.format(read=read))
        if outcome.startswith("scf-"):  # "scf-<last accuracy, Ry>": stopped unconverged
            return PwRun(workdir, 0, False, 0.5, SCF_OUTPUT.format(read=read,
                                                                   accuracy=outcome[4:]))
        (workdir / SAVE_DIR).mkdir(parents=True, exist_ok=True)
        (workdir / SAVE_DIR / "charge-density.dat").write_bytes(b"rho%d" % len(self.inputs))
        output = OK_OUTPUT.format(read=read)
        if outcome.startswith("ok-"):  # "ok-<absolute magnetisation>": a spin-polarised run
            output = output.replace("\n\n   JOB DONE", MAGNETIC.format(m=outcome[3:]))
        return PwRun(workdir, 0, False, 0.5, output)


def _scripted_run(monkeypatch, tmp_path, structure, outcomes, seeds, family, options=None):
    pw = ScriptedPw(tmp_path, outcomes)
    monkeypatch.setattr(attempts, "run_pw", pw)  # where _attempt looks it up
    log = AttemptLog(600.0)
    scf = _smeared(PRESET.settings, RecipeOptions())
    result = _run(structure, scf, family, RunnerConfig(time_limit=60.0), options or RecipeOptions(),
                  log, "next", seeds=seeds)
    return result, log, pw


@pytest.fixture()
def seeded(tmp_path):
    """A store holding one converged density (volume 10 Å^3, run ``first``)."""
    seeds = DensitySeeds(RunnerConfig(scratch_root=str(tmp_path / "scratch")))
    seeds.keep("first", 10.0, _finished_run(tmp_path / "first"))
    yield seeds
    seeds.close()


def test_a_seeded_run_reads_the_density_and_keeps_its_own(monkeypatch, tmp_path, seeded):
    family = write_gth_family(tmp_path / "pp", PRESET.cutoffs, GTH_VARIANTS)
    result, log, pw = _scripted_run(monkeypatch, tmp_path / "runs", rocksalt(5.69, "Na", "Cl"),
                                    ["ok"], seeded, family)
    assert result.status == Status.OK and result.read_density
    assert "startingpot = 'file'" in pw.inputs[0] and log.records[0]["start"] == "first"
    assert seeded.nearest(46.0).label == "next"  # its own density is kept for the next run


def test_a_seeded_run_that_fails_is_repeated_from_atomic_densities(monkeypatch, tmp_path,
                                                                    seeded):
    family = write_gth_family(tmp_path / "pp", PRESET.cutoffs, GTH_VARIANTS)
    result, log, pw = _scripted_run(monkeypatch, tmp_path / "runs", rocksalt(5.69, "Na", "Cl"),
                                    ["crash", "ok"], seeded, family)
    assert result.status == Status.OK
    assert [r["remedy"] for r in log.records] == [None, "cold_start"]
    assert "startingpot" in pw.inputs[0] and "startingpot" not in pw.inputs[1]
    assert log.records[0]["start"] == "first" and "start" not in log.records[1]
    assert log.records[1]["changes"] == {}  # the same settings, only the start differs
    # restarts off: no cold start either
    result, log, _ = _scripted_run(monkeypatch, tmp_path / "runs-off", rocksalt(5.69, "Na", "Cl"),
                                   ["crash"], seeded, family, RecipeOptions(max_restarts=0))
    assert result.status != Status.OK and len(log.records) == 1


def test_a_spin_polarised_run_is_seeded_only_from_a_magnetic_density(monkeypatch, tmp_path,
                                                                      seeded):
    family = write_gth_family(tmp_path / "pp", PRESET.cutoffs, GTH_VARIANTS)
    nio = rocksalt(4.2, "Ni", "O")
    # the spin-degenerate density of the fixture does not start it; it settles non-magnetic
    result, log, pw = _scripted_run(monkeypatch, tmp_path / "runs", nio, ["ok-0.00"], seeded,
                                    family)
    assert result.status == Status.OK and "nspin = 2" in pw.inputs[0]
    assert "startingpot" not in pw.inputs[0] and "start" not in log.records[0]
    assert seeded.nearest(1e3).label == "first"  # the spin-degenerate runs see their own
    assert seeded.nearest(1e3, spin_polarized=True) is None  # non-magnetic: seeds nothing
    # a non-magnetic neighbour leaves the ferromagnetic start; a magnetic one replaces it
    result, log, pw = _scripted_run(monkeypatch, tmp_path / "runs2", nio, ["ok-2.10"], seeded,
                                    family)
    assert "startingpot" not in pw.inputs[0] and "start" not in log.records[0]
    assert seeded.nearest(1e3, spin_polarized=True).magnetization == pytest.approx(2.10)
    result, log, pw = _scripted_run(monkeypatch, tmp_path / "runs3", nio, ["ok-2.05"], seeded,
                                    family)
    assert "startingpot = 'file'" in pw.inputs[0] and log.records[0]["start"] == "next"
    assert seeded.nearest(10.0).label == "first"  # never a magnetic density for those


def test_a_seed_whose_file_is_gone_is_not_asked_for(monkeypatch, tmp_path, seeded):
    family = write_gth_family(tmp_path / "pp", PRESET.cutoffs, GTH_VARIANTS)
    (seeded.nearest(10.0).directory / "charge-density.dat").unlink()
    result, log, pw = _scripted_run(monkeypatch, tmp_path / "runs", rocksalt(5.69, "Na", "Cl"),
                                    ["ok"], seeded, family)
    assert result.status == Status.OK and "startingpot" not in pw.inputs[0]
    assert "start" not in log.records[0]


def test_a_failed_copy_keeps_nothing(monkeypatch, tmp_path):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with DensitySeeds(RunnerConfig(scratch_root=str(tmp_path / "scratch"))) as seeds:
        run = _finished_run(tmp_path / "w")
        monkeypatch.setattr(seeds_module.shutil, "copyfile", disk_full)
        assert seeds.keep("run", 10.0, run) is None and seeds.nearest(10.0) is None
        left = [p for p in (tmp_path / "scratch").rglob("*") if p.is_file()]
        assert [p.name for p in left] in ([], [OWNER_FILE])  # no partial density, at most
        # the owner mark of the (empty) densities directory


# -- the benchmark's columns ---------------------------------------------------------------

def test_benchmark_columns_take_checked_recipe_and_settings_overrides():
    assert parse_column("gth") == ("gth", {}, {})
    assert parse_column("default:reuse_density=false") == (
        "default", {"reuse_density": False}, {})
    preset, recipe, settings = parse_column(
        "default:volume_scales=[0.99, 1.0, 1.01],relax=volume,settings.mixing_mode=TF")
    assert preset == "default" and recipe == {"volume_scales": (0.99, 1.0, 1.01),
                                              "relax": "volume"}
    assert settings == {"mixing_mode": "TF"}
    for bad in ("nosuch", "default:reuse_densty=false", "default:relax=sideways",
                "default:reuse_density", "default:settings.mixing_mode=sideways",
                "default:settings.mixing_betta=0.4", "default:settings.degauss=0.01"):
        with pytest.raises(ConfigError):
            parse_column(bad)


# -- real pw.x -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gth(tmp_path_factory):
    return write_gth_family(tmp_path_factory.mktemp("pp"), PRESET.cutoffs, GTH_VARIANTS)


@pytest.fixture(scope="module")
def paw(tmp_path_factory):
    """The test preset's PAW sets of Al and Fe (ld1.x, generated once per machine)."""
    return write_gth_family(tmp_path_factory.mktemp("paw"),
                            {e: PRESET.cutoffs[e] for e in ("Al", "Fe")}, GTH_VARIANTS,
                            generated={e: PSLIBRARY_INPUTS[e] for e in ("Al", "Fe")},
                            name=PRESET.family)


def _runner(tmp_path):
    return RunnerConfig(time_limit=PRESET.time_limit, scratch_root=str(tmp_path))


@requires_pw
@pytest.mark.parametrize("options", [
    RecipeOptions(eos_data="energy"),  # five energies 1 % apart
    RecipeOptions(pressure_scales=(0.99, 1.0, 1.01)),  # pressures 1 % apart
], ids=["energy", "pressure-1%"])
def test_the_bulk_modulus_scan_starts_each_point_from_its_neighbour(gth, tmp_path, options):
    si = diamond(5.47)
    settings = PRESET.settings.replace(ecutwfc=30.0, ecutrho=120.0, kgrid=(4, 4, 4))
    seeded = bulk_modulus(si, gth, settings, _runner(tmp_path / "on"), options)
    cold = bulk_modulus(si, gth, settings, _runner(tmp_path / "off"),
                        dataclasses.replace(options, reuse_density=False))
    for result in (seeded, cold):
        assert result.status == Status.OK, result.reason
    runs = [a["run"] for a in seeded.extra["attempts"]]
    starts = [a.get("start") for a in seeded.extra["attempts"]]
    assert starts == [None, *runs[:-1]]  # the first cold, then each from the one before
    assert all("start" not in a for a in cold.extra["attempts"])
    # the same converged energies (eV) and modulus
    assert seeded.extra["energies"] == pytest.approx(cold.extra["energies"], abs=2e-5)
    if options.eos_data == "pressure":
        # the stress is first order in the density's SCF error, the energy second order
        # (the scan's threshold is 1/100 of the test preset's)
        assert seeded.extra["pressures"] == pytest.approx(cold.extra["pressures"], abs=0.01)
    assert seeded.value == pytest.approx(cold.value, rel=5e-3)
    assert not any((tmp_path / "on").iterdir())  # the kept densities are removed too


def test_the_default_pressure_scan_starts_cold(monkeypatch, tmp_path):
    """Its two runs are 4 % apart in volume, beyond PRESSURE_SCAN_SEED_STEP."""
    from crystaljax.oracles.qe import recipes

    seen = []

    def fake_run(structure, settings, family, runner, options, log, label, reference=None,
                 handled=frozenset(), seeds=None, loosest_conv_thr=None):
        seen.append(seeds.nearest(structure.volume) if seeds is not None else "no store")
        parsed = PwOutput(total_energy=-10.0, pressure=1.0 - structure.volume / 20.0,
                          n_atoms=len(structure), job_done=True)
        seeds.keep(label, structure.volume, _finished_run(tmp_path / label))
        log.record(label, 1, Failure.OK, Status.OK, "", 0.1, 60.0, None, {})
        return _Attempt(Status.OK, "", parsed, 0.1, {}, settings)

    monkeypatch.setattr(recipes, "_run", fake_run)
    result = recipes.bulk_modulus(diamond(5.47), None, PRESET.settings, _runner(tmp_path),
                                  RecipeOptions())
    assert result.status == Status.OK and seen == [None, None]
    assert PRESSURE_SCAN_SEED_STEP < 1.02 / 0.98 - 1.0
    runner = RunnerConfig(scratch_root=str(tmp_path / "scratch"))
    with DensitySeeds(runner, max_volume_step=0.025) as seeds:
        seeds.keep("a", 100.0, _finished_run(tmp_path / "a"))
        assert seeds.nearest(102.0).label == "a" and seeds.nearest(103.0) is None


@requires_pw
def test_the_fixed_occupation_gap_starts_from_the_smeared_density(gth, tmp_path):
    nacl = rocksalt(5.69, "Na", "Cl")
    seeded = band_gap(nacl, gth, PRESET.settings, _runner(tmp_path / "on"))
    cold = band_gap(nacl, gth, PRESET.settings, _runner(tmp_path / "off"), OFF)
    assert seeded.status == cold.status == Status.OK, (seeded.reason, cold.reason)
    assert [a.get("start") for a in seeded.extra["attempts"]] == [None, "gap-smear"]
    assert seeded.value == pytest.approx(cold.value, abs=1e-3)
    assert not seeded.extra["metal"]


@requires_pw
def test_a_paw_density_seeds_the_next_volume_and_a_lost_one_is_not_used(paw, tmp_path):
    runner = _runner(tmp_path)
    scf = _smeared(PRESET.settings, RecipeOptions())
    al, bigger = fcc(4.0, "Al"), fcc(4.04, "Al")
    with DensitySeeds(runner) as seeds:
        first = _run(al, scf, paw, runner, RecipeOptions(), AttemptLog(600.0), "first",
                     seeds=seeds)
        assert first.status == Status.OK, first.reason
        seed = seeds.nearest(al.volume)
        assert sorted(p.name for p in seed.directory.iterdir()) == sorted(SEED_FILES)
        log = AttemptLog(600.0)
        second = _run(bigger, scf, paw, runner, RecipeOptions(), log, "second", seeds=seeds)
        assert second.status == Status.OK and log.records[0]["start"] == "first"
        for name in SEED_FILES:  # files gone: not asked for, the run starts cold
            (seeds.nearest(bigger.volume).directory / name).unlink()
        log = AttemptLog(600.0)
        third = _run(bigger, scf, paw, runner, RecipeOptions(), log, "third", seeds=seeds)
        assert third.status == Status.OK, third.reason
        assert "start" not in log.records[0] and not third.read_density
        assert third.parsed.total_energy == pytest.approx(second.parsed.total_energy, abs=1e-4)


@requires_pw
def test_a_ferromagnet_seeds_its_next_volume_to_the_same_state(paw, tmp_path):
    runner = _runner(tmp_path)
    scf = _smeared(PRESET.settings, RecipeOptions())
    small, large = bcc(2.83, "Fe"), bcc(2.86, "Fe")
    with DensitySeeds(runner) as seeds:
        first = _run(small, scf, paw, runner, RecipeOptions(), AttemptLog(600.0), "first",
                     seeds=seeds)
        assert first.status == Status.OK, first.reason
        assert seeds.nearest(small.volume, spin_polarized=True).magnetization > 1.0
        log = AttemptLog(600.0)
        seeded = _run(large, scf, paw, runner, RecipeOptions(), log, "second", seeds=seeds)
        assert seeded.status == Status.OK and seeded.read_density
        assert log.records[0]["start"] == "first"
    cold = _run(large, scf, paw, runner, OFF, AttemptLog(600.0), "cold")
    assert cold.status == Status.OK and not cold.read_density
    # the same ferromagnetic fixed point as the cold ferromagnetic start
    assert seeded.parsed.magnetization == pytest.approx(cold.parsed.magnetization, abs=0.02)
    assert seeded.parsed.total_energy == pytest.approx(cold.parsed.total_energy, abs=1e-4)


def test_a_seeded_pressure_run_short_of_its_threshold_falls_back_before_a_cold_start(
        monkeypatch, tmp_path, seeded):
    """A seeded pressure run that stops short of its tightened threshold with the preset's
    reached is run again at the preset's threshold at once, not first cold at the
    tightened one (which would fail the same way)."""
    family = write_gth_family(tmp_path / "pp", PRESET.cutoffs, GTH_VARIANTS)
    loose = _smeared(PRESET.settings, RecipeOptions())
    tight = loose.replace(conv_thr_per_atom=0.01 * loose.conv_thr_per_atom)
    per_cell = 2 * loose.conv_thr_per_atom  # two atoms
    # between the per-atom and the per-cell threshold: the test tells the units apart
    for accuracy, remedies in [(0.75 * per_cell, [None, "preset_threshold"]),
                               (1.5 * per_cell, [None, "cold_start"])]:
        pw = ScriptedPw(tmp_path / f"runs-{accuracy:g}", [f"scf-{accuracy:.1E}", "ok"])
        monkeypatch.setattr(attempts, "run_pw", pw)
        log = AttemptLog(600.0)
        result = _run(rocksalt(5.69, "Na", "Cl"), tight, family, RunnerConfig(time_limit=60.0),
                      RecipeOptions(), log, "next", seeds=seeded,
                      loosest_conv_thr=loose.conv_thr_per_atom)
        assert result.status == Status.OK
        assert [r["remedy"] for r in log.records] == remedies
        if remedies[1] == "preset_threshold":
            assert log.records[1]["changes"] == {"conv_thr_per_atom": loose.conv_thr_per_atom}
            assert "Ry per atom" in log.warnings[0]
        else:
            assert not log.warnings
