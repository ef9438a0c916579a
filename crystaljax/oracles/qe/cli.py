"""``crystaljax dft FILE.cif --property bulk_modulus [--json]``: one crystal through QE.

Prints the value, unit, status and wall time (also how users check their QE
set-up). With ``--json``: one JSON object with keys ``property``, ``value``,
``unit``, ``status``, ``seconds`` (plus ``reason``, ``energy_per_atom`` and
``magnetization``: the total magnetisation in Bohr magnetons per cell of a
spin-polarised crystal, ``null`` for a spin-degenerate one). ``--relax none | volume |
full`` chooses the cell of the density and bulk modulus (``recipe.relax``),
``--relax-search pressure | energy`` how ``volume`` / ``full`` find it
(``recipe.relax_search``; default: the preset's).
Exit status: 0 when the computation succeeded, 1 when DFT failed (the status
says why), 2 for unusable input (unreadable file).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import typing
import warnings
from pathlib import Path

from crystaljax.oracles.qe.recipe_options import Relax, RelaxSearch
from crystaljax.properties import PROPERTIES

EXIT_OK, EXIT_DFT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def qe_properties() -> list[str]:
    """Properties of the registry (:mod:`crystaljax.properties`) that the QE oracle computes."""
    return sorted(name for name, prop in PROPERTIES.items() if "qe" in prop.oracles)


def add_dft_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``dft`` sub-command on ``subparsers``; returns its parser."""
    parser = subparsers.add_parser(
        "dft", help="compute one crystal's property with Quantum ESPRESSO",
        description="Compute one crystal's property with Quantum ESPRESSO (pw.x).",
    )
    parser.add_argument("file", help="crystal structure file (CIF, POSCAR, ...)")
    parser.add_argument("--property", required=True, choices=qe_properties(),
                        dest="property_name")
    parser.add_argument("--preset", default="default",
                        help="QE preset (default: pslibrary PAW; gth; fast; test)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--mpi-ranks", type=int, default=1, help="MPI ranks of pw.x")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads per rank")
    parser.add_argument("--time-limit", type=float, default=None, help="s per pw.x run")
    parser.add_argument("--cache", default=None,
                        help="SQLite cache file (default: no cache for one-off runs)")
    parser.add_argument("--upf-mapping", default=None,
                        help="JSON mapping element -> UPF file and cutoffs (instead of GTH)")
    parser.add_argument("--nstep", type=int, default=None, help="vc-relax steps (density)")
    parser.add_argument("--relax", default=None, choices=typing.get_args(Relax),
                        help="density / bulk modulus at the template cell (none, default), "
                             "at the E(V) minimum (volume) or after a vc-relax (full)")
    parser.add_argument("--relax-search", default=None, choices=typing.get_args(RelaxSearch),
                        help="how --relax volume/full find the minimum: the zero of pw.x's "
                             "pressure or the E(V) minimum (default: the preset's; "
                             "pressure for default, energy for fast and test)")
    parser.set_defaults(func=run_dft)
    return parser


def _read_structure(path: str):
    from pymatgen.core import Structure

    if not Path(path).is_file():
        raise ValueError(f"no such file: {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Structure.from_file(path)
        except Exception as exc:
            raise ValueError(f"cannot read a crystal structure from {path}: {exc}") from None


def run_dft(args: argparse.Namespace) -> int:
    """Run the ``dft`` sub-command; returns the exit status (0, 1 or 2)."""
    try:
        structure = _read_structure(args.file)
    except ValueError as exc:
        print(f"crystaljax dft: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from crystaljax.oracles.qe.ld1 import PseudoGenerationError
    from crystaljax.oracles.qe.oracle import make_qe_oracle

    recipe = {"nstep": args.nstep} if args.nstep is not None else {}
    if args.relax is not None:
        recipe["relax"] = args.relax
    if args.relax_search is not None:
        recipe["relax_search"] = args.relax_search
    start = time.monotonic()
    try:
        oracle = make_qe_oracle(
            args.property_name, preset=args.preset, cache_path=args.cache, workers=1,
            mpi_ranks=args.mpi_ranks, threads=args.threads, time_limit=args.time_limit,
            upf_mapping=args.upf_mapping, recipe=recipe,
        )
    except (KeyError, ValueError, FileNotFoundError, PseudoGenerationError) as exc:
        print(f"crystaljax dft: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with oracle:
        result = oracle.evaluate([structure])[0]
    seconds = time.monotonic() - start
    value = result.value if math.isfinite(result.value) else None
    if args.json:
        print(json.dumps({
            "property": args.property_name, "value": value, "unit": oracle.unit,
            "status": result.status.name, "seconds": round(seconds, 3),
            "reason": result.reason, "energy_per_atom": result.extra.get("energy_per_atom"),
            "magnetization": result.extra.get("magnetization"),
        }))
    else:
        shown = f"{value:.4f} {oracle.unit}" if value is not None else "n/a"
        print(f"{args.property_name}: {shown}  status: {result.status.name}  "
              f"time: {seconds:.1f} s")
        if result.extra.get("magnetization") is not None:
            print(f"magnetization: {result.extra['magnetization']:.2f} Bohr mag/cell")
        if result.extra.get("cutoffs_ry"):
            wfc, rho = result.extra["cutoffs_ry"]
            print(f"cutoffs: ecutwfc {wfc:g} Ry, ecutrho {rho:g} Ry")
        if result.reason:
            print(f"reason: {result.reason}")
        if "scratch" in result.extra:
            print(f"run directory kept: {result.extra['scratch']}")
    return EXIT_OK if result.status.name == "OK" else EXIT_DFT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m crystaljax.oracles.qe.cli dft FILE ...``."""
    parser = argparse.ArgumentParser(prog="crystaljax")
    add_dft_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
