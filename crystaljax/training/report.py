"""A run directory for people: a picture of each best crystal and a one-page HTML report.

* :func:`draw_crystal` writes a PNG of one crystal: its unit cell (dashed) with the atoms
  on its faces, edges and corners repeated, bonds between atoms closer than 1.2 x the sum
  of their covalent radii, atoms in Jmol colours with a legend, and a title (formula,
  value, reward). :meth:`~crystaljax.training.artifacts.TopCrystals.export` draws one per
  exported crystal (``crystals/NN_FORMULA.png`` beside the CIF) when a run finishes.
* :func:`write_report` writes ``RUN_DIR/report.html``: settings, greedy evaluation,
  learning curve, best crystals (pictures, values, rewards; after ``crystaljax verify``
  the verifying oracle's value and the difference). Images are linked by relative path or,
  with ``embed=True``, inlined. No script, no external style sheet.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: view direction of the pictures (ASE rotation string)
ROTATION = "15x,25y,0z"
#: atoms are drawn at this fraction of their covalent radius (leaves the bonds visible)
RADIUS_SCALE = 0.4
#: a bond joins atoms closer than this x the sum of their covalent radii
BOND_FACTOR = 1.2


def picture_name(cif_name: str) -> str:
    """``01_NaCl.cif`` -> ``01_NaCl.png``."""
    return os.path.splitext(cif_name)[0] + ".png"


def _cell_with_boundary_images(structure: Any, tol: float = 1e-3):
    """ASE Atoms of one unit cell with the atoms on its faces, edges and corners repeated
    (what a textbook picture of the cell shows), no periodicity."""
    from ase import Atoms

    symbols, frac = [], []
    for site in structure:
        f = np.mod(np.asarray(site.frac_coords, dtype=float), 1.0)
        f[np.abs(f - 1.0) < tol] = 0.0
        for shift in itertools.product((0, 1), repeat=3):
            g = f + np.array(shift)
            if np.all(g <= 1.0 + tol):
                symbols.append(site.specie.symbol)
                frac.append(g)
    return Atoms(symbols, scaled_positions=np.array(frac), cell=structure.lattice.matrix,
                 pbc=False)


def draw_crystal(structure: Any, path: str, title: str, subtitle: str = "") -> str:
    """Write a PNG picture (400 x 440 px) of ``structure`` (a pymatgen Structure) to
    ``path``; ``title`` and ``subtitle`` go above it. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.data import atomic_numbers, covalent_radii
    from ase.data.colors import jmol_colors
    from ase.visualize.plot import Matplotlib
    from matplotlib.patches import Patch

    atoms = _cell_with_boundary_images(structure)
    numbers = atoms.numbers
    fig, ax = plt.subplots(figsize=(4.0, 4.4), dpi=100)
    try:
        view = Matplotlib(atoms, ax, rotation=ROTATION, radii=RADIUS_SCALE * covalent_radii[numbers],
                          show_unit_cell=2)
        view.write()
        ax.set_axis_off()
        xy = view.to_image_plane_positions(atoms.positions)[:, :2]
        if len(atoms) > 1:
            d = atoms.get_all_distances()
            r = covalent_radii[numbers]
            bonded = np.triu((d < BOND_FACTOR * (r[:, None] + r[None, :])) & (d > 0.1), 1)
            for i, j in zip(*np.nonzero(bonded)):
                mid = (xy[i] + xy[j]) / 2
                for a in (i, j):  # each half in its atom's colour, under the atoms
                    ax.plot([xy[a, 0], mid[0]], [xy[a, 1], mid[1]], color=jmol_colors[numbers[a]],
                            lw=3.5, zorder=0.9, solid_capstyle="butt")
        elements = sorted(set(atoms.get_chemical_symbols()), key=lambda e: atomic_numbers[e])
        ax.legend(handles=[Patch(facecolor=jmol_colors[atomic_numbers[e]], edgecolor="black",
                                 label=e) for e in elements],
                  loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(elements), 6),
                  frameon=False, fontsize=9, handlelength=1.2)
        ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=9.5)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def crystal_caption(record: Mapping) -> tuple[str, str]:
    """Title and subtitle of an exported crystal's picture: formula and template; value
    and reward."""
    prop = record.get("property", "")
    value = record.get(prop)
    value_text = f"{prop.replace('_', ' ')} {value:.4g} {record.get('unit', '')}" if isinstance(
        value, (int, float)) and math.isfinite(value) else f"{prop.replace('_', ' ')}: no value"
    return (f"{record.get('formula', '?')} on {record.get('template', '?')}",
            f"{value_text}, reward {float(record.get('reward', float('nan'))):.4f}")


