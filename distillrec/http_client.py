"""The small JSON-over-HTTP client the quickstart and the service benchmark use against a local service."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request


def request_json(method: str, url: str, body: dict | None = None, timeout: float = 30.0) -> dict:
    """``method url`` with an optional JSON body → the decoded JSON reply.

    Raises :class:`RuntimeError` naming the call, the status and the service's error body on an HTTP
    error status; connection errors propagate as ``urllib.error.URLError`` / ``OSError``.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {url} answered {exc.code}: {exc.read().decode(errors='replace')}") from None


def wait_until_ready(base: str, proc: subprocess.Popen, timeout: float = 120.0, poll_s: float = 0.2) -> dict:
    """Polls ``GET base/readyz`` until it answers 200 and returns its body.

    Keeps polling while the port is closed or the service answers 503 (still loading its bundles);
    raises :class:`RuntimeError` when ``proc`` exits first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"the service exited with status {proc.returncode} before it was ready {detail}".rstrip())
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as reply:
                return json.load(reply)
        except (urllib.error.URLError, OSError):  # HTTPError (503 while loading) is a URLError
            time.sleep(poll_s)
    raise RuntimeError(f"the service at {base} was not ready within {timeout:.0f} s")


__all__ = ["request_json", "wait_until_ready"]
