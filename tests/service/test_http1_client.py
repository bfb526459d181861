"""The small keep-alive HTTP/1.1 client of teacher endpoints, against raw asyncio servers on 127.0.0.1:
content-length and chunked replies, connection reuse, a stale connection retried, and every failure
classified (timeout, unreachable, http_<status>, bad_reply) instead of raised."""

from __future__ import annotations

import asyncio
import json
import socket

from service.http1 import Http1Pool
from service.remote import call_recommend

REPLY = json.dumps({"items": [{"item_id": "7", "score": 1.0}, {"item_id": "3", "score": 0.5}]}).encode()


async def _server(respond):
    """A 127.0.0.1 server; ``respond(request_number, body) -> bytes | None`` (None: close the connection)."""
    seen = {"connections": 0, "requests": 0, "bodies": []}

    async def handle(reader, writer):
        seen["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                seen["requests"] += 1
                seen["bodies"].append(json.loads(body))
                out = await respond(seen["requests"], head)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen


def _ok(body: bytes = REPLY, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_keep_alive_reuse_chunked_and_prefix():
    async def respond(n, head):
        assert head.startswith(b"POST /base/v1/recommend HTTP/1.1")
        if n == 2:  # chunked, in two chunks
            half = len(REPLY) // 2
            return (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                + b"%x\r\n" % half
                + REPLY[:half]
                + b"\r\n"
                + b"%x\r\n" % (len(REPLY) - half)
                + REPLY[half:]
                + b"\r\n0\r\n\r\n"
            )
        return _ok()

    async def scenario():
        server, url, seen = await _server(respond)
        pool = Http1Pool(url + "/base/")
        replies = [await call_recommend(pool, {"user_id": str(i), "k": 2}, 2.0) for i in range(3)]
        pool.close()
        server.close()
        return replies, seen, pool.opened

    replies, seen, opened = asyncio.run(scenario())
    assert [r.items for r in replies] == [["7", "3"]] * 3 and all(r.error is None and r.seconds > 0 for r in replies)
    assert seen["connections"] == 1 and opened == 1  # one connection, kept alive across all three
    assert [b["user_id"] for b in seen["bodies"]] == ["0", "1", "2"]


def test_a_connection_the_server_closed_is_retried_once():
    async def respond(n, head):
        return _ok(extra="connection: keep-alive\r\n") if n != 2 else None  # the 2nd request finds the connection closed

    async def scenario():
        server, url, seen = await _server(respond)
        pool = Http1Pool(url)
        first = await call_recommend(pool, {"user_id": "1", "k": 2}, 2.0)
        second = await call_recommend(pool, {"user_id": "2", "k": 2}, 2.0)
        pool.close()
        server.close()
        return first, second, pool.opened

    first, second, opened = asyncio.run(scenario())
    assert first.items == second.items == ["7", "3"] and opened == 2


def test_failures_are_classified_not_raised():
    async def slow(n, head):
        await asyncio.sleep(3.0)
        return _ok()

    async def error(n, head):
        return b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}"

    async def garbage(n, head):
        return b"SSH-2.0-OpenSSH\r\n\r\n"

    async def not_json(n, head):
        return _ok(b"<html>")

    async def scenario():
        out = {}
        for name, respond in (("slow", slow), ("error", error), ("garbage", garbage), ("not_json", not_json)):
            server, url, _ = await _server(respond)
            pool = Http1Pool(url)
            out[name] = await call_recommend(pool, {"user_id": "1", "k": 2}, 0.2 if name == "slow" else 5.0)  # generous unless timing out is the point
            pool.close()
            server.close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        out["down"] = await call_recommend(Http1Pool(f"http://127.0.0.1:{closed_port}"), {"user_id": "1", "k": 2}, 5.0)
        return out

    out = asyncio.run(scenario())
    assert {name: r.error for name, r in out.items()} == {
        "slow": "timeout",
        "error": "http_503",
        "garbage": "bad_reply",
        "not_json": "bad_reply",
        "down": "unreachable",
    }
    assert 0.15 < out["slow"].seconds < 2.5 and all(r.items is None for r in out.values())


def test_idle_connections_the_server_closed_are_not_reused():
    async def scenario():
        async def handle(reader, writer):  # answers once, then closes the connection without saying so
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
            writer.write(_ok())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        pool = Http1Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        first = await asyncio.gather(*(call_recommend(pool, {"user_id": str(i), "k": 2}, 2.0) for i in range(2)))  # two idle connections
        await asyncio.sleep(0.1)  # the server's FINs arrive: both idle connections are at EOF
        third = await call_recommend(pool, {"user_id": "3", "k": 2}, 2.0)
        pool.close()
        server.close()
        return first, third, pool.opened

    first, third, opened = asyncio.run(scenario())
    assert all(r.items == ["7", "3"] for r in first) and third.items == ["7", "3"] and third.error is None
    assert opened == 3  # two, then a fresh one: neither closed connection was reused
