"""PPO behind "ppo" (config, rollout, GAE, clipped policy and value losses, entropy bonus,
epochs of shuffled minibatches); the loop is :class:`~crystaljax.agents.base.Agent`'s.

N = num_envs, T = num_steps, B = T * N transitions per rollout, M = num_minibatches,
A = actions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import rlax
from flax import struct

from crystaljax.agents.base import Agent, BaseState, adam, summarise_updates
from crystaljax.agents.config import AgentConfig
from crystaljax.agents.exploration import greedy
from crystaljax.agents.guards import all_finite, guarded_step
from crystaljax.agents.self_imitation import (
    SILBuffer,
    sil_init,
    sil_key,
    sil_loss,
    sil_record_rollout,
    sil_sample,
    trace_init,
)
from crystaljax.config import ConfigError, option
from crystaljax.models.networks import ActorCriticNetwork


@dataclasses.dataclass(frozen=True)
class PPOConfig(AgentConfig):
    """PPO (clipped surrogate, GAE, clipped value loss, entropy bonus). Defaults are the
    settings that met the density criterion (BENCHMARKS.md): 50k env steps on 8 envs,
    25-step rollouts in 4 minibatches, learning rate 1e-3 annealed to 0, entropy weight
    0.05; the rest is CleanRL's. CrystalGym's PPO (REFERENCE.md: 1 env, 32-step rollouts,
    2 minibatches, learning rate 2.5e-4, entropy 0.01; it converged to worse policies
    here, docs/AGENTS.md) is ``preset: crystalgym``.

    One training iteration collects a rollout of ``num_steps`` steps in each of the
    ``num_envs`` envs (``num_steps * num_envs`` env steps), then makes
    ``update_epochs * num_minibatches`` gradient steps on it. Every minibatch is a slice of
    ONE permutation of the flattened rollout applied to all of its fields (observations,
    actions, old log-probabilities, values, advantages, returns), so rows stay aligned
    (CrystalGym's PPO mixed them up, REFERENCE.md defect 2). Truncated episodes bootstrap
    from the value of their final observation; terminated ones do not.

    Attributes (total_env_steps, num_envs, gamma, network: see
    :class:`~crystaljax.agents.config.AgentConfig`):
      num_steps: rollout length per env and iteration.
      learning_rate, adam_eps: Adam (one optimiser over actor and critic, CleanRL's).
      anneal_lr: decay the learning rate linearly to 0 over the run.
      gae_lambda: GAE lambda.
      num_minibatches, update_epochs: minibatches per epoch and epochs per iteration.
      norm_adv: normalise advantages per minibatch (mean 0, std 1).
      clip_coef: surrogate ratio clip epsilon (also the value clip when ``clip_vloss``).
      clip_vloss: clipped value loss (max of clipped and unclipped squared errors).
      ent_coef, vf_coef: weights of the entropy bonus and the value loss.
      max_grad_norm: global gradient-norm clip (None = none).
      shared_torso: one MEGNet torso for policy and value (False = separate networks,
        as the original).
      sil_coef: weight of the self-imitation loss (:mod:`crystaljax.agents.
        self_imitation`; 0 = plain PPO): every gradient step also imitates transitions of
        the best finished episodes seen, where their return beats the critic.
      sil_capacity, sil_batch_size: transitions kept (the highest returns) and sampled
        per gradient step; sil_value_coef: weight of its value term (the paper's 0.01).
    """

    adam_eps: float = option(1e-5, gt=0.0)
    max_grad_norm: float | None = option(0.5, gt=0.0)
    num_steps: int = option(25, ge=1)
    learning_rate: float = option(1e-3, gt=0.0)
    anneal_lr: bool = True
    gae_lambda: float = option(0.95, ge=0.0, le=1.0)
    num_minibatches: int = option(4, ge=1)
    update_epochs: int = option(4, ge=1)
    norm_adv: bool = True
    clip_coef: float = option(0.2, gt=0.0)
    clip_vloss: bool = True
    ent_coef: float = option(0.05, ge=0.0)
    vf_coef: float = option(0.5, ge=0.0)
    shared_torso: bool = False
    sil_coef: float = option(0.0, ge=0.0)
    sil_capacity: int = option(512, ge=1)
    sil_batch_size: int = option(32, ge=1)
    sil_value_coef: float = option(0.01, ge=0.0)

    def __post_init__(self):
        super().__post_init__()
        if self.batch_size % self.num_minibatches:
            raise ConfigError(f"num_steps * num_envs ({self.batch_size}) must be a multiple of "
                              f"num_minibatches ({self.num_minibatches})")

    @property
    def batch_size(self) -> int:
        """Transitions per rollout (``num_steps * num_envs``)."""
        return self.num_steps * self.num_envs

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def env_steps_per_iteration(self) -> int:
        """Env steps of one iteration: one rollout, ``num_steps * num_envs``."""
        return self.batch_size

    @property
    def num_iterations(self) -> int:
        """Iterations of a full run (``total_env_steps // env_steps_per_iteration``)."""
        return max(1, self.total_env_steps // self.batch_size)

    @property
    def total_updates(self) -> int:
        """Gradient steps of a full run (for the learning-rate annealing)."""
        return self.num_iterations * self.update_epochs * self.num_minibatches


@struct.dataclass
class PPOState(BaseState):
    """PPO's state: BaseState (params = ActorCriticNetwork parameters; updates counts
    gradient steps) + the optax state + the self-imitation buffer and each env's running
    episode (None when ``sil_coef`` is 0)."""

    opt_state: Any
    sil: Any = None
    trace: Any = None


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


class PPOAgent(Agent):
    """PPO (see :class:`PPOConfig` for every option; API of
    :class:`~crystaljax.agents.base.Agent`, plus ``policy_value`` and ``value``). One
    iteration = one rollout of ``num_steps`` steps of every env, then
    ``update_epochs x num_minibatches`` gradient steps.
    """

    state_cls = PPOState

    def setup(self) -> None:
        cfg = self.config
        self.network = ActorCriticNetwork(self.net_config, self.env.num_actions,
                                          cfg.shared_torso, self.element_table)
        self.optimizer = adam(cfg.learning_rate, cfg.adam_eps, cfg.max_grad_norm,
                              0.0 if cfg.anneal_lr else None, cfg.total_updates)

    def init_learner(self, key: jax.Array, obs: Any) -> dict[str, Any]:
        params = self.network.init(key, obs)
        cfg, one_obs = self.config, jax.tree.map(lambda x: x[0], obs)
        sil = trace = None
        if cfg.sil_coef > 0:
            sil = sil_init(one_obs, cfg.sil_capacity)
            trace = trace_init(one_obs, cfg.num_envs, int(self.env.max_sites))
        return {"params": params, "opt_state": self.optimizer.init(params), "sil": sil,
                "trace": trace}

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

    # ---- rollout -------------------------------------------------------------------------
    def _rollout(self, params: Any, env_state: Any, obs: Any, key: jax.Array):
        """``num_steps`` steps of every env under the current policy.

        ``next_value`` (the bootstrap) is V of the observation each step led to. For an env
        that can truncate (``env.can_truncate``, True unless the env says otherwise) that
        is V(final observation) at every step, one more critic pass per step. For an env
        that never truncates it is only ever read where the episode went on, where it
        equals the next step's ``value``: it is taken from there, plus one critic pass on
        the observation after the rollout (a terminated step's bootstrap is masked out by
        GAE whatever it holds).

        Returns ((env_state, obs) after the rollout, Rollout [T, N], the env statistics of
        the rollout summed over its steps)."""
        bootstrap_each_step = getattr(self.env, "can_truncate", True)

        def step(carry, step_key):
            env_state, obs = carry
            k_act, k_env = jax.random.split(step_key)
            logits, value = self.policy_value(params, obs)
            action = jax.random.categorical(k_act, logits).astype(jnp.int32)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None],
                                           axis=1)[:, 0]
            next_obs, env_state, reward, terminated, truncated, info, stats = self.envs.step(
                k_env, env_state, action, self.env_params)
            next_value = (self.value(params, info["final_observation"]) if bootstrap_each_step
                          else jnp.zeros_like(value))
            transition = Rollout(obs=obs, action=action, log_prob=log_prob, value=value,
                                 reward=reward, terminated=terminated, truncated=truncated,
                                 next_value=next_value)
            return (env_state, next_obs), (transition, stats)

        carry, (rollout, stats) = jax.lax.scan(
            step, (env_state, obs), jax.random.split(key, self.config.num_steps))
        if not bootstrap_each_step:
            last_value = self.value(params, carry[1])
            rollout = rollout.replace(next_value=jnp.concatenate(
                [rollout.value[1:], last_value[None]], axis=0))
        return carry, rollout, jax.tree.map(jnp.sum, stats)

    # ---- learning ------------------------------------------------------------------------
    def loss(self, params: Any, batch: PPOSamples, sil_batch: SILBuffer | None = None
             ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """PPO loss of one minibatch (leaves [M', ...]): clipped surrogate (rlax) +
        vf_coef * value loss - ent_coef * entropy (+ sil_coef * the self-imitation loss of
        ``sil_batch``, leaves [S, ...]). Returns (loss, metrics: policy_loss, value_loss,
        entropy, approx_kl, clip_fraction, sil_loss)."""
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
        imitation = jnp.float32(jnp.nan)
        if sil_batch is not None:
            sil_logits, sil_value = self.policy_value(params, sil_batch.obs)
            imitation = sil_loss(sil_logits, sil_value, sil_batch, cfg.sil_value_coef)
            loss = loss + cfg.sil_coef * imitation
        return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "sil_loss": imitation,
                      "entropy": -entropy_loss,
                      "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
                      "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > cfg.clip_coef)}

    def _minibatch_update(self, carry, batches: tuple[PPOSamples, SILBuffer | None]):
        """One gradient step on (a minibatch, its self-imitation sample or None); skipped
        (params and optimiser state kept) when the loss or a gradient is not finite, and
        counted in the ``skipped`` metric (bool [])."""
        params, opt_state = carry
        batch, sil_batch = batches
        (loss, metrics), grads = jax.value_and_grad(self.loss, has_aux=True)(params, batch,
                                                                            sil_batch)
        finite = all_finite(loss, grads)
        carry = guarded_step(self.optimizer, grads, opt_state, params, finite)
        return carry, dict(metrics, loss=loss, skipped=~finite)

    def samples_from_rollout(self, rollout: Rollout) -> PPOSamples:
        """GAE on a rollout [T, N] -> flattened training samples [B]."""
        cfg = self.config
        advantage, target = gae_advantages(rollout.reward, rollout.value, rollout.next_value,
                                           rollout.terminated, rollout.truncated, cfg.gamma,
                                           cfg.gae_lambda)
        return flatten_time(PPOSamples(obs=rollout.obs, action=rollout.action,
                                       log_prob=rollout.log_prob, value=rollout.value,
                                       advantage=advantage, target=target))

    def _learn(self, params: Any, opt_state: Any, samples: PPOSamples, key: jax.Array,
               sil: SILBuffer | None = None):
        """``update_epochs`` passes over ``samples`` [B], each in freshly shuffled
        minibatches (each step with ``sil_batch_size`` transitions drawn from the
        self-imitation buffer ``sil``, when given). Returns (params, opt_state, metrics
        averaged over the steps, with ``skipped_updates`` int32 [] the number of steps
        skipped as non-finite)."""
        cfg = self.config

        def epoch(carry, epoch_key):
            minibatches = shuffle_minibatches(samples, epoch_key, cfg.num_minibatches)
            sil_batches = (None if sil is None else
                           sil_sample(sil, sil_key(epoch_key),
                                      (cfg.num_minibatches, cfg.sil_batch_size)))
            return jax.lax.scan(self._minibatch_update, carry, (minibatches, sil_batches))

        (params, opt_state), metrics = jax.lax.scan(
            epoch, (params, opt_state), jax.random.split(key, cfg.update_epochs))
        return params, opt_state, summarise_updates(metrics)

    # ---- one iteration -------------------------------------------------------------------
    def iteration(self, state: PPOState, it: jax.Array):
        """Collect one rollout, then learn on it. ``it`` int32 []: this iteration's index
        (kept apart from ``state`` so that it stays unbatched under vmap over seeds)."""
        cfg = self.config
        key, k_rollout, k_learn = jax.random.split(state.key, 3)
        (env_state, obs), rollout, step_stats = self._rollout(state.params, state.env_state,
                                                              state.obs, k_rollout)
        samples = self.samples_from_rollout(rollout)
        sil, trace = state.sil, state.trace
        if sil is not None:
            sil, trace = sil_record_rollout(sil, trace, rollout.obs, rollout.action,
                                            rollout.reward, rollout.terminated,
                                            rollout.truncated, cfg.gamma)
        params, opt_state, learn_metrics = self._learn(state.params, state.opt_state, samples,
                                                       k_learn, sil)
        state = state.replace(params=params, opt_state=opt_state, env_state=env_state, obs=obs,
                              sil=sil, trace=trace,
                              key=key, iteration=it + 1,
                              env_steps=(it + 1) * cfg.env_steps_per_iteration,
                              updates=state.updates + cfg.update_epochs * cfg.num_minibatches)
        return state, {**self.episode_metrics(state, step_stats), **learn_metrics}


__all__ = ["PPOAgent", "PPOConfig", "PPOSamples", "PPOState", "Rollout", "gae_advantages",
           "shuffle_minibatches"]
