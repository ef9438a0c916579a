"""One multi-seed train-and-evaluate sweep: the seeds of one agent on one env train vmapped in
jitted chunks; between chunks the greedy policy of every seed is evaluated.

:func:`run_sweep` returns a :class:`SweepResult`, whose :meth:`SweepResult.to_json` is the
one results format of the benchmarks (``crystaljax.benchmarks.results`` stores lists of them).
Every array of a result is per seed: ``[seeds][points]`` for curves, ``[seeds]`` for scalars.

Example::

    result = run_sweep("dqn", "density-perovskite-small-v0", seeds=3, env_steps=20_000,
                       eval_every=2_000, eval_episodes=256)
    result.steps_to_criterion()   # first eval step meeting the density criterion, per seed
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import crystaljax
from crystaljax.benchmarks.machine import machine_description
from crystaljax.training.artifacts import TopCrystals
from crystaljax.training.metrics import mean_terminal_reward, reduce_chunk

#: The density criterion of the agent benchmarks: a greedy policy whose mean terminal reward
#: is at least CRITERION_REWARD with a median |density - target| of at most CRITERION_ERROR.
CRITERION_REWARD = 0.99
CRITERION_ERROR = 0.05  # g/cm3

EVAL_KEY = 12345  # PRNG seed of every greedy evaluation (the same episodes at every point)
TOP_K = 5  # distinct best crystals kept per seed (SweepResult.top_crystals)
RANDOM_KEY = 7  # PRNG seed of the uniform random baseline


@dataclasses.dataclass
class SweepResult:
    """Seeds of one agent trained on one env, evaluated along the way."""

    agent: str
    task: Any  # a task id, or an EnvConfig mapping
    env: dict  # keyword overrides given to crystaljax.make with the task
    property: str
    target: float
    oracle: str  # "in-graph", or the host oracle and its preset, e.g. "QE (fast)"
    seeds: int
    seed: int  # the PRNG seed the seed keys are split from
    env_steps: int  # per seed
    eval_every: int
    eval_episodes: int
    overrides: dict  # agent config overrides of the package defaults
    config: dict  # the whole agent config
    machine: str
    jax_version: str | None
    backend: str
    compile_s: float
    train_s: float  # the chunks only (no compilation, no evaluation)
    wall_s: float  # the whole sweep
    eval_steps: list  # env steps of the greedy evaluations
    eval_mean_reward: list  # [seeds][eval points]
    eval_median_abs_error: list  # [seeds][eval points]
    chunk_steps: list  # env steps at the end of each chunk
    train_mean_reward: list  # [seeds][chunks]: mean terminal reward of the training episodes
    chunk_metrics: dict  # name -> [seeds][chunks], reduced by the agents' metric schema
    best_reward: list  # [seeds]: the best crystal found in training
    best_property: list
    best_tokens: list | None = None  # [seeds][sites]
    best_template_id: list | None = None
    skipped_updates: list | None = None  # [seeds]: non-finite updates skipped
    random: dict | None = None  # the uniform random policy: mean_reward, median_abs_error
    oracle_stats: dict | None = None  # host oracles: evaluations, computed, cache_hits, ...
    #: [seeds] of up to TOP_K distinct crystals, best reward first: dicts of tokens,
    #: template_id, reward, property, status, found_by ("training": the best of training at
    #: the end of a chunk; "greedy evaluation"), as a run directory's top list collects them
    top_crystals: list | None = None

    # ---- the one results format -------------------------------------------------------
    def to_json(self) -> dict:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SweepResult:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"not a sweep result: unknown key(s) {unknown}")
        return cls(**dict(data))

    # ---- what the reports read --------------------------------------------------------
    @property
    def key(self) -> tuple:
        """(agent, task, target), plus the PRNG seed when it is not 0 (another set of
        seeds): a merged results file holds one result per key."""
        key = (self.agent, str(self.task), float(f"{self.target:.6g}"))
        return key + (self.seed,) if self.seed else key

    @property
    def env_steps_per_s(self) -> float:
        """Training env steps per second, all seeds together."""
        return self.seeds * self.env_steps / self.train_s if self.train_s else math.nan

    @property
    def machine_label(self) -> str:
        """'<machine> (JAX <version>, <backend>)'."""
        version = f"JAX {self.jax_version}, " if self.jax_version else ""
        return f"{self.machine} ({version}{self.backend})"

    def curve(self) -> tuple[list, np.ndarray]:
        """(env steps, mean reward [seeds, points]): the greedy curve when there is one,
        else the training episodes' mean terminal reward per chunk."""
        if self.eval_steps:
            return list(self.eval_steps), _array(self.eval_mean_reward, self.seeds)
        return list(self.chunk_steps), _array(self.train_mean_reward, self.seeds)

    def final_mean_reward(self) -> list[float]:
        return self.curve()[1][:, -1].tolist()

    def final_median_abs_error(self) -> list[float]:
        return _array(self.eval_median_abs_error, self.seeds)[:, -1].tolist()

    def steps_to_criterion(self, reward: float = CRITERION_REWARD,
                           error: float = CRITERION_ERROR) -> list[int | None]:
        """Per seed: the first greedy evaluation with mean reward >= ``reward`` and median
        |error| <= ``error`` (None if never)."""
        rewards = _array(self.eval_mean_reward, self.seeds)
        errors = _array(self.eval_median_abs_error, self.seeds)
        out = []
        for r, e in zip(rewards, errors):
            hits = [s for s, ok in zip(self.eval_steps, (r >= reward) & (e <= error)) if ok]
            out.append(int(hits[0]) if hits else None)
        return out

    def steps_to_fraction(self, fraction: float = 0.9) -> list[int | None]:
        """Per seed: the first step where the curve gets ``fraction`` of the way from its
        first point to its best (None when it never rises)."""
        steps, values = self.curve()
        return [steps_to_fraction(steps, list(v), fraction) for v in values]


