"""The charge-balance action mask (env option ``mask: charge_balance``).

Crystals are checked against an independent brute force: every choice of pymatgen's
common oxidation states (0 for an element with none) over the sites, by itertools.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymatgen.core import Element

import crystaljax
from crystaljax.config import ConfigError
from crystaljax.env import EnvConfig, resolve_config
from crystaljax.env.charge_balance import charge_tables, is_balanced, random_balanced_fraction
from crystaljax.templates import prototype


@functools.cache
def _balanced_sorted(symbols: tuple[str, ...]) -> bool:
    states = [Element(s).common_oxidation_states or (0,) for s in symbols]
    return any(sum(choice) == 0 for choice in itertools.product(*states))


def balanced(symbols) -> bool:
    """Brute force: some choice of one common oxidation state per site sums to 0."""
    return _balanced_sorted(tuple(sorted(symbols)))


def random_episodes(env, params, key, num_envs, num_steps, use_mask=True):
    """``num_steps`` jitted, vmapped auto-resetting steps of ``num_envs`` envs under a
    uniformly random policy over the allowed elements (all of them without ``use_mask``).
    Returns NumPy arrays [T, N, ...]: masks (of the observations acted on), actions,
    terminated, final tokens and final template ids."""
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    @jax.jit
    def run(key):
        k_reset, k_run = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, num_envs), params)

        def body(carry, k):
            obs, state = carry
            k_act, k_env = jax.random.split(k)
            allowed = obs.action_mask if use_mask else jnp.ones_like(obs.action_mask)
            action = jax.random.categorical(k_act, jnp.where(allowed, 0.0, -jnp.inf))
            obs2, state2, _, terminated, _, info = step(
                jax.random.split(k_env, num_envs), state, action.astype(jnp.int32), params)
            final = info["final_state"]
            return (obs2, state2), (obs.action_mask, action, terminated, final.tokens,
                                    final.template_id)

        _, out = jax.lax.scan(body, (obs, state), jax.random.split(k_run, num_steps))
        return out

    return jax.tree.map(np.asarray, run(key))


def finished_crystals(env, out):
    """The symbol lists of the crystals finished in ``random_episodes`` output."""
    _, _, terminated, tokens, template_ids = out
    crystals = []
    for t, i in zip(*np.nonzero(terminated)):
        n = env.templates[int(template_ids[t, i])].num_sites
        crystals.append([env.vocab[k] for k in tokens[t, i, :n]])
    return crystals


# ---- configuration ----------------------------------------------------------------------------
def test_mask_option_defaults_to_none_and_bad_values_name_the_choices(tmp_path):
    assert EnvConfig().mask == "none"
    assert EnvConfig.from_dict({"mask": "charge_balance"}).mask == "charge_balance"
    for bad in ("charge", None, 1):
        with pytest.raises(ConfigError, match=r"mask must be one of \['none', 'charge_balance'\]"):
            EnvConfig.from_dict({"mask": bad})
    with pytest.raises(ConfigError, match="'none', 'charge_balance'"):
        crystaljax.make("density-bcc4-small-v0", mask="balanced")
    config = resolve_config({"task": "density-bcc4-small-v0", "mask": "charge_balance"})
    assert config.mask == "charge_balance" and config.to_dict()["mask"] == "charge_balance"
    path = tmp_path / "env.yaml"
    path.write_text("env:\n  task: density-bcc4-small-v0\n  mask: charge_balance\n")
    assert resolve_config(str(path)).mask == "charge_balance"
    path.write_text("env:\n  task: density-bcc4-small-v0\n  mask: charge-balance\n")
    with pytest.raises(ConfigError, match=r"mask must be one of .*got 'charge-balance'"):
        resolve_config(str(path))


def test_template_without_any_neutral_crystal_is_a_config_error():
    # Li and Na are +1 only; Na (+1) and Cl (-1, 1, 3, 5, 7) are odd, so 5 sites sum to odd
    with pytest.raises(ConfigError, match="no crystal of template 'rocksalt'"):
        crystaljax.make(template="rocksalt", vocab=["Li", "Na"], mask="charge_balance")
    with pytest.raises(ConfigError, match="cg-perovskite-4.27"):
        crystaljax.make(template="cg-perovskite-4.27", vocab=["Na", "Cl"], mask="charge_balance")
    crystaljax.make(template="rocksalt", vocab=["Na", "Cl"], mask="charge_balance")
    crystaljax.make(template="rocksalt", vocab=["Li", "Na"])  # no mask, no check


@pytest.mark.filterwarnings("ignore:No Pauling electronegativity")
def test_elements_without_common_states_count_as_neutral():
    assert Element("Ar").common_oxidation_states == ()
    tables = charge_tables(["Ar", "Na", "Cl"], 3)
    assert tables.states[0].tolist() == [c == 0 for c in tables.charges]
    env, params = crystaljax.make(template="rocksalt", vocab=["Ar", "Li", "O"],
                                  mask="charge_balance")
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.action_mask.tolist() == [True, False, False]  # only Ar-Ar is neutral


# ---- the mask --------------------------------------------------------------------------------
def test_mask_none_allows_every_element(key):
    env, params = crystaljax.make("density-bcc4-small-v0")
    masks, *_ = random_episodes(env, params, key, num_envs=16, num_steps=8)
    assert masks.all()


@pytest.mark.parametrize("overrides", [
    {"template": "cg-bcc4-5.17"},
    {"template": ["cg-perovskite-4.27", "rocksalt", "fluorite"], "substitution": True},
], ids=["bcc4", "mixed-substitution"])
def test_masked_random_crystals_are_all_charge_balanced(overrides, key):
    """Soundness: random masked episodes (jitted, vmapped, auto-reset) end in crystals
    that admit neutral oxidation states, and no observation's mask is all False."""
    env, params = crystaljax.make(vocab="small", mask="charge_balance", **overrides)
    out = random_episodes(env, params, key, num_envs=64, num_steps=3 * env.max_sites)
    masks = out[0]
    assert masks.any(axis=-1).all()
    assert not masks.all(axis=-1).all()  # the mask does restrict somewhere
    crystals = finished_crystals(env, out)
    assert len(crystals) >= 64 * 2
    assert all(balanced(c) for c in crystals), [c for c in crystals if not balanced(c)][:3]


