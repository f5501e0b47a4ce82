"""A peer no one here wrote: the Python `websockets` client, for bench/run. Same JSON lines
as `wscengine bench feed|echo`; compression off (the engine's default). Run with
/usr/bin/python3 (Debian's python3-websockets).
    py_client.py feed URL N
    py_client.py echo URL N SIZE
"""
import asyncio
import json
import math
import sys
import time

import websockets


async def main(kind, url, count, size):
    async with websockets.connect(url, compression=None, max_size=64 << 20, max_queue=None) as ws:
        if kind == "feed":
            received = nbytes = 0
            first = 0.0
            async for message in ws:
                if received == 0:
                    first = time.perf_counter()
                received += 1
                nbytes += len(message)
                if received == count:
                    break
            secs = time.perf_counter() - first
            print(json.dumps({"count": count, "bytes": nbytes, "secs": secs}), flush=True)
        else:
            payload = "e" * size
            rtts = []
            start = time.perf_counter()
            for _ in range(count):
                t0 = time.perf_counter()
                await ws.send(payload)
                await ws.recv()
                rtts.append((time.perf_counter() - t0) * 1e6)
            secs = time.perf_counter() - start
            rtts.sort()
            pct = lambda p: rtts[min(len(rtts) - 1, math.ceil(p / 100 * len(rtts)) - 1)]
            print(json.dumps({"count": count, "secs": secs, "p50_us": pct(50), "p90_us": pct(90),
                              "p99_us": pct(99), "max_us": rtts[-1]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 64))
