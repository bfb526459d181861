"""The quickstart path end to end on tiny settings: train → distil → export → serve → compare → reuse."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import yaml

from distillrec.demo import DemoOptions, run_demo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny(src: str, dst, **train) -> None:
    tree = yaml.safe_load(Path(src).read_text())
    tree["model"]["dim"] = min(tree["model"]["dim"], 16)
    tree["train"].update({"epochs": 2, "threads": 1, **train})
    dst.write_text(yaml.safe_dump(tree))


def test_demo_runs_and_reuses_everything(tmp_path, capsys):
    teacher_cfg, student_cfg = tmp_path / "teacher.yaml", tmp_path / "student.yaml"
    _tiny("configs/ml-100k/lightgcn-teacher.yaml", teacher_cfg)
    _tiny("configs/ml-100k/demo-student.yaml", student_cfg)
    opts = DemoOptions(
        runs_dir=tmp_path / "runs",
        models_dir=tmp_path / "models",
        port=_free_port(),
        exit_after=True,
        progress=False,
        teacher_config=teacher_cfg,
        student_config=student_cfg,
    )
    assert run_demo(opts) == 0
    out = capsys.readouterr().out
    assert "[6/6]" in out and "/v1/recommend" in out
    assert "$ curl -s 'http://127.0.0.1:" in out and "-s /v1" not in out, "URLs are quoted (zsh globs an unquoted '?')"
    models_reply = next(line for line in out.splitlines() if line.startswith('{"default_model"'))
    assert '"models": [{"name": ' in models_reply and '"failed": []' in models_reply, "the /v1/models example has the real reply's shape"
    assert "| ml100k-student | student |" in out and "| ml100k-teacher | teacher |" in out
    assert (tmp_path / "models" / "ml100k-student" / "LATEST").exists()
    t0 = time.monotonic()
    opts.port = _free_port()
    assert run_demo(opts) == 0
    again = capsys.readouterr().out
    assert again.count("reusing") == 4  # teacher run, student run, both bundles
    assert time.monotonic() - t0 < 60
    # an edited student config (or a new demo default) retrains the student, not the teacher
    tree = yaml.safe_load(student_cfg.read_text())
    tree["train"]["epochs"] = 1
    student_cfg.write_text(yaml.safe_dump(tree))
    opts.port = _free_port()
    assert run_demo(opts) == 0
    third = capsys.readouterr().out
    assert "runs/student was trained with another configuration" in third and third.count("reusing") == 2  # teacher run and bundle
    assert (tmp_path / "runs" / "student-previous" / "result.json").exists()
    assert yaml.safe_load((tmp_path / "runs" / "student" / "config.yaml").read_text())["train"]["epochs"] == 1
