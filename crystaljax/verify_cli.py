"""``crystaljax verify`` and ``crystaljax report``: check a finished run's best crystals with
a higher-fidelity oracle, and write its one-page HTML report.

``crystaljax verify RUN_DIR --top K [--oracle qe] [--preset fast] [--relax none|volume|full]
[--option KEY=VALUE ...] [--json]`` recomputes the run's K best crystals (by the run's own
reward), writes ``RUN_DIR/verify.json``, refreshes ``RUN_DIR/report.html`` and prints a
table (or, with ``--json``, the verify.json content). Exit status: 0 when at least one
crystal was computed, 1 when every computation failed (the table says why), 2 for
unusable input (no finished run directory, K < 1, an unknown oracle, bad options).

``crystaljax report RUN_DIR [--embed]`` (re)writes ``RUN_DIR/report.html``.

Errors are raised as ConfigError / FileNotFoundError / ValueError, which
:func:`crystaljax.cli.main` prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_verify_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``verify`` sub-command on ``subparsers``; returns its parser."""
    from crystaljax.training.verify import DEFAULT_ORACLE, DEFAULT_PRESET, RELAX_CHOICES

    p = subparsers.add_parser(
        "verify", help="recompute a run's best crystals with a higher-fidelity oracle",
        description="Recompute a finished run's best crystals with a host oracle (default: "
                    "Quantum ESPRESSO, fast preset); writes RUN_DIR/verify.json and "
                    "refreshes RUN_DIR/report.html.")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--top", type=int, default=5, help="how many of the best crystals (default 5)")
    p.add_argument("--oracle", default=DEFAULT_ORACLE,
                   help=f"a registered host oracle (default {DEFAULT_ORACLE}; e.g. chgnet-host)")
    p.add_argument("--preset", default=None,
                   help=f"the oracle's preset, for one that has presets (QE: default "
                        f"{DEFAULT_PRESET})")
    p.add_argument("--relax", default=None, choices=RELAX_CHOICES,
                   help="for an oracle that relaxes: the property at the template cell (none), "
                        "at the E(V) minimum (volume) or after a full cell relaxation (full)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a further oracle option, e.g. workers=2 or time_limit=600 (repeatable)")
    p.add_argument("--json", action="store_true", help="print verify.json instead of a table")
    p.set_defaults(func=cmd_verify)
    return p


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``report`` sub-command on ``subparsers``; returns its parser."""
    p = subparsers.add_parser("report", help="write a run's one-page HTML report",
                              description="(Re)write RUN_DIR/report.html: run settings, "
                                          "learning curve, best crystals with pictures, and "
                                          "the verification if there is one.")
    p.add_argument("run_dir", help="a run directory")
    p.add_argument("--embed", action="store_true",
                   help="put the images inside the HTML file (one file to send around)")
    p.set_defaults(func=cmd_report)
    return p


def cmd_verify(args: argparse.Namespace) -> int:
    from crystaljax.config import nest_dotted, parse_overrides
    from crystaljax.training.verify import format_table, verify_run

    if args.top < 1:  # before anything is read or started
        raise ValueError(f"--top must be >= 1, got {args.top}")
    options = nest_dotted(parse_overrides(args.option))
    result = verify_run(args.run_dir, top=args.top, oracle=args.oracle, preset=args.preset,
                        relax=args.relax, options=options,
                        progress=None if args.json else lambda line: print(
                            line, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
        print(f"wrote {args.run_dir}/verify.json and {args.run_dir}/report.html")
    return 0 if result["summary"]["ok"] else 1


def cmd_report(args: argparse.Namespace) -> int:
    from crystaljax.training.report import write_report

    print(write_report(args.run_dir, embed=args.embed))
    return 0


__all__ = ["add_report_parser", "add_verify_parser", "cmd_report", "cmd_verify"]
