"""Bad input gets a clear error naming what is wrong."""

import pytest

import crystaljax
from crystaljax.elements import UnknownElementError
from crystaljax.templates import TemplateError


def test_unknown_task_id_suggests_close_match():
    with pytest.raises(crystaljax.ConfigError, match="did you mean.*density-perovskite-small-v0"):
        crystaljax.make("density-perovskit-small-v0")


def test_unknown_config_key():
    with pytest.raises(crystaljax.ConfigError, match=r"unknown config key\(s\) \['tempalte'\]"):
        crystaljax.make("density-perovskite-small-v0", tempalte="rocksalt")


def test_unknown_element():
    with pytest.raises(UnknownElementError, match="'Qq'"):
        crystaljax.make(vocab=["Na", "Qq"])


def test_wrong_sign_target():
    with pytest.raises(crystaljax.ConfigError, match="target for density must be > 0"):
        crystaljax.make("density-perovskite-small-v0", target=-3.0)


def test_too_many_sites():
    with pytest.raises(TemplateError, match="spinel.*14 sites, more than max_sites=8"):
        crystaljax.make(template="spinel", max_sites=8)


def test_unknown_template_and_oracle():
    with pytest.raises(crystaljax.ConfigError, match="unknown template 'rocksalts'"):
        crystaljax.make(template="rocksalts")
    with pytest.raises(crystaljax.ConfigError, match="no in-graph oracle for 'band_gap'"):
        crystaljax.make(property="band_gap", oracle="analytic")
    with pytest.raises(crystaljax.ConfigError, match="unknown oracle 'dft'"):
        crystaljax.make(oracle="dft")


def test_malformed_yaml_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [1, 2\n")
    with pytest.raises(crystaljax.ConfigError, match="not valid YAML"):
        crystaljax.make(str(bad))
    typo = tmp_path / "typo.yaml"
    typo.write_text("env:\n  task: density-perovskite-small-v0\n  vocabulary: small\n")
    with pytest.raises(crystaljax.ConfigError, match="vocabulary"):
        crystaljax.make(str(typo))
    good = tmp_path / "good.yaml"
    good.write_text("env:\n  task: density-perovskite-small-v0\n  target: 5.0\n")
    env, params = crystaljax.make(str(good))
    assert float(params.reward.target) == 5.0


def test_bad_graph_and_weights():
    with pytest.raises(crystaljax.ConfigError, match="graph.method must be one of"):
        crystaljax.make(graph={"method": "voronoi"})
    with pytest.raises(crystaljax.ConfigError, match="template_weights"):
        crystaljax.make(template=["rocksalt", "perovskite"], template_weights=[1.0])
