"""Drive a training run: jitted chunks of updates, with logging, progress, evaluation,
checkpoints and artefacts between chunks (Stoix-style)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time

import jax
import numpy as np
import yaml
from tqdm import tqdm

import crystaljax
from crystaljax.config import ConfigError
from crystaljax.training.artifacts import EquivalentCrystals, MetricsLogger, TopCrystals, plot_learning_curve
from crystaljax.training.checkpoints import Checkpointer
from crystaljax.training.config import RunConfig, TrainSettings, load_run_config
from crystaljax.training.metrics import mean_terminal_reward, reduce_chunk
from crystaljax.training.report import refresh_report

log = logging.getLogger(__name__)

#: columns of metrics.csv (one row per chunk)
METRIC_FIELDS = (
    "env_steps", "iteration", "episodes", "mean_terminal_reward", "best_reward", "best_property",
    "loss", "skipped_updates", "epsilon", "alpha", "entropy", "dft_failures", "invalid_actions",
    "dft_calls", "cache_hits", "eval_mean_reward", "eval_median_abs_error", "wall_s",
)


def oracle_counters(oracle_stats: dict, wall_s: float) -> dict:
    """The metrics.csv columns read from the oracle's counters and the run's clock."""
    return {"dft_calls": int(oracle_stats["computed"]),
            "cache_hits": int(oracle_stats["cache_hits"]), "wall_s": round(wall_s, 2)}


def chunk_row(metrics: dict, iteration: int, oracle_stats: dict, wall_s: float) -> dict:
    """One metrics.csv row from a chunk's per-iteration agent metrics (reduced by the
    agents' METRICS schema) and the oracle's counters."""
    m = reduce_chunk(jax.tree.map(np.asarray, metrics))
    return {
        "env_steps": int(m["env_steps"]), "iteration": iteration,
        "episodes": int(m["episodes_done"]), "mean_terminal_reward": mean_terminal_reward(m),
        "best_reward": float(m["best_reward"]), "best_property": float(m["best_property"]),
        "loss": float(m["loss"]), "skipped_updates": int(m["skipped_updates"]),
        "epsilon": float(m["epsilon"]), "alpha": float(m["alpha"]),
        "entropy": float(m["entropy"]), "dft_failures": int(m["oracle_failures"]),
        "invalid_actions": int(m["invalid_actions"]), **oracle_counters(oracle_stats, wall_s),
    }


class Trainer:
    """One training run in its run directory.

    Files: ``config.yaml``, ``metrics.csv``, ``tb/`` (TensorBoard), ``checkpoints/``,
    ``learning_curve.png``, ``crystals/`` (top CIFs + ``top_crystals.json``; pictures at
    the end), ``eval.json``, ``report.html`` (see :mod:`crystaljax.training.report`).
    The env and agent are built before anything is written, so a config that cannot be
    built leaves no run directory behind. ``close()`` (or ``with Trainer(...)``) closes
    the env's oracle (process pool, Dask client, cache), the logger and the checkpointer.
    """

    def __init__(self, config: RunConfig, run_dir: str, resume: bool = False):
        self.config = config
        self.run_dir = run_dir
        self.settings: TrainSettings = config.train
        self.logger = self.checkpointer = None
        self.env, self.env_params = crystaljax.make(config.env)
        try:
            self._start(resume)
        except BaseException:
            self.close()  # whatever was opened: the env's pool and cache, logger, checkpoints
            raise

    def _start(self, resume: bool) -> None:
        from crystaljax.agents import make_agent

        config, run_dir = self.config, self.run_dir
        self.agent = make_agent(config.agent_name, self.env, self.env_params, config.agent)
        self.key, init_key = jax.random.split(jax.random.PRNGKey(self.settings.seed))
        self.state = self.agent.init(init_key)
        os.makedirs(run_dir, exist_ok=True)
        if not resume:
            with open(os.path.join(run_dir, "config.yaml"), "w") as f:
                yaml.safe_dump(config.resolved_dict(), f, sort_keys=False)
        self.checkpointer = Checkpointer(run_dir)
        self.logger = MetricsLogger(run_dir, METRIC_FIELDS)
        self.top = TopCrystals(self.settings.top_k)
        self.equivalent = EquivalentCrystals()
        self.structures: dict = {}
        self.unit = self.env.property.unit
        self.iteration = 0
        self.records_seen = 0
        if resume:
            self.iteration = int(self.checkpointer.latest() or 0)
            if self.iteration:
                try:
                    self.state = self.checkpointer.restore(self.state)
                except Exception as exc:  # another layout (an older crystaljax) or a bad file
                    raise ConfigError(
                        f"{run_dir}: checkpoint {self.iteration} does not fit this agent's "
                        f"state ({type(exc).__name__}); it was written by another version or "
                        "config") from None
                self.key = jax.random.fold_in(self.key, self.iteration)
            self._load_top()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- crystals ---------------------------------------------------------------------
    def _offer(self, tokens, template_id, reward, value, status, origin: str) -> None:
        template = self.env.templates[int(template_id)]
        n = template.num_sites
        symbols = [self.env.vocab[int(k)] for k in np.asarray(tokens)[:n]]
        key = template.name + ":" + "-".join(symbols)
        if key not in self.structures:
            self.structures[key] = template.to_structure(symbols)
        s = self.structures[key]
        self.top.offer(float(reward), self.equivalent.name(key, s), {
            "key": key, "formula": s.composition.reduced_formula, "template": template.name,
            "symbols": symbols, "reward": float(reward), "property": self.env.property_name,
            self.env.property_name: float(value), "unit": self.unit, "status": int(status),
            "found_by": origin,
        })

    def _load_top(self) -> None:
        path = os.path.join(self.run_dir, "crystals", "top_crystals.json")
        if not os.path.exists(path):
            return
        by_name = {t.name: t for t in self.env.templates}
        for rec in json.load(open(path)):
            template = by_name.get(rec["template"])
            if template is None:
                continue
            key = template.name + ":" + "-".join(rec["symbols"])
            structure = self.structures[key] = template.to_structure(rec["symbols"])
            record = {k: v for k, v in rec.items() if k not in ("cif", "rank")}
            self.top.offer(rec["reward"], self.equivalent.name(key, structure),
                           {**record, "key": key})

    def _offer_oracle_records(self) -> None:
        """Offer the crystals the host oracle scored since the last call (with the reward
        the step gave them) to the top list."""
        records, self.records_seen = self.env.oracle_records(self.records_seen)
        for rec in records:
            self._offer(rec.tokens, rec.template_id, rec.reward, rec.value, rec.status,
                        "training (oracle)")

    # ---- evaluation -------------------------------------------------------------------
    def evaluate(self, num_episodes: int) -> dict:
        """Greedy evaluation; its crystals are offered to the top list."""
        self.key, k = jax.random.split(self.key)
        ev = jax.tree.map(np.asarray, self.agent.evaluate(self.state, k, num_episodes))
        for i in range(len(ev["rewards"])):
            self._offer(ev["tokens"][i], ev["template_ids"][i], ev["rewards"][i],
                        ev["properties"][i], ev["statuses"][i], "greedy evaluation")
        return {"eval_mean_reward": float(ev["mean_reward"]),
                "eval_median_abs_error": float(ev["median_abs_error"]),
                "eval_episodes": int(len(ev["rewards"]))}

    def _offer_best_of_training(self) -> None:
        best = jax.tree.map(np.asarray, self.agent.best_crystal(self.state))
        if np.isfinite(best.reward) and np.isfinite(best.property):  # a failure has no value
            self._offer(best.tokens, best.template_id, best.reward, best.property, 0, "training")

    # ---- main loop --------------------------------------------------------------------
    def run(self, progress: bool = True) -> dict:
        cfg = self.agent.config
        per_iter = int(cfg.env_steps_per_iteration)
        total_iters = math.ceil(cfg.total_env_steps / per_iter)
        # a chunk never exceeds the run (a PPO iteration is a whole rollout)
        chunk = max(1, min(self.settings.iterations_per_chunk(per_iter), total_iters))
        n_chunks = math.ceil(total_iters / chunk)
        done_chunks = self.iteration // chunk
        t_start = time.perf_counter()
        last_eval: dict = {}
        chunk_seconds: list[float] = []
        stopped_early = None
        with tqdm(total=n_chunks * chunk * per_iter, initial=self.iteration * per_iter,
                  unit="step", desc=f"{self.config.agent_name} {self.env.property_name}",
                  disable=not progress, dynamic_ncols=True) as bar:
            for c in range(done_chunks, n_chunks):
                t_chunk = time.perf_counter()
                self.state, metrics = self.agent.train_chunk(self.state, chunk)
                self.iteration += chunk
                self._offer_oracle_records()
                self._offer_best_of_training()
                row = chunk_row(metrics, self.iteration, self.env.oracle_stats(),
                                time.perf_counter() - t_start)
                chunk_seconds.append(time.perf_counter() - t_chunk)
                s = self.settings
                last_chunk = c == n_chunks - 1
                if not last_chunk and self._over_budget(row["wall_s"], chunk_seconds):
                    last_chunk = True
                    stopped_early = (f"time budget of {s.time_budget_minutes:g} min reached "
                                     f"after {row['env_steps']} of {cfg.total_env_steps} env "
                                     f"steps ({row['wall_s']:.0f} s)")
                    log.warning("%s", stopped_early)
                if (c + 1) % s.eval_every_chunks == 0 or last_chunk:
                    last_eval = self.evaluate(s.eval_episodes)
                    row.update({k: v for k, v in last_eval.items() if k.startswith("eval_")})
                    # the row's counters and clock include the evaluation's DFT jobs
                    row.update(oracle_counters(self.env.oracle_stats(),
                                               time.perf_counter() - t_start))
                if row["skipped_updates"]:
                    log.warning("%d updates skipped for a non-finite loss, gradient or "
                                "priority by env step %d", row["skipped_updates"],
                                row["env_steps"])
                self.logger.log(row)
                if (c + 1) % s.checkpoint_every_chunks == 0 or last_chunk:
                    self.checkpointer.save(self.iteration, self.state)
                    self.top.export(self.run_dir, self.structures, pictures=False)
                bar.update(chunk * per_iter)
                bar.set_postfix(R=f"{row['mean_terminal_reward']:.3f}",
                                best=f"{row['best_property']:.3g} {self.unit}",
                                dft=row["dft_calls"], hits=row["cache_hits"], refresh=False)
                if stopped_early:
                    break
        plot_learning_curve(self.run_dir, f"{self.config.agent_name} on "
                            f"{self.env.property_name} ({os.path.basename(self.run_dir)})")
        self.top.export(self.run_dir, self.structures)
        summary = {"run_dir": self.run_dir, "env_steps": self.iteration * per_iter,
                   "wall_s": round(time.perf_counter() - t_start, 2), **last_eval,
                   "stopped_early": stopped_early, "best_crystals": self.top.best()[:5],
                   "oracle": self.env.oracle_stats()}
        with open(os.path.join(self.run_dir, "eval.json"), "w") as f:
            json.dump(summary, f, indent=2, default=str)
        refresh_report(self.run_dir)
        return summary

    def _over_budget(self, elapsed_s: float, chunk_seconds: list[float]) -> bool:
        """Would one more chunk plus the final evaluation end past the time budget?

        Both are estimated by the slowest chunk so far, leaving out the first (which
        includes compilation) once there is another.
        """
        budget = self.settings.time_budget_minutes
        if budget is None:
            return False
        steady = chunk_seconds[1:] or chunk_seconds
        estimate = max(steady)
        return elapsed_s + 2 * estimate > 60.0 * budget  # the chunk, then the evaluation

    def close(self) -> None:
        """Close the logger, the checkpointer and the env (its oracle's pool and cache)."""
        try:
            if self.logger is not None:
                self.logger.close()
            if self.checkpointer is not None:
                self.checkpointer.close()
        finally:
            self.env.close()


def new_run_dir(config: RunConfig) -> str:
    name = config.train.name or "{}-{}-{}".format(
        os.path.splitext(os.path.basename(config.source))[0].replace("<dict>", "run"),
        config.agent_name, time.strftime("%Y%m%d-%H%M%S"))
    path = os.path.join(config.train.runs_dir, name)
    k = 1
    while os.path.exists(path):
        k += 1
        path = os.path.join(config.train.runs_dir, f"{name}-{k}")
    return path


def train(config_path: str | dict | RunConfig, overrides=None, progress: bool = True) -> dict:
    """Train from a run config (YAML path, dict or RunConfig; ``overrides`` as ``key=value``
    strings or a dict) in a new run directory; returns a summary."""
    config = (config_path if isinstance(config_path, RunConfig)
              else load_run_config(config_path, overrides))
    with Trainer(config, new_run_dir(config)) as trainer:
        return trainer.run(progress=progress)


def resume(run_dir: str, progress: bool = True,
           time_budget_minutes: float | None = None) -> dict:
    """Continue a run from its latest checkpoint to its configured number of env steps.

    ``time_budget_minutes`` (> 0) replaces the saved budget for this part only (a long DFT
    run is resumed in parts of the length the machine has); the run's config.yaml keeps
    its own.
    """
    config = load_run_config(run_config_path(run_dir))
    if time_budget_minutes is not None:
        settings = TrainSettings(**{**dataclasses.asdict(config.train),
                                    "time_budget_minutes": time_budget_minutes})
        config = dataclasses.replace(config, train=settings)
    with Trainer(config, run_dir, resume=True) as trainer:
        return trainer.run(progress=progress)


def run_config_path(run_dir: str) -> str:
    """``RUN_DIR/config.yaml``; FileNotFoundError naming the run directory when it is not
    one (a missing folder, or one left by a start that failed before writing its config)."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"no such run directory: {run_dir}")
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    return path


__all__ = ["METRIC_FIELDS", "Trainer", "chunk_row", "resume", "run_config_path", "train"]
