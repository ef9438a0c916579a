"""Cutoffs converged on what the QE oracle's properties need (SSSP-like), not on absolute energy.

The energy rule of :mod:`crystaljax.benchmarks.cutoffs` asks for the total energy per atom
within 5 meV/atom of a run 1.5x higher. None of the oracle's properties reads an absolute
energy: the band gap is an eigenvalue difference, the bulk modulus the curvature of E(V),
the relaxed density the volume where the pressure vanishes. Like SSSP (Prandini et al., npj
Comput. Mater. 4, 72 (2018)), this rule converges those quantities instead, on the same
one-atom fcc cell (:func:`~crystaljax.benchmarks.cutoffs.fcc_cell`) at ``V0`` and
``V1 = PROPERTY_STRAIN**3 V0`` (and ``V2``, below) per ladder cutoff. Against a run at >= 1.5x
the cutoff:

* ``volume``: the equilibrium-volume error a pressure error implies, ``|dP(V0)| / B``, with
  ``B = -(P1 - P0) / ln(V1 / V0)`` of the reference run (GPa / GPa);
* ``bulk_modulus``: the error of the bulk modulus's finite difference
  ``-(P1 - P0) / ln(V1 / V0)``, relative to the reference's B or
  :data:`BULK_MODULUS_FLOOR_GPA`, whichever is larger;
* ``bands_mev``: the largest change of a Kohn-Sham eigenvalue relative to the Fermi level, over
  every k-point and every band the reference has in ``BAND_WINDOW_EV`` around its Fermi
  level, at ``V0`` (meV), the highest computed band excepted: where ``nbnd`` cuts through a
  degenerate multiplet, Davidson leaves that band ill-defined (fcc Ca and La at equilibrium:
  0.3-0.7 eV between cutoffs at and above 70 Ry, every lower band within 30 meV).

The chosen cutoff is the lowest ladder value that, with every ladder value above it up to the
reference, is within all three tolerances (:data:`PROPERTY_TOLERANCES`).

The ``volume`` and ``bulk_modulus`` criteria read the stress, as the density recipe's vc-relax
does. The band-gap recipe reads only eigenvalues at the template cell, and the bulk-modulus
recipe total energies at a constant cutoff (its E(V) fit), so each gets its own rule
(:data:`PROPERTY_RULES`): ``band_gap`` the bands alone; ``bulk_modulus`` the two stress
criteria and two energy criteria from a third cell ``V2 = ENERGY_STRAIN**3 V0``
(``energy_v2``), on the parabola E(V) through V1, V0 and V2 at each cutoff:

* ``energy_volume``: the shift of its minimum, relative to the reference's;
* ``energy_bulk_modulus``: the change of its curvature ``V0 d2E/dV2``, relative to the
  reference's or :data:`BULK_MODULUS_FLOOR_GPA`, whichever is larger.

The stress criteria stay in the bulk-modulus rule although its recipe reads no stress: on an
elemental probe the E(V) of a soft metal does not see its semicore shell, the stress does,
and a compound does (fcc Na's E(V) is converged at 50 Ry, its stress at 100; rock-salt
NaCl's bulk modulus at 50 Ry is 18 % below its 100 Ry value). The energy criteria add what
the stress misses: the curvature's own noise between cutoffs (Cr 50 -> 70 Ry).

Probe cells (``probe``): ``contact`` (the recorded scans: nearest-neighbour distance
max(2 r_atomic, 2.2 Å), which leaves some elements far from equilibrium: fcc Cl 41 %
compressed in lattice constant, at about 350 GPa, fcc Mn 13 % expanded, at -45 GPa, where
its B is 28 GPa) or ``equilibrium`` (the fcc cell at its own E(V) minimum at
:data:`EQUILIBRIUM_ECUT`, as SSSP converges elemental crystals at their equilibrium).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from crystaljax.benchmarks.cutoffs import element_family, fcc_cell, run_cell

#: the second cell: the fcc lattice constant scaled by this (volume x 0.941)
PROPERTY_STRAIN = 0.98
#: the third cell of the energy criteria: the fcc lattice constant scaled by this (volume
#: x 1.061)
ENERGY_STRAIN = 1.02
#: tolerances of the property rule: relative volume error, relative bulk-modulus error,
#: eigenvalue change (meV); SSSP's efficiency set asks for about 1 % volume (its
#: pressure criterion) and 10-20 meV in the bands
PROPERTY_TOLERANCES = {"volume": 0.01, "bulk_modulus": 0.02, "bands_mev": 20.0}
#: property -> the tolerances its cutoff is converged on: what its recipe reads (module
#: docstring); a property not named here (``density``) takes :data:`PROPERTY_TOLERANCES`
PROPERTY_RULES = {
    "band_gap": {"bands_mev": PROPERTY_TOLERANCES["bands_mev"]},
    "bulk_modulus": {"volume": PROPERTY_TOLERANCES["volume"],
                     "bulk_modulus": PROPERTY_TOLERANCES["bulk_modulus"],
                     "energy_volume": PROPERTY_TOLERANCES["volume"],
                     "energy_bulk_modulus": PROPERTY_TOLERANCES["bulk_modulus"]},
}
#: eV/Å^3 in GPa
EV_PER_A3_GPA = 160.21766208
#: the bulk-modulus error is relative to the probe cell's B or this (GPa), whichever is
#: larger: an fcc cell far from its equilibrium can have a B of a few GPa (Fe: 12), where
#: 0.05 GPa of pressure noise would read as a 6 % error
BULK_MODULUS_FLOOR_GPA = 50.0
#: bands compared: reference eigenvalues within this window around the Fermi level (eV)
BAND_WINDOW_EV = (-10.0, 5.0)
#: ``probe = "equilibrium"``: wavefunction cutoff (Ry) of the E(V) minimum search, above
#: every property-rule choice of the contact probe but one (Mn, Be, Na, Cl, Zn: 100)
EQUILIBRIUM_ECUT = 120.0
#: probe cells of :func:`scan_element_properties`: ``oxide`` is the rock-salt oxide MO at
#: its E(V) minimum (:func:`oxide_cell`), the element's bonds to oxygen (SSSP verifies on
#: oxides too: a 3d metal's bonds to O are much shorter than its own)
PROBES = ("contact", "equilibrium", "oxide")
#: the elements the ``oxide`` probe is meant for (``scripts/converge_cutoffs.py --probe
#: oxide`` scans these by default): the 3d metals, whose oxides' bulk moduli came out 4-5 %
#: low at their elemental cutoffs (MnO, NiO; docs/PSEUDOPOTENTIALS.md)
OXIDE_PROBE_ELEMENTS = ("Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn")


def oxide_cell(element: str):
    """The rock-salt oxide of ``element`` (primitive fcc, 2 atoms), nearest-neighbour
    distance the sum of the atomic radii (the start of its E(V) minimum search)."""
    from pymatgen.core import Element, Structure

    from crystaljax.benchmarks.dft import fcc_lattice

    nn = (Element(element).atomic_radius or 1.5) + (Element("O").atomic_radius or 0.6)
    return Structure(fcc_lattice(2.0 * float(nn)), [element, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def probe_start(element: str, probe: str):
    """The cell a ``probe`` of ``element`` starts from (before any E(V) search)."""
    return oxide_cell(element) if probe == "oxide" else fcc_cell(element)


def equilibrium_cell(element: str, family, runner, dual: float, start=None):
    """The one-atom fcc cell of ``element`` (or ``start``, e.g. :func:`oxide_cell`) at its
    E(V) minimum (the ``relax: volume`` search from
    :func:`~crystaljax.benchmarks.cutoffs.fcc_cell`, lattice factors 0.6-1.5, at
    :data:`EQUILIBRIUM_ECUT`, the scan's k-grid and smearing, spin off) and the search's
    details (``lattice_factor``, ``b0_gpa``); ``(None, details with reason)`` when it finds
    no minimum."""
    from crystaljax.oracles.qe.inputs import PwSettings
    from crystaljax.oracles.qe.recipe_options import RecipeOptions
    from crystaljax.oracles.qe.recipes import bulk_modulus

    start = fcc_cell(element) if start is None else start
    settings = PwSettings(ecutwfc=EQUILIBRIUM_ECUT, ecutrho=dual * EQUILIBRIUM_ECUT,
                          kgrid=(6, 6, 6), conv_thr_per_atom=1e-9, spin="off")
    # the E(V) minimum (the probe's definition, and what the recorded scans used): the
    # ladder's low cutoffs are far from converged, where the zero of the pressure is not
    options = RecipeOptions(relax="volume", relax_range=(0.6, 1.5), relax_max_runs=14,
                            metal_smearing="mv", metal_degauss=0.02, relax_search="energy")
    result = bulk_modulus(start, family, settings, runner, options)
    if result.status.name != "OK":
        return None, {"status": result.status.name, "reason": result.reason}
    cell = start.copy()
    cell.scale_lattice(result.extra["v0"])
    return cell, {"lattice_factor": round(result.extra["lattice_factor"], 5),
                  "b0_gpa": round(result.value, 2), "seconds": round(result.seconds, 1)}


def property_row(ecut: float, cells, settings, family, runner, element: str) -> dict:
    """One ladder row: energy, pressure and seconds at V0, V1 (and V2 where ``cells`` has a
    third cell), band energies relative to the Fermi level at V0 (shape (n_k, n_bands), eV,
    rows, rounded to 0.1 meV). A failed V0 or V1 run fails the row (``status``, ``reason``); a
    failed V2 run only the energy criteria (:func:`_record_v2`). Volumes are the cells'
    (``atoms`` per cell), energies per atom."""
    row: dict = {"ecutwfc": ecut, "status": "OK", "reason": "", "seconds": 0.0,
                 "atoms": len(cells[0])}
    for tag, cell in zip(("v0", "v1", "v2"), cells):
        status, reason, parsed, seconds = run_cell(cell, settings, family, runner,
                                                   f"conv-prop-{element}-{ecut}-{tag}")
        if tag == "v2":
            _record_v2(row, cell, status, reason, parsed, seconds)
            continue
        row["seconds"] = round(row["seconds"] + seconds, 2)
        row[f"volume_{tag}"] = round(float(cell.volume), 6)
        row[f"energy_{tag}"] = parsed.energy_per_atom
        row[f"pressure_{tag}"] = parsed.pressure
        if status != "OK":
            row["status"], row["reason"] = status, f"{tag}: {reason}"
            return row
        if tag == "v0":
            if parsed.eigenvalues is None or parsed.fermi is None:
                row["status"], row["reason"] = "PARSE_ERROR", "v0: no eigenvalues or Fermi level"
                return row
            row["bands_ev"] = np.round(parsed.eigenvalues - parsed.fermi, 4).tolist()
    return row


def _record_v2(row: dict, cell, status: str, reason: str, parsed, seconds: float) -> None:
    """Put the third cell's run into ``row``: volume, energy, pressure, seconds; a failed run
    leaves ``energy_v2`` None with ``status_v2`` and ``reason_v2`` (the row's V0 and V1
    numbers stay usable by the stress and band criteria; only the energy criteria see no
    third cell there, and :func:`add_energy_cell` tries it again)."""
    row["seconds"] = round(row["seconds"] + seconds, 2)
    row["volume_v2"] = round(float(cell.volume), 6)
    ok = status == "OK"
    row["energy_v2"] = parsed.energy_per_atom if ok else None
    row["pressure_v2"] = parsed.pressure if ok else None
    row["status_v2"], row["reason_v2"] = status, reason


def property_deviations(row: dict, ref: dict) -> dict[str, float]:
    """``volume``, ``bulk_modulus`` (relative) and ``bands_mev`` of ``row`` against ``ref``,
    and the energy criteria (:func:`energy_deviations`) (module docstring)."""
    dp_ref = ref["pressure_v1"] - ref["pressure_v0"]
    b_ref = -dp_ref / math.log(ref["volume_v1"] / ref["volume_v0"])
    volume = abs(row["pressure_v0"] - ref["pressure_v0"]) / abs(b_ref)
    d_bulk = abs((row["pressure_v1"] - row["pressure_v0"]) - dp_ref) / abs(
        math.log(ref["volume_v1"] / ref["volume_v0"]))
    bulk = d_bulk / max(abs(b_ref), BULK_MODULUS_FLOOR_GPA)
    bands, bands_ref = np.asarray(row["bands_ev"]), np.asarray(ref["bands_ev"])
    if bands.shape == bands_ref.shape and bands.ndim == 2 and bands.shape[1] > 1:
        bands, bands_ref = bands[:, :-1], bands_ref[:, :-1]  # not the highest computed band
    lo, hi = BAND_WINDOW_EV
    window = (bands_ref >= lo) & (bands_ref <= hi)
    if bands.shape != bands_ref.shape or not window.any():
        worst = math.inf
    else:
        worst = float(np.max(np.abs(bands - bands_ref)[window])) * 1000.0
    return {"volume": volume, "bulk_modulus": bulk, "bands_mev": worst,
            **energy_deviations(row, ref)}


def energy_curve(row: dict) -> tuple[float, float]:
    """(volume of the minimum in Å^3 per atom, ``V0 d2E/dV2`` in GPa) of the parabola E(V)
    through a row's three cells (``energy_v1``, ``energy_v0``, ``energy_v2``: eV per atom;
    the cells' volumes divided by their ``atoms``, 1 where a row does not say)."""
    atoms = row.get("atoms", 1)
    volumes = [row[f"volume_{tag}"] / atoms for tag in ("v1", "v0", "v2")]
    a, b, _ = np.polyfit(volumes, [row["energy_v1"], row["energy_v0"], row["energy_v2"]], 2)
    return float(-b / (2.0 * a)), float(2.0 * a * volumes[1] * EV_PER_A3_GPA)


def energy_deviations(row: dict, ref: dict) -> dict[str, float]:
    """``energy_volume`` (the shift of E(V)'s minimum relative to the reference's V0) and
    ``energy_bulk_modulus`` (relative) of ``row`` against ``ref`` (module docstring);
    infinite (nothing confirmed) where either row lacks its third cell, or where either
    parabola curves downwards (no minimum: a cell far from equilibrium)."""
    nothing = {"energy_volume": math.inf, "energy_bulk_modulus": math.inf}
    if any(r.get("energy_v2") is None for r in (row, ref)):
        return nothing
    (v_min, b), (v_ref, b_ref) = energy_curve(row), energy_curve(ref)
    if b <= 0 or b_ref <= 0:
        return nothing
    return {"energy_volume": abs(v_min - v_ref) * ref.get("atoms", 1) / ref["volume_v0"],
            "energy_bulk_modulus": abs(b - b_ref) / max(b_ref, BULK_MODULUS_FLOOR_GPA)}


def within(deviations: dict[str, float], tolerances: dict[str, float]) -> bool:
    return all(deviations[k] <= tolerances[k] for k in tolerances)


def choose_property_cutoff(rows: list[dict], tolerances: dict[str, float] = PROPERTY_TOLERANCES
                           ) -> int | None:
    """Lowest cutoff c that, with every cutoff between c and the last (highest) run, is within
    ``tolerances`` of that run, provided the last cutoff is >= 1.5 c; ``None`` if none."""
    if not rows or rows[-1]["status"] != "OK":
        return None
    ref = rows[-1]
    chosen = None
    for r in reversed(rows[:-1]):
        if r["status"] != "OK" or not within(property_deviations(r, ref), tolerances):
            break
        if ref["ecutwfc"] >= 1.5 * r["ecutwfc"]:
            chosen = r["ecutwfc"]
    return chosen


def scan_element_properties(element: str, ladder, family_dir: Path, runner,
                            generated: dict[str, str], dual: float,
                            tolerances: dict[str, float] = PROPERTY_TOLERANCES,
                            probe: str = "contact") -> dict:
    """Up ``ladder`` until :func:`choose_property_cutoff` finds a cutoff for ``tolerances``
    and for each of :data:`PROPERTY_RULES` (or the ladder ends): rows of
    :func:`property_row` on the cells V0, V1, V2; the family's pseudopotential for
    ``element``. ``probe``:
    one of :data:`PROBES` (module docstring); an ``equilibrium`` or ``oxide`` probe
    without an E(V) minimum gives no rows and ``probe_error``. The ``oxide`` probe's
    cutoff holds for the oxide as a whole (O's own cutoff included)."""
    from crystaljax.oracles.qe.presets import pseudo_variant

    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    partners = ("O",) if probe == "oxide" else ()
    family = element_family(element, ladder, family_dir, generated, dual, partners)
    head = {"element": element, "variant": pseudo_variant(element, generated),
            "z_valence": family.spec(element).z_valence, "probe": probe}
    if partners:  # the oxide's O: which set its rows were computed with
        head["partner_variants"] = {e: pseudo_variant(e, generated) for e in partners}
    v0 = probe_start(element, probe)
    if probe != "contact":
        v0, head["probe_search"] = equilibrium_cell(element, family, runner, dual, v0)
        if v0 is None:
            return {**head, "probe_error": head["probe_search"]["reason"], "rows": []}
    rows: list[dict] = []
    for ecut in ladder:
        rows.append(property_row(ecut, probe_cells(v0), scan_settings(ecut, dual), family,
                                 runner, element))
        if every_rule_met(rows, tolerances):
            break
    return {**head, "fcc_a": round(v0.lattice.a * 2**0.5, 4), "rows": rows}


def every_rule_met(rows: list[dict], tolerances: dict[str, float] = PROPERTY_TOLERANCES
                   ) -> bool:
    """Whether ``tolerances`` and each of :data:`PROPERTY_RULES` find a cutoff in ``rows``
    (where a scan stops)."""
    return all(choose_property_cutoff(rows, rule) is not None
               for rule in (tolerances, *PROPERTY_RULES.values()))


def _recorded_probe(record: dict, volume: float):
    """The probe cell of a recorded scan (its element and ``probe``) at ``volume`` (Å^3)."""
    cell = probe_start(record["element"], record.get("probe", "contact"))
    cell.scale_lattice(volume)
    return cell


def _record_family(record: dict, ladder, family_dir: Path, generated: dict[str, str],
                   dual: float):
    partners = ("O",) if record.get("probe") == "oxide" else ()
    return element_family(record["element"], ladder, family_dir, generated, dual, partners)


def scan_settings(ecut: float, dual: float):
    """The pw.x settings of one ladder cutoff (``ecutrho`` = ``dual`` x ``ecut``, Ry)."""
    from crystaljax.oracles.qe.inputs import PwSettings

    return PwSettings(ecutwfc=float(ecut), ecutrho=dual * ecut, occupations="smearing",
                      smearing="mv", degauss=0.02, kgrid=(6, 6, 6), conv_thr_per_atom=1e-9,
                      spin="off", full_accuracy_empty_bands=True)


def probe_cells(v0) -> tuple:
    """(V0, V1, V2): the probe cell and its copies with the lattice constant x
    :data:`PROPERTY_STRAIN` and x :data:`ENERGY_STRAIN`."""
    cells = [v0]
    for strain in (PROPERTY_STRAIN, ENERGY_STRAIN):
        cell = v0.copy()
        cell.scale_lattice(v0.volume * strain**3)
        cells.append(cell)
    return tuple(cells)


def extend_scan(record: dict, ladder, family_dir: Path, runner, generated: dict[str, str],
                dual: float, tolerances: dict[str, float] = PROPERTY_TOLERANCES) -> int:
    """Continue a recorded scan (``record``: one element of a property-rule file, its rows
    with all three cells) up ``ladder`` past its last cutoff until ``tolerances`` and each
    of :data:`PROPERTY_RULES` find a cutoff, as :func:`scan_element_properties` would have
    (a scan recorded before the energy rule stopped when the full rule was met). Returns
    the cutoffs added; a failed run stops it."""
    rows = record["rows"]
    higher = [c for c in ladder if rows and c > rows[-1]["ecutwfc"]]
    if not higher or rows[-1]["status"] != "OK" or every_rule_met(rows, tolerances):
        return 0
    element = record["element"]
    family = _record_family(record, ladder, family_dir, generated, dual)
    cells = probe_cells(_recorded_probe(record, rows[0]["volume_v0"]))
    added = 0
    for ecut in higher:
        rows.append(property_row(ecut, cells, scan_settings(ecut, dual), family, runner,
                                 element))
        added += 1
        if rows[-1]["status"] != "OK" or every_rule_met(rows, tolerances):
            break
    return added


def add_energy_cell(record: dict, family_dir: Path, runner, generated: dict[str, str],
                    dual: float) -> int:
    """Complete a scan recorded before the third cell: run V2 for every OK row of
    ``record`` (one element of a property-rule file) without an ``energy_v2`` (never run,
    or failed before), at that row's cutoff, on the recorded V0 (``volume_v0``); the row's
    ``seconds`` include it (:func:`_record_v2`: a failure is recorded apart and leaves the
    row's other numbers usable). Returns the runs made."""
    rows = [r for r in record["rows"] if r["status"] == "OK" and r.get("energy_v2") is None]
    if not rows:
        return 0
    element = record["element"]
    ladder = [r["ecutwfc"] for r in record["rows"]]
    family = _record_family(record, ladder, family_dir, generated, dual)
    for row in rows:
        v2 = probe_cells(_recorded_probe(record, row["volume_v0"]))[2]
        status, reason, parsed, seconds = run_cell(
            v2, scan_settings(row["ecutwfc"], dual), family, runner,
            f"conv-prop-{element}-{row['ecutwfc']}-v2")
        _record_v2(row, v2, status, reason, parsed, seconds)
    return len(rows)


def recommend_property_cutoff(rows: list[dict],
                              tolerances: dict[str, float] = PROPERTY_TOLERANCES
                              ) -> tuple[int, str]:
    """The cutoff and its rule: ``property`` (:func:`choose_property_cutoff`), else ``top``
    (the highest cutoff that ran; nothing lower is confirmed)."""
    chosen = choose_property_cutoff(rows, tolerances)
    if chosen is not None:
        return chosen, "property"
    ok = [r for r in rows if r["status"] == "OK"]
    return (ok[-1]["ecutwfc"] if ok else max(r["ecutwfc"] for r in rows)), "top"


__all__ = ["BAND_WINDOW_EV", "BULK_MODULUS_FLOOR_GPA", "ENERGY_STRAIN", "EQUILIBRIUM_ECUT",
           "OXIDE_PROBE_ELEMENTS", "PROBES", "PROPERTY_RULES", "PROPERTY_STRAIN",
           "PROPERTY_TOLERANCES", "add_energy_cell", "choose_property_cutoff", "energy_curve",
           "energy_deviations", "equilibrium_cell", "every_rule_met", "extend_scan",
           "oxide_cell", "probe_cells", "probe_start", "property_deviations", "property_row",
           "recommend_property_cutoff", "scan_element_properties", "scan_settings"]
