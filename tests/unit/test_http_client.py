"""The local JSON client: readiness polling survives 503s and reports a dead service; errors name the call."""

import http.server
import json
import subprocess
import sys
import threading

import pytest

from distillrec.http_client import request_json, wait_until_ready


def _serve(statuses: list[int]):
    """A 127.0.0.1 server answering each GET with the next status of ``statuses`` (then 200)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status = statuses.pop(0) if statuses else 200
            body = json.dumps({"status": "ok" if status == 200 else "loading"}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_wait_until_ready_keeps_polling_through_503_and_request_json_names_errors():
    server, base = _serve([503, 503])
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert wait_until_ready(base, alive, timeout=10, poll_s=0.01) == {"status": "ok"}
        failing, failing_base = _serve([404])
        with pytest.raises(RuntimeError, match=r"GET .*/x answered 404: .*loading"):
            request_json("GET", failing_base + "/x")
        failing.shutdown()
    finally:
        alive.kill()
        server.shutdown()


def test_wait_until_ready_reports_a_service_that_exited():
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"], stderr=subprocess.PIPE, text=True)
    dead.wait()
    with pytest.raises(RuntimeError, match="exited with status 3"):
        wait_until_ready("http://127.0.0.1:9", dead, timeout=5, poll_s=0.01)