def steps_to_fraction(steps: list, values: list, fraction: float = 0.9) -> int | None:
    """First step where ``values`` gets ``fraction`` of the way from values[0] to its max."""
    values = np.asarray(values, float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    first, best = finite[0], finite.max()
    if best <= first:
        return None
    goal = first + fraction * (best - first)
    return next(int(s) for s, v in zip(steps, values) if v >= goal)


def _array(rows: list, seeds: int) -> np.ndarray:
    arr = np.asarray(rows if rows else [[]] * seeds, float)
    return arr.reshape(seeds, -1)


def _plain(value: Any) -> Any:
    """JSON-ready: numpy scalars/arrays to Python numbers/lists, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- the sweep ---------------------------------------------------------------------------
def random_baseline(env, env_params, num_episodes: int = 4096, seed: int = RANDOM_KEY) -> dict:
    """Mean reward and median |error| of the uniform random policy."""
    from crystaljax.agents.evaluation import evaluate_policy, uniform_random_policy

    result = jax.jit(lambda k: evaluate_policy(env, env_params, uniform_random_policy, k,
                                               num_episodes))(jax.random.PRNGKey(seed))
    return {"mean_reward": float(result["mean_reward"]),
            "median_abs_error": float(result["median_abs_error"]), "episodes": num_episodes}


def _oracle_label(env, config) -> str:
    if env.host_bridge is None:
        return "in-graph"
    name = config.oracle if isinstance(config.oracle, str) else type(config.oracle).__name__
    preset = dict(config.oracle_options).get("preset")
    return f"{name.upper()} ({preset})" if preset else name.upper()


def run_sweep(agent_name: str, task: Any = "density-perovskite-small-v0",
              env_kwargs: Mapping[str, Any] | None = None,
              agent_overrides: Mapping[str, Any] | None = None, *, seeds: int = 3,
              env_steps: int | None = None, eval_every: int = 2_000, eval_episodes: int = 256,
              seed: int = 0, random_episodes: int = 4096, progress: bool = True) -> SweepResult:
    """Train ``seeds`` seeds of ``agent_name`` vmapped on ``crystaljax.make(task,
    **env_kwargs)`` for ``env_steps`` env steps each (default: the agent config's
    ``total_env_steps``), in chunks of ``eval_every`` env steps (rounded down to whole
    iterations; a PPO iteration is a whole rollout). With ``eval_episodes`` > 0 the greedy
    policy of every seed plays that many episodes before training and after every chunk.
    ``random_episodes`` > 0 measures the uniform random policy too (in-graph oracles only:
    on a host oracle it would cost DFT). The env is closed at the end.
    """
    from crystaljax.agents import make_agent

    env_kwargs = dict(env_kwargs or {})
    overrides = dict(agent_overrides or {})
    env, env_params = crystaljax.make(task, **env_kwargs)
    env_config = env.config
    with env:
        config = dict(overrides, total_env_steps=env_steps) if env_steps else overrides
        agent = make_agent(agent_name, env, env_params, config)
        cfg = agent.config
        env_steps = int(cfg.total_env_steps)
        per_iteration = int(cfg.env_steps_per_iteration)
        chunk_iterations = max(1, eval_every // per_iteration)
        num_chunks = max(1, env_steps // (chunk_iterations * per_iteration))
        baseline = (random_baseline(env, env_params, random_episodes)
                    if random_episodes and env.host_bridge is None else None)
        t_start = time.perf_counter()
        states = jax.jit(jax.vmap(agent.init))(jax.random.split(jax.random.PRNGKey(seed), seeds))
        chunk = jax.jit(jax.vmap(lambda s, start: agent.run_iterations(s, chunk_iterations, start),
                                 in_axes=(0, None)))
        chunk = chunk.lower(states, jnp.int32(0)).compile()
        compile_s = time.perf_counter() - t_start
        evaluate = jax.jit(jax.vmap(
            lambda s, k: agent.evaluate_params(agent.network_params(s), k, eval_episodes),
            in_axes=(0, None)))
        eval_key = jax.random.PRNGKey(EVAL_KEY)
        curve: dict[str, list] = {"steps": [], "mean_reward": [], "median_abs_error": []}

        top = [TopCrystals(TOP_K) for _ in range(seeds)]

        def offer_best(states) -> None:
            best = jax.tree.map(np.asarray, agent.best_crystal(states))
            for k in range(seeds):
                _offer(top[k], best.tokens[k], best.template_id[k], best.reward[k],
                       best.property[k], 0, "training")

        def record(states, steps: int) -> None:
            if eval_episodes:
                result = evaluate(states, eval_key)
                ev = jax.tree.map(np.asarray, result)
                for k in range(seeds):
                    for i in range(ev["rewards"].shape[1]):
                        _offer(top[k], ev["tokens"][k, i], ev["template_ids"][k, i],
                               ev["rewards"][k, i], ev["properties"][k, i],
                               ev["statuses"][k, i], "greedy evaluation")
                curve["steps"].append(steps)
                curve["mean_reward"].append(np.asarray(result["mean_reward"], float))
                curve["median_abs_error"].append(np.asarray(result["median_abs_error"], float))

        record(states, 0)
        train_s, chunk_steps, reduced = 0.0, [], []
        with tqdm(total=num_chunks, desc=f"{agent_name} {env_config.property}", unit="chunk",
                  disable=not progress, dynamic_ncols=True) as bar:
            for i in range(num_chunks):
                t0 = time.perf_counter()
                states, metrics = chunk(states, jnp.int32(i * chunk_iterations))
                jax.block_until_ready(states)
                train_s += time.perf_counter() - t0
                reduced.append(reduce_chunk(jax.tree.map(np.asarray, metrics)))
                chunk_steps.append((i + 1) * chunk_iterations * per_iteration)
                offer_best(states)
                record(states, chunk_steps[-1])
                shown = (curve["mean_reward"][-1] if eval_episodes
                         else mean_terminal_reward(reduced[-1]))
                bar.set_postfix(reward=np.array2string(np.asarray(shown), precision=3),
                                refresh=False)
                bar.update()
        best = jax.tree.map(np.asarray, agent.best_crystal(states))  # leaves [seeds, ...]
        per_seed = {name: np.stack([np.broadcast_to(r[name], (seeds,)) for r in reduced], 1)
                    for name in reduced[0]}
        skipped = per_seed.get("skipped_updates")
        return SweepResult(
            agent=agent_name, task=task, env=env_kwargs, property=env_config.property,
            target=float(env_config.resolved_target), oracle=_oracle_label(env, env_config),
            seeds=seeds, seed=seed, env_steps=env_steps, eval_every=chunk_iterations * per_iteration,
            eval_episodes=eval_episodes, overrides=overrides,
            config=_plain(dataclasses.asdict(cfg)), machine=machine_description(),
            jax_version=jax.__version__, backend=jax.default_backend(), compile_s=compile_s,
            train_s=train_s, wall_s=time.perf_counter() - t_start, eval_steps=curve["steps"],
            eval_mean_reward=_per_seed(curve["mean_reward"], seeds),
            eval_median_abs_error=_per_seed(curve["median_abs_error"], seeds),
            chunk_steps=chunk_steps,
            train_mean_reward=_per_seed([mean_terminal_reward(r) for r in reduced], seeds),
            chunk_metrics={k: v.tolist() for k, v in per_seed.items()},
            best_reward=np.asarray(best.reward, float).tolist(),
            best_property=np.asarray(best.property, float).tolist(),
            best_tokens=np.asarray(best.tokens).tolist(),
            best_template_id=np.asarray(best.template_id).tolist(),
            skipped_updates=None if skipped is None else skipped.sum(1).astype(int).tolist(),
            random=baseline,
            oracle_stats=None if env.host_bridge is None else _plain(env.oracle_stats()),
            top_crystals=[t.best() for t in top])


def _offer(top: TopCrystals, tokens, template_id, reward, value, status, found_by: str) -> None:
    """Offer one crystal to a seed's top list (a failure, with no value, is not kept)."""
    if np.isfinite(value):
        tokens = [int(t) for t in np.asarray(tokens)]
        top.offer(float(reward), f"{int(template_id)}:{tokens}", {
            "tokens": tokens, "template_id": int(template_id), "reward": float(reward),
            "property": float(value), "status": int(status), "found_by": found_by})


def _per_seed(points: list, seeds: int) -> list:
    """[points] of [seeds] values -> [seeds][points] lists."""
    if not points:
        return [[] for _ in range(seeds)]
    return np.stack([np.broadcast_to(p, (seeds,)) for p in points], 1).tolist()


__all__ = ["CRITERION_ERROR", "CRITERION_REWARD", "SweepResult", "TOP_K", "random_baseline", "run_sweep",
           "steps_to_fraction"]
