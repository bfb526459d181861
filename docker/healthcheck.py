#!/usr/bin/env python3
"""Container health probe: exit 0 when the service's ``GET /readyz`` answers 200, else 1.

Used by the service image's ``HEALTHCHECK`` and by docker-compose.yml. Standard library only (the
slim image has no curl). Asks ``http://127.0.0.1:$UVICORN_PORT/readyz`` (port 8000 by default);
``DISTILLREC_HEALTHCHECK_URL`` overrides the whole URL.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = os.environ.get("DISTILLREC_HEALTHCHECK_URL") or f"http://127.0.0.1:{os.environ.get('UVICORN_PORT', '8000')}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            body = json.load(reply)
    except urllib.error.HTTPError as exc:  # 503: up, but no bundle loaded; the body says why
        print(f"not ready: {url} answered {exc.code}: {exc.read()[:300].decode(errors='replace')}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1
    print("ready: " + ", ".join(b["name"] for b in body.get("loaded", [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
