"""One experiment config for both studies: the teacher is a run or an ensemble, and each variant
refuses the other's keys with an error naming the file and the key."""

import pytest
import yaml

from distillrec.cli import build_parser
from training.errors import ConfigError
from training.experiments.schema import EnsembleTeacher, RunTeacher, load_experiment

RUN = {"name": "x", "teacher": {"run": "runs/t"}, "student": {"config": "s.yaml"}, "methods": [{"label": "DE", "methods": [{"name": "de"}]}]}
ENSEMBLE = {
    "name": "y",
    "teacher": {"members": [{"config": "t.yaml", "run": "runs/t"}], "ensemble": {"config": "e.yaml", "run": "runs/e"}},
    "students": [{"config": "s.yaml", "run": "runs/s"}],
    "set": ["train.threads=1"],
    "metric": "recall@10",
    "report": ["ndcg@10"],
}


def _load(tmp_path, tree):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path, load_experiment(path)


def test_the_teacher_is_a_run_or_an_ensemble(tmp_path):
    _, run = _load(tmp_path, RUN)
    assert isinstance(run.teacher, RunTeacher) and run.ensemble is None
    _, ens = _load(tmp_path, ENSEMBLE)
    assert isinstance(ens.teacher, EnsembleTeacher) and ens.ensemble is ens.teacher
    assert ens.metrics == ["recall@10", "ndcg@10"] and ens.timing.users == 1000


@pytest.mark.parametrize(
    "tree, message",
    [
        ({**ENSEMBLE, "methods": RUN["methods"]}, "methods: not used with an ensemble teacher"),
        ({**RUN, "students": ENSEMBLE["students"]}, "students: not used with a teacher run"),
        ({k: v for k, v in RUN.items() if k != "student"}, "student: required with a teacher run"),
        ({**ENSEMBLE, "teacher": {**ENSEMBLE["teacher"], "run": "runs/t"}}, r"teacher\.ensemble\.run: unknown key"),
    ],
)
def test_each_variant_refuses_the_other_ones_keys(tmp_path, tree, message):
    with pytest.raises(ConfigError, match=message) as err:
        _load(tmp_path, tree)
    assert "exp.yaml: invalid configuration" in str(err.value)


def test_one_command_with_the_options_of_both_variants():
    parser = build_parser()
    args = parser.parse_args(["experiment", "--config", "c.yaml", "--out", "o", "--force", "students", "--table-only"])
    assert args.report_only and args.force == ["students"]
    alias = parser.parse_args(["ensemble", "experiment", "--config", "c.yaml", "--out", "o", "--only", "DE", "--seed", "1"])
    assert alias.handler is args.handler and alias.only == ["DE"] and alias.seed == [1]


def test_ensemble_students_take_the_teacher_flag_of_distill_too():
    args = build_parser().parse_args(["ensemble", "distill", "--config", "s.yaml", "--out", "o", "--teacher", "runs/e"])
    assert args.ensemble == "runs/e"
