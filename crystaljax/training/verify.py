"""Recompute a finished run's best crystals with a higher-fidelity host oracle.

:func:`verify_run` reads ``RUN_DIR/crystals/top_crystals.json`` (ranked by the run's own
reward), computes the ``top`` best of them with a registered host oracle (default: QE
with the ``fast`` preset), writes ``RUN_DIR/verify.json`` and refreshes
``RUN_DIR/report.html``. ``crystaljax verify RUN_DIR --top K`` is the command line
(:mod:`crystaljax.verify_cli`).

``verify.json`` holds ``run_dir``, ``property``, ``unit``, ``run_oracle`` (the run's oracle
label), ``oracle`` (the verifying oracle's label), ``settings`` (oracle name, the options
it was built with, preset, relax, top), ``machine`` (host name, platform, Python, CPUs,
crystaljax version), ``started`` / ``finished`` (ISO 8601 local time), ``wall_s``,
``oracle_stats`` (its counters, when it keeps some), ``summary`` (counts and mean absolute
differences) and ``crystals``: one entry per crystal with ``rank``, ``formula``,
``template``, ``symbols``, ``cif``, ``reward``, ``run_value``, ``run_oracle``, ``value``,
``oracle``, ``difference`` (value - run_value), ``relative_difference`` (difference /
\\|run_value\\|), ``status`` (a :class:`~crystaljax.oracles.base.Status` name), ``reason``,
``seconds`` and ``extra`` (the result's scalar details, e.g. ``energy_per_atom``). Values
that do not exist (a failed computation) are ``null``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from crystaljax.config import ConfigError, field_names, to_dict

#: the oracle and QE preset ``verify`` uses unless told otherwise
DEFAULT_ORACLE = "qe"
DEFAULT_PRESET = "fast"
#: ``--relax`` choices (how an oracle that relaxes takes them: QE ``recipe.relax``,
#: CHGNet ``relax``)
RELAX_CHOICES = ("none", "volume", "full")


def load_finished_run(run_dir: str) -> tuple[Any, list[dict]]:
    """The run's config and its exported best crystals (ranked, best first).

    Raises:
      FileNotFoundError: no run directory, or a run that has not finished (no eval.json)
        or exported no crystal.
    """
    from crystaljax.training.config import load_run_config
    from crystaljax.training.run import run_config_path

    config = load_run_config(run_config_path(run_dir))
    if not os.path.isfile(os.path.join(run_dir, "eval.json")):
        raise FileNotFoundError(f"{run_dir}: the run has not finished (no eval.json); "
                                f"`crystaljax train --resume {run_dir}` finishes it")
    records = read_top_crystals(run_dir)
    if not records:
        raise FileNotFoundError(f"{run_dir}: the run exported no crystal "
                                "(crystals/top_crystals.json is missing or empty)")
    return config, records


def read_top_crystals(run_dir: str) -> list[dict]:
    """``crystals/top_crystals.json`` sorted by reward, best first ([] when absent)."""
    path = os.path.join(run_dir, "crystals", "top_crystals.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        records = json.load(f)
    return sorted(records, key=lambda r: (-float(r.get("reward", -math.inf)), r.get("rank", 0)))


def crystal_id(record: Mapping) -> str:
    """What identifies a crystal across exports (ranks change): ``template:A-B-C``."""
    return f"{record.get('template')}:{'-'.join(record.get('symbols', ()))}"


def oracle_label(name: str, options: Any = None) -> str:
    """``qe (fast)``, ``qe (fast, relax volume)``, ``chgnet (relax volume)``, ``analytic``."""
    if options is None:
        return name
    values = options if isinstance(options, Mapping) else (
        to_dict(options) if dataclasses.is_dataclass(options) else {})
    parts = []
    if values.get("preset"):
        parts.append(str(values["preset"]))
    recipe = values.get("recipe") or {}
    relax = values.get("relax") or (recipe.get("relax") if isinstance(recipe, Mapping) else None)
    if relax:
        parts.append(f"relax {relax}")
    return f"{name} ({', '.join(parts)})" if parts else name


def oracle_options(spec: Any, preset: str | None = None, relax: str | None = None,
                   options: Mapping[str, Any] | None = None) -> Any:
    """The typed options of host oracle ``spec`` for ``verify``.

    ``preset`` goes to an oracle whose options have a ``preset`` (default
    :data:`DEFAULT_PRESET`), ``relax`` to its ``relax`` option or, for QE, to
    ``recipe.relax``; ``options`` are further keys of its options class.

    Raises:
      ConfigError: a preset or relax the oracle does not take, or a bad option.
    """
    cls = spec.options_class()
    fields = set(field_names(cls)) if cls is not None else set()
    values = dict(options or {})
    if "preset" in fields:
        values.setdefault("preset", preset or DEFAULT_PRESET)
    elif preset is not None:
        raise ConfigError(f"oracle {spec.name!r} has no presets (--preset {preset})")
    if relax is not None:
        if relax not in RELAX_CHOICES:
            raise ConfigError(f"relax must be one of {list(RELAX_CHOICES)}, got {relax!r}")
        if "relax" in fields:
            values["relax"] = relax
        elif "recipe" in fields:
            values["recipe"] = {**dict(values.get("recipe") or {}), "relax": relax}
        else:
            raise ConfigError(f"oracle {spec.name!r} takes no relax option (--relax {relax})")
    return spec.parse_options(values, where=f"verify --oracle {spec.name}")


def host_oracle_spec(name: str, property_name: str) -> Any:
    """The registry entry of host oracle ``name`` for ``property_name`` (ConfigError for
    an unknown oracle, one that does not compute the property, or an in-graph one)."""
    from crystaljax.oracles.registry import get_oracle, oracles_for

    spec = get_oracle(name, property_name)
    if spec.in_graph:
        hosts = [o for o in oracles_for(property_name) if not get_oracle(o).in_graph]
        raise ConfigError(f"oracle {name!r} runs inside the env step; verify needs a host "
                          f"oracle for {property_name!r}: one of {hosts}")
    return spec


def verify_run(run_dir: str, top: int = 5, oracle: str = DEFAULT_ORACLE,
               preset: str | None = None, relax: str | None = None,
               options: Mapping[str, Any] | None = None, report: bool = True,
               progress: Callable[[str], None] | None = None) -> dict:
    """Recompute the ``top`` best crystals of a finished run with host oracle ``oracle``.

    Args:
      run_dir: a finished run directory (``config.yaml``, ``eval.json``, ``crystals/``).
      top: how many of the best crystals (by the run's reward; fewer if the run exported
        fewer).
      oracle: a registered host oracle (``qe``, ``chgnet-host``, ...) that computes the
        run's property.
      preset: the oracle's preset, for one that has presets (QE: default ``fast``).
      relax: ``none`` | ``volume`` | ``full``, for an oracle that relaxes (QE:
        ``recipe.relax``).
      options: further options of the oracle (e.g. ``{"workers": 2}`` for QE).
      report: refresh ``report.html`` afterwards.
      progress: called with one line once the input is checked, before the oracle starts
        (the command line prints it: a QE verification takes minutes).

    Returns the content of the ``verify.json`` it writes (see the module docstring). The
    oracle is closed before returning. Failed computations are entries with a status
    and reason, never exceptions.

    Raises:
      ConfigError: ``top`` < 1, an unknown or in-graph oracle, bad options.
      FileNotFoundError: not a finished run directory.
    """
    from pymatgen.core import Structure

    if not isinstance(top, int) or top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    config, records = load_finished_run(run_dir)
    property_name = records[0].get("property") or config.env.property
    # an unknown oracle or bad options fail before any file is read
    label = oracle_label(oracle, oracle_options(host_oracle_spec(oracle, property_name), preset,
                                                relax, options))
    chosen = records[:top]
    structures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF parser notes
        for rec in chosen:
            path = os.path.join(run_dir, "crystals", rec["cif"])
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{run_dir}: crystals/{rec['cif']} is missing")
            structures.append(Structure.from_file(path))
    run_label = oracle_label(config.env.oracle if isinstance(config.env.oracle, str)
                             else type(config.env.oracle).__name__, config.env.oracle_options)
    if progress is not None:
        progress(f"computing the {len(chosen)} best crystals of {run_dir} with {label} ...")
    result = {"run_dir": os.path.abspath(run_dir),
              **verify_crystals(chosen, structures, property_name, run_label, oracle, preset,
                                relax, options)}
    result["settings"]["top"] = top
    with open(os.path.join(run_dir, "verify.json"), "w") as f:
        json.dump(result, f, indent=2)
    if report:
        from crystaljax.training.report import write_report

        write_report(run_dir)
    return result


def verify_crystals(records: list[dict], structures: list, property_name: str, run_label: str,
                    oracle: str = DEFAULT_ORACLE, preset: str | None = None,
                    relax: str | None = None, options: Mapping[str, Any] | None = None
                    ) -> dict:
    """Compute ``structures`` (pymatgen, one per record of a top list: ``reward``, the
    property's value under ``property_name``, ``formula``, ...) with host oracle ``oracle``
    in one batch; the content of a ``verify.json`` without ``run_dir`` (``settings.top`` is
    the number of crystals). ``run_label`` names the oracle that gave the records' values."""
    from crystaljax.oracles.base import close_oracle, oracle_counters

    spec = host_oracle_spec(oracle, property_name)
    parsed = oracle_options(spec, preset, relax, options)
    label = oracle_label(oracle, parsed)
    started, t0 = _now(), time.perf_counter()
    host = spec.build(property_name, parsed)
    try:
        results = list(host.evaluate(list(structures)))
        stats = oracle_counters(host)
    finally:
        close_oracle(host)
    if len(results) != len(structures):
        raise RuntimeError(f"oracle {oracle!r} returned {len(results)} results for "
                           f"{len(structures)} crystals")
    crystals = [_entry(rec, res, property_name, run_label, label)
                for rec, res in zip(records, results)]
    return {
        "property": property_name,
        "unit": (records[0].get("unit") if records else None) or getattr(host, "unit", ""),
        "run_oracle": run_label, "oracle": label,
        "settings": {"oracle": oracle, "options": _plain(parsed),
                     "preset": getattr(parsed, "preset", preset), "relax": relax,
                     "top": len(records)},
        "machine": machine(), "started": started, "finished": _now(),
        "wall_s": round(time.perf_counter() - t0, 2),
        "oracle_stats": _plain(stats), "summary": _summary(crystals), "crystals": crystals,
    }


def _entry(rec: dict, res: Any, property_name: str, run_label: str, label: str) -> dict:
    from crystaljax.oracles.base import Status

    run_value = _finite(rec.get(property_name))
    value = _finite(res.value) if Status(res.status) == Status.OK else None
    diff = value - run_value if value is not None and run_value is not None else None
    rel = diff / abs(run_value) if diff is not None and run_value else None
    return {
        "rank": rec.get("rank"), "formula": rec.get("formula"), "template": rec.get("template"),
        "symbols": rec.get("symbols"), "cif": rec.get("cif"), "reward": _finite(rec.get("reward")),
        "run_value": run_value, "run_oracle": run_label, "value": value, "oracle": label,
        "difference": diff, "relative_difference": rel, "status": Status(res.status).name,
        "reason": str(res.reason or ""), "seconds": round(float(res.seconds or 0.0), 2),
        "extra": {k: _finite(v) if isinstance(v, float) else v for k, v in (res.extra or {}).items()
                  if isinstance(v, (int, float, bool, str)) and (not isinstance(v, str) or len(v) < 200)},
    }


def _summary(crystals: list[dict]) -> dict:
    ok = [c for c in crystals if c["value"] is not None]
    diffs = [abs(c["difference"]) for c in ok if c["difference"] is not None]
    rels = [abs(c["relative_difference"]) for c in ok if c["relative_difference"] is not None]
    return {"crystals": len(crystals), "ok": len(ok), "failed": len(crystals) - len(ok),
            "mean_abs_difference": sum(diffs) / len(diffs) if diffs else None,
            "mean_abs_relative_difference": sum(rels) / len(rels) if rels else None}


def machine() -> dict:
    """Where a computation ran: host name, platform, Python, CPUs, crystaljax version."""
    import crystaljax

    return {"hostname": socket.gethostname(), "platform": platform.platform(),
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "crystaljax": crystaljax.__version__}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """JSON-safe: dataclasses as dicts, NaN/inf as None, other objects as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = to_dict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def format_table(result: dict) -> str:
    """The verification as a text table: value by each oracle, difference, status (and
    the reason of each failure below it)."""
    unit = result["unit"]
    run_col, new_col = result["run_oracle"], result["oracle"]
    w = max(10, len(run_col), len(new_col))
    templates = {c["template"] for c in result["crystals"]}
    one_template = len(templates) == 1
    rows = [f"{result['property']} ({unit}) of the {len(result['crystals'])} best crystals of "
            f"{result['run_dir']}" + (f" (template {templates.pop()})" if one_template else ""),
            f"{'#':>3s}  {'crystal':28s} {run_col:>{w}s} {new_col:>{w}s} {'difference':>11s} "
            f"{'relative':>9s}  {'status':14s} {'time':>8s}"]
    failures = []
    for c in result["crystals"]:
        crystal = f"{c['formula']} {'-'.join(c['symbols'] or ())}" + (
            "" if one_template else f" ({c['template']})")
        rows.append(f"{c['rank'] or '':>3}  {crystal[:28]:28s} {_num(c['run_value']):>{w}s} "
                    f"{_num(c['value']):>{w}s} {_num(c['difference'], signed=True):>11s} "
                    f"{_pct(c['relative_difference']):>9s}  {c['status']:14s} "
                    f"{c['seconds']:7.1f}s")
        if c["reason"]:
            failures.append(f"  #{c['rank']} {c['formula']}: {c['status']}: "
                            f"{c['reason'].splitlines()[0] if c['reason'].strip() else ''}")
    s = result["summary"]
    line = f"{s['ok']} of {s['crystals']} computed in {result['wall_s']:.1f} s"
    if s["mean_abs_difference"] is not None:
        line += f"; mean |difference| {s['mean_abs_difference']:.4g} {unit}"
        if s["mean_abs_relative_difference"] is not None:
            line += f" ({100 * s['mean_abs_relative_difference']:.1f} %)"
    return "\n".join(rows + failures + [line])


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} %"


__all__ = ["DEFAULT_ORACLE", "DEFAULT_PRESET", "RELAX_CHOICES", "crystal_id", "format_table",
           "host_oracle_spec", "load_finished_run", "machine", "oracle_label", "oracle_options",
           "read_top_crystals", "verify_crystals", "verify_run"]
