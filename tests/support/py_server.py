"""A peer no one here wrote: Python `websockets` as the server for integration tests.

Prints its ws:// URL, then serves until killed. With `--unix PATH` it listens on that Unix
domain socket instead and prints ws+unix://PATH:. What a connection gets depends on its path:
  /echo            echo every message with its type
  /close/CODE      send one message "hello", then close with CODE and reason "bye from python"
  /drop            send one message "hello", then drop the TCP connection (no close frame)
  /violate         send one message "hello" and, in the same write, a frame with the reserved
                   opcode 3 (RFC 6455 §5.2: the client must fail with 1002); then echo
  /subprotocol     echo; the server selects the first subprotocol offered
  /header/NAME     send the value of request header NAME (or "<none>"), then echo
  /binary          send 20 bytes 0..19 as a binary message, then echo
  /extensions      send the Sec-WebSocket-Extensions it answered (or "<none>"), then echo
  /bomb/MIB        (permessage-deflate negotiated) send one binary message of MIB MiB of zeros,
                   deflated (about 1 KiB on the wire per MiB), then echo
  /big/MIB         send one binary message of MIB MiB in 1 MiB fragments (never held whole:
                   bytes 0..255 repeated), then echo
  /bigtext/KIB     send one text message of KIB KiB of "añ€😀" repeated, in 7-byte fragments
                   (code points cut), then echo
  /ping/TEXT       send a ping with TEXT (percent-decoded); once its pong came, a pong "unasked"
                   (answering nothing) and the message "pong TEXT" ("no pong" after 5 s); then echo
  /pings/N         send N pings "p0".."pN-1" back to back; once all are answered, the message
                   "answered N"; then echo
Paths answered with a redirect instead of the upgrade (an HTTP server in front of the
WebSocket one, on the same origin):
  /to/STATUS/LOC   answer STATUS with Location LOC (percent-decoded: /to/301/ws%3A%2F%2F...)
  /loop/a, /loop/b answer 302 with Location /loop/b, /loop/a
  /chain/N         answer 302 with Location /chain/N-1; /chain/0 with /echo
With `--tls CERT KEY` it serves wss:// with that certificate (`--tls12` after them: TLS 1.2 at
most), and:
  /tls             send "reused=0|1 VERSION": whether the TLS session was resumed, then echo
Run with /usr/bin/python3 (Debian's python3-websockets).
"""
import asyncio
import http
import ssl
import struct
import sys
import urllib.parse
import zlib

import websockets


def raw_frame(first_byte, payload):
    """One server frame (unmasked): FIN/opcode byte, length, payload."""
    n = len(payload)
    if n < 126:
        return bytes([first_byte, n]) + payload
    if n < 65536:
        return bytes([first_byte, 126]) + struct.pack("!H", n) + payload
    return bytes([first_byte, 127]) + struct.pack("!Q", n) + payload


def redirect(path, request_headers):
    parts = path.split("/")
    if path.startswith("/to/") and len(parts) >= 4:
        location = urllib.parse.unquote("/".join(parts[3:]))
        return http.HTTPStatus(int(parts[2])), [("Location", location)], b""
    if path in ("/loop/a", "/loop/b"):
        return http.HTTPStatus.FOUND, [("Location", "/loop/b" if path == "/loop/a" else "/loop/a")], b""
    if path.startswith("/chain/"):
        n = int(parts[2])
        return http.HTTPStatus.FOUND, [("Location", "/chain/%d" % (n - 1) if n > 0 else "/echo")], b""
    return None


async def handler(ws, path=None):
    path = path if path is not None else ws.path
    if path.startswith("/close/"):
        await ws.send("hello")
        await ws.close(code=int(path.split("/")[2]), reason="bye from python")
        return
    if path == "/drop":
        await ws.send("hello")
        ws.transport.abort()
        return
    if path == "/violate":
        # Written below websockets, which would never send such a frame itself.
        ws.transport.write(b"\x81\x05hello" + b"\x83\x00")
    if path == "/headers":
        await ws.send(ws.request_headers.get("X-Test", "<none>"))
    if path == "/binary":
        await ws.send(bytes(range(20)))
    if path == "/extensions":
        await ws.send(ws.response_headers.get("Sec-WebSocket-Extensions", "<none>"))
    if path.startswith("/bomb/"):
        # Written below websockets: one frame, FIN + RSV1 + binary, 64-bit length.
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(1 << 20)
        body = b"".join(deflater.compress(zeros) for _ in range(int(path.split("/")[2])))
        body += deflater.flush(zlib.Z_SYNC_FLUSH)
        body = body[:-4]  # RFC 7692 §7.2.1: without the 00 00 ff ff of the flush
        ws.transport.write(b"\xc2\x7f" + struct.pack("!Q", len(body)) + body)
    if path.startswith("/big/"):
        chunk = bytes(range(256)) * 4096
        await ws.send(chunk for _ in range(int(path.split("/")[2])))
    if path.startswith("/bigtext/"):
        # Written below websockets (which fragments text only between code points).
        size = 1024 * int(path.split("/")[2])
        text = ("a\u00f1\u20ac\U0001f600" * (size // 10 + 1)).encode()[: size - size % 10]
        pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
        frames = [raw_frame(0x01 if i == 0 else 0x00, p) for i, p in enumerate(pieces[:-1])]
        ws.transport.write(b"".join(frames) + raw_frame(0x80 if pieces[:-1] else 0x81, pieces[-1]))
    if path == "/tls":
        tls = ws.transport.get_extra_info("ssl_object")
        await ws.send(f"reused={int(tls.session_reused)} {tls.version()}")
    if path.startswith("/ping/"):
        text = urllib.parse.unquote(path[len("/ping/"):])
        waiter = await ws.ping(text)
        try:
            await asyncio.wait_for(waiter, 5)
            await ws.pong("unasked")
            await ws.send("pong " + text)
        except asyncio.TimeoutError:
            await ws.send("no pong")
    if path.startswith("/pings/"):
        n = int(path.split("/")[2])
        waiters = [await ws.ping("p%d" % i) for i in range(n)]
        await asyncio.gather(*waiters)
        await ws.send("answered %d" % n)
    if path.startswith("/header/"):
        await ws.send(ws.request_headers.get(path[len("/header/"):], "<none>"))
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass  # the client failed or dropped the connection: what some tests do


async def main():
    options = dict(subprotocols=["chat.v2", "chat.v1"], max_size=2**24, process_request=redirect)
    if len(sys.argv) == 3 and sys.argv[1] == "--unix":
        async with websockets.unix_serve(handler, sys.argv[2], **options):
            print(f"ws+unix://{sys.argv[2]}:", flush=True)
            await asyncio.Future()
    scheme = "ws"
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        if sys.argv[4:] == ["--tls12"]:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        options["ssl"] = context
        scheme = "wss"
    async with websockets.serve(handler, "127.0.0.1", 0, **options) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"{scheme}://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
