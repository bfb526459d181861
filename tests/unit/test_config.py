"""Config validation: unknown keys fail, overrides apply, errors name the field."""

from __future__ import annotations

import pytest

from training.config import config_from_dict, dump_config, load_config
from training.errors import ConfigError


def test_defaults_and_overrides():
    cfg = config_from_dict({"model": {"dim": 8}}, overrides=["train.epochs=3", "eval.ks=[5, 10]", "train.lr=1e-2", "model.family=neumf"])
    assert (cfg.model.dim, cfg.train.epochs, cfg.eval.ks, cfg.train.lr) == (8, 3, [5, 10], 0.01)
    assert cfg.base_loss() == "bce"  # NeuMF's default loss
    assert config_from_dict({}).base_loss() == "bpr"


def test_unknown_key_names_the_field():
    with pytest.raises(ConfigError, match=r"train.epochz: unknown key"):
        config_from_dict({"train": {"epochz": 3}}, "x.yaml")


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"x.yaml: invalid configuration\n  model.dim"):
        config_from_dict({"model": {"dim": 0}}, "x.yaml")
    with pytest.raises(ConfigError, match="eval.select"):
        config_from_dict({"eval": {"select": "auc"}})


def test_select_metric_k_is_added_to_ks():
    assert 50 in config_from_dict({"eval": {"ks": [10], "select": "recall@50"}}).eval.ks


def test_path_required_for_file_sources():
    with pytest.raises(ConfigError, match="data.path is required"):
        config_from_dict({"data": {"source": "file"}})


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key=value"):
        config_from_dict({}, overrides=["train.epochs"])


def test_yaml_round_trip_and_missing_file(tmp_path):
    cfg = config_from_dict({"name": "x", "model": {"dim": 12}})
    f = tmp_path / "c.yaml"
    f.write_text(dump_config(cfg))
    assert load_config(f) == cfg
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_yaml_tags_never_run_code(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)
