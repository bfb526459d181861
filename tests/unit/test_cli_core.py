"""The CLI end to end on a tiny CSV: data info, train, evaluate, and user errors."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import write_block_log

from distillrec.cli import main


def _csv(tmp_path):
    f = write_block_log(tmp_path / "log.csv", n_users=30, n_blocks=3, per_user=6, ratings=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data: {{source: file, path: {f}, user_col: user, item_col: item, rating_col: rating, timestamp_col: ts}}\n"
        "model: {family: mf, dim: 8, init_std: 0.1}\n"
        "train: {epochs: 5, lr: 0.05, batch_size: 32}\n"
        "eval: {ks: [5], select: hr@5}\n"
    )
    return cfg


def test_data_info_train_evaluate(tmp_path, capsys):
    cfg = _csv(tmp_path)
    assert main(["data", "info", "--config", str(cfg)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (30, 30, 180)
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--no-progress", "--set", "train.epochs=3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["test"]["protocol"] == "full"
    for name in ("config.yaml", "metrics.jsonl", "best.ckpt.npz", "result.json"):
        assert (out / name).exists(), name
    result = json.loads((out / "result.json").read_text())
    assert result["epochs"] == 3 and result["model"]["parameters"] == (30 + 30) * 8
    assert {"valid", "test", "train_seconds", "best_epoch"} <= set(result)
    assert "epochs: 3" in (out / "config.yaml").read_text()
    assert main(["evaluate", "--run", str(out), "--protocol", "sampled", "--negatives", "10", "--ks", "1,5"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["protocol"] == "sampled-10" and "hr@1" in ev["metrics"]


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    cfg = _csv(tmp_path)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "x"), "--set", "model.dimm=3"]) == 2
    assert "model.dimm: unknown key" in capsys.readouterr().err
    assert main(["data", "info", "--dataset", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: interactions file not found" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "not a finished run" in capsys.readouterr().err


def test_count_options_refuse_zero_and_non_numbers_before_any_work(tmp_path, capsys):
    import pytest

    for argv, message in (
        (["bench", "train-cost", "--epochs", "0"], "argument --epochs: 0: give 1 or more"),
        (["bench", "peers", "--epochs", "-2"], "argument --epochs: -2: give 1 or more"),
        (["bench", "catalogue", "--warmup", "-1"], "argument --warmup: -1: give 0 or more"),
        (["bench", "service", "--student", "s", "--rounds", "two"], "argument --rounds: 'two' is not a whole number"),
        (["export", "--run", str(tmp_path), "--name", "x", "--hnsw-m", "0"], "argument --hnsw-m: 0: give 1 or more"),
    ):
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--out", str(tmp_path / "out")] if argv[0] == "bench" else argv)
        assert stop.value.code == 2 and message in capsys.readouterr().err, argv
    assert not (tmp_path / "out").exists()
    assert main(["bench", "catalogue", "--warmup", "0", "--sizes", "abc", "--out", str(tmp_path / "out")]) == 2  # 0 is a valid warm-up
    assert "--sizes: 'abc'" in capsys.readouterr().err


def test_help_is_fast_and_imports_no_torch():
    code = "import sys; from distillrec.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_replay_stopping_on_a_hand_made_curve():
    from training.stopping import replay_stopping

    def ev(epoch, a, b):
        return {"epoch": epoch, "valid": {"a": a, "b": b}}

    # 'a' peaks at epoch 1; 'b' keeps improving until epoch 3, then nothing improves.
    evals = [ev(0, 0.1, 0.1), ev(1, 0.5, 0.2), ev(2, 0.4, 0.3), ev(3, 0.3, 0.4), ev(4, 0.2, 0.1), ev(5, 0.5, 0.1), ev(6, 0.1, 0.1)]
    # one metric: bad evaluations are epochs 2, 3 → stop at 3 with patience 2
    assert replay_stopping(evals, 2, ["a"], "a") == {"stop_epoch": 3, "best_epoch": 1}
    # either metric resets the counter: bad are 4, 5 (ties do not improve) → stop at 5; the tie at 5 keeps epoch 1
    assert replay_stopping(evals, 2, ["a", "b"], "a") == {"stop_epoch": 5, "best_epoch": 1}
    assert replay_stopping(evals, 3, ["a", "b"], "b") == {"stop_epoch": 6, "best_epoch": 3}
    assert replay_stopping(evals, 9, ["a"], "a")["stop_epoch"] is None


def test_report_replay_stopping_cli(tmp_path, capsys):
    cfg = _csv(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--no-progress", "--set", "train.epochs=4"]) == 0
    capsys.readouterr()
    assert main(["report", "--replay-stopping", "1:hr@5", str(out)]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split(" | ")
    assert row[1:3] == ["hr@5", "3"]
    assert main(["report", "--replay-stopping", "1:ndcg@99", str(out)]) == 2
    assert "no ndcg@99" in capsys.readouterr().err
    assert main(["report", "--replay-stopping", "twenty", str(out)]) == 2
    assert "expected PATIENCE:METRIC" in capsys.readouterr().err