@pytest.mark.parametrize("template, vocab", [
    ("fluorite", ["Ar", "Li", "Mg", "N", "O", "Cl"]),
    ("rocksalt", ["Na", "Ca", "C", "S", "Br"]),
])
def test_mask_allows_exactly_the_sequences_of_neutral_crystals(template, vocab):
    """Completeness (and soundness) by brute force on a small case: stepping any action
    sequence through the env, every action is allowed by the mask of its step exactly
    when the finished crystal admits neutral oxidation states."""
    env, params = crystaljax.make(template=template, vocab=vocab, mask="charge_balance")
    n = env.templates[0].num_sites
    sequences = np.array(list(itertools.product(range(len(vocab)), repeat=n)), np.int32)
    _, state = env.reset(jax.random.PRNGKey(3), params)

    def follows_mask(actions):
        def body(state, action):
            obs = env.observe(state, params)
            _, state, *_ = env.step_env(state, action, params)
            return state, obs.action_mask[action]

        return jax.lax.scan(body, state, actions)[1].all()

    got = np.asarray(jax.jit(jax.vmap(follows_mask))(jnp.asarray(sequences)))
    order = np.asarray(state.order)[:n]
    want = [balanced([vocab[a] for a in seq]) for seq in sequences]
    assert got.tolist() == want, order
    assert 0 < sum(want) < len(want)


