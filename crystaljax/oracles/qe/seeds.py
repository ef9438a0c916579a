"""Starting densities: one crystal's converged charge densities, each scf started from the
nearest earlier one (``recipe.reuse_density``).

The runs of one crystal are close to each other: the bulk modulus's E(V) points are 1 %
apart in volume (its pressure scan's two runs 4 %: not seeded, see
:data:`PRESSURE_SCAN_SEED_STEP`), the E(V) minimum search's a lattice step (2 %, 6 % in
volume) or more, and the band gap's fixed-occupation run follows a smeared run of the same cell. pw.x with
``startingpot = 'file'`` reads the density of a neighbouring cell in reciprocal space (by
Miller indices, renormalised to the cell's electron count) instead of superposing atomic
densities. When both converge, the result is the same fixed point within the SCF threshold
(Cu's five bulk-modulus energies with seeds equal those of cold runs at a 100x tighter
``conv_thr``); what changes is the number of SCF iterations (MgO: 6-7 per point instead of
13-21).

Spin-polarised runs: the density file carries the magnetisation, which replaces the
ferromagnetic starting moments. A spin-polarised run is therefore seeded only from a
*magnetic* neighbour (absolute magnetisation at least :data:`MAGNETIC_SEED_MIN`): it then
starts from a converged ferromagnetic-like state instead of the atomic guess, and a
neighbour that settled non-magnetic never takes a later run's ferromagnetic start away
(that run starts cold, as without seeds).

Files kept per run: :data:`SEED_FILES` of the run's save directory (``out/pw.save``, the
``outdir`` and ``prefix`` of :func:`~crystaljax.oracles.qe.inputs.write_pw_input`), copied
to a directory of the crystal's own under the scratch root before the run directory is
removed, and deleted with :meth:`DensitySeeds.close`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from pathlib import Path

from crystaljax.oracles.qe.inputs import OUTDIR, PREFIX
from crystaljax.oracles.qe.recipe_options import RecipeOptions
from crystaljax.oracles.qe.runner import RunnerConfig, make_workdir

#: The save directory of a run, relative to its run directory (``outdir/prefix.save`` of
#: :func:`~crystaljax.oracles.qe.inputs.write_pw_input`).
SAVE_DIR = Path(OUTDIR) / f"{PREFIX}.save"
#: What pw.x prints when it started from the density file (else "Cannot read rho").
DENSITY_READ = "The initial density is read from file"
#: What ``startingpot = 'file'`` reads: the density (with the magnetisation of a
#: spin-polarised run) and, for PAW, the one-centre occupations.
SEED_FILES = ("charge-density.dat", "paw.txt")
#: Least absolute magnetisation (Bohr magnetons per cell) of a kept spin-polarised density
#: that seeds a spin-polarised run; below it the run starts from the ferromagnetic guess.
MAGNETIC_SEED_MIN = 0.1


@dataclasses.dataclass(frozen=True)
class DensitySeed:
    """A kept converged density.

    Attributes:
      label: the run it comes from (e.g. ``eos-0.9800``).
      volume: that run's cell volume (Å^3).
      directory: where its :data:`SEED_FILES` are.
      magnetization: absolute magnetisation of a spin-polarised run (Bohr magnetons per
        cell); ``None`` for a spin-degenerate one.
    """

    label: str
    volume: float
    directory: Path
    magnetization: float | None = None

    def seeds(self, spin_polarized: bool) -> bool:
        """Whether this density may start a run that is (``spin_polarized``) or is not
        spin-polarised: the same kind of run, and for a spin-polarised one a magnetic
        density (:data:`MAGNETIC_SEED_MIN`)."""
        if not spin_polarized:
            return self.magnetization is None
        return self.magnetization is not None and self.magnetization >= MAGNETIC_SEED_MIN

    def available(self) -> bool:
        """Whether its density file is still there."""
        return (self.directory / SEED_FILES[0]).is_file()

    def copy_into(self, workdir: Path) -> None:
        """Put the density where a run in ``workdir`` reads it (``out/pw.save``). If the
        copy fails (disk full, files gone), no density file is left there: pw.x then says
        "Cannot read rho : file not found" and starts from atomic densities."""
        target = workdir / SAVE_DIR
        try:
            target.mkdir(parents=True, exist_ok=True)
            for name in SEED_FILES:
                source = self.directory / name
                if source.is_file():
                    shutil.copyfile(source, target / name)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)


class DensitySeeds:
    """The converged densities of one crystal's runs, keyed by cell volume.

    Use as a context manager (or call :meth:`close`): the kept files are removed at the end.
    """

    def __init__(self, runner: RunnerConfig, max_volume_step: float | None = None) -> None:
        """``max_volume_step``: seed only from a kept density whose cell volume is within
        this fraction of the run's (None: any)."""
        self._runner = runner
        self._root: Path | None = None
        self._seeds: list[DensitySeed] = []
        self.max_volume_step = max_volume_step

    def nearest(self, volume: float, spin_polarized: bool = False) -> DensitySeed | None:
        """The kept density that may seed a run (:meth:`DensitySeed.seeds`, within
        ``max_volume_step``) whose cell volume is nearest ``volume`` (Å^3), or ``None``."""
        usable = [seed for seed in reversed(self._seeds) if seed.seeds(spin_polarized)
                  and (self.max_volume_step is None
                       or abs(seed.volume / volume - 1.0) <= self.max_volume_step)]
        if not usable:
            return None  # (of equally near ones, the newest)
        return min(usable, key=lambda seed: abs(seed.volume - volume))

    def keep(self, label: str, volume: float, workdir: Path,
             magnetization: float | None = None) -> DensitySeed | None:
        """Keep the density a successful run left in ``workdir`` (``magnetization``: its
        absolute magnetisation in Bohr magnetons per cell when spin-polarised, else
        ``None``); ``None`` when it left none or it could not be copied (the next run then
        starts from atomic densities)."""
        density = workdir / SAVE_DIR / SEED_FILES[0]
        if not density.is_file():
            return None
        directory = None
        try:
            if self._root is None:
                self._root = make_workdir(self._runner, "densities")
            directory = self._root / f"{len(self._seeds):03d}"
            directory.mkdir()
            for name in SEED_FILES:
                source = workdir / SAVE_DIR / name
                if source.is_file():
                    shutil.copyfile(source, directory / name)
        except OSError:  # a partial copy would be read as a density: keep nothing
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            return None
        seed = DensitySeed(label, float(volume), directory,
                           None if magnetization is None else abs(float(magnetization)))
        self._seeds.append(seed)
        return seed

    def close(self) -> None:
        """Remove the kept files."""
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root, self._seeds = None, []

    def __enter__(self) -> "DensitySeeds":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Largest volume step a density seeds across in the bulk modulus's pressure scan: its two
#: runs are 4 % apart, and a seeded start there gained nothing on four non-magnetic
#: crystals (0.93-1.07x) and made ferromagnetic MnSn's second run 1.5x slower (181 s
#: against 121 s cold; BENCHMARKS.md); the five-point scans' 1 % steps do gain.
PRESSURE_SCAN_SEED_STEP = 0.025


def density_seeds(runner: RunnerConfig, options: RecipeOptions,
                  max_volume_step: float | None = None
                  ) -> contextlib.AbstractContextManager[DensitySeeds | None]:
    """A recipe's :class:`DensitySeeds` (seeding across at most ``max_volume_step``) when
    ``options.reuse_density``, else a context that gives ``None`` (every run starts from
    atomic densities)."""
    if not options.reuse_density:
        return contextlib.nullcontext()
    return DensitySeeds(runner, max_volume_step)


__all__ = ["DENSITY_READ", "MAGNETIC_SEED_MIN", "PRESSURE_SCAN_SEED_STEP", "SAVE_DIR",
           "SEED_FILES", "DensitySeed", "DensitySeeds", "density_seeds"]
