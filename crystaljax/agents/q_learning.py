"""Value-based agent behind "dqn" and "rainbow": the whole training loop (vectorised env
step, epsilon-greedy or noisy acting, replay, TD updates, target network) in one
``lax.scan``, jittable end to end and vmappable over seeds.

N = num_envs, B = batch size, A = actions, K = atoms.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from crystaljax.agents.buffer import (
    Transition,
    buffer_add,
    buffer_init,
    gather_nstep,
    sample_indices,
    update_priorities,
)
from crystaljax.agents.config import DQNConfig
from crystaljax.agents.evaluation import evaluate_policy
from crystaljax.agents.exploration import epsilon_greedy, greedy, linear_schedule
from crystaljax.agents.guards import all_finite, new_if_ok
from crystaljax.agents.losses import categorical_losses, scalar_loss, scalar_td_errors
from crystaljax.agents.state import AgentState, BestCrystal
from crystaljax.models.networks import (
    QNetwork,
    QOutput,
    element_table_for,
    megnet_config_for,
)


def reward_range(env, env_params) -> tuple[float, float]:
    """(lowest, highest) reward of a task, for the C51 support.

    Envs may declare ``reward_range``; crystal envs derive it from the property and the
    reward params: density and band gap rewards lie in [0, 1], bulk modulus in
    [floor, 0], and a failed evaluation gives the penalty, which is left out when the
    oracle cannot fail (the in-graph oracle): a support wasted on returns that never occur
    halves C51's resolution near the optimum, where density rewards differ by ~1e-3.
    """
    if hasattr(env, "reward_range"):
        low, high = env.reward_range
        return float(low), float(high)
    low, high = (float(env_params.reward.floor), 0.0) if env.property_name == "bulk_modulus" \
        else (0.0, 1.0)
    if getattr(env, "oracle_can_fail", True):
        low = min(low, float(env_params.reward.penalty))
    return low, high


class QLearningAgent:
    """DQN-family agent on a gymnax-style env (see :class:`DQNConfig` for every option).

    Public API: ``init(key) -> AgentState``; ``train_chunk(state, num_iterations)``
    (jitted); ``run_iterations`` (the same, not jitted, for vmap/jit by the caller);
    ``greedy_action(params, obs)``; ``evaluate(state_or_params, key, num_episodes)``;
    ``network_params(state)``. One iteration = one step of every env + the updates due.
    """

    def __init__(self, name: str, env, env_params, config: DQNConfig):
        self.name = name
        self.env = env
        self.env_params = env_params
        self.config = config
        if config.v_min is None:
            v_min, v_max = reward_range(env, env_params)
        else:
            v_min, v_max = config.v_min, config.v_max
        net_config = megnet_config_for(env, config.network)
        self.network = QNetwork(net_config, env.num_actions,
                                num_atoms=config.num_atoms, v_min=v_min, v_max=v_max,
                                dueling=config.dueling, noisy=config.noisy,
                                sigma0=config.noisy_sigma0,
                                element_table=element_table_for(net_config, env_params))
        learning_rate = (config.learning_rate if config.learning_rate_end is None
                         else optax.linear_schedule(config.learning_rate,
                                                    config.learning_rate_end,
                                                    config.total_updates))
        adam = optax.adam(learning_rate, eps=config.adam_eps)
        self.optimizer = (adam if config.max_grad_norm is None
                          else optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam))
        # never update before one full n-step window of every env is stored
        self.learning_starts = max(config.learning_starts, config.num_envs * config.n_step)
        self.train_chunk = jax.jit(self.run_iterations, static_argnums=1)
        self._evaluate = jax.jit(self.evaluate_params, static_argnums=2)

    # ---- network -------------------------------------------------------------------------
    def q_output(self, params: Any, obs: Any, key: jax.Array | None = None) -> QOutput:
        """Network output for batched obs; ``key`` draws noisy-layer noise (None = mean
        weights, as in greedy evaluation)."""
        if key is None or not self.config.noisy:
            return self.network.apply(params, obs, deterministic=True)
        return self.network.apply(params, obs, deterministic=False, rngs={"noise": key})

    def greedy_action(self, network_params: Any, obs: Any) -> jax.Array:
        """argmax_a Q(obs, a) over valid actions, noise off. obs batched [B] -> int32 [B]."""
        return greedy(self.q_output(network_params, obs).q_values)

    def network_params(self, state: AgentState) -> Any:
        """The online network's parameters."""
        return state.params

    # ---- state ---------------------------------------------------------------------------
    def init(self, key: jax.Array) -> AgentState:
        """Fresh agent state: parameters, optimiser, empty buffer, N reset envs."""
        cfg = self.config
        k_params, k_env, k_state = jax.random.split(key, 3)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(k_env, cfg.num_envs), self.env_params)
        params = self.network.init(k_params, obs, deterministic=True)
        one_obs = jax.tree.map(lambda x: x[0], obs)
        example = Transition(obs=one_obs, action=jnp.zeros((), jnp.int32),
                             reward=jnp.zeros((), jnp.float32), terminated=jnp.zeros((), bool),
                             truncated=jnp.zeros((), bool), next_obs=one_obs)
        return AgentState(
            params=params, target_params=params, opt_state=self.optimizer.init(params),
            buffer=buffer_init(example, cfg.buffer_rows, cfg.num_envs),
            env_state=env_state, obs=obs, key=k_state,
            iteration=jnp.zeros((), jnp.int32), env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
            best=BestCrystal.empty(self.env.max_sites, self.env.num_actions))

    # ---- learning ------------------------------------------------------------------------
    def _loss_and_priorities(self, params, target_params, batch, weights, key):
        """Weighted mean loss and per-sample priorities [B] of an n-step batch."""
        cfg = self.config
        k_tm1, k_t, k_target = jax.random.split(key, 3)
        target_t = self.q_output(target_params, batch.next_obs, k_target)
        selector = (self.q_output(params, batch.next_obs, k_t).q_values if cfg.double_q
                    else target_t.q_values)
        selector = jax.lax.stop_gradient(selector)

        def loss_fn(p):
            out = self.q_output(p, batch.obs, k_tm1)
            if cfg.num_atoms > 1:
                per_sample, priorities = categorical_losses(
                    self.network.atoms, out.logits, batch.action, batch.reward,
                    batch.discount, target_t.logits, selector)
            else:
                td = scalar_td_errors(out.q_values, batch.action, batch.reward, batch.discount,
                                      target_t.q_values, selector)
                per_sample, priorities = scalar_loss(td, cfg.loss), jnp.abs(td)
            return jnp.mean(weights * per_sample), jax.lax.stop_gradient(priorities)

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    def _update(self, state: AgentState, key: jax.Array, beta: jax.Array):
        """One gradient step on a replay batch -> (state, (loss f32 [], skipped bool [])).

        A step whose loss, gradients or priorities are not finite is skipped (parameters,
        optimiser state and priorities unchanged) and reported as ``skipped``: one bad batch
        must not turn every parameter into NaN for the rest of the run."""
        cfg = self.config
        k_sample, k_loss = jax.random.split(key)
        alpha = cfg.priority_exponent if cfg.prioritised else None
        rows, envs, probs = sample_indices(state.buffer, k_sample, cfg.batch_size, cfg.n_step,
                                           alpha)
        batch = gather_nstep(state.buffer, rows, envs, cfg.n_step, cfg.gamma)
        if cfg.prioritised:
            num_valid = (state.buffer.size - (cfg.n_step - 1)) * cfg.num_envs
            weights = (num_valid.astype(jnp.float32) * probs) ** (-beta)
            weights = weights / weights.max()
        else:
            weights = jnp.ones_like(probs)
        (loss, priorities), grads = self._loss_and_priorities(
            state.params, state.target_params, batch, weights, k_loss)
        finite = all_finite(loss, priorities, grads)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = new_if_ok(finite, optax.apply_updates(state.params, updates), state.params)
        opt_state = new_if_ok(finite, opt_state, state.opt_state)
        buffer = state.buffer
        if cfg.prioritised:
            new_priorities = jnp.where(finite, priorities + cfg.priority_eps,
                                       buffer.priorities[rows, envs])
            buffer = update_priorities(buffer, rows, envs, new_priorities)
        return state.replace(params=params, opt_state=opt_state, buffer=buffer,
                             updates=state.updates + 1), (loss, ~finite)

    def _updates(self, state: AgentState, key: jax.Array, beta: jax.Array):
        """The updates of one iteration -> (state, (mean loss, number skipped int32))."""
        keys = jax.random.split(key, self.config.updates_per_iteration)
        state, (losses, skipped) = jax.lax.scan(lambda s, k: self._update(s, k, beta), state,
                                                keys)
        return state, (losses.mean(), skipped.sum().astype(jnp.int32))

    # ---- one iteration -------------------------------------------------------------------
    def _iteration(self, state: AgentState, it: jax.Array):
        """Step every env once, store, update when due. ``it`` int32 []: this iteration's
        index (kept apart from ``state`` so that under vmap over seeds the update
        schedule stays unbatched and ``lax.cond`` skips work for real)."""
        cfg = self.config
        N = cfg.num_envs
        key, k_noise, k_act, k_env, k_update = jax.random.split(state.key, 5)
        steps_before = it * N
        epsilon = linear_schedule(cfg.epsilon_start, cfg.epsilon_end,
                                  cfg.exploration_fraction * cfg.total_env_steps, steps_before)
        q_values = self.q_output(state.params, state.obs, k_noise).q_values
        actions = epsilon_greedy(k_act, q_values, state.obs.action_mask, epsilon)
        next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, N), state.env_state, actions, self.env_params)
        final_obs = info["final_observation"]
        buffer = buffer_add(state.buffer, Transition(state.obs, actions, reward, terminated,
                                                     truncated, final_obs))
        done = terminated | truncated
        final = info["final_state"]
        best = state.best.update(done, reward, info["property"], final.tokens, final.template_id)
        env_steps = steps_before + N
        state = state.replace(buffer=buffer, env_state=env_state, obs=next_obs, key=key,
                              iteration=it + 1, env_steps=env_steps, best=best)

        beta = linear_schedule(cfg.importance_beta_start, cfg.importance_beta_end,
                               cfg.total_env_steps, steps_before)
        due = (env_steps >= self.learning_starts) & ((it + 1) % cfg.update_every == 0)
        state, (loss, skipped) = jax.lax.cond(
            due, lambda s: self._updates(s, k_update, beta),
            lambda s: (s, (jnp.float32(jnp.nan), jnp.int32(0))), state)
        crossed = (env_steps // cfg.target_update_interval
                   > steps_before // cfg.target_update_interval)
        refresh = crossed & (env_steps >= self.learning_starts)
        target = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                              optax.incremental_update(state.params, state.target_params,
                                                       cfg.tau),
                              state.target_params)
        state = state.replace(target_params=target)

        metrics = {
            "env_steps": env_steps,
            "episodes_done": done.sum().astype(jnp.int32),
            "terminal_reward_sum": jnp.sum(jnp.where(done, reward, 0.0)),
            "best_reward": best.reward,
            "best_property": best.property,
            "loss": loss,
            "epsilon": epsilon,
            "dft_status_failures": jnp.sum(done & (info["status"] != 0)).astype(jnp.int32),
            "updates": state.updates,
            "skipped_updates": skipped,
        }
        return state, metrics

    def run_iterations(self, state: AgentState, num_iterations: int,
                       start_iteration: jax.Array | int | None = None
                       ) -> tuple[AgentState, dict[str, jax.Array]]:
        """``num_iterations`` training iterations in a ``lax.scan`` (pure; not jitted).

        ``start_iteration`` (default ``state.iteration``) is the index of the first
        iteration; pass an unbatched value when vmapping over seeds. Returns the new
        state and metrics with leading axis ``num_iterations``: env_steps (cumulative),
        episodes_done, terminal_reward_sum, best_reward, best_property, loss (nan when
        no update), epsilon, dft_status_failures, updates (cumulative), skipped_updates
        (updates of this iteration skipped for a non-finite loss, gradient or priority).
        """
        start = state.iteration if start_iteration is None else start_iteration
        its = jnp.asarray(start, jnp.int32) + jnp.arange(num_iterations, dtype=jnp.int32)
        return jax.lax.scan(self._iteration, state, its)

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate_params(self, network_params: Any, key: jax.Array,
                        num_episodes: int) -> dict[str, jax.Array]:
        """Greedy evaluation from network parameters (pure); see :meth:`evaluate`."""
        return evaluate_policy(self.env, self.env_params,
                               lambda _, obs: self.greedy_action(network_params, obs),
                               key, num_episodes)

    def evaluate(self, state_or_params: Any, key: jax.Array,
                 num_episodes: int) -> dict[str, jax.Array]:
        """Greedy policy (noise off) for one episode in each of ``num_episodes`` envs with
        random start sites (jitted). Returns mean_reward, rewards [B], properties [B],
        statuses [B], abs_errors [B], median_abs_error, tokens [B, S], template_ids [B]."""
        params = (state_or_params.params if isinstance(state_or_params, AgentState)
                  else state_or_params)
        return self._evaluate(params, key, num_episodes)
