"""PPO behind "ppo": vectorised rollouts, GAE, clipped policy and value losses, entropy
bonus, epochs of shuffled minibatches, all in one ``lax.scan``: jittable end to end and
vmappable over seeds.

N = num_envs, T = num_steps, B = T * N transitions per rollout, M = num_minibatches,
A = actions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
import rlax
from flax import struct

from crystaljax.agents.config import PPOConfig
from crystaljax.agents.evaluation import evaluate_policy
from crystaljax.agents.exploration import greedy
from crystaljax.agents.guards import all_finite, new_if_ok
from crystaljax.agents.state import BestCrystal
from crystaljax.models.networks import ActorCriticNetwork, element_table_for, megnet_config_for


@struct.dataclass
class PPOState:
    """Everything PPO carries between iterations (a pytree).

    params: ActorCriticNetwork parameters; opt_state: optax state; env_state, obs: the N
    vectorised envs (leaves [N, ...]); key: PRNG key; iteration, env_steps, updates: int32
    [] counters (updates = gradient steps); best: BestCrystal found so far.
    """

    params: Any
    opt_state: Any
    env_state: Any
    obs: Any
    key: jax.Array
    iteration: jax.Array
    env_steps: jax.Array
    updates: jax.Array
    best: BestCrystal


@struct.dataclass
class Rollout:
    """One rollout, leaves [T, N, ...].

    obs: observations acted on; action int32; log_prob f32: log pi_old(action | obs);
    value f32: V_old(obs); reward f32; terminated, truncated bool; next_value f32: V_old of
    the observation the action led to (an episode's final observation when it ended, not
    the next episode's first), the bootstrap of a truncated or unfinished step.
    """

    obs: Any
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_value: jax.Array


@struct.dataclass
class PPOSamples:
    """Training samples: leaves [B, ...] (flattened rollout) or [M, B / M, ...]
    (minibatches). obs; action int32; log_prob, value f32 (behaviour policy and critic);
    advantage f32 (GAE, not normalised); target f32: advantage + value (the return the
    critic regresses to)."""

    obs: Any
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


def gae_advantages(reward: jax.Array, value: jax.Array, next_value: jax.Array,
                   terminated: jax.Array, truncated: jax.Array, gamma: float,
                   gae_lambda: float) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates over a time-major rollout; all inputs [T, N].

    delta_t = r_t + gamma * V(s'_t) * (1 - terminated_t) - V(s_t), where s'_t is the
    observation step t led to (for a truncated step: its final observation, so a
    truncation bootstraps and a termination does not). The recursion
    A_t = delta_t + gamma * lambda * A_{t+1} stops at every episode end (terminated or
    truncated) and after the last step of the rollout.

    Returns (advantages f32 [T, N], returns f32 [T, N] = advantages + values).
    """
    done = terminated | truncated
    delta = reward + gamma * jnp.where(terminated, 0.0, next_value) - value

    def backward(next_advantage, x):
        delta_t, done_t = x
        advantage = delta_t + gamma * gae_lambda * jnp.where(done_t, 0.0, next_advantage)
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(delta[0]), (delta, done),
                                 reverse=True)
    return advantages, advantages + value


def shuffle_minibatches(samples: Any, key: jax.Array, num_minibatches: int) -> Any:
    """Split a pytree of leaves [B, ...] into ``num_minibatches`` minibatches
    (leaves [M, B / M, ...]) with ONE random permutation shared by every leaf, so row i of
    every field of a minibatch comes from the same transition."""
    size = jax.tree.leaves(samples)[0].shape[0]
    perm = jax.random.permutation(key, size)
    return jax.tree.map(lambda x: x[perm].reshape(num_minibatches, -1, *x.shape[1:]), samples)


def flatten_time(tree: Any) -> Any:
    """Leaves [T, N, ...] -> [T * N, ...]."""
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