def test_excluded_action_falls_back_to_every_element_and_finished_obs_allow_all():
    env, params = crystaljax.make(template="rocksalt", vocab=["Li", "F", "O"],
                                  mask="charge_balance")
    step = jax.jit(env.step_env)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.action_mask.tolist() == [True, True, False]  # O2- has no partner
    obs_li, _, *_ = step(state, jnp.int32(0), params)
    assert obs_li.action_mask.tolist() == [False, True, False]  # Li+ F-
    obs_o, state_o, *_ = step(state, jnp.int32(2), params)  # the mask said no
    assert obs_o.action_mask.tolist() == [True, True, True]  # no neutral crystal left
    obs_end, _, _, terminated, *_ = step(state_o, jnp.int32(0), params)
    assert bool(terminated) and bool(obs_end.action_mask.all())


def test_jnp_balance_check_agrees_with_brute_force(key):
    """is_balanced (used by random_balanced_fraction) on unmasked random crystals, both
    kinds present; and the measurement function gives 1 with the mask."""
    env, params = crystaljax.make("density-bcc4-small-v0", mask="charge_balance")
    out = random_episodes(env, params, key, num_envs=64, num_steps=8, use_mask=False)
    _, _, terminated, tokens, template_ids = out
    tables = charge_tables(env.vocab, env.max_sites)
    got = np.asarray(jax.jit(jax.vmap(lambda t: is_balanced(tables, t, 4)))(
        jnp.asarray(tokens[terminated])))
    want = [balanced(c) for c in finished_crystals(env, out)]
    assert got.tolist() == want and 0 < sum(want) < len(want)
    assert random_balanced_fraction(env, params, key, 64, use_mask=True) == 1.0
    assert random_balanced_fraction(env, params, key, 64, use_mask=False) < 1.0


def test_mask_is_order_and_template_padding_independent():
    """The same placed elements give the same mask whatever the fill order or padding."""
    template = prototype("fluorite")
    vocab = ["Li", "Mg", "N", "O", "Cl"]
    env, params = crystaljax.make(template=template, vocab=vocab, mask="charge_balance")
    wide, wide_params = crystaljax.make(template=template, vocab=vocab, mask="charge_balance",
                                        max_sites=7)
    masks = []
    for e, p, seed in ((env, params, 0), (env, params, 1), (wide, wide_params, 2)):
        _, state = e.reset(jax.random.PRNGKey(seed), p)
        obs, state, *_ = e.step_env(state, jnp.int32(3), p)  # O
        masks.append(np.asarray(obs.action_mask))
    for m in masks[1:]:
        np.testing.assert_array_equal(m, masks[0])
    assert masks[0].tolist() == [any(balanced(["O", s, t]) for t in vocab) for s in vocab]
    assert not masks[0].all()


# ---- agents ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rocksalt_masked():
    """Rock salt, small vocabulary, charge-balance mask: after the first element only its
    counter-ions are allowed."""
    return crystaljax.make(template="rocksalt", vocab="small", mask="charge_balance")


def second_step_obs(env, params, num_envs):
    """Observations [num_envs] at the second (last) site after varied first elements."""
    first = jnp.asarray([0, 4, 8, 16, 10, 11, 13, 15], jnp.int32)  # Li Be H Cl N O S F
    first = jnp.resize(first, (num_envs,))
    _, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(5), num_envs), params)
    obs, *_ = jax.vmap(env.step_env, in_axes=(0, 0, None))(state, first, params)
    assert not bool(obs.action_mask.all(axis=-1).any())
    return obs


def assert_allowed(actions, masks):
    actions, masks = np.asarray(actions), np.asarray(masks)
    picked = np.take_along_axis(masks, actions[..., None], axis=-1)[..., 0]
    assert picked.all(), f"{(~picked).sum()} of {picked.size} actions were masked"


