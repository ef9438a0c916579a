"""The skeleton every agent shares (rejax-style): optimiser set-up, vectorised envs with
episode statistics, the chunked ``lax.scan`` training loop, jit wiring, greedy evaluation,
the best crystal of training and ONE metrics schema.

An algorithm subclasses :class:`Agent` (on-policy) or :class:`ReplayAgent` (replay
buffer + target network) and supplies its networks (``setup``), its learner state
(``init_learner``), ``greedy_action`` and its loss/update. Every agent's
``run_iterations`` returns every key of :data:`METRICS` at every iteration.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from crystaljax.agents.buffer import ReplayBuffer, Transition, buffer_add, buffer_init
from crystaljax.agents.evaluation import evaluate_policy
from crystaljax.models.networks import element_table_for, megnet_config_for
from crystaljax.wrappers.episode_stats import BestCrystal, VecEnvState, VecEpisodeStats

#: per-iteration metric -> how a chunk of iterations is reduced: "sum", "last" or "mean"
#: (nanmean; nan when every value is nan). Every agent returns every key every iteration:
#: float metrics an agent does not have are nan, counters it does not have are 0.
METRICS: dict[str, str] = {
    "env_steps": "last",  # cumulative env steps (all envs)
    "episodes_done": "sum",
    "terminal_reward_sum": "sum",  # sum of the rewards of the steps that ended an episode
    "best_reward": "last",  # best finished crystal of training so far
    "best_property": "last",
    "oracle_failures": "sum",  # finished episodes whose status is a failure (not OK/floor)
    "invalid_actions": "sum",  # steps with info["invalid_action"]
    "updates": "last",  # cumulative gradient steps
    "skipped_updates": "sum",  # gradient steps skipped for a non-finite loss or gradient
    "loss": "mean",  # total loss (DQN/Rainbow TD loss, PPO loss, SAC critic loss)
    "epsilon": "last",
    "alpha": "last",
    "entropy": "mean",
    "policy_loss": "mean",
    "value_loss": "mean",
    "approx_kl": "mean",
    "clip_fraction": "mean",
    "sil_loss": "mean",  # PPO's self-imitation loss (nan when off)
    "actor_loss": "mean",
    "alpha_loss": "mean",
    "q_mean": "mean",
}
#: the integer counters of METRICS (int32); the others are f32
INT_METRICS = frozenset({"env_steps", "episodes_done", "oracle_failures", "invalid_actions",
                         "updates", "skipped_updates"})


def complete_metrics(metrics: dict[str, Any]) -> dict[str, jax.Array]:
    """``metrics`` with every key of METRICS, in its dtype (missing: nan or 0)."""
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise KeyError(f"metrics {unknown} are not in agents.base.METRICS")
    out = {}
    for name in METRICS:
        dtype = jnp.int32 if name in INT_METRICS else jnp.float32
        missing = 0 if name in INT_METRICS else jnp.nan
        out[name] = jnp.asarray(metrics.get(name, missing), dtype)
    return out


def summarise_updates(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Metrics of a scan of gradient steps (leaves [...]) -> means, with the per-step
    ``skipped`` flags counted as ``skipped_updates``."""
    metrics = dict(metrics)
    skipped = metrics.pop("skipped").sum().astype(jnp.int32)
    return dict(jax.tree.map(jnp.mean, metrics), skipped_updates=skipped)


def adam(learning_rate: float, eps: float, max_grad_norm: float | None = None,
         end_learning_rate: float | None = None, num_updates: int = 1
         ) -> optax.GradientTransformation:
    """Adam, with a global-norm clip first when ``max_grad_norm`` is set, and a learning
    rate annealed linearly to ``end_learning_rate`` over ``num_updates`` when that is set."""
    lr = (learning_rate if end_learning_rate is None
          else optax.linear_schedule(learning_rate, end_learning_rate, num_updates))
    opt = optax.adam(lr, eps=eps)
    return opt if max_grad_norm is None else optax.chain(optax.clip_by_global_norm(max_grad_norm),
                                                         opt)


@struct.dataclass
class BaseState:
    """What every agent carries between iterations (subclasses add their learner state).

    params: network parameters (``Agent.network_params``); env_state: VecEnvState (the N
    env states + episode statistics, with the best crystal); obs: observations [N, ...];
    key: PRNG key; iteration, env_steps, updates: int32 [] counters."""

    params: Any
    env_state: VecEnvState
    obs: Any
    key: jax.Array
    iteration: jax.Array
    env_steps: jax.Array
    updates: jax.Array


