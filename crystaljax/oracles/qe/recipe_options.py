"""Recipe options (:class:`RecipeOptions`, ``recipe.*`` in the config) and the pw.x runs
each recipe takes under them (which bound a crystal's time budget)."""

from __future__ import annotations

import dataclasses
import typing

from ase.eos import eos_names

from crystaljax.config import ConfigError, check, option
from crystaljax.oracles.qe.equation_of_state import REFINE_RUNS
from crystaljax.oracles.qe.inputs import Diagonalization

#: ``RecipeOptions.relax``: ``none`` (the CrystalGym-compatible scan at the template
#: volume), ``volume`` (E(V) minimum under isotropic scaling), ``full`` (vc-relax first)
Relax = typing.Literal["none", "volume", "full"]

#: ``RecipeOptions.eos_data``: what the bulk modulus's template-volume scan fits:
#: ``pressure`` (pw.x's stress at ``pressure_scales``) or ``energy`` (E(V) at
#: ``volume_scales``, CrystalGym's recipe)
EosData = typing.Literal["pressure", "energy"]

#: ``RecipeOptions.relax_search``: how ``relax: volume / full`` find the equilibrium:
#: ``pressure`` (the zero of pw.x's pressure) or ``energy`` (the E(V) minimum)
RelaxSearch = typing.Literal["pressure", "energy"]


@dataclasses.dataclass(frozen=True)
class RecipeOptions:
    """Recipe-specific knobs (the pw.x numerics live in :class:`PwSettings`).

    Attributes:
      nstep: BFGS steps of the density ``vc-relax``.
      eos_data: what the bulk modulus at the template volume (``relax: none``) is fitted
        on: ``pressure`` (default): pw.x's stress at the volumes ``pressure_scales``, a
        Birch-Murnaghan P(V) (B0' fixed at 4 for two volumes, fitted for three or
        more); ``energy``: total energies at ``volume_scales``, an :mod:`ase.eos` E(V) fit
        (``eos``), as CrystalGym. Measured on the validation crystals
        (docs/DFT.md): the two-volume pressure fit is within 0.03-2.2 % of a five-volume
        one, in 2 scf runs instead of 5.
      pressure_scales: volume factors of the pressure scan (two or more).
      pressure_conv_factor: the pressure scan's SCF threshold as a fraction of
        ``settings.conv_thr_per_atom``. The stress is first order in the density's SCF
        error, the energy second order: at the default 1e-9 Ry per atom pw.x's pressure
        still moves by 0.02-0.08 GPa with the starting density (NaCl, Cu; 2 % of their
        B0 over the ±2 % scan), at 1e-11 by 0.005 (docs/DFT.md).
      volume_scales: volume factors of the energy scan (three or more).
      eos: :mod:`ase.eos` equation of state name of the energy scan.
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
        scaling, found by ``relax_search``: B0 and V0 of the equation of state fitted
        around it, density at V0) or ``full`` (a vc-relax of
        ``relax_nstep`` steps first, then ``volume`` from the relaxed cell). A crystal
        without an E(V) minimum in the searched range gets status NO_MINIMUM and no value.
      relax_step: lattice-constant step of the minimum search (fraction; the energy
        search's first points are 1 - step, 1, 1 + step, steps towards falling energy
        double; the pressure search's first step goes from 1 towards the zero of P).
      relax_range: (smallest, largest) lattice-constant factor the search may reach.
      relax_max_runs: most scf runs of the search, the fit window included.
      relax_nstep: BFGS steps of the ``full`` vc-relax.
      relax_search: how ``relax`` finds the equilibrium: ``pressure`` (default): the zero
        of pw.x's pressure (:func:`~.equation_of_state.search_zero_pressure`, a P(V) fit
        around it, the runs at the pressure scan's SCF threshold; typically 3 runs);
        ``energy``: the E(V) minimum (:func:`~.equation_of_state.search_energy_minimum`,
        an :mod:`ase.eos` fit; 5-9 runs). The zero of the pressure is the E(V) minimum
        only at a converged basis: an unconverged one adds a (Pulay) pressure offset d
        that moves it by about d / B, while the E(V) minimum at a fixed cutoff moves far
        less. So presets with capped cutoffs (``fast``: offsets of -3 to -33 GPa;
        ``test``) search the energy; ``default``'s cutoffs keep d / B within about 1 %.
      reuse_density: start each scf of a crystal after its first from the converged
        density of its nearest earlier cell (the E(V) points, the band gap's
        fixed-occupation run; a spin-polarised run only from a magnetic one;
        :mod:`~crystaljax.oracles.qe.seeds`):
        the same result within the SCF threshold when both converge, in fewer SCF
        iterations. Not part of the cache key.
    """

    nstep: int = option(1, ge=1)
    eos_data: EosData = "pressure"
    pressure_scales: tuple[float, ...] = option((0.98, 1.02), gt=0)
    pressure_conv_factor: float = option(0.01, gt=0, le=1)
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
    relax_search: RelaxSearch = "pressure"
    reuse_density: bool = True

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
        if len(set(self.pressure_scales)) < 2 \
                or len(set(self.pressure_scales)) != len(self.pressure_scales):
            raise ConfigError("recipe.pressure_scales needs at least 2 volume factors, all "
                              f"different, got {list(self.pressure_scales)}")

    @property
    def scan_scales(self) -> tuple[float, ...]:
        """Volume factors of the template-volume bulk-modulus scan (per ``eos_data``)."""
        return self.pressure_scales if self.eos_data == "pressure" else self.volume_scales


def _two_runs(options: RecipeOptions) -> int:  # smearing, then fixed occupations
    return 2


def _relax_runs(options: RecipeOptions) -> int:  # the E(V) search (+ the vc-relax)
    return options.relax_max_runs + (options.relax == "full")


def _density_runs(options: RecipeOptions) -> int:
    return 1 if options.relax == "none" else _relax_runs(options)


def _scan_runs(options: RecipeOptions) -> int:
    return len(options.scan_scales) if options.relax == "none" else _relax_runs(options)
