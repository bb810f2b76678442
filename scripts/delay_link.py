#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A link with a fixed delay, in userspace (netem is not always at hand): a
TCP forwarder on loopback that holds every chunk DELAY ms in each
direction, in order, before passing it on. A delay, not a rate limit: a
chunk's wait starts when it arrives, whatever is still queued before it.

The TCP handshake with the forwarder is local and instant, so the first
round trip a real link costs is added on: bytes the client sends in the
first 2 x DELAY ms of a connection leave as if they were sent at its end
(a connection costs one round trip before its first byte, as over a real
link). An end of stream (FIN) is delayed like data.

    delay_link.py --delay-ms 20 --to 127.0.0.1:PORT [--max-seconds 600]

prints `127.0.0.1:PORT` (where it listens) on the first line of stdout and
forwards until killed, or for --max-seconds at most. `make bench` runs
it in a process of its own."""
import argparse
import asyncio
import sys

CHUNK = 64 * 1024


async def pipe(reader, writer, delay, not_before):
    """Copy reader to writer, each chunk `delay` seconds later than it came
    (and no earlier than `not_before` + `delay`), in order, then the EOF."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def receive():
        try:
            while True:
                data = await reader.read(CHUNK)
                queue.put_nowait((max(loop.time(), not_before) + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((loop.time() + delay, b""))

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError):
                return

    receiver = asyncio.ensure_future(receive())
    try:
        await send()
    finally:
        receiver.cancel()


async def serve(delay, upstream, ready):
    host, port = upstream.rsplit(":", 1)
    loop = asyncio.get_running_loop()

    async def connection(c_reader, c_writer):
        accepted = loop.time()
        try:
            s_reader, s_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            c_writer.close()
            return
        try:
            await asyncio.gather(
                # the client's first bytes wait for the handshake's round trip
                pipe(c_reader, s_writer, delay, accepted + 2 * delay),
                pipe(s_reader, c_writer, delay, accepted),
            )
        finally:
            for w in (s_writer, c_writer):
                w.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    ready(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, required=True, help="one way")
    ap.add_argument("--to", required=True, help="HOST:PORT on loopback")
    ap.add_argument("--max-seconds", type=float, default=600, help="stop after this long")
    a = ap.parse_args()
    if a.to.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        sys.exit("delay_link: --to must be a loopback address")

    def ready(addr):
        print(addr, flush=True)

    try:
        asyncio.run(asyncio.wait_for(serve(a.delay_ms / 1000, a.to, ready), a.max_seconds))
    except (asyncio.TimeoutError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
