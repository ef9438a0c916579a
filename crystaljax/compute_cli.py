"""``crystaljax compute FILE --oracle qe|chgnet|chgnet-host --property P``: one crystal,
any oracle.

* ``--oracle qe`` is ``crystaljax dft`` (the same code path; ``--preset`` and
  ``--time-limit`` are passed on);
* ``--oracle chgnet`` evaluates the in-graph oracle (the JAX port, jitted) on a template
  made from the file's structure, with the structure's elements as the vocabulary;
* ``--oracle chgnet-host`` evaluates the torch CHGNet host oracle in this process.

``--relax none | volume | full`` chooses the cell (``full``: ``qe`` and ``chgnet-host``
only), ``--option KEY=VALUE`` (repeatable) sets the CHGNet oracles' other options
(``min_scale=0.9``, ``steps=12``, ``fmax=0.02``, ...; see docs/MLIP.md). With ``--json``:
one JSON object with the keys of ``crystaljax dft --json``: ``property``, ``value``,
``unit``, ``status``, ``seconds``, ``reason``, ``energy_per_atom``, ``magnetization``
(``null`` for CHGNet). Exit status: 0 when the computation succeeded, 1 when the oracle
failed (the status says why, ``NO_MINIMUM`` included), 2 for unusable input (unreadable
file, an element CHGNet does not know, a bad option).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
import warnings

from crystaljax.properties import PROPERTIES

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
#: oracles of ``crystaljax compute``
COMPUTE_ORACLES = ("qe", "chgnet", "chgnet-host")


class _BadInput(ValueError):
    """Unusable input: a one-line message and exit status 2."""


def compute_properties() -> list[str]:
    """Properties that at least one of :data:`COMPUTE_ORACLES` computes."""
    return sorted(name for name, prop in PROPERTIES.items()
                  if any(o in prop.oracles for o in COMPUTE_ORACLES))


def add_compute_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``compute`` sub-command on ``subparsers``; returns its parser."""
    parser = subparsers.add_parser(
        "compute", help="compute one crystal's property with QE or CHGNet",
        description="Compute one crystal's property with Quantum ESPRESSO (qe), the in-graph "
                    "CHGNet port (chgnet) or the torch CHGNet on the host (chgnet-host).",
    )
    parser.add_argument("file", help="crystal structure file (CIF, POSCAR, ...)")
    parser.add_argument("--oracle", required=True, choices=COMPUTE_ORACLES)
    parser.add_argument("--property", required=True, choices=compute_properties(),
                        dest="property_name")
    parser.add_argument("--relax", default=None, choices=("none", "volume", "full"),
                        help="cell of the property: as given (none), at the E(V) minimum "
                             "under isotropic scaling (volume), after relaxing atoms and cell "
                             "(full; qe and chgnet-host). Default: the oracle's (qe: none, "
                             "CHGNet: volume)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--preset", default="default", help="QE preset (qe only)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="s per pw.x run (qe) or per crystal (chgnet-host)")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the CHGNet oracle (min_scale, max_scale, steps, "
                             "fmax, relax_steps, optimizer, cell_filter, ...); repeatable")
    parser.set_defaults(func=run_compute)
    return parser


