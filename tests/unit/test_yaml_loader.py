"""One YAML → pydantic loader for run, ensemble and experiment configs: unknown keys are errors that
name the file and the key, whichever kind of config it is."""

import pytest

from training.config import load_config
from training.ensemble.build import load_ensemble_config
from training.errors import ConfigError
from training.experiments.schema import load_experiment
from training.yaml_loader import read_yaml_mapping


@pytest.mark.parametrize(
    "loader, text, key",
    [
        (load_config, "model: {dim: 8, dimm: 9}\n", "model.dimm"),
        (load_ensemble_config, "members: [{run: runs/a}]\ntemprature: 3\n", "temprature"),
        (load_experiment, "name: x\nteacher: {run: runs/t}\nstudent: {config: s.yaml}\nseed: [1]\n", "seed"),
    ],
)
def test_unknown_keys_name_the_file_and_the_key(tmp_path, loader, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        loader(path)
    assert f"{path}: invalid configuration" in str(err.value)
    assert f"  {key}: unknown key" in str(err.value)


def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list.yaml: the top level must be a mapping"):
        read_yaml_mapping(path)


def test_missing_files_say_where_the_shipped_ones_are(tmp_path):
    with pytest.raises(ConfigError, match=r"experiment config file not found.*configs/experiments/"):
        load_experiment(tmp_path / "nope.yaml")
