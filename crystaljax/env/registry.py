"""Registered task ids and :func:`make`."""

from __future__ import annotations

import difflib
from typing import Any

import jax.numpy as jnp
import numpy as np

from crystaljax.config import load_yaml
from crystaljax.elements import atomic_masses, element_features, get_vocabulary
from crystaljax.env.charge_balance import mask_tables
from crystaljax.env.config import DEFAULT_MAX_SITES_LIMIT, ConfigError, EnvConfig, resolve_templates
from crystaljax.env.env import CrystalEnv
from crystaljax.env.table import build_template_table
from crystaljax.env.types import EnvParams
from crystaljax.oracles.base import HostOracle, Status, oracle_can_fail
from crystaljax.oracles.batching import only_finished
from crystaljax.oracles.bridge import HostOracleBridge
from crystaljax.oracles.registry import ORACLES, get_oracle
from crystaljax.properties import PROPERTIES, get_property
from crystaljax.rewards import RewardParams
from crystaljax.templates.core import TemplateError

#: task-id template aliases -> template(s)
TASK_TEMPLATES = {
    "perovskite": "cg-perovskite-4.27",
    "perovskite454": "cg-perovskite-4.54",
    "bcc4": "cg-bcc4-5.17",
    "cubic-mini": ["cg-perovskite-4.27", "cg-perovskite-4.54", "perovskite", "rocksalt",
                   "cesium_chloride"],
}


def tasks() -> dict[str, dict]:
    """Registered task id -> EnvConfig fields: every property x template alias x vocabulary
    (x substitution), each with the property's first registered oracle (the in-graph one
    where there is one). Read from the registries at each call, so a property or oracle
    registered later has its tasks too."""
    tasks = {}
    for prop in PROPERTIES.values():
        oracle = next((o for o in prop.oracles if o in ORACLES), None)
        if oracle is None:
            continue
        for alias, template in TASK_TEMPLATES.items():
            for vocab in ("small", "medium", "large"):
                base = dict(template=template, vocab=vocab, property=prop.name, oracle=oracle)
                tasks[f"{prop.task_name}-{alias}-{vocab}-v0"] = base
                tasks[f"{prop.task_name}-{alias}-{vocab}-substitution-v0"] = dict(base, substitution=True)
    return tasks


#: the task ids registered at import (see :func:`tasks` for the current ones)
TASKS: dict[str, dict] = tasks()


def list_tasks() -> list[str]:
    """All registered task ids, e.g. ``density-perovskite-small-v0``."""
    return sorted(tasks())


