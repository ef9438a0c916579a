"""Discrete SAC behind "sac" (Christodoulou 2019, arXiv 1910.07207): twin Q-networks with
Polyak-averaged targets, a categorical policy over the valid actions, expected-value
losses, automatic temperature. The whole loop (vectorised env step, replay, updates) is
one ``lax.scan``, jittable end to end and vmappable over seeds.

N = num_envs, B = batch size, A = actions. The twin critics share one parameter pytree
whose leaves have a leading axis of 2 (applied with ``jax.vmap``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from crystaljax.agents.buffer import (
    ReplayBuffer,
    Transition,
    buffer_add,
    buffer_init,
    gather_nstep,
    sample_indices,
)
from crystaljax.agents.config import SACConfig
from crystaljax.agents.evaluation import evaluate_policy
from crystaljax.agents.exploration import greedy, random_valid_action
from crystaljax.agents.guards import all_finite, new_if_ok
from crystaljax.agents.state import BestCrystal
from crystaljax.models.networks import (
    PolicyNetwork,
    QNetwork,
    element_table_for,
    megnet_config_for,
)


@struct.dataclass
class SACState:
    """Everything discrete SAC carries between iterations (a pytree).

    params: {"actor": policy parameters, "critic": twin Q parameters (leaves [2, ...])};
    target_critic: the target twin (same structure as params["critic"]);
    actor_opt_state, critic_opt_state, alpha_opt_state: optax states;
    log_alpha: f32 [] log temperature; buffer: ReplayBuffer; env_state, obs: the N envs
    (leaves [N, ...]); key: PRNG key; iteration, env_steps, updates: int32 [] counters;
    best: BestCrystal found so far.
    """

    params: Any
    target_critic: Any
    actor_opt_state: Any
    critic_opt_state: Any
    alpha_opt_state: Any
    log_alpha: jax.Array
    buffer: ReplayBuffer
    env_state: Any
    obs: Any
    key: jax.Array
    iteration: jax.Array
    env_steps: jax.Array
    updates: jax.Array
    best: BestCrystal


def masked_policy(logits: jax.Array, action_mask: jax.Array
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(probabilities, log-probabilities, entropy) of a categorical policy restricted to
    the valid actions. logits f32 [B, A] (invalid = MASKED_LOGIT), action_mask bool [B, A]
    -> probs [B, A] (0 on invalid), log_probs [B, A] (0 on invalid, so products with
    probs stay finite), entropy [B] in nats."""
    log_probs = jnp.where(action_mask, jax.nn.log_softmax(logits), 0.0)
    probs = jnp.where(action_mask, jnp.exp(log_probs), 0.0)
    return probs, log_probs, -jnp.sum(probs * log_probs, axis=-1)


def target_entropy(action_mask: jax.Array, fraction: float) -> jax.Array:
    """Per-state target entropy f32 [B]: ``fraction * log(number of valid actions)``
    (action_mask bool [B, A]); 0 where at most one action is valid."""
    valid = jnp.maximum(action_mask.sum(axis=-1), 1).astype(jnp.float32)
    return fraction * jnp.log(valid)


def temperature_loss(log_alpha: jax.Array, entropy: jax.Array,
                     target: jax.Array) -> jax.Array:
    """Temperature loss mean(log_alpha * (H - H_target)) with H, H_target f32 [B] held
    fixed: gradient descent lowers alpha while the policy's entropy is above its target
    and raises it while below."""
    return jnp.mean(log_alpha * jax.lax.stop_gradient(entropy - target))