class Agent:
    """An agent on a gymnax-style env; see the module docstring for what subclasses add.

    Public API: ``init(key) -> state`` (jitted; ``init_state`` is the same, unjitted);
    ``train_chunk(state, num_iterations)`` (jitted);
    ``run_iterations(state, num_iterations, start_iteration=None)`` (pure, for vmap/jit by
    the caller); ``greedy_action(params, obs)``; ``network_params(state)``;
    ``evaluate_params(params, key, num_episodes)`` (pure) and ``evaluate(state_or_params,
    key, num_episodes)`` (jitted); ``best_crystal(state) -> BestCrystal``.
    """

    #: the state dataclass (a BaseState subclass) built by ``init``
    state_cls: type = BaseState

    def __init__(self, name: str, env, env_params, config):
        self.name = name
        self.env = env
        self.env_params = env_params
        self.config = config
        self.envs = VecEpisodeStats(env, config.num_envs)
        self.net_config = megnet_config_for(env, config.network)
        self.element_table = element_table_for(self.net_config, env_params)
        self.setup()
        # eager, the network's init runs op by op (~2x the time of compiling it once)
        self.init = jax.jit(self.init_state)
        self.train_chunk = jax.jit(self.run_iterations, static_argnums=1)
        self._evaluate = jax.jit(self.evaluate_params, static_argnums=2)

    # ---- what an algorithm supplies ------------------------------------------------------
    def setup(self) -> None:
        """Build networks and optimisers (self.net_config, self.element_table are set)."""
        raise NotImplementedError

    def init_learner(self, key: jax.Array, obs: Any) -> dict[str, Any]:
        """The learner fields of the state (params, optimiser states, ...) from batched obs."""
        raise NotImplementedError

    def iteration(self, state: Any, it: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        """One training iteration -> (state, metrics: a subset of METRICS)."""
        raise NotImplementedError

    def greedy_action(self, network_params: Any, obs: Any) -> jax.Array:
        """The greedy valid action per env: obs batched [B] -> int32 [B]."""
        raise NotImplementedError

    # ---- state ---------------------------------------------------------------------------
    def init_state(self, key: jax.Array) -> Any:
        """Fresh state: learner (``init_learner``), N reset envs, zero counters (``init`` is
        this, jitted)."""
        k_params, k_env, k_state = jax.random.split(key, 3)
        obs, env_state = self.envs.reset(k_env, self.env_params)
        zero = jnp.zeros((), jnp.int32)
        return self.state_cls(env_state=env_state, obs=obs, key=k_state, iteration=zero,
                              env_steps=zero, updates=zero, **self.init_learner(k_params, obs))

    def network_params(self, state: BaseState) -> Any:
        """What ``greedy_action`` and ``evaluate_params`` take."""
        return state.params

    def best_crystal(self, state: BaseState) -> BestCrystal:
        """The best finished crystal of training (leaves gain the leading axes of a
        vmapped state)."""
        return state.env_state.stats.best

    def episode_metrics(self, state: BaseState, step_stats: dict) -> dict[str, jax.Array]:
        """Counters and best crystal of an iteration that ended in ``state``."""
        best = self.best_crystal(state)
        return {"env_steps": state.env_steps, "updates": state.updates,
                "best_reward": best.reward, "best_property": best.property, **step_stats}

    # ---- training loop -------------------------------------------------------------------
    def run_iterations(self, state: Any, num_iterations: int,
                       start_iteration: jax.Array | int | None = None
                       ) -> tuple[Any, dict[str, jax.Array]]:
        """``num_iterations`` training iterations in a ``lax.scan`` (pure; not jitted).

        ``start_iteration`` (default ``state.iteration``) is the index of the first
        iteration, kept apart from the state so that under vmap over seeds it stays
        unbatched (``lax.cond`` then skips work for real): pass an unbatched value when
        vmapping. Returns the new state and every metric of METRICS with leading axis
        ``num_iterations``."""
        start = state.iteration if start_iteration is None else start_iteration
        its = jnp.asarray(start, jnp.int32) + jnp.arange(num_iterations, dtype=jnp.int32)

        def body(s, it):
            s, metrics = self.iteration(s, it)
            return s, complete_metrics(metrics)

        return jax.lax.scan(body, state, its)

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate_params(self, network_params: Any, key: jax.Array,
                        num_episodes: int) -> dict[str, jax.Array]:
        """Greedy evaluation from network parameters (pure); see :meth:`evaluate`."""
        return evaluate_policy(self.env, self.env_params,
                               lambda _, obs: self.greedy_action(network_params, obs),
                               key, num_episodes)

    def evaluate(self, state_or_params: Any, key: jax.Array,
                 num_episodes: int) -> dict[str, jax.Array]:
        """The greedy policy (noise off) for one episode in each of ``num_episodes`` envs
        with random start sites (jitted). Returns mean_reward, rewards [B], properties [B],
        statuses [B], abs_errors [B], median_abs_error, tokens [B, S], template_ids [B]."""
        params = (self.network_params(state_or_params)
                  if isinstance(state_or_params, BaseState) else state_or_params)
        return self._evaluate(params, key, num_episodes)


class ReplayAgent(Agent):
    """Off-policy skeleton (DQN/Rainbow, SAC): an iteration steps every env once, stores
    the transitions, makes the updates due (``updates_per_iteration`` every
    ``update_every`` iterations from ``self.learning_starts`` env steps on) and moves the
    target network ``tau`` of the way to the online one whenever the env steps cross a
    multiple of ``target_update_interval`` (tau 1 = hard copy). The state needs fields
    ``target_params`` and ``buffer``.

    Subclasses supply ``act(state, key_a, key_b, steps_before) -> (actions [N], metrics)``
    and ``update(state, key, steps_before) -> (state, metrics with 'skipped' bool [])``,
    and set ``self.learning_starts`` in ``setup``.
    """

    learning_starts: int

    def act(self, state: Any, key_a: jax.Array, key_b: jax.Array, steps_before: jax.Array
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
        raise NotImplementedError

    def update(self, state: Any, key: jax.Array, steps_before: jax.Array
               ) -> tuple[Any, dict[str, jax.Array]]:
        raise NotImplementedError

    def target_source(self, params: Any) -> Any:
        """The part of ``state.params`` that ``state.target_params`` tracks."""
        return params

    def state_metrics(self, state: Any) -> dict[str, jax.Array]:
        """Metrics read off the state at the end of an iteration."""
        return {}

    def record_step(self, state: Any, obs: Any, actions: jax.Array, reward: jax.Array,
                    terminated: jax.Array, truncated: jax.Array) -> Any:
        """Hook after every env step (obs acted on [N, ...], the rest [N]); the default
        keeps nothing beyond the replay buffer."""
        return state

    def empty_buffer(self, obs: Any) -> ReplayBuffer:
        """An empty replay buffer for transitions of these (batched) observations."""
        one_obs = jax.tree.map(lambda x: x[0], obs)
        example = Transition(obs=one_obs, action=jnp.zeros((), jnp.int32),
                             reward=jnp.zeros((), jnp.float32), terminated=jnp.zeros((), bool),
                             truncated=jnp.zeros((), bool), next_obs=one_obs)
        return buffer_init(example, self.config.buffer_rows, self.config.num_envs)

    def updates(self, state: Any, key: jax.Array, steps_before: jax.Array):
        """The updates of one iteration -> (state, metrics averaged over them)."""
        keys = jax.random.split(key, self.config.updates_per_iteration)
        state, metrics = jax.lax.scan(lambda s, k: self.update(s, k, steps_before), state, keys)
        return state, summarise_updates(metrics)

    def iteration(self, state: Any, it: jax.Array):
        cfg = self.config
        key, k_act_a, k_act_b, k_env, k_update = jax.random.split(state.key, 5)
        steps_before = it * cfg.num_envs
        actions, act_metrics = self.act(state, k_act_a, k_act_b, steps_before)
        next_obs, env_state, reward, terminated, truncated, info, step_stats = self.envs.step(
            k_env, state.env_state, actions, self.env_params)
        buffer = buffer_add(state.buffer, Transition(state.obs, actions, reward, terminated,
                                                     truncated, info["final_observation"]))
        state = self.record_step(state, state.obs, actions, reward, terminated, truncated)
        env_steps = steps_before + cfg.num_envs
        state = state.replace(buffer=buffer, env_state=env_state, obs=next_obs, key=key,
                              iteration=it + 1, env_steps=env_steps)

        learning = env_steps >= self.learning_starts
        due = learning & ((it + 1) % cfg.update_every == 0)
        # jitted so that the shapes below and the branch share ONE trace of the updates
        # (jax caches the trace of a jitted function per input shapes; a plain call under
        # eval_shape and again under cond traced the whole update twice)
        updates = jax.jit(self.updates)
        shapes = jax.eval_shape(updates, state, k_update, steps_before)[1]
        no_update = jax.tree.map(lambda s: jnp.full(s.shape, 0 if s.dtype == jnp.int32
                                                    else jnp.nan, s.dtype), shapes)
        state, learn_metrics = jax.lax.cond(
            due, lambda s: updates(s, k_update, steps_before), lambda s: (s, no_update),
            state)
        crossed = (env_steps // cfg.target_update_interval
                   > steps_before // cfg.target_update_interval)
        refresh = crossed & learning
        target = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                              optax.incremental_update(self.target_source(state.params),
                                                       state.target_params, cfg.tau),
                              state.target_params)
        state = state.replace(target_params=target)
        return state, {**self.episode_metrics(state, step_stats), **act_metrics,
                       **learn_metrics, **self.state_metrics(state)}


__all__ = ["INT_METRICS", "METRICS", "Agent", "BaseState", "BestCrystal", "ReplayAgent", "adam",
           "complete_metrics", "summarise_updates"]
