#!/usr/bin/env python3
"""delayproxy.py - fallback latency proxy for the benchmarks, used only when
the project's tests/tools/faultproxy is not built: forwards TCP connections
from 127.0.0.1 to a target, delaying every chunk by --delay-ms in each
direction (bandwidth is not limited). Same interface as faultproxy:

  delayproxy.py --target HOST:PORT --delay-ms MS

prints "PORT=n" once listening, then serves until killed.
"""
import argparse
import asyncio
import socket
import sys

QUEUE_CHUNKS = 512


async def pump(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(QUEUE_CHUNKS)

    async def inbound():
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def outbound():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(inbound(), outbound())
    except (ConnectionError, OSError):
        writer.close()


async def serve(host, port, delay):
    async def handle(creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_connection(host, port)
        except OSError:
            cwriter.close()
            return
        for w in (cwriter, swriter):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                  socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(creader, swriter, delay),
                             pump(sreader, cwriter, delay),
                             return_exceptions=True)
        cwriter.close()
        swriter.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print("PORT=%d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True)
    p.add_argument("--delay-ms", type=int, default=10)
    o = p.parse_args()
    host, _, port = o.target.rpartition(":")
    asyncio.run(serve(host, int(port), o.delay_ms / 1000.0))


if __name__ == "__main__":
    sys.exit(main())
