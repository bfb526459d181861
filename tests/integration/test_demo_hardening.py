"""The demo never leaves its server behind, never talks to a server it did not start, and says how to pick a port."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from distillrec.demo import _check_identity, _check_port_free, stop_on_signals
from distillrec.local_service import LocalService
from training.errors import DistillrecError


def test_a_port_in_use_is_named_with_the_fix():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DistillrecError, match=rf"port {port} on 127.0.0.1 is in use.*--port {port + 1}"):
            _check_port_free(port)
    _check_port_free(port)  # free again: no error


def _sleeping_service(tmp_path, port: int = 0, seconds: int = 30) -> LocalService:
    """A LocalService whose process is a sleeping child in its own process group (no real server)."""
    service = LocalService(tmp_path, port=port)
    service.proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"], start_new_session=True)
    return service


def test_a_server_that_refuses_the_demo_token_is_not_taken_for_the_demo(tmp_path):
    class Orphan(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Orphan)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service = _sleeping_service(tmp_path, port=server.server_address[1])
    try:
        with pytest.raises(DistillrecError, match="not the one just started.*--port"):
            _check_identity(service, "token")
    finally:
        server.shutdown()
        service.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_the_server_child_is_stopped_on_sigterm_and_sighup(sig, tmp_path):
    service = _sleeping_service(tmp_path, seconds=60)
    child = service.proc
    before = signal.getsignal(sig)
    with pytest.raises(SystemExit) as exited, stop_on_signals(service):
        os.kill(os.getpid(), sig)
        child.wait(timeout=5)  # the handler raises SystemExit before this returns
    assert exited.value.code == 128 + sig and child.poll() is not None, "the child was stopped"
    assert signal.getsignal(sig) == before, "the previous handler is restored"
