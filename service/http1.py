"""A small HTTP/1.1 keep-alive client for JSON POSTs to configured endpoints (asyncio streams).

Shadow mode sends mirrors from inside the student's process, so the client's CPU time per request
is taken from the student. httpx costs about ten times more CPU per request than these few lines
(a pre-formatted request, a header read, a ``content-length`` or chunked body), which is what keeps
shadow mode's overhead small. Connections are kept open and reused; a reused connection the server
has closed meanwhile is retried once on a fresh one. Nothing here decides timeouts: callers wrap a
call in ``asyncio.timeout`` (a cancelled call closes its connection).
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

MAX_BODY = 16 * 2**20  # a recommendation reply is a few KiB; anything this large is not one


class BadReply(ValueError):
    """The peer answered something that is not a well-formed HTTP/1.x response."""


class Http1Pool:
    """Idle keep-alive connections to one ``http(s)://host:port[/prefix]`` base URL."""

    def __init__(self, base_url: str, max_idle: int = 64):
        parts = urlsplit(base_url)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.host, self.port = parts.hostname, parts.port or (443 if self.tls else 80)
        self.prefix, self.netloc, self.max_idle = parts.path.rstrip("/"), parts.netloc, max_idle
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0  # connections opened so far (for tests and diagnostics)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        self.opened += 1
        return await asyncio.open_connection(self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None)

    async def post(self, path: str, payload: bytes) -> tuple[int, bytes]:
        """``POST prefix+path`` with a JSON ``payload`` → (status, body)."""
        request = (
            f"POST {self.prefix}{path} HTTP/1.1\r\nhost: {self.netloc}\r\ncontent-type: application/json\r\n"
            f"accept: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        ).encode("latin-1") + payload
        for attempt in (0, 1):
            conn = self._idle_connection() if attempt == 0 else None
            reused = conn is not None
            reader, writer = conn or await self._connect()
            try:
                writer.write(request)
                status, body, keep = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError):
                writer.close()
                if reused:
                    self.close()  # the server closed an idle keep-alive connection; the other idle ones are as old
                    continue  # once more, on a new connection
                raise
            except BaseException:  # bad reply, timeout, cancellation: the connection's state is unknown
                writer.close()
                raise
            if keep and len(self.idle) < self.max_idle:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return status, body
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _idle_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The most recently used idle connection the server has not closed (as far as is known yet)."""
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof():
                return reader, writer
            writer.close()
        return None

    def close(self) -> None:
        while self.idle:
            self.idle.pop()[1].close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.x response."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadReply("response headers are too long") from None
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise BadReply(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if not 0 <= length <= MAX_BODY:
            raise BadReply(f"content-length {length} is out of range")
        body = await reader.readexactly(length)
    else:  # the body runs until the server closes the connection
        body, keep = await reader.read(MAX_BODY), False
    return int(rest[:3]), body, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip() or b"x", 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise BadReply("chunked body is too large")
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