def draw_top_crystals(run_dir: str, records: list[dict], structures: Mapping[str, Any] | None = None,
                      missing_only: bool = False) -> list[str]:
    """Draw ``crystals/NN_FORMULA.png`` for each exported crystal record (its structure from
    ``structures[record['key']]`` or from its CIF). A crystal that cannot be drawn is
    logged and skipped (a picture never stops a run). Returns the files written."""
    from pymatgen.core import Structure

    written = []
    for rec in records:
        if not rec.get("cif"):
            continue
        path = os.path.join(run_dir, "crystals", picture_name(rec["cif"]))
        if missing_only and os.path.isfile(path):
            continue
        try:
            structure = (structures or {}).get(rec.get("key"))
            if structure is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    structure = Structure.from_file(os.path.join(run_dir, "crystals", rec["cif"]))
            written.append(draw_crystal(structure, path, *crystal_caption(rec)))
        except Exception as exc:  # noqa: BLE001 - a picture is not worth a failed run
            log.warning("could not draw %s: %s: %s", path, type(exc).__name__, exc)
    return written


# ---- the HTML page --------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; word-break: break-all; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: middle; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 14em; }
tr.failed td { background: #fff3f3; }
.ok { color: #1a7f37; } .bad { color: #b42318; }
img.crystal { width: 190px; display: block; }
img.curve { max-width: min(100%, 720px); }
.small { color: #666; font-size: 0.85em; }
.nowrap { white-space: nowrap; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, spec: str = ".4g") -> str:
    if isinstance(value, bool) or value is None:
        return "&ndash;" if value is None else _e(value)
    if isinstance(value, (int, float)):
        return format(value, spec) if math.isfinite(value) else "&ndash;"
    return _e(value)


def _image(run_dir: str, rel: str, embed: bool) -> str | None:
    """``src`` of an image in the run directory (None when the file is absent)."""
    path = os.path.join(run_dir, rel)
    if not os.path.isfile(path):
        return None
    if embed:
        with open(path, "rb") as f:
            return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")
    return _e(rel)


def _load_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _run_settings(run_dir: str) -> dict:
    """Agent, task, property, target and oracle of the run (from its config.yaml)."""
    import yaml

    from crystaljax.training.verify import oracle_label

    out: dict[str, Any] = {}
    try:
        with open(os.path.join(run_dir, "config.yaml")) as f:
            raw = yaml.safe_load(f) or {}
    except (OSError, ValueError):
        return out
    env, agent, train = (raw.get(k) or {} for k in ("env", "agent", "train"))
    out["agent"] = agent.get("name")
    out["task"] = env.get("task")
    out["total_env_steps"] = agent.get("total_env_steps")
    out["seed"] = train.get("seed")
    try:
        from crystaljax.training.config import load_run_config

        config = load_run_config(os.path.join(run_dir, "config.yaml"))
        e = config.env
        out["property"] = e.property
        out["target"] = e.target
        if e.target is None:
            from crystaljax.properties import get_property

            out["target"] = get_property(e.property).default_target
            out["target_note"] = " (the property's default)"
        out["seed"] = config.train.seed
        out["oracle"] = oracle_label(e.oracle if isinstance(e.oracle, str) else type(e.oracle).__name__,
                                     e.oracle_options)
        out["template"] = e.template if isinstance(e.template, str) else "+".join(map(str, e.template))
        out["vocab"] = e.vocab if isinstance(e.vocab, str) else f"{len(e.vocab)} elements"
    except Exception as exc:  # noqa: BLE001 - a config this version cannot load still reports
        log.debug("report: config not loaded: %s", exc)
        out.update({k: env.get(k) for k in ("property", "target", "oracle") if env.get(k)})
    return out


def write_report(run_dir: str, embed: bool = False, draw_missing: bool = True) -> str:
    """Write ``RUN_DIR/report.html`` from what the run directory holds (config.yaml,
    eval.json, evaluate.json, learning_curve.png, crystals/, verify.json); returns its
    path. Pictures of exported crystals that have none are drawn first
    (``draw_missing``).

    Raises:
      FileNotFoundError: ``run_dir`` is not a run directory.
    """
    from crystaljax.training.run import run_config_path
    from crystaljax.training.verify import crystal_id, read_top_crystals

    run_config_path(run_dir)
    records = read_top_crystals(run_dir)
    if draw_missing and records:
        draw_top_crystals(run_dir, records, missing_only=True)
    settings = _run_settings(run_dir)
    summary = _load_json(os.path.join(run_dir, "eval.json")) or {}
    later_eval = _load_json(os.path.join(run_dir, "evaluate.json"))
    verify = _load_json(os.path.join(run_dir, "verify.json"))
    verified = {crystal_id(c): c for c in (verify or {}).get("crystals", [])}
    name = os.path.basename(os.path.abspath(run_dir))
    prop = settings.get("property") or (records[0].get("property") if records else "value")
    unit = records[0].get("unit", "") if records else ""

    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             f"<title>crystaljax run {_e(name)}</title><style>{CSS}</style></head><body>",
             f"<h1>{_e(name)}</h1>"]
    what = " &middot; ".join(x for x in (
        f"{_e(settings['agent'])} agent" if settings.get("agent") else "",
        f"task {_e(settings['task'])}" if settings.get("task") else "",
        f"{_e(prop)} from oracle {_e(settings['oracle'])}" if settings.get("oracle") else "",
        f"written {_e(time.strftime('%Y-%m-%d %H:%M'))}") if x)
    parts.append(f"<p class=\"meta\">{what}</p>")

    # run summary
    rows = [("property", f"{_e(prop.replace('_', ' '))} ({_e(unit)})" if unit else _e(prop)),
            ("target", f"{_fmt(settings.get('target'))} {_e(unit)}"
                       f"{_e(settings.get('target_note', ''))}"),
            ("oracle", _e(settings.get("oracle", "?"))),
            ("template, vocabulary", f"{_e(settings.get('template', '?'))}, "
                                     f"{_e(settings.get('vocab', '?'))}"),
            ("agent, seed", f"{_e(settings.get('agent', '?'))}, seed {_e(settings.get('seed'))}"),
            ("env steps", f"{_fmt(summary.get('env_steps'), 'd') if summary else '&ndash;'}"
                          f" of {_fmt(settings.get('total_env_steps'), 'd')}"),
            ("training wall time", f"{_fmt(summary.get('wall_s'), '.0f')} s" if summary.get("wall_s")
             is not None else "&ndash; (the run has not finished)")]
    if summary.get("eval_mean_reward") is not None:
        rows.append(("greedy policy (end of training)",
                     f"mean reward {_fmt(summary['eval_mean_reward'])}, median |error| "
                     f"{_fmt(summary.get('eval_median_abs_error'))} {_e(unit)} over "
                     f"{_fmt(summary.get('eval_episodes'), 'd')} episodes"))
    if later_eval and later_eval.get("eval_mean_reward") is not None:
        rows.append(("greedy policy (crystaljax evaluate)",
                     f"mean reward {_fmt(later_eval['eval_mean_reward'])}, median |error| "
                     f"{_fmt(later_eval.get('eval_median_abs_error'))} {_e(unit)} over "
                     f"{_fmt(later_eval.get('eval_episodes'), 'd')} episodes"))
    if summary.get("stopped_early"):
        rows.append(("stopped early", _e(summary["stopped_early"])))
    parts.append("<h2>Run</h2><table class=\"kv\">" + "".join(
        f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")

    curve = _image(run_dir, "learning_curve.png", embed)
    if curve:
        parts.append("<h2>Learning curve</h2>"
                     f"<img class=\"curve\" src=\"{curve}\" alt=\"learning curve\">")

    # best crystals
    parts.append("<h2>Best crystals</h2>")
    if not records:
        parts.append("<p>No crystal exported yet.</p>")
    else:
        vlabel = verify.get("oracle") if verify else None
        head = ["#", "picture", "crystal", f"{prop.replace('_', ' ')} ({unit})<br>"
                f"<span class=\"small\">{_e(settings.get('oracle', 'run'))}</span>", "reward",
                "found by"]
        if verify:
            head += [f"{prop.replace('_', ' ')} ({unit})<br><span class=\"small\">{_e(vlabel)}</span>",
                     "difference", "status"]
        parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
        for rec in records:
            png = _image(run_dir, os.path.join("crystals", picture_name(rec["cif"])), embed) \
                if rec.get("cif") else None
            picture = (f"<img class=\"crystal\" src=\"{png}\" alt=\"{_e(rec.get('formula'))}\">"
                       if png else "&ndash;")
            if png and not embed:  # the thumbnail opens the full-size picture
                picture = f"<a href=\"{png}\">{picture}</a>"
            cif = (f"<br><a class=\"small\" href=\"{_e(os.path.join('crystals', rec['cif']))}\">"
                   f"{_e(rec['cif'])}</a>" if rec.get("cif") else "")
            crystal = (f"<b>{_e(rec.get('formula'))}</b><br><span class=\"small nowrap\">"
                       f"{_e(rec.get('template'))}<br>{_e(' '.join(rec.get('symbols', [])))}</span>{cif}")
            cells = [f"<td class=\"num\">{_e(rec.get('rank', ''))}</td>", f"<td>{picture}</td>",
                     f"<td>{crystal}</td>", f"<td class=\"num\">{_fmt(rec.get(prop))}</td>",
                     f"<td class=\"num\">{_fmt(rec.get('reward'), '.4f')}</td>",
                     f"<td>{_e(rec.get('found_by', ''))}</td>"]
            row_class = ""
            if verify:
                v = verified.get(crystal_id(rec))
                if v is None:
                    cells += ["<td colspan=\"3\" class=\"small\">not verified</td>"]
                else:
                    ok = v["status"] == "OK"
                    row_class = "" if ok else " class=\"failed\""
                    rel = v.get("relative_difference")
                    diff = (f"{_fmt(v.get('difference'), '+.4g')}"
                            + (f" ({100 * rel:+.1f} %)" if rel is not None else ""))
                    status = (f"<span class=\"{'ok' if ok else 'bad'}\">{_e(v['status'])}</span>"
                              + (f"<br><span class=\"small\">{_e(v['reason'][:160])}</span>"
                                 if v.get("reason") else ""))
                    cells += [f"<td class=\"num\">{_fmt(v.get('value'))}</td>",
                              f"<td class=\"num\">{diff}</td>", f"<td>{status}</td>"]
            parts.append(f"<tr{row_class}>" + "".join(cells) + "</tr>")
        parts.append("</table>")
        parts.append("<p class=\"small\">Ranked by the reward the run gave each crystal. "
                     "Pictures: one unit cell (dashed) with the atoms on its faces, edges and "
                     "corners repeated; bonds join atoms closer than 1.2 &times; the sum of "
                     "their covalent radii.</p>")

    if verify:
        s = verify.get("summary", {})
        m = verify.get("machine", {})
        mean = s.get("mean_abs_difference")
        rel = s.get("mean_abs_relative_difference")
        text = (f"{_fmt(s.get('ok'), 'd')} of {_fmt(s.get('crystals'), 'd')} crystals recomputed "
                f"with <b>{_e(verify.get('oracle'))}</b> in {_fmt(verify.get('wall_s'), '.1f')} s "
                f"on {_e(m.get('hostname', '?'))} ({_fmt(m.get('cpus'), 'd')} CPUs), "
                f"{_e(str(verify.get('finished', '')).replace('T', ' '))}")
        if mean is not None:
            text += (f"; mean |difference| {_fmt(mean)} {_e(unit)}"
                     + (f" ({100 * rel:.1f} %)" if rel is not None else ""))
        parts.append(f"<h2>Verification</h2><p>{text}. Details: "
                     f"<a href=\"verify.json\">verify.json</a>.</p>")

    files = [f for f in ("config.yaml", "metrics.csv", "eval.json", "evaluate.json", "verify.json",
                         "crystals/top_crystals.json") if os.path.isfile(os.path.join(run_dir, f))]
    parts.append("<h2>Files</h2><p>" + " &middot; ".join(
        f"<a href=\"{_e(f)}\">{_e(f)}</a>" for f in files)
        + " &middot; TensorBoard: <code>tensorboard --logdir tb</code></p>")
    parts.append(f"<p class=\"small\">Written by crystaljax ({_e(__import__('crystaljax').__version__)}); "
                 f"<code>crystaljax report {_e(os.path.abspath(run_dir))}</code> regenerates this page.</p>"
                 "</body></html>\n")
    path = os.path.join(run_dir, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path


def refresh_report(run_dir: str) -> str | None:
    """:func:`write_report` (drawing no picture) that logs a failure instead of raising it:
    what the training loop and the crystal export call (a report is not worth a failed
    run). Returns the report's path, or None when it could not be written."""
    try:
        return write_report(run_dir, draw_missing=False)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not write %s: %s: %s", os.path.join(run_dir, "report.html"),
                    type(exc).__name__, exc)
        return None


__all__ = ["draw_crystal", "draw_top_crystals", "picture_name", "refresh_report", "write_report"]
