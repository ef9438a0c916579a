"""MEGNet and its heads: shapes, masking, invariances, dueling per sample, noisy layers.

Networks here are small and run eagerly (no compilation), to keep the suite fast.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import crystaljax
from crystaljax.config import ConfigError
from crystaljax.models import (
    MASKED_LOGIT,
    MEGNet,
    MEGNetConfig,
    NoisyDense,
    PolicyNetwork,
    QNetwork,
    ValueNetwork,
    dueling_combine,
    megnet_config_for,
)
from crystaljax.models.layers import (
    MLP,
    Part,
    PartsDense,
    masked_segment_softmax,
    orthogonal_init,
)
from crystaljax.models.networks import element_table_for

SMALL = MEGNetConfig(node_embed_dim=8, focus_embed_dim=4, encoder_hidden=(16, 16),
                     num_blocks=2, block_hidden=(16, 16), conv_hidden=(24, 16),
                     set2set_iterations=2, head_hidden=(16,), activation="softplus",
                     element_features=False, action_head="dense", composition_readout=False)


def batch_obs(env, params, key, n=6, steps=2):
    """n envs after ``steps`` random steps (partly filled crystals)."""
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), params)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    for t in range(steps):
        actions = jax.random.randint(jax.random.fold_in(key, t), (n,), 0, env.num_actions)
        obs, state, *_ = step(jax.random.split(jax.random.fold_in(key, 100 + t), n), state,
                              actions, params)
    return obs


def all_heads(env, params):
    cfg = megnet_config_for(env, SMALL)
    with_features = dataclasses.replace(cfg, element_features=True)
    return {
        "q": QNetwork(cfg, env.num_actions),
        "q_element_features": QNetwork(with_features, env.num_actions,
                                       element_table=element_table_for(with_features, params)),
        "dueling_c51": QNetwork(cfg, env.num_actions, num_atoms=11, dueling=True),
        "pairwise_dueling_c51": QNetwork(
            dataclasses.replace(with_features, action_head="pairwise"), env.num_actions,
            num_atoms=11, dueling=True, element_table=element_table_for(with_features, params)),
        "noisy_dueling": QNetwork(cfg, env.num_actions, dueling=True, noisy=True),
        "value": ValueNetwork(cfg),
        "policy": PolicyNetwork(cfg, env.num_actions),
        "composition_q": QNetwork(dataclasses.replace(with_features, composition_readout=True),
                                  env.num_actions,
                                  element_table=element_table_for(with_features, params)),
        "pairwise_policy": PolicyNetwork(dataclasses.replace(with_features, action_head="pairwise"),
                                         env.num_actions, element_table_for(with_features, params)),
    }


def outputs(net, variables, obs):
    out = net.apply(variables, obs)
    return out.q_values if hasattr(out, "q_values") else out


def permute_sites(obs, perm_sites, perm_edges):
    """Relabel the sites of every env by ``perm_sites`` and reorder its edges."""
    inverse = np.argsort(perm_sites)
    return obs.replace(
        tokens=obs.tokens[:, perm_sites], focus=obs.focus[:, perm_sites],
        node_mask=obs.node_mask[:, perm_sites],
        senders=jnp.asarray(inverse)[obs.senders][:, perm_edges],
        receivers=jnp.asarray(inverse)[obs.receivers][:, perm_edges],
        edge_features=obs.edge_features[:, perm_edges], distances=obs.distances[:, perm_edges],
        edge_mask=obs.edge_mask[:, perm_edges])


def test_shapes_and_invalid_actions_masked(perovskite_env, key):
    env, params = perovskite_env
    obs = batch_obs(env, params, key)
    mask = np.ones((6, env.num_actions), bool)
    mask[:, 3] = False
    mask[0, :5] = False
    obs = obs.replace(action_mask=jnp.asarray(mask))
    nets = all_heads(env, params)
    for name, net in nets.items():
        variables = net.init(key, obs)
        out = outputs(net, variables, obs)
        expected = (6,) if name == "value" else (6, env.num_actions)
        assert out.shape == expected, name
        assert np.isfinite(np.asarray(out)).all()
        if name != "value":
            assert (np.asarray(out)[~mask] == MASKED_LOGIT).all(), name
            assert (np.asarray(out)[mask] > MASKED_LOGIT / 2).all(), name
    c51 = nets["dueling_c51"]
    out = c51.apply(c51.init(key, obs), obs)
    assert out.logits.shape == (6, env.num_actions, 11)
    q = np.asarray(out.q_values)[mask]
    assert (q >= c51.v_min - 1e-6).all() and (q <= c51.v_max + 1e-6).all()


def test_invariant_to_site_and_edge_order(perovskite_env, key):
    env, params = perovskite_env
    obs = batch_obs(env, params, key)
    rng = np.random.default_rng(0)
    permuted = permute_sites(obs, rng.permutation(env.max_sites), rng.permutation(env.max_edges))
    assert not np.array_equal(np.asarray(permuted.tokens), np.asarray(obs.tokens))
    for name, net in all_heads(env, params).items():
        variables = net.init(key, obs)
        np.testing.assert_allclose(outputs(net, variables, permuted), outputs(net, variables, obs),
                                   rtol=1e-4, atol=1e-5, err_msg=name)


def test_invariant_to_extra_padding(perovskite_env, key):
    env, params = perovskite_env
    big_env, big_params = crystaljax.make("density-perovskite-small-v0", max_sites=9,
                                          max_edges=env.max_edges + 13)
    obs = batch_obs(env, params, key)
    big_obs = batch_obs(big_env, big_params, key)
    assert big_obs.tokens.shape[1] == 9 and big_obs.senders.shape[1] == env.max_edges + 13
    np.testing.assert_array_equal(np.asarray(big_obs.tokens)[:, :5], np.asarray(obs.tokens))
    # padding rows carry junk that must not leak into the outputs
    junk = big_obs.replace(
        tokens=big_obs.tokens.at[:, 5:].set(2),
        focus=big_obs.focus.at[:, 7].set(True),
        edge_features=big_obs.edge_features.at[:, env.max_edges:].set(0.7))
    heads = all_heads(env, params)
    for name in ("q", "dueling_c51", "pairwise_dueling_c51"):  # the others share these parts
        net = heads[name]
        variables = net.init(key, obs)
        ref = outputs(net, variables, obs)
        apply = jax.jit(lambda v, o: outputs(net, v, o))  # noqa: B023 (used in this loop only)
        np.testing.assert_allclose(apply(variables, big_obs), ref, rtol=1e-4, atol=1e-5,
                                   err_msg=name)
        np.testing.assert_allclose(apply(variables, junk), ref, rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_dense_and_segment_graph_ops_agree(perovskite_env, key):
    env, params = perovskite_env
    obs = batch_obs(env, params, key)
    graphs = crystaljax.to_graphs_tuple(obs)
    torso = MEGNet(megnet_config_for(env, SMALL))
    variables = torso.init(key, graphs)
    dense = torso.apply(variables, graphs, (env.max_sites, env.max_edges))
    segment = torso.apply(variables, graphs)
    assert dense.shape == (6, SMALL.readout_dim())
    np.testing.assert_allclose(dense, segment, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="graphs of"):
        torso.apply(variables, graphs, (env.max_sites + 1, env.max_edges))


def test_dueling_mean_is_per_sample_over_valid_actions(perovskite_env, key):
    value = jnp.asarray([[[1.0]], [[-2.0]]])
    advantage = jnp.asarray([[[1.0], [2.0], [3.0]], [[10.0], [20.0], [60.0]]])
    mask = jnp.asarray([[True, True, True], [True, True, False]])
    q = np.asarray(dueling_combine(value, advantage, mask))[..., 0]
    np.testing.assert_allclose(q[0], [0.0, 1.0, 2.0])  # 1 + A - 2
    np.testing.assert_allclose(q[1, :2], [-7.0, 3.0])  # -2 + A - 15 (mean of valid 10, 20)

    env, params = perovskite_env
    obs = batch_obs(env, params, key)
    net = QNetwork(megnet_config_for(env, SMALL), env.num_actions, dueling=True)
    variables = net.init(key, obs)
    full = np.asarray(net.apply(variables, obs).q_values)
    other = batch_obs(env, params, jax.random.fold_in(key, 9))
    mixed = jax.tree.map(lambda a, b: jnp.concatenate([a[:1], b[1:]]), obs, other)
    mixed_q = np.asarray(net.apply(variables, mixed).q_values)
    assert not np.allclose(mixed_q[1:], full[1:])
    np.testing.assert_allclose(mixed_q[0], full[0], rtol=1e-5, atol=1e-6)


def test_noisy_dense_noise_and_mean():
    layer = NoisyDense(5, sigma0=0.5)
    x = jnp.ones((3, 4))
    variables = layer.init(jax.random.PRNGKey(0), x, deterministic=True)
    p = variables["params"]
    mean = layer.apply(variables, x, deterministic=True)
    np.testing.assert_allclose(mean, x @ p["w_mu"] + p["b_mu"], rtol=1e-6)
    a = layer.apply(variables, x, rngs={"noise": jax.random.PRNGKey(1)})
    b = layer.apply(variables, x, rngs={"noise": jax.random.PRNGKey(1)})
    c = layer.apply(variables, x, rngs={"noise": jax.random.PRNGKey(2)})
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, mean)
    np.testing.assert_allclose(p["w_sigma"], 0.5 / 2.0)


def test_pairwise_head_scores_actions_by_their_features(perovskite_env, key):
    """Actions with identical features and embeddings get identical scores; changing one
    action's feature row changes only that action's score."""
    from crystaljax.models.heads import PairwiseHead

    features = jax.random.normal(key, (3, 10))
    table = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (4, 5)))
    head = PairwiseHead(4, (8,), 2, embed_dim=3, action_table=table)
    variables = head.init(key, features)
    out = np.asarray(head.apply(variables, features))
    assert out.shape == (3, 4, 2)
    emb = variables["params"]["action_embedding"]
    same = {"params": {**variables["params"], "action_embedding": emb.at[1].set(emb[0])}}
    twin = table.copy()
    twin[1] = twin[0]
    tied = np.asarray(PairwiseHead(4, (8,), 2, embed_dim=3, action_table=twin).apply(same, features))
    np.testing.assert_allclose(tied[:, 1], tied[:, 0], rtol=1e-6)
    np.testing.assert_allclose(tied[:, 2:], out[:, 2:], rtol=1e-6)
    assert not np.allclose(tied[:, 1], out[:, 1])


def test_masked_segment_softmax_ignores_masked_rows():
    logits = jnp.asarray([1.0, 2.0, 50.0, 0.0, 3.0])
    segments = jnp.asarray([0, 0, 0, 1, 1])
    mask = jnp.asarray([True, True, False, False, False])
    w = np.asarray(masked_segment_softmax(logits, segments, mask, 2))
    np.testing.assert_allclose(w[:2], jax.nn.softmax(jnp.asarray([1.0, 2.0])), rtol=1e-6)
    assert (w[2:] == 0).all()


def test_config_validation(perovskite_env):
    env, params = perovskite_env
    with pytest.raises(ValueError, match="conv_hidden"):
        MEGNetConfig(encoder_hidden=(64, 16))
    obs = batch_obs(env, params, jax.random.PRNGKey(0), n=1, steps=0)
    with pytest.raises(ValueError, match="num_tokens"):
        QNetwork(SMALL, env.num_actions).init(jax.random.PRNGKey(0), obs)
    with pytest.raises(ValueError, match="element_features"):
        element_table_for(MEGNetConfig(element_features=True), None)
    table = element_table_for(MEGNetConfig(element_features=True), params)
    assert table.shape == (env.num_actions + 1, params.element_features.shape[1])
    assert np.abs(table).max() == 1.0 and (table[-1] == 0).all()
    with pytest.raises(ValueError, match="action_head"):
        MEGNetConfig(action_head="sparse")
    cfg = dataclasses.replace(MEGNetConfig(), head_hidden=[8])
    assert cfg.head_hidden == (8,) and cfg.readout_dim() == 160
    with pytest.raises(ValueError, match="composition_readout needs element_features"):
        MEGNetConfig(element_features=False, composition_readout=True)
    for bad, key in [({"num_blocks": 0}, "num_blocks"), ({"activation": "gelu"}, "activation"),
                     ({"head_hidden": [16, 0]}, "head_hidden"), ({"node_embed_dim": 2.5},
                                                                  "node_embed_dim"),
                     ({"set2set_iterations": 0}, "set2set_iterations")]:
        with pytest.raises(ConfigError, match=key):
            MEGNetConfig(**bad)


def test_composition_readout_is_the_site_mean_of_element_features(perovskite_env, key):
    env, params = perovskite_env
    cfg = dataclasses.replace(megnet_config_for(env, SMALL), element_features=True,
                              composition_readout=True)
    table = element_table_for(cfg, params)
    obs = batch_obs(env, params, key, n=4, steps=3)
    net = MEGNet(cfg, table)
    graphs = crystaljax.to_graphs_tuple(obs)
    out = np.asarray(net.apply(net.init(key, graphs), graphs))
    F = table.shape[1]
    assert out.shape == (4, cfg.readout_dim(F))
    tokens = np.asarray(obs.tokens)
    expected = table[tokens].sum(axis=1) / np.asarray(obs.node_mask).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out[:, -F:], expected, rtol=1e-6, atol=1e-7)
    assert (tokens == env.num_actions).any() and (tokens < env.num_actions).any()


@pytest.mark.parametrize("shape", [(16, 16), (16, 64), (64, 16)])
def test_orthogonal_init_matches_flax_without_lapack(shape):
    key = jax.random.PRNGKey(7)
    q = np.asarray(orthogonal_init(2.0)(key, shape))
    np.testing.assert_allclose(q, np.asarray(nn.initializers.orthogonal(2.0)(key, shape)),
                               atol=1e-4)
    small = min(shape)
    gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(small), atol=1e-4)
    with pytest.raises(ValueError, match="2-D shape"):
        orthogonal_init()(key, (2, 3, 4))


def test_vmapped_agent_init_has_no_lapack_call(perovskite_env):
    """Seeds initialised under vmap must not run a batched LAPACK QR (the Set2Set LSTMs'
    orthogonal init): two at once deadlocked XLA CPU's thread pool (SAC + QE hung)."""
    from crystaljax.agents import make_agent

    env, params = perovskite_env
    agent = make_agent("sac", env, params, {"network": {"num_blocks": 1}})
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    text = jax.jit(jax.vmap(agent.init)).lower(keys).as_text()
    assert "lapack" not in text and "geqrf" not in text


