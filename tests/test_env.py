import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import crystaljax
from crystaljax.templates import list_prototypes
from crystaljax.templates.graph import bfs_order, neighbor_graph


def rollout(env, params, key, actions):
    """Step one env through ``actions`` (jitted step), returning per-step outputs."""
    step = jax.jit(env.step)
    k0, key = jax.random.split(key)
    obs, state = env.reset(k0, params)
    out = []
    for a in actions:
        key, k = jax.random.split(key)
        new_obs, new_state, r, term, trunc, info = step(k, state, a, params)
        out.append((obs, state, r, term, info))
        obs, state = new_obs, new_state
    return out


def test_jit_traces_once(perovskite_env, key):
    env, params = perovskite_env

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state, action, params):
        return env.step(key, state, action, params)

    obs, state = env.reset(key, params)
    for a in range(12):
        key, k = jax.random.split(key)
        obs, state, *_ = step(k, state, jnp.int32(a % env.num_actions), params)
    chex.clear_trace_counter()


def test_episode_fills_each_site_once_in_bfs_order(perovskite_env, key):
    env, params = perovskite_env
    template = env.templates[0]
    graph = neighbor_graph(template, env.config.graph)
    for trial in range(5):
        key, k = jax.random.split(key)
        actions = [3, 7, 1, 0, 11]
        steps = rollout(env, params, k, actions)
        first_state = steps[0][1]
        order = np.asarray(first_state.order)
        start = int(order[0])
        assert order.tolist() == bfs_order(5, graph.senders, graph.receivers, start).tolist()
        visited = []
        for t, (obs, state, r, term, info) in enumerate(steps):
            focus = np.flatnonzero(np.asarray(obs.focus))
            assert focus.tolist() == [order[t]], "focus advances along the fill order"
            assert int(np.asarray(obs.tokens)[order[t]]) == env.empty_token
            visited.append(int(focus[0]))
            assert bool(term) == (t == 4)
            assert (float(r) == 0.0) == (t < 4)
        assert sorted(visited) == [0, 1, 2, 3, 4]
        final = steps[-1][4]["final_state"]
        tokens = np.asarray(final.tokens)
        assert [tokens[order[t]] for t in range(5)] == actions


def test_vmap_matches_python_loop(perovskite_env, key):
    env, params = perovskite_env
    n = 256
    keys = jax.random.split(key, n)
    obs_b, state_b = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    v_step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    step = jax.jit(env.step)
    reset = jax.jit(env.reset)
    singles = [reset(k, params) for k in keys]
    rng = np.random.default_rng(0)
    for t in range(7):  # crosses an episode boundary (5 sites) and auto-resets
        actions = rng.integers(0, env.num_actions, n)
        step_keys = jax.random.split(jax.random.fold_in(key, t), n)
        out_b = v_step(step_keys, state_b, jnp.asarray(actions), params)
        for i in range(0, n, 17):
            out_i = step(step_keys[i], singles[i][1], int(actions[i]), params)
            chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], out_b), out_i)
        singles = [(None, jax.tree.map(lambda x: x[i], out_b[1])) for i in range(n)]
        state_b = out_b[1]


def test_in_graph_density_equals_pymatgen_for_every_prototype(key):
    names = list_prototypes()
    env, params = crystaljax.make(template=names, vocab="large", graph={"method": "radius"})
    B = 256
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, B), params)
    assert set(np.asarray(state.template_id).tolist()) == set(range(len(names)))
    v_step = jax.jit(jax.vmap(env.step_env, in_axes=(0, 0, None)))
    rng = np.random.default_rng(7)
    prop, rew, evaluations = np.full(B, np.nan), np.full(B, np.nan), np.zeros(B, int)
    for _t in range(env.max_sites):  # finished envs stay unchanged (no auto-reset in step_env)
        actions = jnp.asarray(rng.integers(0, env.num_actions, B))
        _, state, reward, term, _, info = v_step(state, actions, params)
        evaluated = np.asarray(info["status"]) == 0
        evaluations += evaluated
        prop = np.where(evaluated, np.asarray(info["property"]), prop)
        rew = np.where(evaluated, np.asarray(reward), rew)
        assert (np.asarray(reward)[~evaluated] == 0).all()
    assert bool(term.all())
    assert (evaluations == 1).all()  # each crystal is evaluated once, when it is finished
    for i in range(B):
        structure = env.to_structure(state, index=i)
        assert len(structure) == env.templates[int(state.template_id[i])].num_sites
        assert prop[i] == pytest.approx(float(structure.density), rel=1e-5)
        expected = np.exp(-(3.0 - float(structure.density)) ** 2 / 3.0)
        assert rew[i] == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_auto_reset_returns_fresh_episode(perovskite_env, key):
    env, params = perovskite_env
    steps = rollout(env, params, key, [0, 1, 2, 3, 4, 5])
    last_obs, last_state = steps[-1][0], steps[-1][1]
    assert int(last_state.step) == 0 and bool(steps[-2][3])
    assert (np.asarray(last_state.tokens) == env.empty_token).all()
    assert np.asarray(last_obs.focus).sum() == 1
    final_obs = steps[-2][4]["final_observation"]
    assert (np.asarray(final_obs.tokens) < env.num_actions).all()
    assert not np.asarray(final_obs.focus).any()
    assert float(np.asarray(final_obs.globals)[-1]) == 1.0  # progress


