"""The service never loads torch (nor anything from ``training``): checked in fresh processes,
both for ``uvicorn service.main:app`` (imported and driven in-process) and for ``distillrec serve``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from svc_support import REPO, models_dir

SCRIPT = r"""
import json, sys
from fastapi.testclient import TestClient
import service.main
with TestClient(service.main.app) as c:
    ready = c.get("/readyz").json()
    rec = c.post("/v1/recommend", json={"user_id": "1", "k": 3, "model": "ensemble"})
    hist = c.post("/v1/recommend/history", json={"item_ids": ["1", "2"], "model": "lightgcn"})
    bench = c.post("/v1/benchmark", json={"models": ["student", "neumf"], "requests": 5})
print(json.dumps({
    "ready": ready["ready"], "loaded": sorted(b["name"] for b in ready["loaded"]),
    "status": [rec.status_code, hist.status_code, bench.status_code],
    "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
    "training": sorted(m for m in sys.modules if m == "training" or m.startswith("training.")),
    "numba": sorted(m for m in sys.modules if m == "numba" or m.startswith("numba.")),
}))
"""


def test_service_main_never_imports_torch():
    env = {**os.environ, "DISTILLREC_MODELS_DIR": str(models_dir()), "DISTILLREC_LOG_LEVEL": "warning"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ready"] and out["loaded"] == ["ensemble", "lightgcn", "neumf", "student"]
    assert out["status"] == [200, 200, 200]
    assert out["torch"] == [] and out["training"] == [] and out["numba"] == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distillrec_serve_runs_without_torch():
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "distillrec.cli",
        "serve",
        "--models-dir",
        str(models_dir()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert json.load(r)["ready"]
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, "the server did not become ready within 60 s"
                time.sleep(0.2)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/recommend", data=b'{"user_id": "1", "k": 2}', headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert len(json.load(r)["items"]) == 2
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libtorch" not in maps and "onnxruntime" in maps, "the serve process must not load torch's libraries"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
