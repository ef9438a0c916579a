"""The MLIP learning benchmark's bookkeeping (crystaljax.benchmarks.mlip_learning): the
relative-error criterion, the target from the distribution file and the report."""

import json

import pytest

from crystaljax.benchmarks import mlip_learning
from crystaljax.benchmarks.results import Results
from crystaljax.training.sweep import SweepResult


def _sweep(errors, target=120.0, agent="dqn", seed=0, random=None):
    steps = [0, 2_500, 5_000, 7_500][:len(errors)]
    return SweepResult(
        agent=agent, task=mlip_learning.TASK, env={"oracle": "chgnet"}, property="bulk_modulus",
        target=target, oracle="in-graph", seeds=1, seed=seed, env_steps=7_500, eval_every=2_500,
        eval_episodes=4, overrides={}, config={}, machine="test machine", jax_version="0",
        backend="cpu", compile_s=1.0, train_s=10.0, wall_s=12.0, eval_steps=steps,
        eval_mean_reward=[[0.0] * len(errors)], eval_median_abs_error=[list(errors)],
        chunk_steps=steps[1:], train_mean_reward=[[0.0] * (len(errors) - 1)], chunk_metrics={},
        best_reward=[0.9], best_property=[118.0], random=random)


def test_criterion_is_the_first_evaluation_within_five_percent_of_the_target():
    run = _sweep([60.0, 12.0, 5.9, 7.0])  # 50 %, 10 %, 4.9 %, 5.8 %
    assert mlip_learning.relative_errors(run).tolist() == pytest.approx([0.5, 0.1, 5.9 / 120,
                                                                        7.0 / 120])
    assert mlip_learning.steps_to_criterion(run) == 5_000
    assert mlip_learning.steps_to_criterion(_sweep([60.0, 12.0, 6.1])) is None


def test_target_is_the_95th_percentile_of_the_distribution_file(tmp_path):
    path = tmp_path / "distribution.json"
    path.write_text(json.dumps({"percentiles": {"50": 38.6, "95": 124.5}}))
    assert mlip_learning.target_from_distribution(str(path)) == 124.5


def test_report_lists_every_seed_and_the_random_policy(tmp_path):
    results = Results()
    results.add(_sweep([60.0, 5.0], agent="dqn", random={"mean_reward": -1.0,
                                                         "median_abs_error": 84.0,
                                                         "episodes": 256}))
    results.add(_sweep([60.0, 30.0], agent="ppo", seed=1))
    text = mlip_learning.markdown(results)
    assert "| uniform random (256 episodes) | - | - | never | 0.700 |" in text
    assert "| dqn | 0 | 2,500 | 2,500 | 0.042 |" in text
    assert "| ppo | 1 | 2,500 | not reached | 0.250 |" in text
    out = tmp_path / "learning.json"
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n")
    mlip_learning.write_outputs(results, str(out), str(md))
    assert len(Results.load(str(out)).runs) == 2 and "mlip-learning" in md.read_text()


def _top(*rewards, tokens_from=0):
    return [{"tokens": [tokens_from + i, 1, 2, 2, 2], "template_id": 0, "reward": r,
             "property": 120.0 * (1 + r), "status": 0, "found_by": "training"}
            for i, r in enumerate(rewards)]


def test_top_crystals_merge_the_seeds_distinct_and_best_first():
    results = Results()
    a = _sweep([60.0, 5.0], seed=0)
    a.top_crystals = [_top(-0.01, -0.2, -0.3)]
    b = _sweep([60.0, 5.0], seed=1)
    b.top_crystals = [_top(-0.05, -0.02, tokens_from=1)]  # [1,..] repeats seed 0's second
    c = _sweep([60.0, 5.0], agent="ppo")
    c.top_crystals = [_top(-0.001)]
    for run in (a, b, c):
        results.add(run)
    top = mlip_learning.top_crystals(results, "dqn", top=3)
    assert [t["reward"] for t in top] == [-0.01, -0.02, -0.05]
    assert [t["seed"] for t in top] == [0, 1, 1]
    assert [t["tokens"][0] for t in top] == [0, 2, 1]  # the repeat kept its best reward
    assert mlip_learning.top_crystals(results, "sac") == []
    assert mlip_learning.top_crystals(results, "dqn", top=0) == []
    # equivalent crystals (here: same first token parity) count once, the best of them
    top = mlip_learning.top_crystals(results, "dqn", top=3,
                                     same_crystal=lambda c: c["tokens"][0] % 2)
    assert [(t["reward"], t["tokens"][0]) for t in top] == [(-0.01, 0), (-0.05, 1)]


def test_results_rows_and_verification_table():
    results = Results()
    results.add(_sweep([60.0, 5.0, 7.0], seed=0, random={"mean_reward": -1.0,
                                                          "median_abs_error": 84.0,
                                                          "episodes": 256}))
    results.add(_sweep([60.0, 12.0, 6.5], seed=1))
    crystal = {"rank": 1, "formula": "BaTiO3", "symbols": ["Ba", "Ti", "O", "O", "O"],
               "seed": 0, "run_value": 120.0, "value": 150.0, "difference": 30.0,
               "relative_difference": 0.25, "status": "OK"}
    failed = {**crystal, "rank": 2, "value": None, "difference": None,
              "relative_difference": None, "status": "NO_MINIMUM"}
    verification = {"dqn": {"crystals": [crystal, failed],
                            "summary": {"crystals": 2, "ok": 1,
                                        "mean_abs_relative_difference": 0.25}}}
    rows = "\n".join(mlip_learning.results_rows(results, verification))
    assert "| dqn | 2 | 5,000 | 1/2 | 0.042, 0.054 | 0.056 ± 0.002 | 0.700 |" in rows
    assert "| 2 (1) | 25% |" in rows
    assert "| - | - | 24 |" in "\n".join(mlip_learning.results_rows(results, None))
    table = mlip_learning.verification_markdown(verification)
    assert "| dqn | 1 | BaTiO3 (Ba-Ti-O-O-O) | 0 | 120.0 | 150.0 | +30.0 (+25%) | OK |" in table
    assert "| dqn | 2 | BaTiO3 (Ba-Ti-O-O-O) | 0 | 120.0 | - | - | NO_MINIMUM |" in table