def test_mixed_mode_pads_and_draws_all_templates(key):
    env, params = crystaljax.make("density-cubic-mini-small-v0")
    assert len(env.templates) == 5 and env.max_sites == 5
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 400), params)
    tids = np.asarray(state.template_id)
    assert set(tids.tolist()) == set(range(5))
    sizes = np.array([t.num_sites for t in env.templates])
    np.testing.assert_array_equal(np.asarray(obs.node_mask).sum(1), sizes[tids])
    # a 2-site rock-salt episode ends after 2 steps
    i = int(np.flatnonzero(tids == 3)[0])
    s = jax.tree.map(lambda x: x[i], state)
    for t in range(2):
        _, s_next, r, term, _, info = env.step(key, s, t, params)
        s = s_next
    assert bool(term)
    assert env.to_structure(info["final_state"]).composition.reduced_formula == "NaLi"


def test_weighted_template_sampling(key):
    env, params = crystaljax.make(template=["rocksalt", "perovskite"], template_weights=[0, 1])
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 64), params)
    assert (np.asarray(state.template_id) == 1).all()


def test_substitution_mode_starts_decorated(key):
    env, params = crystaljax.make("density-perovskite-small-substitution-v0")
    obs, state = env.reset(key, params)
    tokens = np.asarray(state.tokens)
    assert (tokens < env.num_actions).all()
    order = np.asarray(state.order)
    _, s1, *_ = env.step(key, state, 17, params)
    changed = np.flatnonzero(np.asarray(s1.tokens) != tokens)
    assert set(changed.tolist()) <= {int(order[0])}
    assert int(np.asarray(s1.tokens)[order[0]]) == 17


def test_observation_spec_and_exports(perovskite_env, key):
    env, params = perovskite_env
    spec = env.observation_spec()
    steps = rollout(env, params, key, [0, 1, 2, 3, 4])
    for obs, *_ in steps:
        jax.tree.map(lambda s, x: s.validate(np.asarray(x)), spec, obs)
        assert all(np.isfinite(np.asarray(x, float)).all() for x in jax.tree.leaves(obs))
    dummy = jax.tree.map(lambda s: s.generate_value(), spec)
    assert dummy.edge_features.shape == (env.max_edges, env.num_rbf)
    final = steps[-1][4]["final_state"]
    assert env.symbols(final) == [env.vocab[a] for a in np.asarray(final.tokens)]
    atoms = env.to_atoms(final)
    assert len(atoms) == 5 and atoms.pbc.all()
    assert "_symmetry_space_group_name_H-M" in env.to_cif(final)
    with pytest.raises(ValueError, match="index"):
        env.to_structure(jax.tree.map(lambda x: jnp.stack([x, x]), final))


def test_graphs_tuple_batching(perovskite_env, key):
    env, params = perovskite_env
    obs, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, 3), params)
    g = jax.jit(crystaljax.to_graphs_tuple)(obs)
    S, E = env.max_sites, env.max_edges
    assert g.n_node.tolist() == [S] * 3 and g.n_edge.tolist() == [E] * 3
    assert g.nodes["tokens"].shape == (3 * S,) and g.edges["features"].shape == (3 * E, env.num_rbf)
    senders = np.asarray(g.senders).reshape(3, E)
    for b in range(3):
        assert (senders[b] // S == b).all()
    assert g.globals.shape == (3, len(crystaljax.GLOBAL_FEATURES))


@pytest.mark.parametrize("action, expected, invalid", [
    (np.int64(2**40), 17, True), (-1, 0, True), (np.int8(-5), 0, True), (np.uint8(200), 17, True),
    (np.uint64(2**63), 17, True), (3, 3, False), (np.int16(17), 17, False)])
def test_out_of_range_actions_clip_for_every_integer_dtype_and_are_flagged(action, expected, invalid):
    env, params = crystaljax.make("density-perovskite-small-v0")
    _, state = env.reset(jax.random.PRNGKey(0), params)
    _, new, _, _, _, info = env.step_env(state, action, params)
    site = int(state.order[0])
    assert int(new.tokens[site]) == expected
    assert bool(info["invalid_action"]) is invalid
    _, _, _, _, _, info = env.step(jax.random.PRNGKey(1), state, action, params)
    assert bool(info["invalid_action"]) is invalid
