"""A peer no one here wrote: Hypercorn (Debian python3-hypercorn) serving WebSockets over
HTTP/2 (RFC 8441: it announces SETTINGS_ENABLE_CONNECT_PROTOCOL) and over HTTP/1.1.

    h2_server.py [--tls CERT KEY] [--no-h2] [--no-connect-protocol] [--max-streams N]

Prints its base URL (wss://127.0.0.1:PORT with --tls, else ws://127.0.0.1:PORT, where
HTTP/2 is spoken with prior knowledge), then serves until killed. With --no-h2 its ALPN
offers http/1.1 only (a server without WebSocket over HTTP/2); with --no-connect-protocol
it speaks HTTP/2 but its SETTINGS leave out SETTINGS_ENABLE_CONNECT_PROTOCOL (an HTTP/2
server without RFC 8441). --max-streams sets
SETTINGS_MAX_CONCURRENT_STREAMS (Hypercorn's default: 100).
What a WebSocket gets depends on its path:
  /echo            echo every message with its type
  /hello           send "hello" at once (in the packet of the answer, often), then echo
  /stats           send one text message, JSON: {"connections": N, "http_version": V}, N the
                   TCP connections the server has seen WebSockets on so far, V this one's
                   HTTP version ("2" or "1.1"), then echo
  /header/NAME     send the value of request header NAME (or "<none>"), then echo
  /subprotocol     accept with the first subprotocol offered, then echo
  /close/CODE      close with CODE at once (then wait for the client's answer)
  /refuse          refuse the WebSocket (the server answers 403)
  /scale           for `wscengine bench connections`: the text "broadcast" sends 64 bytes to
                   every /scale WebSocket open; anything else is echoed
  /silent          accept, then read nothing and send nothing
  /flood/N/SIZE    send N binary messages of SIZE bytes (byte i of message k: (k + i) % 251),
                   as fast as the stream's flow control lets, then echo
Run with /usr/bin/python3.
"""
import asyncio
import json
import socket
import ssl
import sys

import priority
from hypercorn.asyncio import serve
from hypercorn.config import Config

# Hypercorn 0.13 keeps each connection's streams in a python3-priority tree, whose
# default holds 1000: the 1000th stream then fails the whole connection, whatever
# h2_max_concurrent_streams says. This server's trees hold as many as it allows.
_tree_init = priority.PriorityTree.__init__


def _roomy_tree(self, maximum_streams=1000):
    _tree_init(self, maximum_streams=max(maximum_streams, 1 << 20))


priority.PriorityTree.__init__ = _roomy_tree

seen = set()  # (host, port) of every client connection a WebSocket came on
scale = set()  # the send functions of the /scale WebSockets open


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    seen.add(tuple(scope["client"]))
    path = scope["path"]
    await receive()  # websocket.connect
    if path == "/refuse":
        await send({"type": "websocket.close", "code": 1000})
        return
    accept = {"type": "websocket.accept"}
    if path == "/subprotocol" and scope.get("subprotocols"):
        accept["subprotocol"] = scope["subprotocols"][0]
    await send(accept)
    if path == "/silent":
        await asyncio.sleep(3600)
        return
    if path.startswith("/close/"):
        await send({"type": "websocket.close", "code": int(path[7:])})
        # Until the client's answer: Hypercorn drops the stream when the app returns, and
        # then fails the whole connection on the answer's DATA (see docs/adapters.md).
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    if path == "/hello":
        await send({"type": "websocket.send", "text": "hello"})
    elif path == "/stats":
        stats = {"connections": len(seen), "http_version": scope["http_version"]}
        await send({"type": "websocket.send", "text": json.dumps(stats)})
    elif path.startswith("/flood/"):
        count, size = (int(x) for x in path.split("/")[2:4])
        for k in range(count):
            payload = bytes((k + i) % 251 for i in range(251)) * (size // 251 + 1)
            await send({"type": "websocket.send", "bytes": payload[:size]})
    elif path.startswith("/header/"):
        wanted = path[8:].lower().encode()
        value = next((v.decode() for k, v in scope["headers"] if k == wanted), "<none>")
        await send({"type": "websocket.send", "text": value})
    if path == "/scale":
        scale.add(send)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            scale.discard(send)
            return
        if path == "/scale" and message.get("text") == "broadcast":
            for peer in list(scale):
                await peer({"type": "websocket.send", "text": "x" * 64})
            continue
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


def main():
    args = sys.argv[1:]
    config = Config()
    tls = None
    if "--tls" in args:
        at = args.index("--tls")
        tls = (args[at + 1], args[at + 2])
        config.certfile, config.keyfile = tls
    if "--no-h2" in args:
        config.alpn_protocols = ["http/1.1"]
    if "--no-connect-protocol" in args:
        import h2.settings
        from hypercorn.protocol.h2 import H2Protocol

        codes = h2.settings.SettingCodes
        plain_init = H2Protocol.__init__

        def init_without_connect(self, *args, **kwargs):
            plain_init(self, *args, **kwargs)
            self.connection.local_settings = h2.settings.Settings(
                client=False,
                initial_values={
                    codes.MAX_CONCURRENT_STREAMS: config.h2_max_concurrent_streams,
                    codes.MAX_HEADER_LIST_SIZE: config.h2_max_header_list_size,
                },
            )

        H2Protocol.__init__ = init_without_connect
    if "--max-streams" in args:
        config.h2_max_concurrent_streams = int(args[args.index("--max-streams") + 1])
    config.loglevel = "WARNING"
    config.accesslog = None
    config.websocket_ping_interval = None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.set_inheritable(True)
    config.bind = ["fd://%d" % listener.fileno()]
    port = listener.getsockname()[1]
    print("%s://127.0.0.1:%d" % ("wss" if tls else "ws", port), flush=True)
    asyncio.run(serve(app, config))


if __name__ == "__main__":
    main()