@pytest.mark.parametrize("name", ["dqn", "rainbow", "ppo", "sac"])
def test_agents_never_pick_a_masked_element(name, rocksalt_masked):
    """Exploration/sampling and greedy action selection on masked observations, with
    fresh tiny networks (which know nothing of the mask: unmasked they would pick an
    excluded element for most envs). One compiled function per agent."""
    from crystaljax.agents import make_agent
    from crystaljax.testing.agents import PROBE_CONFIGS

    env, params = rocksalt_masked
    small = {"num_envs": 8, "num_steps": 4, "num_minibatches": 2} if name == "ppo" else {}
    agent = make_agent(name, env, params, {**PROBE_CONFIGS[name], **small})
    obs = second_step_obs(env, params, agent.config.num_envs)

    @jax.jit
    def select(key):
        # one program (fresh state, then each way of choosing) compiles faster than three
        state = agent.init_state(jax.random.PRNGKey(0)).replace(obs=obs)
        greedy = agent.greedy_action(agent.network_params(state), obs)
        if name == "ppo":  # the rollout's sampling, over both sites of a few episodes
            rollout = agent._rollout(state.params, state.env_state, obs, key)[1]
            return greedy, rollout.action, rollout.action, rollout.obs.action_mask
        # the first env steps explore (random valid elements), later ones exploit
        # (DQN, Rainbow: epsilon-greedy at epsilon_end; SAC: samples of the policy)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        early = agent.act(state, k1, k2, jnp.int32(0))[0]
        late = agent.act(state, k3, k4, jnp.int32(10 ** 6))[0]
        return greedy, jnp.stack([early, late]), None, None

    for seed in range(3):
        greedy, sampled, rollout_actions, rollout_masks = select(jax.random.PRNGKey(seed))
        assert_allowed(greedy, obs.action_mask)
        if rollout_actions is not None:
            assert_allowed(rollout_actions, rollout_masks)
            assert not bool(rollout_masks.all(axis=-1).all())
        else:
            assert_allowed(sampled, jnp.broadcast_to(obs.action_mask,
                                                     sampled.shape + (env.num_actions,)))


def test_sample_crystals_for_the_metal_measurement_are_finished_and_balanced():
    from crystaljax.benchmarks.mask_metals import sample_crystals
    from crystaljax.env.charge_balance import oxidation_states

    crystals = sample_crystals("density-perovskite454-small-v0", 6, use_mask=True, seed=3)
    assert len(crystals) == 6 and all(len(c) == 5 for c in crystals)
    for crystal in crystals:  # every masked crystal admits a neutral assignment
        symbols = [site.specie.symbol for site in crystal]
        sums = {0}
        for symbol in symbols:
            sums = {s + q for s in sums for q in oxidation_states(symbol)}
        assert 0 in sums, symbols


def test_mask_metals_section_counts_shared_crystals(tmp_path):
    """The BENCHMARKS section of a bench_mask results file names the crystals both samples
    share and the oracle's core utilisation, and replaces its own section only."""
    import json

    from crystaljax.benchmarks.mask_metals import write_section

    row = lambda formulas, metals: {  # noqa: E731
        "crystals": 2, "ok": 2, "failed": 0, "metals": metals, "metal_fraction": metals / 2,
        "failures": [], "wall_s": 1.0, "formulas": formulas, "gaps": [0.0, 1.0]}
    data = {"task": "t", "preset": "fast", "num": 2, "seed": 0,
            "settings": {"charge_balance": row(["NaCl", "KBr"], 1),
                         "none": row(["NaCl", "CsI"], 2)},
            "oracle": {"core_utilisation": 0.5}}
    source, md = tmp_path / "m.json", tmp_path / "B.md"
    source.write_text(json.dumps(data))
    md.write_text("# B\n\nkept\n")
    write_section(str(source), str(md))
    write_section(str(source), str(md))
    text = md.read_text()
    assert text.count("<!-- mask-metals:start -->") == 1 and "kept" in text
    assert "1 of the 2 crystals are the same" in text and "): 0.50." in text
    assert "| none | 2 | 2 | 2 | 1.0 | 0 | 1.0 |" in text
