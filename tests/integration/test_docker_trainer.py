"""docker/build-bundles.sh, the compose ``trainer``: which distillrec commands it runs, and when.

A stand-in ``distillrec`` on PATH records every call (and fakes the files the real one writes), so
the script's logic is checked in milliseconds; each recorded command line is then parsed by the real
CLI parser and its config loaded, so that the script cannot drift from the commands that exist.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docker" / "build-bundles.sh"

FAKE_DISTILLREC = r'''#!PYTHON
"""Records argv; writes what the real command would leave behind (result.json, a bundle + LATEST)."""
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as fh:
    fh.write(json.dumps(args) + "\n")
if os.environ.get("FAIL_ON") == args[0]:
    sys.exit(1)
opt = lambda name: args[args.index(name) + 1]
if args[0] in ("train", "distill"):
    Path(opt("--out")).mkdir(parents=True, exist_ok=True)
    (Path(opt("--out")) / "result.json").write_text("{}")
elif args[0] == "export":
    bundle = Path(opt("--models-dir")) / opt("--bundle")
    (bundle / "v1").mkdir(parents=True, exist_ok=True)
    (bundle / "LATEST").write_text("v1")
'''


@pytest.fixture
def trainer(tmp_path):
    """Runs the script against a fake distillrec; returns (run(**env) -> (returncode, calls), paths)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "distillrec"
    fake.write_text(FAKE_DISTILLREC.replace("PYTHON", sys.executable, 1))
    fake.chmod(0o755)
    paths = {"models": tmp_path / "models", "runs": tmp_path / "runs", "calls": tmp_path / "calls.jsonl"}

    def run(**env):
        paths["calls"].write_text("")
        full = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "CALLS": str(paths["calls"]),
            "DISTILLREC_MODELS_DIR": str(paths["models"]),
            "RUNS_DIR": str(paths["runs"]),
            **env,
        }
        proc = subprocess.run(["sh", str(SCRIPT)], cwd=REPO, env=full, capture_output=True, text=True, timeout=30)
        calls = [json.loads(line) for line in paths["calls"].read_text().splitlines()]
        return proc, calls

    return run, paths


def test_trains_distils_and_exports_both_bundles_in_order(trainer):
    run, paths = trainer
    proc, calls = run()
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls] == ["train", "export", "distill", "export"]
    teacher_run, student_run = str(paths["runs"] / "ml100k-teacher"), str(paths["runs"] / "ml100k-student")
    train, export_t, distill, export_s = calls
    assert train[train.index("--out") + 1] == teacher_run and "--config" in train
    assert distill[distill.index("--teacher") + 1] == teacher_run and distill[distill.index("--out") + 1] == student_run
    assert export_t[export_t.index("--bundle") + 1] == "ml100k-teacher" and export_t[export_t.index("--run") + 1] == teacher_run
    assert export_s[export_s.index("--bundle") + 1] == "ml100k-student" and export_s[export_s.index("--run") + 1] == student_run
    assert all(c[c.index("--models-dir") + 1] == str(paths["models"]) for c in (export_t, export_s))
    assert (paths["models"] / "ml100k-student" / "LATEST").exists() and (paths["models"] / "ml100k-teacher" / "LATEST").exists()


def test_every_command_it_runs_exists_and_its_configs_load(trainer):
    """The recorded command lines parse with the real CLI; their configs and KD methods validate."""
    from distillrec.cli import build_parser
    from training.config import load_config
    from training.distill.registry import build_method

    run, _ = trainer
    proc, calls = run(MAX_EPOCHS="2")
    assert proc.returncode == 0, proc.stderr
    parser = build_parser()
    for argv in calls:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"distillrec rejects the trainer's command line: distillrec {shlex.join(argv)}")
        if args.command in ("train", "distill"):
            cfg = load_config(REPO / args.config, args.overrides)
            assert cfg.train.epochs == 2, "MAX_EPOCHS must cap training"
            if args.command == "distill":
                assert cfg.distill.methods, "the student must be distilled with at least one KD method"
                for spec in cfg.distill.methods:
                    build_method(spec)


def test_a_second_run_reuses_everything_and_force_rebuilds(trainer):
    run, _ = trainer
    assert run()[0].returncode == 0
    proc, calls = run()
    assert proc.returncode == 0 and calls == [], "with both bundles published a second `up` must do nothing"
    assert "nothing to do" in proc.stdout
    proc, calls = run(FORCE="1")
    assert proc.returncode == 0 and [c[0] for c in calls] == ["train", "export", "distill", "export"]


def test_a_missing_student_bundle_reuses_the_finished_teacher_run(trainer):
    run, paths = trainer
    assert run()[0].returncode == 0
    shutil.rmtree(paths["models"] / "ml100k-student")
    proc, calls = run()
    assert proc.returncode == 0 and [c[0] for c in calls] == ["export"], "the student's finished run is reused, only the export is redone"


def test_a_failing_step_fails_the_trainer_so_the_apis_do_not_start(trainer):
    run, paths = trainer
    proc, calls = run(FAIL_ON="distill")
    assert proc.returncode != 0
    assert [c[0] for c in calls] == ["train", "export", "distill"]
    assert not (paths["models"] / "ml100k-student").exists()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv (util-linux), as in the trainer container")
def test_started_as_root_it_writes_the_bundles_as_the_owner_of_the_models_folder(tmp_path):
    """Compose starts the trainer as root with RUN_AS_MODELS_OWNER=1: it must switch to the owner of ./models."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="distillrec-owner-"))
    try:
        root.chmod(0o755)
        bin_dir, models, runs, calls = root / "bin", root / "models", root / "runs", root / "calls.jsonl"
        for folder in (bin_dir, models, runs):
            folder.mkdir()
        fake = bin_dir / "distillrec"
        # the system interpreter: the fake uses the standard library only, and the switched user may not reach a virtualenv
        fake.write_text(FAKE_DISTILLREC.replace("PYTHON", shutil.which("python3", path="/usr/bin:/bin") or sys.executable, 1))
        fake.chmod(0o755)
        calls.write_text("")
        calls.chmod(0o666)
        runs.chmod(0o777)
        os.chown(models, 12345, 12346)
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "CALLS": str(calls),
            "RUN_AS_MODELS_OWNER": "1",
            "DISTILLREC_MODELS_DIR": str(models),
            "RUNS_DIR": str(runs),
            "HOME": str(root),
        }
        proc = subprocess.run(["sh", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "running as 12345:12346" in proc.stdout
        latest = models / "ml100k-student" / "LATEST"
        assert (latest.stat().st_uid, latest.stat().st_gid) == (12345, 12346)
        # without the switch (a plain root run outside compose) nothing changes hands
        shutil.rmtree(models / "ml100k-student")
        proc = subprocess.run(["sh", str(SCRIPT)], cwd=REPO, env={**env, "RUN_AS_MODELS_OWNER": "0"}, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and latest.stat().st_uid == 0
    finally:
        shutil.rmtree(root)
