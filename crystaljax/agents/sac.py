"""Discrete SAC behind "sac" (Christodoulou 2019, arXiv 1910.07207): config, twin
Q-networks with Polyak-averaged targets, a categorical policy over the valid actions,
expected-value losses, automatic temperature. The loop is
:class:`~crystaljax.agents.base.ReplayAgent`'s.

N = num_envs, B = batch size, A = actions. The twin critics share one parameter pytree
whose leaves have a leading axis of 2 (applied with ``jax.vmap``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from crystaljax.agents.base import BaseState, ReplayAgent, adam
from crystaljax.agents.buffer import ReplayBuffer, gather_nstep, sample_indices
from crystaljax.agents.config import ReplayConfig
from crystaljax.agents.exploration import greedy, random_valid_action
from crystaljax.agents.guards import all_finite, new_if_ok
from crystaljax.config import option
from crystaljax.models.networks import PolicyNetwork, QNetwork


@dataclasses.dataclass(frozen=True)
class SACConfig(ReplayConfig):
    """Discrete SAC (Christodoulou 2019): twin Q-networks with Polyak target networks, a
    categorical policy over the valid actions, expected-value losses (no sampling over
    actions), automatic temperature. Defaults are the settings that met the density
    criterion (BENCHMARKS.md): 50k env steps on 8 envs, one update of batch 64 every 2 env
    steps, a 20k-transition buffer, Polyak targets (tau 0.01 every 8 env steps), Adam
    3e-4; see docs/AGENTS.md for what made it learn. CrystalGym's SAC (REFERENCE.md: 1 env,
    buffer 2000, fixed alpha 0.2; it did not learn) is ``preset: crystalgym``.

    Steps are env steps summed over the ``num_envs`` envs; one iteration steps every env
    once (``num_envs`` env steps) and makes the updates due. Shared fields: see
    :mod:`crystaljax.agents.config` (uniform random valid actions before
    ``learning_starts`` env steps; every ``target_update_interval`` env steps the target
    critics move ``tau`` of the way to the online ones; ``max_grad_norm`` clips the
    critic and actor updates).

    Attributes:
      q_learning_rate, policy_learning_rate, alpha_learning_rate: Adam for the twin
        critics, the actor and log(alpha).
      alpha_init: initial temperature (the fixed one when ``autotune`` is False).
      autotune: learn log(alpha) so the policy's entropy tracks the target entropy.
      target_entropy_fraction: target entropy = this fraction x log(number of valid
        actions) of each state (CleanRL's scale 0.89).
    """

    adam_eps: float = option(1e-4, gt=0.0)
    q_learning_rate: float = option(3e-4, gt=0.0)
    policy_learning_rate: float = option(3e-4, gt=0.0)
    alpha_learning_rate: float = option(3e-4, gt=0.0)
    alpha_init: float = option(0.2, gt=0.0)
    autotune: bool = True
    target_entropy_fraction: float = option(0.2, ge=0.0, le=1.0)


@struct.dataclass
class SACState(BaseState):
    """SAC's state: BaseState with params = {"actor": policy parameters, "critic": twin Q
    parameters (leaves [2, ...])}; target_params: the target twin (as params["critic"]);
    buffer: ReplayBuffer; actor_opt_state, critic_opt_state, alpha_opt_state: optax
    states; log_alpha: f32 [] log temperature."""

    target_params: Any
    buffer: ReplayBuffer
    actor_opt_state: Any
    critic_opt_state: Any
    alpha_opt_state: Any
    log_alpha: jax.Array


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


class SACAgent(ReplayAgent):
    """Discrete SAC (see :class:`SACConfig` for every option; API of
    :class:`~crystaljax.agents.base.Agent`, plus ``logits``, ``twin_q`` and ``q_values``).
    One iteration = one step of every env + the updates due.
    """

    state_cls = SACState

    def setup(self) -> None:
        cfg = self.config
        self.actor = PolicyNetwork(self.net_config, self.env.num_actions, self.element_table)
        self.critic = QNetwork(self.net_config, self.env.num_actions,
                               element_table=self.element_table)
        self.actor_optimizer = adam(cfg.policy_learning_rate, cfg.adam_eps, cfg.max_grad_norm)
        self.critic_optimizer = adam(cfg.q_learning_rate, cfg.adam_eps, cfg.max_grad_norm)
        self.alpha_optimizer = adam(cfg.alpha_learning_rate, cfg.adam_eps)
        self.learning_starts = max(cfg.learning_starts, cfg.batch_size)

    def init_learner(self, key: jax.Array, obs: Any) -> dict[str, Any]:
        k_actor, k_critic = jax.random.split(key)
        actor = self.actor.init(k_actor, obs)
        critic = jax.vmap(lambda k: self.critic.init(k, obs))(jax.random.split(k_critic, 2))
        log_alpha = jnp.log(jnp.float32(self.config.alpha_init))
        return {"params": {"actor": actor, "critic": critic}, "target_params": critic,
                "buffer": self.empty_buffer(obs),
                "actor_opt_state": self.actor_optimizer.init(actor),
                "critic_opt_state": self.critic_optimizer.init(critic),
                "alpha_opt_state": self.alpha_optimizer.init(log_alpha), "log_alpha": log_alpha}

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

    def target_source(self, params: Any) -> Any:
        return params["critic"]

    def state_metrics(self, state: SACState) -> dict[str, jax.Array]:
        return {"alpha": jnp.exp(state.log_alpha)}

    def act(self, state: SACState, k_act: jax.Array, k_random: jax.Array,
            steps_before: jax.Array):
        """A sample of the policy, or a uniformly random valid action before
        ``learning_starts`` env steps -> (actions [N], {})."""
        sampled = jax.random.categorical(k_act, self.logits(state.params, state.obs))
        random = random_valid_action(k_random, state.obs.action_mask)
        return jnp.where(steps_before < self.config.learning_starts, random,
                         sampled.astype(jnp.int32)), {}

    # ---- learning ------------------------------------------------------------------------
    def update(self, state: SACState, key: jax.Array, steps_before: jax.Array = None
               ) -> tuple[SACState, dict]:
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
        next_q = self.twin_q(state.target_params, batch.next_obs).min(axis=0)
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


__all__ = ["SACAgent", "SACConfig", "SACState", "masked_policy", "target_entropy",
           "temperature_loss"]
