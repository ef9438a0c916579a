"""The ``crystaljax`` command line: tasks, prototypes, random-policy rollouts, DFT runs,
one crystal through any oracle (``compute``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from crystaljax.config import ConfigError, nest_dotted, parse_overrides


def _at_least(name: str, value: int, low: int) -> int:
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return value


def cmd_tasks(args) -> int:
    from crystaljax.env.registry import tasks

    registered = tasks()
    for task_id in sorted(registered):
        cfg = registered[task_id]
        tpl = cfg["template"] if isinstance(cfg["template"], str) else "+".join(cfg["template"])
        print(f"{task_id:48s} {cfg['property']:13s} oracle={cfg['oracle']:9s} template={tpl}")
    return 0


def cmd_prototypes(args) -> int:
    from crystaljax.templates import PROTOTYPES, prototype

    for name in sorted(PROTOTYPES):
        t = prototype(name)
        a, b, c, al, be, ga = t.lattice_parameters
        print(f"{name:20s} {t.num_sites:3d} sites  sg {t.spacegroup:3d}  "
              f"{PROTOTYPES[name].crystal_system:12s} a={a:.3f} b={b:.3f} c={c:.3f} Å  "
              f"{PROTOTYPES[name].description}")
    return 0


def cmd_rollout(args) -> int:
    """Random-policy episodes through the jitted, vmapped env; prints crystals and rewards."""
    import crystaljax

    _at_least("--envs", args.envs, 1)
    _at_least("--episodes", args.episodes, 1)
    _at_least("--show", args.show, 0)
    env, params = crystaljax.make(args.task, **nest_dotted(parse_overrides(args.overrides)))
    with env:
        return _rollout(env, params, args)


def _rollout(env, params, args) -> int:
    import jax
    import numpy as np

    print(env)
    v_reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    v_step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    key = jax.random.PRNGKey(args.seed)
    key, k0 = jax.random.split(key)
    _, state = v_reset(jax.random.split(k0, args.envs), params)
    done_count, results = 0, []
    from tqdm import tqdm

    with tqdm(total=args.episodes, desc="episodes", unit="ep", disable=args.quiet) as bar:
        while done_count < args.episodes:
            key, k_act, k_step = jax.random.split(key, 3)
            actions = jax.random.randint(k_act, (args.envs,), 0, env.num_actions)
            _, state, reward, term, _, info = v_step(jax.random.split(k_step, args.envs), state,
                                                     actions, params)
            for i in np.flatnonzero(np.asarray(term)):
                s = env.to_structure(info["final_state"], index=int(i))
                results.append((float(reward[i]), float(info["property"][i]),
                                int(info["status"][i]), s.composition.reduced_formula,
                                env.templates[int(info["final_state"].template_id[i])].name))
                done_count += 1
                bar.update(1)
    unit = env.property.unit
    print(f"\n{'reward':>8s} {env.property_name + ' (' + unit + ')':>22s} {'status':>6s}  crystal")
    for r, p, st, formula, tpl in sorted(results, key=lambda x: -x[0])[: args.show]:
        print(f"{r:8.4f} {p:22.4f} {st:6d}  {formula} on {tpl}")
    rewards = np.array([r[0] for r in results])
    print(f"\n{len(results)} episodes: mean reward {rewards.mean():.4f}, best {rewards.max():.4f}")
    return 0


def _print_summary(summary: dict) -> None:
    from crystaljax.properties import PROPERTIES
    print(f"\nrun directory: {summary['run_dir']}")
    if summary.get("stopped_early"):
        print(f"stopped early: {summary['stopped_early']}; "
              f"`crystaljax train --resume {summary['run_dir']}` continues the run")
    if "eval_mean_reward" in summary:
        print(f"greedy policy: mean reward {summary['eval_mean_reward']:.4f}, median |error| "
              f"{summary['eval_median_abs_error']:.4g} over {summary['eval_episodes']} episodes")
    print("best crystals found:")
    for rec in summary["best_crystals"]:
        prop = rec.get("property") or next(k for k in PROPERTIES if k in rec)
        print(f"  reward {rec['reward']:8.4f}  {prop} {rec[prop]:10.4f} {rec['unit']:6s} "
              f"{rec['formula']:14s} on {rec['template']} ({rec['found_by']})")
    oracle = summary.get("oracle") or {}
    if "core_utilisation" in oracle:  # a host oracle with a process pool (QE)
        print(f"oracle (this process): {oracle['evaluations']} crystals scored, "
              f"{oracle['computed']} computed, {oracle['cache_hits']} from the cache, core "
              f"utilisation {oracle['core_utilisation']:.2f} (busy core-s / available)")
    print(f"files: config.yaml, metrics.csv, tb/, checkpoints/, learning_curve.png, "
          f"crystals/ in {summary['run_dir']}")


def cmd_train(args) -> int:
    from crystaljax.training.config import load_run_config
    from crystaljax.training.run import resume, train

    if args.resume:
        if args.config or args.overrides:
            raise ConfigError("give either a config (with overrides) or --resume RUN_DIR, not "
                              "both: a resumed run keeps the config in its directory")
        summary = resume(args.resume, progress=not args.quiet,
                         time_budget_minutes=args.budget_minutes)
    else:
        if args.budget_minutes is not None:
            raise ConfigError("--budget-minutes is for a resumed part (--resume RUN_DIR); a "
                              "new run takes train.time_budget_minutes=M")
        if not args.config:
            raise ConfigError("give a config file (configs/*.yaml) or --resume RUN_DIR")
        config = load_run_config(args.config, args.overrides)  # checked before any file
        summary = train(config, progress=not args.quiet)
    _print_summary(summary)
    return 0


def cmd_evaluate(args) -> int:
    import json
    import os

    from crystaljax.training.config import load_run_config
    from crystaljax.training.run import Trainer, run_config_path

    _at_least("--episodes", args.episodes, 1)
    config = load_run_config(run_config_path(args.run_dir))
    checkpoints = os.path.join(args.run_dir, "checkpoints")
    if not os.path.isdir(checkpoints) or not any(n.isdigit() for n in os.listdir(checkpoints)):
        raise FileNotFoundError(f"{args.run_dir}: no checkpoint to evaluate (the run stopped "
                                "before its first chunk finished)")
    with Trainer(config, args.run_dir, resume=True) as trainer:
        result = trainer.evaluate(args.episodes)
        trainer.top.export(args.run_dir, trainer.structures)
    result["env_steps"] = trainer.iteration * trainer.agent.config.env_steps_per_iteration
    with open(os.path.join(args.run_dir, "evaluate.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crystaljax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list registered task ids").set_defaults(func=cmd_tasks)
    sub.add_parser("prototypes", help="list built-in prototype templates").set_defaults(
        func=cmd_prototypes)
    p = sub.add_parser("rollout", help="random-policy episodes; prints crystals and rewards")
    p.add_argument("task", nargs="?", default="density-perovskite-small-v0",
                   help="task id or YAML config")
    p.add_argument("overrides", nargs="*", help="EnvConfig overrides as key=value")
    p.add_argument("--episodes", type=int, default=64)
    p.add_argument("--envs", type=int, default=16, help="vmapped envs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", type=int, default=10, help="best crystals to print")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_rollout)
    t = sub.add_parser("train", help="train an agent from a YAML config (configs/*.yaml)")
    t.add_argument("config", nargs="?", help="run config YAML")
    t.add_argument("overrides", nargs="*",
                   help="key=value overrides: agent=rainbow seed=3 oracle=qe env.target=5 "
                        "learning_rate=1e-3 agent.preset=crystalgym (the paper's settings)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--budget-minutes", type=float, metavar="M",
                   help="with --resume: wall-clock budget of this part (minutes), in place of "
                        "the saved train.time_budget_minutes")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="greedy rollouts of a trained run's policy")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=256)
    e.set_defaults(func=cmd_evaluate)
    from crystaljax.oracles.qe.cli import add_dft_parser

    add_dft_parser(sub)
    from crystaljax.verify_cli import add_report_parser, add_verify_parser

    add_verify_parser(sub)
    add_report_parser(sub)
    from crystaljax.compute_cli import add_compute_parser

    add_compute_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from crystaljax.oracles.qe.ld1 import PseudoGenerationError
    from crystaljax.templates.core import TemplateError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0
    except (ConfigError, TemplateError, FileNotFoundError, KeyError, ValueError,
            PseudoGenerationError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        first = str(msg).strip().splitlines()[0] if str(msg).strip() else type(exc).__name__
        print(f"crystaljax: error: {first}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
