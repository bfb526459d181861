"""The REST service as a child process on 127.0.0.1: the one launcher of the quickstart and the
service benchmark.

:class:`LocalService` starts ``uvicorn service.main:app`` (one worker; settings through
``DISTILLREC_*`` environment variables) in its own process group, polls ``/readyz`` until the
bundles are loaded, and stops the whole group (SIGTERM, then SIGKILL after a grace period)::

    with LocalService(models_dir, default_model="ml100k-student", port=8000) as svc:
        request_json("GET", svc.base + "/v1/models")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from distillrec.http_client import wait_until_ready

HOST = "127.0.0.1"  # load and demos only ever target the loopback interface


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class LocalService:
    """The service on ``127.0.0.1:port`` in a child process group (see the module docstring).

    Args:
        models_dir: the model repository it serves.
        default_model: bundle for requests without ``model`` (None: the service's own choice).
        port: the port (0: a free one).
        settings: further ``DISTILLREC_*`` variables, without the prefix (``{"ORT_THREADS": 1}``).
        access_log: log every request (off for benchmarks and demos).
        quiet: send the server's stdout to /dev/null and keep its stderr for the error message if it
            dies before it is ready (benchmarks); otherwise both go to this process's terminal.
        extra_env: other environment variables of the server process (``OMP_NUM_THREADS``).
    """

    def __init__(
        self,
        models_dir: str | Path,
        default_model: str | None = None,
        port: int = 0,
        settings: dict | None = None,
        access_log: bool = False,
        quiet: bool = False,
        extra_env: dict | None = None,
    ):
        self.port = port or free_port()
        self.base = f"http://{HOST}:{self.port}"
        env = {"MODELS_DIR": str(models_dir), "LOG_LEVEL": "warning", **({"DEFAULT_MODEL": default_model} if default_model else {}), **(settings or {})}
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {}), **{f"DISTILLREC_{k}": str(v) for k, v in env.items()}}
        self.cmd = [sys.executable, "-m", "uvicorn", "service.main:app", "--host", HOST, "--port", str(self.port), "--workers", "1", "--log-level", "warning"]
        if not access_log:
            self.cmd.append("--no-access-log")
        self.quiet = quiet
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120, poll_s: float = 0.2, wait_ready: bool = True) -> dict:
        """Starts the server and waits until ``/readyz`` answers 200; returns its body (loaded bundles).
        With ``wait_ready=False`` it returns ``{}`` at once (a server that is meant never to be ready)."""
        out = subprocess.DEVNULL if self.quiet else None
        err = subprocess.PIPE if self.quiet else None
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=err, text=True, start_new_session=True)
        if not wait_ready:
            return {}
        try:
            return wait_until_ready(self.base, self.proc, timeout, poll_s)
        except BaseException:
            self.stop()
            raise

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far, from /proc (Linux)."""
        assert self.proc is not None, "start() the service first"
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait(self) -> int:
        """Blocks until the server exits (Ctrl-C raises KeyboardInterrupt here); returns its status."""
        assert self.proc is not None, "start() the service first"
        return self.proc.wait()

    def stop(self, grace_s: float = 10) -> None:
        """SIGTERM to the server's process group, SIGKILL if it has not exited after ``grace_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=grace_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> LocalService:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["HOST", "LocalService", "free_port"]