class PPOAgent:
    """PPO on a gymnax-style env (see :class:`PPOConfig` for every option).

    Public API as the other agents: ``init(key) -> PPOState``; ``train_chunk(state,
    num_iterations)`` (jitted); ``run_iterations`` (pure, for vmap/jit by the caller);
    ``greedy_action(params, obs)``; ``evaluate(state_or_params, key, num_episodes)``;
    ``network_params(state)``. One iteration = one rollout of ``num_steps`` steps of every
    env, then ``update_epochs x num_minibatches`` gradient steps.
    """

    def __init__(self, name: str, env, env_params, config: PPOConfig):
        self.name = name
        self.env = env
        self.env_params = env_params
        self.config = config
        net_config = megnet_config_for(env, config.network)
        self.network = ActorCriticNetwork(net_config, env.num_actions, config.shared_torso,
                                          element_table_for(net_config, env_params))
        learning_rate = (optax.linear_schedule(config.learning_rate, 0.0, config.total_updates)
                         if config.anneal_lr else config.learning_rate)
        adam = optax.adam(learning_rate, eps=config.adam_eps)
        self.optimizer = (adam if config.max_grad_norm is None
                          else optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adam))
        self.train_chunk = jax.jit(self.run_iterations, static_argnums=1)
        self._evaluate = jax.jit(self.evaluate_params, static_argnums=2)

    # ---- network -------------------------------------------------------------------------
    def policy_value(self, params: Any, obs: Any) -> tuple[jax.Array, jax.Array]:
        """(logits f32 [B, A] with invalid actions masked, values f32 [B]) of batched obs."""
        return self.network.apply(params, obs)

    def value(self, params: Any, obs: Any) -> jax.Array:
        """State values f32 [B] of batched obs."""
        return self.network.apply(params, obs, method=ActorCriticNetwork.value)

    def greedy_action(self, params: Any, obs: Any) -> jax.Array:
        """The most probable valid action per env: obs batched [B] -> int32 [B]."""
        return greedy(self.policy_value(params, obs)[0])

    def network_params(self, state: PPOState) -> Any:
        return state.params

    # ---- state ---------------------------------------------------------------------------
    def init(self, key: jax.Array) -> PPOState:
        """Fresh agent state: parameters, optimiser, N reset envs."""
        k_params, k_env, k_state = jax.random.split(key, 3)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(
            jax.random.split(k_env, self.config.num_envs), self.env_params)
        params = self.network.init(k_params, obs)
        zero = jnp.zeros((), jnp.int32)
        return PPOState(params=params, opt_state=self.optimizer.init(params),
                        env_state=env_state, obs=obs, key=k_state, iteration=zero,
                        env_steps=zero, updates=zero,
                        best=BestCrystal.empty(self.env.max_sites, self.env.num_actions))

    # ---- rollout -------------------------------------------------------------------------
    def _rollout(self, params: Any, env_state: Any, obs: Any, best: BestCrystal,
                 key: jax.Array):
        """``num_steps`` steps of every env under the current policy.

        Returns ((env_state, obs, best) after the rollout, Rollout [T, N], per-step
        (done bool [T, N], status int32 [T, N]))."""
        N = self.config.num_envs

        def step(carry, step_key):
            env_state, obs, best = carry
            k_act, k_env = jax.random.split(step_key)
            logits, value = self.policy_value(params, obs)
            action = jax.random.categorical(k_act, logits).astype(jnp.int32)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None],
                                           axis=1)[:, 0]
            next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
                self.env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_env, N), env_state, action, self.env_params)
            next_value = self.value(params, info["final_observation"])
            done = terminated | truncated
            final = info["final_state"]
            best = best.update(done, reward, info["property"], final.tokens, final.template_id)
            transition = Rollout(obs=obs, action=action, log_prob=log_prob, value=value,
                                 reward=reward, terminated=terminated, truncated=truncated,
                                 next_value=next_value)
            return (env_state, next_obs, best), (transition, done, info["status"])

        carry, (rollout, done, status) = jax.lax.scan(
            step, (env_state, obs, best), jax.random.split(key, self.config.num_steps))
        return carry, rollout, (done, status)

    # ---- learning ------------------------------------------------------------------------
    def loss(self, params: Any, batch: PPOSamples) -> tuple[jax.Array, dict[str, jax.Array]]:
        """PPO loss of one minibatch (leaves [M', ...]): clipped surrogate (rlax) +
        vf_coef * value loss - ent_coef * entropy. Returns (loss, metrics: policy_loss,
        value_loss, entropy, approx_kl, clip_fraction)."""
        cfg = self.config
        logits, value = self.policy_value(params, batch.obs)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), batch.action[:, None],
                                       axis=1)[:, 0]
        log_ratio = log_prob - batch.log_prob
        ratio = jnp.exp(log_ratio)
        advantage = batch.advantage
        if cfg.norm_adv:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
        policy_loss = rlax.clipped_surrogate_pg_loss(ratio, advantage, cfg.clip_coef)
        value_error = jnp.square(value - batch.target)
        if cfg.clip_vloss:
            clipped = batch.value + jnp.clip(value - batch.value, -cfg.clip_coef, cfg.clip_coef)
            value_error = jnp.maximum(value_error, jnp.square(clipped - batch.target))
        value_loss = 0.5 * jnp.mean(value_error)
        entropy_loss = rlax.entropy_loss(logits, jnp.ones_like(ratio))  # -mean entropy
        loss = policy_loss + cfg.vf_coef * value_loss + cfg.ent_coef * entropy_loss
        return loss, {"policy_loss": policy_loss, "value_loss": value_loss,
                      "entropy": -entropy_loss,
                      "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
                      "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > cfg.clip_coef)}

    def _minibatch_update(self, carry, batch: PPOSamples):
        """One gradient step; skipped (params and optimiser state kept) when the loss or a
        gradient is not finite, and counted in the ``skipped`` metric (bool [])."""
        params, opt_state = carry
        (loss, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(params, batch)
        finite = all_finite(loss, grads)
        updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
        params = new_if_ok(finite, optax.apply_updates(params, updates), params)
        opt_state = new_if_ok(finite, new_opt_state, opt_state)
        return (params, opt_state), dict(metrics, loss=loss, skipped=~finite)

    def samples_from_rollout(self, rollout: Rollout) -> PPOSamples:
        """GAE on a rollout [T, N] -> flattened training samples [B]."""
        cfg = self.config
        advantage, target = gae_advantages(rollout.reward, rollout.value, rollout.next_value,
                                           rollout.terminated, rollout.truncated, cfg.gamma,
                                           cfg.gae_lambda)
        return flatten_time(PPOSamples(obs=rollout.obs, action=rollout.action,
                                       log_prob=rollout.log_prob, value=rollout.value,
                                       advantage=advantage, target=target))

    def _learn(self, params: Any, opt_state: Any, samples: PPOSamples, key: jax.Array):
        """``update_epochs`` passes over ``samples`` [B], each in freshly shuffled
        minibatches. Returns (params, opt_state, metrics averaged over the steps, with
        ``skipped_updates`` int32 [] the number of steps skipped as non-finite)."""
        cfg = self.config

        def epoch(carry, epoch_key):
            minibatches = shuffle_minibatches(samples, epoch_key, cfg.num_minibatches)
            return jax.lax.scan(self._minibatch_update, carry, minibatches)

        (params, opt_state), metrics = jax.lax.scan(
            epoch, (params, opt_state), jax.random.split(key, cfg.update_epochs))
        skipped = metrics.pop("skipped").sum().astype(jnp.int32)
        return params, opt_state, dict(jax.tree.map(jnp.mean, metrics), skipped_updates=skipped)

    # ---- one iteration -------------------------------------------------------------------
    def _iteration(self, state: PPOState, it: jax.Array):
        """Collect one rollout, then learn on it. ``it`` int32 []: this iteration's index
        (kept apart from ``state`` so that it stays unbatched under vmap over seeds)."""
        cfg = self.config
        key, k_rollout, k_learn = jax.random.split(state.key, 3)
        (env_state, obs, best), rollout, (done, status) = self._rollout(
            state.params, state.env_state, state.obs, state.best, k_rollout)
        samples = self.samples_from_rollout(rollout)
        params, opt_state, learn_metrics = self._learn(state.params, state.opt_state, samples,
                                                       k_learn)
        env_steps = (it + 1) * cfg.env_steps_per_iteration
        steps_per_update = cfg.update_epochs * cfg.num_minibatches
        state = state.replace(params=params, opt_state=opt_state, env_state=env_state, obs=obs,
                              key=key, iteration=it + 1, env_steps=env_steps,
                              updates=state.updates + steps_per_update, best=best)
        metrics = {
            "env_steps": env_steps,
            "episodes_done": done.sum().astype(jnp.int32),
            "terminal_reward_sum": jnp.sum(jnp.where(done, rollout.reward, 0.0)),
            "best_reward": best.reward,
            "best_property": best.property,
            "dft_status_failures": jnp.sum(done & (status != 0)).astype(jnp.int32),
            "updates": state.updates,
            **learn_metrics,
        }
        return state, metrics

    def run_iterations(self, state: PPOState, num_iterations: int,
                       start_iteration: jax.Array | int | None = None
                       ) -> tuple[PPOState, dict[str, jax.Array]]:
        """``num_iterations`` PPO iterations in a ``lax.scan`` (pure; not jitted).

        ``start_iteration`` (default ``state.iteration``) is the index of the first
        iteration; pass an unbatched value when vmapping over seeds. Returns the new state
        and metrics with leading axis ``num_iterations``: env_steps (cumulative),
        episodes_done, terminal_reward_sum, best_reward, best_property,
        dft_status_failures, updates (cumulative gradient steps), skipped_updates (steps of
        this iteration skipped for a non-finite loss or gradient) and the iteration means
        of loss, policy_loss, value_loss, entropy, approx_kl, clip_fraction.
        """
        start = state.iteration if start_iteration is None else start_iteration
        its = jnp.asarray(start, jnp.int32) + jnp.arange(num_iterations, dtype=jnp.int32)
        return jax.lax.scan(self._iteration, state, its)

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate_params(self, params: Any, key: jax.Array,
                        num_episodes: int) -> dict[str, jax.Array]:
        """Greedy evaluation from network parameters (pure); see :meth:`evaluate`."""
        return evaluate_policy(self.env, self.env_params,
                               lambda _, obs: self.greedy_action(params, obs), key,
                               num_episodes)

    def evaluate(self, state_or_params: Any, key: jax.Array,
                 num_episodes: int) -> dict[str, jax.Array]:
        """The most probable action at every step, one episode in each of
        ``num_episodes`` envs with random start sites (jitted). Returns mean_reward,
        rewards [B], properties [B], statuses [B], abs_errors [B], median_abs_error,
        tokens [B, S], template_ids [B]."""
        params = (state_or_params.params if isinstance(state_or_params, PPOState)
                  else state_or_params)
        return self._evaluate(params, key, num_episodes)
