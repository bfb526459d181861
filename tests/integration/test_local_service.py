"""The one launcher of a local service (quickstart, service benchmark): 127.0.0.1 only, ready when
/readyz says so, stopped with its whole process group, and a clear error when it dies early."""

from __future__ import annotations

import os
import urllib.request

import pytest
from svc_support import models_dir

from distillrec.http_client import request_json
from distillrec.local_service import HOST, LocalService


def test_starts_ready_serves_and_stops_its_process_group():
    with LocalService(models_dir("student"), default_model="student", settings={"ORT_THREADS": 1}) as svc:
        assert svc.base == f"http://127.0.0.1:{svc.port}" and HOST == "127.0.0.1"
        assert "--host" in svc.cmd and svc.cmd[svc.cmd.index("--host") + 1] == "127.0.0.1"
        models = request_json("GET", svc.base + "/v1/models")
        assert "student" in str(models)
        assert os.getpgid(svc.proc.pid) == svc.proc.pid  # its own group, stopped as a whole
        assert svc.cpu_seconds() > 0
        pid = svc.proc.pid
    assert svc.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with pytest.raises(OSError):
        urllib.request.urlopen(svc.base + "/healthz", timeout=2)


def test_a_service_that_dies_before_ready_is_an_error_with_its_stderr(tmp_path):
    svc = LocalService(tmp_path, quiet=True, settings={"ORT_THREADS": 0})  # invalid setting: exits at start
    with pytest.raises(RuntimeError, match=r"(?s)exited with status 1 before it was ready.*ort_threads"):
        svc.start(timeout=60)
    assert svc.proc.poll() is not None