class SACAgent:
    """Discrete SAC on a gymnax-style env (see :class:`SACConfig` for every option).

    Public API as the other agents: ``init(key) -> SACState``; ``train_chunk(state,
    num_iterations)`` (jitted); ``run_iterations`` (pure, for vmap/jit by the caller);
    ``greedy_action(params, obs)``; ``evaluate(state_or_params, key, num_episodes)``;
    ``network_params(state)``; ``q_values(params, obs)``. One iteration = one step of every
    env + the updates due.
    """

    def __init__(self, name: str, env, env_params, config: SACConfig):
        self.name = name
        self.env = env
        self.env_params = env_params
        self.config = config
        net_config = megnet_config_for(env, config.network)
        table = element_table_for(net_config, env_params)
        self.actor = PolicyNetwork(net_config, env.num_actions, table)
        self.critic = QNetwork(net_config, env.num_actions, element_table=table)

        def adam(lr):
            opt = optax.adam(lr, eps=config.adam_eps)
            return (opt if config.max_grad_norm is None
                    else optax.chain(optax.clip_by_global_norm(config.max_grad_norm), opt))

        self.actor_optimizer = adam(config.policy_learning_rate)
        self.critic_optimizer = adam(config.q_learning_rate)
        self.alpha_optimizer = optax.adam(config.alpha_learning_rate, eps=config.adam_eps)
        self.train_chunk = jax.jit(self.run_iterations, static_argnums=1)
        self._evaluate = jax.jit(self.evaluate_params, static_argnums=2)

    # ---- networks ------------------------------------------------------------------------
    def logits(self, params: Any, obs: Any) -> jax.Array:
        """Policy logits f32 [B, A] (invalid = MASKED_LOGIT); ``params`` as SACState.params."""
        return self.actor.apply(params["actor"], obs)

    def twin_q(self, critic_params: Any, obs: Any) -> jax.Array:
        """Q-values of both critics f32 [2, B, A] (invalid = MASKED_LOGIT)."""
        return jax.vmap(lambda p: self.critic.apply(p, obs).q_values)(critic_params)

    def q_values(self, params: Any, obs: Any) -> jax.Array:
        """min over the twin critics f32 [B, A]; ``params`` as SACState.params."""
        return self.twin_q(params["critic"], obs).min(axis=0)

    def greedy_action(self, params: Any, obs: Any) -> jax.Array:
        """The policy's most probable valid action: obs batched [B] -> int32 [B]."""
        return greedy(self.logits(params, obs))

    def network_params(self, state: SACState) -> Any:
        return state.params

    # ---- state ---------------------------------------------------------------------------
    def init(self, key: jax.Array) -> SACState:
        """Fresh agent state: actor, twin critics (+ targets), optimisers, empty buffer,
        N reset envs."""
        cfg = self.config
        k_actor, k_critic, k_env, k_state = jax.random.split(key, 4)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(k_env, cfg.num_envs), self.env_params)
        actor = self.actor.init(k_actor, obs)
        critic = jax.vmap(lambda k: self.critic.init(k, obs))(jax.random.split(k_critic, 2))
        log_alpha = jnp.log(jnp.float32(cfg.alpha_init))
        one_obs = jax.tree.map(lambda x: x[0], obs)
        example = Transition(obs=one_obs, action=jnp.zeros((), jnp.int32),
                             reward=jnp.zeros((), jnp.float32), terminated=jnp.zeros((), bool),
                             truncated=jnp.zeros((), bool), next_obs=one_obs)
        zero = jnp.zeros((), jnp.int32)
        return SACState(
            params={"actor": actor, "critic": critic}, target_critic=critic,
            actor_opt_state=self.actor_optimizer.init(actor),
            critic_opt_state=self.critic_optimizer.init(critic),
            alpha_opt_state=self.alpha_optimizer.init(log_alpha), log_alpha=log_alpha,
            buffer=buffer_init(example, cfg.buffer_rows, cfg.num_envs),
            env_state=env_state, obs=obs, key=k_state, iteration=zero, env_steps=zero,
            updates=zero, best=BestCrystal.empty(self.env.max_sites, self.env.num_actions))

    # ---- learning ------------------------------------------------------------------------
    def _update(self, state: SACState, key: jax.Array) -> tuple[SACState, dict]:
        """One gradient step of the critics, the actor and the temperature on a replay
        batch -> (state, metrics: loss (critic), actor_loss, alpha_loss, entropy, q_mean,
        skipped bool []). A step with a non-finite loss or gradient changes no parameter,
        optimiser state or temperature (see :mod:`crystaljax.agents.guards`)."""
        cfg = self.config
        rows, envs, _ = sample_indices(state.buffer, key, cfg.batch_size, 1)
        batch = gather_nstep(state.buffer, rows, envs, 1, cfg.gamma)
        alpha = jnp.exp(state.log_alpha)
        mask = batch.obs.action_mask

        # soft state value of s': E_{a' ~ pi}[min_i Q_target_i(s', a') - alpha log pi(a'|s')]
        next_probs, next_log_probs, _ = masked_policy(self.logits(state.params, batch.next_obs),
                                                      batch.next_obs.action_mask)
        next_q = self.twin_q(state.target_critic, batch.next_obs).min(axis=0)
        next_q = jnp.where(batch.next_obs.action_mask, next_q, 0.0)
        soft_value = jnp.sum(next_probs * (next_q - alpha * next_log_probs), axis=-1)
        target = jax.lax.stop_gradient(batch.reward + batch.discount * soft_value)

        def critic_loss(critic_params):
            q = self.twin_q(critic_params, batch.obs)  # [2, B, A]
            q_taken = jnp.take_along_axis(q, batch.action[None, :, None], axis=2)[..., 0]
            loss = jnp.sum(jnp.mean(jnp.square(q_taken - target[None]), axis=1))  # MSE per twin
            return loss, jax.lax.stop_gradient(q)

        (c_loss, q_obs), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
            state.params["critic"])
        updates, critic_opt_state = self.critic_optimizer.update(
            critic_grads, state.critic_opt_state, state.params["critic"])
        critic = optax.apply_updates(state.params["critic"], updates)

        # actor: E_{a ~ pi}[alpha log pi(a|s) - min_i Q_i(s, a)] with the critics' values
        # of this batch (computed before their update, held fixed)
        min_q = jnp.where(mask, q_obs.min(axis=0), 0.0)

        def actor_loss(actor_params):
            probs, log_probs, entropy = masked_policy(self.actor.apply(actor_params, batch.obs),
                                                      mask)
            loss = jnp.mean(jnp.sum(probs * (alpha * log_probs - min_q), axis=-1))
            return loss, entropy

        (a_loss, entropy), actor_grads = jax.value_and_grad(actor_loss, has_aux=True)(
            state.params["actor"])
        updates, actor_opt_state = self.actor_optimizer.update(
            actor_grads, state.actor_opt_state, state.params["actor"])
        actor = optax.apply_updates(state.params["actor"], updates)

        log_alpha, alpha_opt_state = state.log_alpha, state.alpha_opt_state
        t_loss = alpha_grad = jnp.float32(0.0)
        if cfg.autotune:
            goal = target_entropy(mask, cfg.target_entropy_fraction)
            t_loss, alpha_grad = jax.value_and_grad(temperature_loss)(log_alpha, entropy, goal)
            updates, alpha_opt_state = self.alpha_optimizer.update(alpha_grad, alpha_opt_state,
                                                                   log_alpha)
            log_alpha = optax.apply_updates(log_alpha, updates)

        # one non-finite loss or gradient skips the whole step (critics, actor, temperature)
        finite = all_finite(c_loss, a_loss, t_loss, critic_grads, actor_grads, alpha_grad)
        learnt = {"params": {"actor": actor, "critic": critic},
                  "actor_opt_state": actor_opt_state, "critic_opt_state": critic_opt_state,
                  "alpha_opt_state": alpha_opt_state, "log_alpha": log_alpha}
        before = {name: getattr(state, name) for name in learnt}
        state = state.replace(**new_if_ok(finite, learnt, before), updates=state.updates + 1)
        q_taken = jnp.take_along_axis(q_obs[0], batch.action[:, None], axis=1)[:, 0]
        return state, {"loss": c_loss, "actor_loss": a_loss,
                       "alpha_loss": jnp.asarray(t_loss, jnp.float32),
                       "entropy": entropy.mean(), "q_mean": q_taken.mean(),
                       "skipped": ~finite}

    def _updates(self, state: SACState, key: jax.Array) -> tuple[SACState, dict]:
        """The updates of one iteration -> (state, metrics averaged over them)."""
        keys = jax.random.split(key, self.config.updates_per_iteration)
        state, metrics = jax.lax.scan(self._update, state, keys)
        skipped = metrics.pop("skipped").sum().astype(jnp.int32)
        return state, dict(jax.tree.map(jnp.mean, metrics), skipped_updates=skipped)

    # ---- one iteration -------------------------------------------------------------------
    def _iteration(self, state: SACState, it: jax.Array):
        """Step every env once, store, update when due, move the targets. ``it`` int32 []:
        this iteration's index (unbatched under vmap over seeds, so ``lax.cond`` really
        skips the updates)."""
        cfg = self.config
        N = cfg.num_envs
        key, k_act, k_random, k_env, k_update = jax.random.split(state.key, 5)
        steps_before = it * N
        sampled = jax.random.categorical(k_act, self.logits(state.params, state.obs)).astype(
            jnp.int32)
        random = random_valid_action(k_random, state.obs.action_mask)
        actions = jnp.where(steps_before < cfg.learning_starts, random, sampled)
        next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, N), state.env_state, actions, self.env_params)
        buffer = buffer_add(state.buffer, Transition(state.obs, actions, reward, terminated,
                                                     truncated, info["final_observation"]))
        done = terminated | truncated
        final = info["final_state"]
        best = state.best.update(done, reward, info["property"], final.tokens, final.template_id)
        env_steps = steps_before + N
        state = state.replace(buffer=buffer, env_state=env_state, obs=next_obs, key=key,
                              iteration=it + 1, env_steps=env_steps, best=best)

        nan = jnp.float32(jnp.nan)
        no_update = {"loss": nan, "actor_loss": nan, "alpha_loss": nan, "entropy": nan,
                     "q_mean": nan, "skipped_updates": jnp.zeros((), jnp.int32)}
        learning = env_steps >= max(cfg.learning_starts, cfg.batch_size)
        due = learning & ((it + 1) % cfg.update_every == 0)
        state, learn_metrics = jax.lax.cond(due, lambda s: self._updates(s, k_update),
                                            lambda s: (s, no_update), state)
        crossed = (env_steps // cfg.target_update_interval
                   > steps_before // cfg.target_update_interval)
        refresh = crossed & learning
        target = jax.tree.map(lambda new, old: jnp.where(refresh, new, old),
                              optax.incremental_update(state.params["critic"],
                                                       state.target_critic, cfg.tau),
                              state.target_critic)
        state = state.replace(target_critic=target)

        metrics = {
            "env_steps": env_steps,
            "episodes_done": done.sum().astype(jnp.int32),
            "terminal_reward_sum": jnp.sum(jnp.where(done, reward, 0.0)),
            "best_reward": best.reward,
            "best_property": best.property,
            "alpha": jnp.exp(state.log_alpha),
            "dft_status_failures": jnp.sum(done & (info["status"] != 0)).astype(jnp.int32),
            "updates": state.updates,
            **learn_metrics,
        }
        return state, metrics

    def run_iterations(self, state: SACState, num_iterations: int,
                       start_iteration: jax.Array | int | None = None
                       ) -> tuple[SACState, dict[str, jax.Array]]:
        """``num_iterations`` training iterations in a ``lax.scan`` (pure; not jitted).

        ``start_iteration`` (default ``state.iteration``) is the index of the first
        iteration; pass an unbatched value when vmapping over seeds. Returns the new state
        and metrics with leading axis ``num_iterations``: env_steps (cumulative),
        episodes_done, terminal_reward_sum, best_reward, best_property, alpha,
        dft_status_failures, updates (cumulative), skipped_updates (updates of this
        iteration skipped for a non-finite loss or gradient) and, nan when no update was
        made, loss (critic), actor_loss, alpha_loss, entropy (policy, nats), q_mean.
        """
        start = state.iteration if start_iteration is None else start_iteration
        its = jnp.asarray(start, jnp.int32) + jnp.arange(num_iterations, dtype=jnp.int32)
        return jax.lax.scan(self._iteration, state, its)

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate_params(self, params: Any, key: jax.Array,
                        num_episodes: int) -> dict[str, jax.Array]:
        """Greedy evaluation from ``SACState.params`` (pure); see :meth:`evaluate`."""
        return evaluate_policy(self.env, self.env_params,
                               lambda _, obs: self.greedy_action(params, obs), key,
                               num_episodes)

    def evaluate(self, state_or_params: Any, key: jax.Array,
                 num_episodes: int) -> dict[str, jax.Array]:
        """The policy's most probable action at every step, one episode in each of
        ``num_episodes`` envs with random start sites (jitted). Returns mean_reward,
        rewards [B], properties [B], statuses [B], abs_errors [B], median_abs_error,
        tokens [B, S], template_ids [B]."""
        params = (state_or_params.params if isinstance(state_or_params, SACState)
                  else state_or_params)
        return self._evaluate(params, key, num_episodes)