def _error(message: str) -> int:
    first = str(message).strip().splitlines()[0] if str(message).strip() else "error"
    print(f"crystaljax compute: error: {first}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_compute(args: argparse.Namespace) -> int:
    """Run the ``compute`` sub-command; returns the exit status (0, 1 or 2)."""
    from crystaljax.config import ConfigError
    from crystaljax.oracles.registry import get_oracle

    try:
        get_oracle(args.oracle, args.property_name)
    except ConfigError as exc:
        return _error(str(exc))
    if args.oracle == "qe":
        return _run_qe(args)
    try:
        structure = _structure(args.file)
        options = _chgnet_options(args)
    except (_BadInput, ConfigError) as exc:
        return _error(str(exc))
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if args.oracle == "chgnet":
                value, status, reason, energy, scale = _in_graph(args.property_name, options,
                                                                 structure)
            else:
                value, status, reason, energy, scale = _host(args.property_name, options,
                                                             structure)
    except _BadInput as exc:
        return _error(str(exc))
    seconds = time.monotonic() - start
    unit = PROPERTIES[args.property_name].unit
    if args.json:
        print(json.dumps({
            "property": args.property_name, "value": value, "unit": unit, "status": status,
            "seconds": round(seconds, 3), "reason": reason, "energy_per_atom": energy,
            "magnetization": None,
        }))
    else:
        shown = f"{value:.4f} {unit}" if value is not None else "n/a"
        print(f"{args.property_name}: {shown}  status: {status}  time: {seconds:.1f} s")
        if energy is not None and scale is not None:
            print(f"energy: {energy:.5f} eV/atom at {scale:.4f} x the lattice constants")
        if reason:
            print(f"reason: {reason}")
    return EXIT_OK if status == "OK" else EXIT_FAILED


def _run_qe(args: argparse.Namespace) -> int:
    """``--oracle qe``: the ``crystaljax dft`` code path."""
    from crystaljax.oracles.qe.cli import run_dft

    if args.option:
        return _error("--option sets the CHGNet oracles' options; for QE use the options of "
                      "`crystaljax dft` (--mpi-ranks, --upf-mapping, ...)")
    dft_args = argparse.Namespace(
        file=args.file, property_name=args.property_name, preset=args.preset, json=args.json,
        mpi_ranks=1, threads=1, time_limit=args.time_limit, cache=None, upf_mapping=None,
        nstep=None, relax=args.relax, relax_search=None,  # the preset's search
    )
    return run_dft(dft_args)


def _structure(path: str):
    """The file's crystal, checked for CHGNet (_BadInput otherwise)."""
    from crystaljax.oracles.chgnet_host import unsupported_reason
    from crystaljax.oracles.qe.cli import _read_structure

    try:
        structure = _read_structure(path)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    reason = unsupported_reason(structure)
    if reason is not None:
        raise _BadInput(f"{path}: {reason}")
    return structure


def _chgnet_options(args: argparse.Namespace):
    """The typed options of ``args.oracle`` from --relax, --time-limit and --option."""
    from crystaljax.config import parse_overrides
    from crystaljax.oracles.registry import get_oracle

    if args.preset != "default":
        raise _BadInput("--preset is an option of the QE oracle")
    try:
        values = parse_overrides(args.option)
    except ValueError as exc:
        raise _BadInput(f"--option: {exc}") from None
    if args.relax is not None:
        if args.oracle == "chgnet" and args.relax == "full":
            raise _BadInput("--relax full is not available for the in-graph chgnet oracle "
                            "(none | volume); use --oracle chgnet-host")
        values["relax"] = args.relax
    if args.time_limit is not None:
        if args.oracle == "chgnet":
            raise _BadInput("--time-limit is not an option of the in-graph chgnet oracle")
        values["time_limit"] = args.time_limit
    if args.oracle == "chgnet-host":
        values.setdefault("workers", 0)  # one crystal: in this process, no pool
    return get_oracle(args.oracle).parse_options(values, "--option")


def _in_graph(property_name: str, options, structure):
    """(value, status name, reason, energy per atom, scale) of the in-graph oracle, jitted on
    the crystal's tokens (a template of the structure, its elements as the vocabulary)."""
    import jax
    import jax.numpy as jnp

    from crystaljax.oracles.base import Status
    from crystaljax.oracles.chgnet import CHGNetStepOracle
    from crystaljax.templates.core import TemplateError, from_structure

    try:
        template = from_structure(structure, source="compute")
    except TemplateError as exc:
        raise _BadInput(str(exc)) from None
    vocab = sorted(set(template.species))
    oracle = CHGNetStepOracle(property_name, options, [template], vocab)
    tokens = jnp.asarray([vocab.index(s) for s in template.species], jnp.int32)

    found = jax.jit(lambda t: oracle.evaluate(t, jnp.int32(0)))(tokens)
    value, status, energy, scale = (found[k].item() for k in
                                    ("value", "status", "energy_per_atom", "scale"))
    status = Status(int(status))
    reason = ""
    if status == Status.NO_MINIMUM:
        reason = (f"no E(V) minimum in the searched range {options.min_scale}-"
                  f"{options.max_scale} x the lattice constants")
    elif status == Status.RELAX_NOT_CONVERGED:
        reason = f"the volume search did not reach the minimum in {options.steps} steps"
    elif status == Status.UNSTABLE:
        reason = f"formation energy above max_formation_energy ({options.max_formation_energy})"
    ok = status == Status.OK and math.isfinite(value)
    return (float(value) if ok else None, status.name, reason,
            float(energy) if ok else None, float(scale) if ok else None)


def _host(property_name: str, options, structure):
    """(value, status name, reason, energy per atom, scale) of the torch host oracle."""
    from crystaljax.oracles.chgnet_host import CHGNetHostOracle

    with CHGNetHostOracle(property_name, options) as oracle:
        result = oracle.evaluate([structure])[0]
    return (_finite(result.value), result.status.name, result.reason,
            _finite(result.extra.get("energy_per_atom")), _finite(result.extra.get("scale")))


def _finite(value) -> float | None:
    """``value`` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    return float(value) if value is not None and math.isfinite(value) else None


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m crystaljax.compute_cli compute FILE ...``."""
    parser = argparse.ArgumentParser(prog="crystaljax")
    add_compute_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