def _load_yaml(path: str) -> dict:
    data = load_yaml(path)
    if isinstance(data, dict) and "env" in data:
        data = data["env"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping (optionally under 'env:')")
    if "task" in data:
        data = dict(data)
        base = _task_config(data.pop("task"))
        return {**base, **data}
    return data


def _task_config(task_id: str) -> dict:
    known = tasks()
    if not isinstance(task_id, str) or task_id not in known:
        close = difflib.get_close_matches(str(task_id), known, n=3)
        hint = f"; did you mean {close}?" if close else "; see crystaljax.list_tasks()"
        raise ConfigError(f"unknown task id {task_id!r}{hint}")
    return dict(known[task_id])


def resolve_config(task_or_config: Any = None, **overrides) -> EnvConfig:
    """EnvConfig from a task id, YAML path, dict or EnvConfig, plus overrides."""
    if task_or_config is None:
        base = {}
    elif isinstance(task_or_config, EnvConfig):
        return task_or_config.replace(**overrides) if overrides else task_or_config.validated()
    elif isinstance(task_or_config, dict):
        base = dict(task_or_config)
        if "task" in base:
            base = {**_task_config(base.pop("task")), **base}
    elif isinstance(task_or_config, str) and task_or_config.endswith((".yaml", ".yml")):
        base = _load_yaml(task_or_config)
    elif isinstance(task_or_config, str):
        base = _task_config(task_or_config)
    else:
        raise ConfigError(f"make() takes a task id, a YAML path, a dict or an EnvConfig, "
                          f"got {type(task_or_config).__name__}")
    return EnvConfig.from_dict({**base, **overrides})


def _in_graph_step_oracle(built):
    """The step's ``(tokens, tid, terminated, params) -> (value, status)`` of an in-graph
    oracle; one that declares ``expensive = True`` runs only when an env finished (see
    :func:`crystaljax.oracles.batching.only_finished`)."""
    if not getattr(built, "expensive", False):
        return lambda tokens, tid, terminated, params: built(tokens, tid, params)
    fill = lambda: (jnp.float32(jnp.nan), jnp.int32(Status.NOT_EVALUATED))  # noqa: E731
    call = only_finished(built, fill, getattr(built, "batching", "vmap"),
                         getattr(built, "chunk", 0))
    return lambda tokens, tid, terminated, params: call(terminated, tokens, tid, params)


def _make_oracle(config: EnvConfig, templates, vocab):
    """(step oracle, name, bridge, can_fail, in-graph oracle object or None) for the config."""
    oracle = config.oracle
    if isinstance(oracle, str):
        spec = get_oracle(oracle, config.property)
        options = spec.parse_options(config.oracle_options)
        if spec.in_graph:
            built = spec.build(config.property, options, templates, vocab)
            return (_in_graph_step_oracle(built), spec.name, None,
                    bool(getattr(built, "can_fail", False)), built)
        built = spec.build(config.property, options)
        oracle = built
    if not isinstance(oracle, HostOracle):
        raise ConfigError(f"oracle {oracle!r} does not implement HostOracle "
                          "(property_name, unit, evaluate(structures))")
    if oracle.property_name != config.property:
        raise ConfigError(f"oracle computes {oracle.property_name!r} but the env's property is "
                          f"{config.property!r}")
    bridge = HostOracleBridge(oracle, vocab, templates)
    step_oracle = lambda tokens, tid, terminated, params: bridge(  # noqa: E731
        tokens, tid, terminated, params.reward)
    return step_oracle, type(oracle).__name__, bridge, oracle_can_fail(oracle), None


def make(task_or_config: Any = "density-perovskite-small-v0", **overrides
         ) -> tuple[CrystalEnv, EnvParams]:
    """Build an env and its default params.

    Args:
      task_or_config: a registered task id (``list_tasks()``), a YAML file, a dict of
        EnvConfig fields or an EnvConfig.
      **overrides: EnvConfig fields that replace the task's (template, vocab, property,
        target, oracle, substitution, graph, ...).

    Returns:
      ``(env, params)``; ``params`` is an EnvParams pytree of arrays.

    Raises:
      ConfigError (bad task id / key / value), TemplateError (bad template),
      UnknownElementError (bad symbol), FileNotFoundError (missing file).
    """
    config = resolve_config(task_or_config, **overrides)
    templates = resolve_templates(config.template)
    vocab = get_vocabulary(config.vocab)
    max_sites = config.max_sites
    if max_sites is None and max(t.num_sites for t in templates) > DEFAULT_MAX_SITES_LIMIT:
        big = max(templates, key=lambda t: t.num_sites)
        raise TemplateError(
            f"template {big.name!r} has {big.num_sites} sites, more than the default limit of "
            f"{DEFAULT_MAX_SITES_LIMIT}; "
            "set max_sites explicitly to allow it")
    table, _, S, E = build_template_table(templates, config.graph, max_sites, config.max_edges)
    weights = config.template_weights
    if weights is None:
        probs = np.full(len(templates), 1.0 / len(templates))
    else:
        weights = np.asarray(weights, float)
        if weights.shape != (len(templates),):
            raise ConfigError(f"template_weights must be {len(templates)} numbers (one per "
                              f"template), got {list(weights)}")
        probs = weights / weights.sum()
    spec = get_property(config.property)
    mask_tables(config.mask, vocab, templates, S)  # a ConfigError before any oracle starts
    step_oracle, oracle_name, bridge, can_fail, in_graph = _make_oracle(config, templates, vocab)
    params = EnvParams(
        templates=table,
        template_probs=jnp.asarray(probs, jnp.float32),
        element_masses=jnp.asarray(atomic_masses(vocab)),
        element_features=jnp.asarray(element_features(vocab)),
        reward=RewardParams(target=jnp.float32(config.resolved_target),
                            beta=jnp.float32(config.beta), floor=jnp.float32(config.floor),
                            penalty=jnp.float32(config.resolved_penalty)),
        target_scale=jnp.float32(spec.target_scale),
        rbf_centers=jnp.linspace(0.0, config.rbf_max, config.num_rbf, dtype=jnp.float32),
        rbf_width=jnp.float32(config.rbf_max / max(config.num_rbf - 1, 1)),
    )
    env = CrystalEnv(templates=templates, vocab=vocab, property_name=config.property,
                     oracle=step_oracle, oracle_name=oracle_name, max_sites=S, max_edges=E,
                     num_rbf=config.num_rbf, substitution=config.substitution,
                     host_bridge=bridge, config=config, oracle_can_fail=can_fail,
                     mask=config.mask, in_graph_oracle=in_graph)
    return env, params
