"""What a run writes: metrics CSV + TensorBoard events, learning curve, best crystals
(CIF, JSON and pictures)."""

from __future__ import annotations

import csv
import heapq
import json
import os
from collections.abc import Sequence

import numpy as np

from crystaljax.oracles.cache import class_key, structure_matcher


class MetricsLogger:
    """Appends rows to ``metrics.csv`` and scalars to TensorBoard events under ``tb/``."""

    def __init__(self, run_dir: str, fields: Sequence[str]):
        self.path = os.path.join(run_dir, "metrics.csv")
        self.fields = list(fields)
        new = not os.path.exists(self.path)
        self._file = open(self.path, "a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.fields, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(os.path.join(run_dir, "tb"))

    def log(self, row: dict) -> None:
        self._csv.writerow({k: row.get(k, "") for k in self.fields})
        self._file.flush()
        step = int(row["env_steps"])
        for k, v in row.items():
            if k != "env_steps" and isinstance(v, (int, float)) and np.isfinite(v):
                self._tb.add_scalar(k, v, step)
        self._tb.flush()

    def close(self) -> None:
        self._file.close()
        self._tb.close()


def read_metrics(run_dir: str) -> dict[str, np.ndarray]:
    """metrics.csv as columns of floats (empty cells -> nan)."""
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows])
            for k in rows[0]}


def plot_learning_curve(run_dir: str, title: str) -> str:
    """Write ``learning_curve.png`` (mean terminal reward and greedy eval vs env steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(run_dir)
    path = os.path.join(run_dir, "learning_curve.png")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    if m:
        ok = np.isfinite(m["mean_terminal_reward"])
        ax.plot(m["env_steps"][ok], m["mean_terminal_reward"][ok], label="training episodes")
        if "eval_mean_reward" in m:
            ev = np.isfinite(m["eval_mean_reward"])
            ax.plot(m["env_steps"][ev], m["eval_mean_reward"][ev], "o-", label="greedy evaluation")
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean terminal reward")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


class EquivalentCrystals:
    """One name per symmetry class of the crystals a run sees (in memory).

    The result cache's rule (:mod:`crystaljax.oracles.cache`): the class key (space group,
    composition, site orbits, volume per atom), then pymatgen's ``StructureMatcher``
    within a class. Two decorations of a template that a symmetry operation maps onto
    each other (e.g. O-F-O and F-O-O on the three X sites of a cubic perovskite) are one
    crystal; the name of a class is the key of the first of its decorations seen.
    """

    def __init__(self, symprec: float = 1e-3):
        self.symprec = symprec
        self._matcher = structure_matcher()
        self._names: dict[str, str] = {}
        self._classes: dict[str, list[tuple[str, object]]] = {}

    def name(self, key: str, structure) -> str:
        """The class name of the crystal ``structure`` (a pymatgen Structure) known by
        ``key`` (e.g. ``template:A-B-X-X-X``); ``key`` itself for a new class."""
        if key in self._names:
            return self._names[key]
        members = self._classes.setdefault(class_key(structure, self.symprec), [])
        name = next((n for n, rep in members if self._matcher.fit(structure, rep)), None)
        if name is None:
            members.append((key, structure))
            name = key
        self._names[key] = name
        return name


class TopCrystals:
    """The ``k`` best distinct crystals seen (by reward), exportable as CIF + JSON.

    ``offer`` keys say which crystals are the same: the trainer names them by symmetry
    class (:class:`EquivalentCrystals`), so the list holds the first seen of each class.
    """

    def __init__(self, k: int):
        self.k = k
        self._heap: list[tuple[float, str, dict]] = []
        self._seen: set[str] = set()

    def offer(self, reward: float, key: str, record: dict) -> None:
        """Consider one crystal; ``key`` identifies it (template + symbols)."""
        if not np.isfinite(reward) or key in self._seen:
            return
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (reward, key, record))
            self._seen.add(key)
        elif reward > self._heap[0][0]:
            _, old, _ = heapq.heapreplace(self._heap, (reward, key, record))
            self._seen.discard(old)
            self._seen.add(key)

    def best(self) -> list[dict]:
        return [rec for _, _, rec in sorted(self._heap, key=lambda x: -x[0])]

    def export(self, run_dir: str, structures: dict, pictures: bool = True) -> str:
        """Write ``crystals/NN_FORMULA.cif`` and ``crystals/top_crystals.json``; with
        ``pictures``, also a PNG of each crystal (``crystals/NN_FORMULA.png``, see
        :func:`crystaljax.training.report.draw_crystal`) and, when the run directory has a
        ``report.html``, a fresh one (the ranks, and so the file names, may have changed).
        The training loop exports without pictures between chunks and with them at the
        end."""
        out = os.path.join(run_dir, "crystals")
        os.makedirs(out, exist_ok=True)
        for name in os.listdir(out):
            if name.endswith((".cif", ".png")):  # the previous ranking's files
                os.remove(os.path.join(out, name))
        records, keyed = [], []
        for rank, rec in enumerate(self.best(), start=1):
            structure = structures[rec["key"]]
            fname = f"{rank:02d}_{rec['formula']}.cif"
            structure.to(filename=os.path.join(out, fname))
            records.append({**{k: v for k, v in rec.items() if k != "key"}, "cif": fname,
                            "rank": rank})
            keyed.append({**records[-1], "key": rec["key"]})
        path = os.path.join(out, "top_crystals.json")
        with open(path, "w") as f:
            json.dump(records, f, indent=2)
        if pictures:
            from crystaljax.training.report import draw_top_crystals, refresh_report

            draw_top_crystals(run_dir, keyed, structures)
            if os.path.isfile(os.path.join(run_dir, "report.html")):
                refresh_report(run_dir)
        return path
