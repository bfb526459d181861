"""Training inputs and outputs never silently mislead: timestamps, ids, messages, caches, finished runs."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import write_block_log
from kd_support import teacher_config

from distillrec.cli import main
from training.data.readers import read_table
from training.distill.teacher import TeacherArtifacts
from training.errors import DataError
from training.runs import train_run


def _write(path, text: str):
    path.write_text(text)
    return path


def test_iso_timestamps_are_accepted(tmp_path):
    rows = [
        "1,a,1714571100",
        "1,b,2024-05-01",
        "2,a,2024-05-01T13:45:00",
        "2,b,2024-05-01 13:45:00.250",
        "3,a,2024-05-01T13:45:00Z",
        "3,b,2024-05-01T15:45:00+02:00",
    ]
    data = read_table(_write(tmp_path / "x.csv", "user,item,ts\n" + "\n".join(rows) + "\n"), "user", "item", timestamp_col="ts")
    at = datetime(2024, 5, 1, 13, 45, tzinfo=UTC).timestamp()
    np.testing.assert_allclose(data.timestamp, [1714571100, datetime(2024, 5, 1, tzinfo=UTC).timestamp(), at, at + 0.25, at, at])


def test_a_column_the_reader_parses_as_date_times_gives_seconds(tmp_path):
    data = read_table(_write(tmp_path / "x.csv", "user,item,ts\n1,a,2024-05-01T13:45:00Z\n1,b,2024-05-02T13:45:00Z\n"), "user", "item", timestamp_col="ts")
    assert data.timestamp[1] - data.timestamp[0] == 86400 and data.timestamp[0] == datetime(2024, 5, 1, 13, 45, tzinfo=UTC).timestamp()


def test_a_bad_timestamp_says_which_formats_are_accepted(tmp_path):
    f = _write(tmp_path / "x.csv", "user,item,when\n1,a,2024-05-01\n2,b,yesterday\n")
    with pytest.raises(DataError, match=r"'when' \(data.timestamp_col\) holds 'yesterday' in data row 2.*ISO 8601.*2024-05-01T13:45:00Z"):
        read_table(f, "user", "item", timestamp_col="when")


def test_a_non_numeric_rating_names_the_rating_field_whatever_the_column_name(tmp_path):
    f = _write(tmp_path / "x.csv", "user,item,score\n1,a,5\n2,b,great\n")
    with pytest.raises(DataError, match=r"'score' \(data.rating_col\) must be numeric.*point data.rating_col"):
        read_table(f, "user", "item", rating_col="score")


@pytest.mark.parametrize("column", ["user", "item"])
def test_ids_with_nul_are_refused_not_merged(tmp_path, column):
    rows = "u1,i1\nu1\0,i2\n" if column == "user" else "u1,i1\nu2,i1\0\n"
    with pytest.raises(DataError, match=rf"column '{column}' holds a NUL character in data row 2"):
        read_table(_write(tmp_path / "x.csv", "user,item\n" + rows), "user", "item")


def test_kd_cache_follows_the_teacher_checkpoint(tiny_dataset, tmp_path):
    folder = tmp_path / "teacher"
    train_run(teacher_config(epochs=3), folder, dataset=tiny_dataset)
    first = TeacherArtifacts(folder, tiny_dataset)
    old = first.user_topn(10)
    retrained = teacher_config(epochs=3).model_copy(update={"train": teacher_config().train.model_copy(update={"seed": 7, "epochs": 3})})
    train_run(retrained, folder, dataset=tiny_dataset)
    second = TeacherArtifacts(folder, tiny_dataset)
    assert second.cache_key != first.cache_key
    new = second.user_topn(10)
    with np.errstate(all="ignore"):
        expected = second._compute_user_topn(10)
    np.testing.assert_array_equal(new, expected)
    assert not np.array_equal(new, old), "the retrained teacher's lists, not the cached ones of its predecessor"


def test_train_refuses_to_replace_a_finished_run_unless_asked(tmp_path, capsys):
    log = write_block_log(tmp_path / "log.csv", n_users=30, n_blocks=3, per_user=6)
    cfg = _write(
        tmp_path / "c.yaml",
        f"data: {{source: file, path: {log}, user_col: user, item_col: item}}\nmodel: {{family: mf, dim: 4}}\ntrain: {{epochs: 2}}\neval: {{ks: [5], select: hr@5}}\n",
    )
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    before = (out / "result.json").read_text()
    capsys.readouterr()
    assert main(args + ["--set", "train.seed=3"]) != 0
    err = capsys.readouterr().err
    assert "holds a finished run" in err and "--overwrite" in err and (out / "result.json").read_text() == before
    assert main(args + ["--set", "train.seed=3", "--overwrite"]) == 0
    assert "replacing the finished run" in capsys.readouterr().err and (out / "result.json").read_text() != before
