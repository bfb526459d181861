"""Teacher endpoints: other distillrec services (or anything speaking its ``POST /v1/recommend``).

They are configuration only (``DISTILLREC_TEACHER_ENDPOINTS``), never request input, so a client
can name an endpoint but never make the service call an address of its choosing. One call,
:func:`call_recommend`, is what both ``POST /v1/compare`` and shadow mode use: it never raises for
a failing endpoint, it classifies the failure (``timeout``, ``unreachable``, ``http_<status>``,
``bad_reply``) so that callers count it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from service.http1 import Http1Pool

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FORMAT = "name=http://host:port[#model], comma-separated, e.g. teacher=http://teacher:8000#ml100k-teacher"


@dataclass(frozen=True)
class Endpoint:
    """A configured teacher endpoint: its name, base URL and the bundle to ask for (None: its default)."""

    name: str
    url: str
    model: str | None = None

    def body(self, user_id: str, k: int, **options) -> dict:
        """The ``POST /v1/recommend`` body for this endpoint (``model`` only when configured)."""
        body = {"user_id": user_id, "k": k, **options}
        if self.model:
            body["model"] = self.model
        return body


def parse_endpoint(spec: str, setting: str = "DISTILLREC_TEACHER_ENDPOINTS") -> Endpoint:
    """One ``name=http://host:port[/prefix][#model]`` entry; ValueError naming the entry and the fix."""
    name, sep, rest = spec.strip().partition("=")
    name, rest = name.strip(), rest.strip()
    if not sep or not name or not rest:
        raise ValueError(f"{setting}: entry {spec.strip()!r} is not 'name=URL'. Expected {FORMAT}.")
    if not NAME_RE.match(name):
        raise ValueError(f"{setting}: endpoint name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    url, _, model = rest.partition("#")
    return Endpoint(name, parse_base_url(url, f"{setting} entry {name!r}"), model.strip() or None)


def parse_base_url(url: str, where: str) -> str:
    """An ``http(s)://host[:port][/prefix]`` base URL without query or fragment, trailing '/' removed."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where}: {url!r} is not an http:// or https:// URL with a host (e.g. http://teacher:8000).")
    if parts.query or parts.username or parts.password:
        raise ValueError(f"{where}: {url!r} must not carry a query string or credentials; give the service's base URL.")
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValueError(f"{where}: {url!r} has an invalid port.") from None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_endpoints(text: str | None, setting: str = "DISTILLREC_TEACHER_ENDPOINTS") -> dict[str, Endpoint]:
    """The endpoints of a ``DISTILLREC_TEACHER_ENDPOINTS`` value, by name (empty for an empty value)."""
    out: dict[str, Endpoint] = {}
    for spec in (text or "").split(","):
        if not spec.strip():
            continue
        ep = parse_endpoint(spec, setting)
        if ep.name in out:
            raise ValueError(f"{setting}: endpoint name {ep.name!r} is given twice; names must be unique.")
        out[ep.name] = ep
    return out


@dataclass
class Reply:
    """The outcome of one remote ``POST /v1/recommend``: seconds end to end, item ids or an error class."""

    seconds: float
    items: list[str] | None = None
    error: str | None = None  # timeout | unreachable | http_<status> | bad_reply


async def call_recommend(pool: Http1Pool, body: dict, timeout: float) -> Reply:
    """``POST /v1/recommend`` with ``body`` through ``pool``; never raises for a failing endpoint (see :class:`Reply`).

    The time runs from before the request is written until the reply's body has been read.
    """
    payload = json.dumps(body).encode()
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            status, raw = await pool.post("/v1/recommend", payload)
        seconds = time.perf_counter() - t0
        if status != 200:
            return Reply(seconds, error=f"http_{status}")
        return Reply(seconds, items=[it["item_id"] for it in json.loads(raw)["items"]])
    except TimeoutError:  # before OSError: TimeoutError is one
        return Reply(time.perf_counter() - t0, error="timeout")
    except (OSError, asyncio.IncompleteReadError):
        return Reply(time.perf_counter() - t0, error="unreachable")
    except (ValueError, KeyError, TypeError):  # not HTTP, or not the JSON shape of a distillrec reply
        return Reply(time.perf_counter() - t0, error="bad_reply")


async def probe(client: httpx.AsyncClient, ep: Endpoint, timeout: float) -> dict:
    """Reachability of one endpoint: ``GET {url}/readyz`` (200 = reachable and ready)."""
    t0 = time.perf_counter()
    try:
        resp = await client.get(f"{ep.url}/readyz", timeout=timeout)
        reachable, ready, problem = True, resp.status_code == 200, None if resp.status_code == 200 else f"/readyz answered {resp.status_code}"
    except httpx.TimeoutException:
        reachable, ready, problem = False, False, f"no answer within {timeout:g} s"
    except httpx.TransportError as exc:
        reachable, ready, problem = False, False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    took = round((time.perf_counter() - t0) * 1e3, 3)
    return {"name": ep.name, "url": ep.url, "model": ep.model, "reachable": reachable, "ready": ready, "probe_ms": took, "problem": problem}


async def probe_all(endpoints: dict[str, Endpoint], timeout: float) -> list[dict]:
    """:func:`probe` of every endpoint, concurrently, in name order."""
    if not endpoints:
        return []
    async with httpx.AsyncClient(trust_env=False) as client:
        return list(await asyncio.gather(*(probe(client, endpoints[n], timeout) for n in sorted(endpoints))))
