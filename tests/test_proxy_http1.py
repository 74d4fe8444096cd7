"""The reference proxy's HTTP/1.1 layer: message encoding, and a real loopback exchange."""

import asyncio

from multidict import CIMultiDict

from harness.proxy import http1
from harness.proxy.http1 import ClientConnection, IncomingRequest, Pool, Reply


def test_replies_and_requests_are_encoded_with_lengths():
    reply = Reply(201, CIMultiDict([("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]), b"hi")
    raw = http1.encode_reply(reply, keep_alive=False, head=False)
    assert raw.startswith(b"HTTP/1.1 201 Created\r\n")
    assert b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n" in raw
    assert b"Content-Length: 2\r\nConnection: close\r\n\r\nhi" in raw
    assert http1.encode_reply(reply, keep_alive=True, head=True).endswith(b"\r\n\r\n")
    request = http1.encode_request("POST", "/cart?x=1", "127.0.0.1:81", {"A": "b"}, b"")
    assert request == (b"POST /cart?x=1 HTTP/1.1\r\nHost: 127.0.0.1:81\r\nA: b\r\n"
                       b"Content-Length: 0\r\n\r\n")


def test_incoming_request_cookies_host_and_path():
    headers = CIMultiDict([("Host", "shop.example:8080"), ("Cookie", "a=1; b=\"2\""),
                           ("Cookie", "a=9; c=3")])
    request = IncomingRequest("GET", "/cart?item=tea", headers, b"", "127.0.0.1")
    assert request.cookies == {"a": "1", "b": "2", "c": "3"}  # the first of a name wins
    assert request.host == "shop.example" and request.path == "/cart"
    v6 = IncomingRequest("GET", "/", CIMultiDict({"Host": "[::1]"}), b"", "::1")
    assert v6.host == "[::1]"


async def _exchange() -> tuple[list, list]:
    """A server built from ClientConnection, asked through the Pool and by raw bytes."""
    seen = []

    async def handler(request: IncomingRequest) -> Reply:
        seen.append((request.method, request.target, request.body, request.peer))
        return Reply(200, CIMultiDict({"X-Echo": request.target}), request.body or b"ok")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientConnection(handler, max_body=10),
                                      "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool()
    results = []
    try:
        for body in (b"", b"abc", b""):  # one pooled connection, kept alive
            answer = await pool.request("127.0.0.1", port, "POST" if body else "GET", "/p",
                                        {}, body)
            results.append((answer.status, answer.payload))
        assert len(pool.idle[("127.0.0.1", port)]) == 1
        # Two pipelined requests, then one with a body over max_body (answered, then the
        # connection closes); garbage on another connection gets a 400.
        for data in (b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890",
                     b"BROKEN\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            results.append(await asyncio.wait_for(reader.read(), 5))
            writer.close()
    finally:
        pool.close()
        server.close()
    return seen, results


def test_pool_keeps_alive_and_server_answers_in_order():
    seen, results = asyncio.run(_exchange())
    assert results[:3] == [(200, b"ok"), (200, b"abc"), (200, b"ok")]
    raw = results[3]
    assert raw.index(b"X-Echo: /a") < raw.index(b"X-Echo: /b") < raw.index(b"HTTP/1.1 413")
    assert results[4].startswith(b"HTTP/1.1 400")
    assert [s[1] for s in seen] == ["/p", "/p", "/p", "/a", "/b"]