def test_dense_on_parts_equals_dense_on_the_concatenation(key):
    # the first layer of the edge update: nodes projected per node, then gathered
    k1, k2, k3, k4 = jax.random.split(key, 4)
    nodes = jax.random.normal(k1, (5, 3))
    edges = jax.random.normal(k2, (7, 2))
    state = jax.random.normal(k3, (1, 4))
    senders = jnp.asarray([0, 1, 2, 3, 4, 0, 2])
    gather = lambda x: x[senders]  # noqa: E731
    parts = (Part(nodes, gather), Part(edges), Part(state, lambda x: jnp.repeat(x, 7, 0)))
    concat = jnp.concatenate([nodes[senders], edges, jnp.repeat(state, 7, 0)], axis=-1)
    mlp = MLP((6, 4), "relu")
    variables = mlp.init(k4, concat)
    np.testing.assert_allclose(mlp.apply(variables, parts), mlp.apply(variables, concat),
                               rtol=1e-5, atol=1e-6)
    # the same parameters as nn.Dense layers (checkpoints keep their layout and values)
    dense = nn.Sequential([nn.Dense(6), nn.relu, nn.Dense(4), nn.relu])
    reference = dense.init(k4, concat)
    assert jax.tree.structure(reference["params"]) == jax.tree.structure(
        {f"layers_{2 * i}": v for i, v in enumerate(variables["params"].values())})
    # broadcasting parts: [B, 1, F] + [1, A, G] -> [B, A, width]
    layer = PartsDense(3)
    a, b = jax.random.normal(k1, (2, 1, 4)), jax.random.normal(k2, (1, 5, 2))
    pairs = jnp.concatenate([jnp.broadcast_to(a, (2, 5, 4)), jnp.broadcast_to(b, (2, 5, 2))], -1)
    v = layer.init(k3, pairs)
    np.testing.assert_allclose(layer.apply(v, (Part(a), Part(b))), layer.apply(v, pairs),
                               rtol=1e-5, atol=1e-6)


def test_a_parameter_of_another_shape_is_a_clear_error(key):
    layer = PartsDense(3)
    variables = layer.init(key, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"kernel has shape \(4, 3\), the module expects \(5, 3\)"):
        layer.apply(variables, jnp.ones((2, 5)))
