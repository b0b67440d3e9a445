"""A loopback TCP proxy for fault tests, on its own thread: it can hold back what one side
sends (a replication link that lags: the data never reaches the replica's kernel), drop every
connection, and point new connections at another port (a virtual IP moving on failover)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.holding = False  # hold back what the target sends to the client
        self.delay_s = 0.0  # pass on what the target sends only after this long (a slow link)
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.port: int = self._run(self._listen())

    def _run(self, coro: object) -> int:
        future: Future[int] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(10)

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.close()
            return
        self._writers |= {c_writer, s_writer}
        await asyncio.gather(self._pump(c_reader, s_writer, upstream=True),
                             self._pump(s_reader, c_writer, upstream=False),
                             return_exceptions=True)
        for w in (c_writer, s_writer):
            self._writers.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    upstream: bool) -> None:
        try:
            while data := await reader.read(65536):
                if not upstream and self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if upstream or not self.holding:
                    writer.write(data)
                    await writer.drain()
                # else: held back, and lost when the connections are dropped
        finally:
            writer.close()

    def drop(self) -> None:
        """Close every connection; whatever was held back is gone."""
        async def close_all() -> int:
            for w in list(self._writers):
                w.transport.abort()
            return 0

        self._run(close_all())

    def retarget(self, port: int) -> None:
        self.target_port = port
        self.drop()

    def close(self) -> None:
        async def stop() -> int:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            return 0

        self._run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
