"""ld1.x's transferability test of the default preset's PAW family (scripts/test_pseudos.py).

For each element, the pslibrary input is run once per configuration (ld1.x 6.7 tests one
configuration per generation run: :func:`~crystaljax.oracles.qe.ld1.ld1_transferability`):
its reference configuration and two neutral excitations generated from its wavefunction card
(:func:`neutral_excitations`; ld1.x can test only configurations with the reference number
of valence electrons in that mode, and its separate test mode does not converge for PAW sets).
Recorded per configuration: the error of the pseudo-atom's excitation energy against the
all-electron one (mRy), the largest eigenvalue error (mRy) and whether the pseudo-atom
converged. An element passes when every configuration converged and is within
:data:`ENERGY_TOL_MRY` and :data:`EIGENVALUE_TOL_MRY`; an input that allows only its
reference configuration would be reported as untested (none of the 50 does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

#: largest excitation-energy error (mRy) of a passing pseudopotential (1 mRy = 13.6 meV)
ENERGY_TOL_MRY = 1.0
#: largest eigenvalue error (mRy) of a passing pseudopotential
EIGENVALUE_TOL_MRY = 5.0


def _valence_states(input_text: str) -> list[tuple[str, int, float]]:
    """(label, l, occupation) of the valence states of an ld1.x input's wavefunction card, in
    card order (a second projector of a channel and states of negative occupation, i.e. not
    in the configuration, are skipped; semicore states, full shells below another state of
    the same l, are left out)."""
    states: dict[str, tuple[int, int, float]] = {}
    for line in input_text.split("/")[-1].splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0][:1].isdigit() or len(fields[0]) != 2:
            continue
        label, ang, occ = fields[0].upper(), int(fields[2]), float(fields[3])
        if occ >= 0.0 and label not in states:
            states[label] = (int(label[0]), ang, occ)
    valence = []
    for label, (n, ang, occ) in states.items():
        semicore = occ >= 2 * (2 * ang + 1) and any(
            a2 == ang and n2 > n for n2, a2, _ in states.values())
        if not semicore:
            valence.append((label, ang, occ))
    return valence


def neutral_excitations(input_text: str, amounts: Sequence[float] = (0.5, 1.0)) -> list[str]:
    """The reference configuration of an ld1.x input (its wavefunction card, in card order)
    and neutral excited configurations: ``amount`` electrons moved from the
    outermost occupied valence state to the first valence state of another l with room
    (or the reverse when it has none; or from the outermost semicore shell when neither
    exists), e.g. Fe ``4s1.2 4p0.5 3d6.3``, Na ``2s2 3s1.5 2p5.5``. Only states that are
    bound in the reference (card energy 0) take part: a fractional occupation of an unbound
    channel (e.g. Al 3d0.5) does not converge in ld1.x's test. Semicore shells keep their
    occupation and are written out, so the configuration is complete."""
    states, bound, channels = {}, set(), []
    for line in input_text.split("/")[-1].splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][:1].isdigit() and len(fields[0]) == 2:
            channels.append(fields[0].upper())
            if float(fields[3]) >= 0.0:
                states.setdefault(fields[0].upper(), float(fields[3]))
                if float(fields[4]) == 0.0:
                    bound.add(fields[0].upper())
    valence = [v for v in _valence_states(input_text) if v[0] in bound]
    occupied = [v for v in valence if v[2] > 0]
    reference = [" ".join(f"{label.lower()}{value:g}" for label, value in states.items())]
    if not occupied:
        return reference
    donor = max(occupied, key=lambda v: (int(v[0][0]), v[1]))
    room = [v for v in valence if v[1] != donor[1] and v[2] < 2 * (2 * v[1] + 1)]
    others = [v for v in occupied if v[1] != donor[1]]
    if room:
        acceptor = room[0]
    elif others and donor[2] < 2 * (2 * donor[1] + 1):  # O 2s2 2p4: 2s -> 2p
        donor, acceptor = others[0], donor
    elif donor[2] < 2 * (2 * donor[1] + 1) and (semicore := [
            (label, int(label[0])) for label, occ in states.items()
            if label in bound and occ > 0 and label != donor[0]
            and label not in {v[0] for v in valence}]):  # Na 3s1 (3p unbound): 2p -> 3s
        label = max(semicore, key=lambda c: (c[1], "SPDF".index(c[0][1])))[0]
        donor, acceptor = (label, 0, states[label]), donor
    else:  # Ba 6s2, H 1s1: one integer electron into an unbound channel of another l
        unbound = [label for label in dict.fromkeys(channels) if label not in bound
                   and states.get(label, 0.0) == 0 and label[1] != donor[0][1]]
        if not unbound:
            return reference
        states.setdefault(unbound[0], 0.0)
        donor, acceptor, amounts = donor, (unbound[0], 0, 0.0), (1.0,)
    configs = list(reference)
    for amount in amounts:
        moved = min(amount, states[donor[0]], 2 * (2 * acceptor[1] + 1) - states[acceptor[0]])
        if moved <= 0:
            continue
        occ = dict(states)
        occ[donor[0]] -= moved
        occ[acceptor[0]] += moved
        config = " ".join(f"{label.lower()}{value:g}" for label, value in occ.items())
        if config not in configs:
            configs.append(config)
    return configs


def check_element(element: str, input_name: str, z_valence: float) -> dict:
    """Run ld1.x's test of one element's set in its reference configuration and two neutral
    excitations (:func:`neutral_excitations`), all written in the order of the input's
    wavefunction card: in generation mode ld1.x pairs the test states with the card's
    pseudo-wavefunctions by position (pslibrary's own test configurations, written for its
    test mode, gave AE energies that differ between identical occupations, e.g. Zn
    ``4s2 3d10`` and ``4s2 4p0 3d10`` by 11.6 mRy, so they are not used here)."""
    from crystaljax.oracles.qe.ld1 import config_electrons, ld1_input_path, ld1_transferability

    configs = neutral_excitations(ld1_input_path(input_name).read_text())
    neutral = [c for c in configs if abs(config_electrons(c) - z_valence) < 1e-6]
    ionised = [c for c in configs if c not in neutral]  # a card with an ionic reference
    t0 = time.time()
    tests = ld1_transferability(input_name, neutral) if neutral else []
    rows = []
    for test in tests:
        excitation_error = ((test.etot_ps - tests[0].etot_ps)
                            - (test.etot_ae - tests[0].etot_ae)) * 1000.0
        eigen_error = max(abs(ae - ps) for ae, ps in test.eigenvalues.values())
        rows.append({"config": test.config, "excitation_ae_ry": test.etot_ae - tests[0].etot_ae,
                     "excitation_error_mry": round(excitation_error, 4),
                     "eigenvalue_error_mry": round(eigen_error * 1000.0, 3),
                     "converged": test.converged})
    passed = None if len(rows) < 2 else all(
        r["converged"] and abs(r["excitation_error_mry"]) <= ENERGY_TOL_MRY
        and r["eigenvalue_error_mry"] <= EIGENVALUE_TOL_MRY for r in rows)
    return {"element": element, "input": input_name, "z_valence": z_valence, "tests": rows,
            "not_neutral": ionised, "passed": passed,
            "seconds": round(time.time() - t0, 2)}


def run(out: str, elements: Sequence[str] | None = None, pseudo_dir: str | None = None) -> dict:
    """Test ``elements`` (default: all of the family) and write ``out`` (JSON).

    An existing ``out`` is updated: the other elements' rows are kept, and where an
    element's input changed, its earlier row moves to ``earlier_sets`` (input -> row:
    presets other than ``default`` may still use that set)."""
    from crystaljax.oracles.qe.ld1 import generate_ld1_pseudo, ld1_store
    from crystaljax.oracles.qe.presets import PSLIBRARY_INPUTS
    from crystaljax.oracles.qe.upf import upf_valence

    directory = Path(pseudo_dir) if pseudo_dir else ld1_store()  # the machine's store
    path = Path(out)
    try:
        previous = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a JSON results file of this script: {exc}") from None
    if not isinstance(previous, dict) or not isinstance(previous.get("elements", {}), dict):
        raise ValueError(f"{path} is not a results file of this script (no 'elements' map)")
    unknown = sorted(set(elements or ()) - set(PSLIBRARY_INPUTS))
    if unknown:
        raise ValueError(f"unknown elements {unknown}; the family has {sorted(PSLIBRARY_INPUTS)}")
    results = dict(previous.get("elements", {}))
    earlier = dict(previous.get("earlier_sets", {}))
    for element in elements or sorted(PSLIBRARY_INPUTS):
        name = PSLIBRARY_INPUTS[element]
        z = upf_valence(generate_ld1_pseudo(element, name, directory))
        old = results.get(element)
        if old is not None and old["input"] != name:
            earlier[old["input"]] = old
        results[element] = check_element(element, name, z)
        row = results[element]
        worst = max((abs(r["excitation_error_mry"]) for r in row["tests"]), default=float("nan"))
        print(f"{element}: {_verdict(row['passed'])} ({len(row['tests'])} tested, "
              f"worst {worst:.3f} mRy)",
              flush=True)
    data = {"tolerances": {"excitation_error_mry": ENERGY_TOL_MRY,
                           "eigenvalue_error_mry": EIGENVALUE_TOL_MRY},
            "elements": dict(sorted(results.items())), "earlier_sets": earlier}
    path.write_text(json.dumps(data, indent=1))
    return data


def _verdict(passed: bool | None) -> str:
    return "untested (one configuration)" if passed is None else ("pass" if passed else "FAIL")


def summary(path: str) -> str:
    """Markdown table of a results file of :func:`run`."""
    data = json.loads(Path(path).read_text())
    lines = ["| element | pslibrary input | valence e | configurations | worst excitation "
             "error (mRy) | worst eigenvalue error (mRy) | result |",
             "|---|---|---|---|---|---|---|"]
    rows = [(el, row, "") for el, row in data["elements"].items()]
    rows += [(row["element"], row, " (earlier set)")
             for row in data.get("earlier_sets", {}).values()]
    for el, row, note in rows:
        tests = row["tests"]
        worst_e = max((abs(r["excitation_error_mry"]) for r in tests), default=float("nan"))
        worst_eig = max((r["eigenvalue_error_mry"] for r in tests), default=float("nan"))
        lines.append(f"| {el} | {Path(row['input']).name.removesuffix('.in')}{note} | "
                     f"{row['z_valence']:g} | {len(tests)} | {worst_e:.3f} | {worst_eig:.2f} | "
                     f"{_verdict(row['passed'])} |")
    return "\n".join(lines)


__all__ = ["EIGENVALUE_TOL_MRY", "ENERGY_TOL_MRY", "neutral_excitations", "run", "summary",
           "check_element"]
