"""The band-gap recipe (eV) and the band edges it reads from pw.x eigenvalues.

Gap = lowest unoccupied - highest occupied Kohn-Sham level over the k-grid, clipped at 0.
An odd electron count (spin off) is a metal: one smearing run, gap 0. An even count gets a
Marzari-Vanderbilt smearing run first, the gap read from band N/2 and N/2 + 1: bands that
overlap by :data:`METAL_OVERLAP_EV` or more make a metal (gap 0, one run); otherwise an
``scf`` with fixed occupations gives the gap, and if that run fails (typical for metals) or
its bands overlap, the smeared run's gap stands. (Fixed occupations came first until
2026-12-03: a metal's fixed run that runs to ``electron_maxstep`` cost 2.4x its smeared
run, 71 % of the time of 75 random perovskites' gaps; the insulators' values are the
same.) The fixed-occupation run starts from the smeared run's density
(``recipe.reuse_density``). A spin-polarised crystal gets one smeared run, and the gap is
taken over both spin channels: each channel's occupied bands are the ones below the Fermi
level, the highest occupied level is the highest of either channel, the lowest unoccupied
the lowest of either; a band crossing the Fermi level makes it a metal
(:func:`spin_band_edges`).
Eigenvalues are arrays of shape (n_k, n_bands) in eV.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymatgen.core import Structure

from crystaljax.oracles.base import OracleResult, Status
from crystaljax.oracles.qe.attempts import (
    _failure,
    _parse_failure,
    _result,
    _run,
    _smeared,
    _spin_details,
)
from crystaljax.oracles.qe.family import PseudoFamily
from crystaljax.oracles.qe.inputs import PwSettings, spin_polarized, valence_electrons
from crystaljax.oracles.qe.parse import PwOutput
from crystaljax.oracles.qe.recipe_options import RecipeOptions, _two_runs
from crystaljax.oracles.qe.restarts import AttemptLog, Failure
from crystaljax.oracles.qe.runner import RunnerConfig
from crystaljax.oracles.qe.seeds import DensitySeeds, density_seeds

#: A smeared run whose band N/2 + 1 lies this far (eV) or more below band N/2 somewhere in
#: the Brillouin zone is a metal without a fixed-occupation run (bands that overlap less
#: than this, or not at all, get the fixed-occupation run).
METAL_OVERLAP_EV = 0.1


def band_edges(eigenvalues: np.ndarray, n_electrons: float) -> tuple[float, float]:
    """(highest occupied, lowest unoccupied) level (eV) for a spin-degenerate insulator.

    Args:
      eigenvalues: shape (n_k, n_bands), eV.
      n_electrons: valence electrons (even).
    """
    n_occ = int(round(n_electrons)) // 2
    return float(eigenvalues[:, n_occ - 1].max()), float(eigenvalues[:, n_occ].min())


def _gap_from(parsed: PwOutput, n_electrons: float) -> float | None:
    if parsed.eigenvalues is not None and parsed.eigenvalues.shape[1] > n_electrons // 2:
        homo, lumo = band_edges(parsed.eigenvalues, n_electrons)
        return lumo - homo
    if parsed.homo is not None and parsed.lumo is not None:
        return parsed.lumo - parsed.homo
    return None


def occupied_bands(eigenvalues: np.ndarray, fermi: float) -> int | None:
    """Bands of one spin channel below the Fermi level (eV), when that number is the same
    at every k-point; ``None`` when a band crosses it (the channel is metallic).

    Args:
      eigenvalues: shape (n_k, n_bands), eV.
      fermi: the Fermi energy of the run (eV).
    """
    counts = (np.asarray(eigenvalues) < fermi).sum(axis=1)
    return int(counts[0]) if counts.size and (counts == counts[0]).all() else None


def channel_band_edges(channels: Sequence[np.ndarray], n_occupied: Sequence[int]
                       ) -> tuple[float, float]:
    """(highest occupied, lowest unoccupied) level (eV) over the spin channels: the
    highest occupied level of either channel and the lowest empty one of either.

    Args:
      channels: eigenvalues per channel, each of shape (n_k, n_bands), eV.
      n_occupied: occupied bands per channel.

    Raises:
      ValueError: no channel has an occupied band, or none has an empty one.
    """
    homos = [float(c[:, n - 1].max()) for c, n in zip(channels, n_occupied) if n > 0]
    lumos = [float(c[:, n].min()) for c, n in zip(channels, n_occupied) if n < c.shape[1]]
    if not homos or not lumos:
        raise ValueError("no occupied band or no empty band in the listing")
    return max(homos), min(lumos)


def spin_band_edges(channels: Sequence[np.ndarray], fermi: float
                    ) -> tuple[float, float] | None:
    """Band edges over both spin channels of a smeared run (see
    :func:`channel_band_edges`), each channel's occupied bands counted below the Fermi
    level; ``None`` for a metal (a band of a channel crosses the Fermi level)."""
    counts = [occupied_bands(c, fermi) for c in channels]
    if any(n is None for n in counts):
        return None
    return channel_band_edges(channels, counts)


def _spin_band_gap(structure: Structure, family: PseudoFamily, settings: PwSettings,
                   runner: RunnerConfig, options: RecipeOptions, log: AttemptLog,
                   ) -> OracleResult:
    """The band gap of a spin-polarised crystal: one smeared scf, the gap taken over both
    spin channels (:func:`spin_band_edges`)."""
    attempt = _run(structure, _smeared(settings, options), family, runner, options, log,
                   "gap-spin")
    if attempt.status != Status.OK:
        return _failure(attempt, log)
    parsed = attempt.parsed
    details = {"energy_per_atom": parsed.energy_per_atom, "fermi": parsed.fermi,
               **_spin_details(structure, attempt.settings, parsed)}
    channels = parsed.channels()
    if parsed.fermi is None or not channels:
        return _parse_failure("no Fermi energy or eigenvalues in the spin-polarised pw.x "
                              "output", log, **details)
    try:
        edges = spin_band_edges(channels, parsed.fermi)
    except ValueError as exc:
        return _parse_failure(f"spin-polarised band edges: {exc}", log, **details)
    if edges is None:
        return _result(0.0, log, {**details, "metal": True})
    homo, lumo = edges
    return _result(max(lumo - homo, 0.0), log, {**details, "homo": homo, "lumo": lumo,
                                                "metal": lumo <= homo})


def band_gap(
    structure: Structure, family: PseudoFamily, settings: PwSettings, runner: RunnerConfig,
    options: RecipeOptions = RecipeOptions(),
) -> OracleResult:
    """Kohn-Sham band gap (eV), clipped at 0; see the module docstring."""
    log = AttemptLog(_two_runs(options) * runner.time_limit)
    if spin_polarized(structure, settings):
        return _spin_band_gap(structure, family, settings, runner, options, log)
    with density_seeds(runner, options) as seeds:
        return _smeared_then_fixed(structure, family, settings, runner, options, log, seeds)


def _smeared_then_fixed(structure: Structure, family: PseudoFamily, settings: PwSettings,
                        runner: RunnerConfig, options: RecipeOptions, log: AttemptLog,
                        seeds: DensitySeeds | None) -> OracleResult:
    """The band gap of a spin-degenerate crystal (see :func:`band_gap`); with ``seeds``,
    the fixed-occupation run starts from the smeared run's density."""
    n_el = valence_electrons(structure, family)

    def smeared(base: PwSettings) -> PwSettings:
        return _smeared(base, options)

    # Smearing first: most decorations are metals, and a metal's fixed-occupation run is
    # the costly failure (it runs to electron_maxstep). An odd electron count is a metal;
    # otherwise the smeared run tells a metal (bands N/2 and N/2 + 1 overlapping by
    # METAL_OVERLAP_EV or more) from a crystal that may have a gap, which then gets the
    # fixed-occupation run for its exact gap.
    smear = _run(structure, smeared(settings), family, runner, options, log, "gap-smear",
                 seeds=seeds)
    if smear.status != Status.OK:
        return _failure(smear, log)
    if int(round(n_el)) % 2 == 1:
        return _result(0.0, log, {
            "energy_per_atom": smear.parsed.energy_per_atom, "metal": True,
            "odd_electrons": True, "fermi": smear.parsed.fermi,
        })
    smeared_gap = _gap_from(smear.parsed, n_el)
    if smeared_gap is None:
        return _parse_failure("no eigenvalues in pw.x output", log)
    from_smearing = {"energy_per_atom": smear.parsed.energy_per_atom,
                     "fermi": smear.parsed.fermi, "smeared_gap": smeared_gap}
    if smeared_gap <= -METAL_OVERLAP_EV:
        return _result(0.0, log, {**from_smearing, "metal": True})
    fixed = settings.replace(calculation="scf", occupations="fixed", stress=False)
    # An SCF that does not converge with fixed occupations (or a wrong charge) is the sign
    # of a metal: not restarted. When the fixed run gives no gap, for that or any other
    # reason (its time limit included), the smeared run's answer stands.
    attempt = _run(structure, fixed, family, runner, options, log, "gap-fixed",
                   handled=frozenset({Failure.SCF_NOT_CONVERGED, Failure.CHARGE_WRONG}),
                   seeds=seeds)
    extra: dict = {}
    if attempt.status == Status.OK:
        gap = _gap_from(attempt.parsed, n_el)
        if gap is None:
            return _parse_failure("no band edges in pw.x output", log)
        if gap > 0:
            homo, lumo = (band_edges(attempt.parsed.eigenvalues, n_el)
                          if attempt.parsed.eigenvalues is not None
                          else (attempt.parsed.homo, attempt.parsed.lumo))
            return _result(gap, log, {
                "energy_per_atom": attempt.parsed.energy_per_atom, "homo": homo, "lumo": lumo,
                "metal": False, "smeared_gap": smeared_gap,
            })
        extra["fixed_occupations"] = "bands overlap"
    else:
        extra["fixed_occupations"] = f"{attempt.status.name}: {attempt.reason}"
    return _result(max(smeared_gap, 0.0), log, {
        **extra, **from_smearing, "fallback": "smearing", "metal": smeared_gap <= 0,
    })
