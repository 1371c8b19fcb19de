"""A TCP relay whose first bytes from the client arrive late, like a request on a slow link."""

from __future__ import annotations

import socket
import threading
import time


class SlowStartLink:
    """Relay 127.0.0.1:<port> to ``upstream``, holding what a client sends in its first ``hold`` seconds.

    Everything the client sends during that window reaches the server at the
    window's end; later bytes, and every byte back to the client, pass at once.
    So a call started on a fresh connection reaches the server ``hold`` seconds
    late, while its cancellation, sent later, is not delayed.
    """

    def __init__(self, upstream: tuple[str, int], *, hold: float) -> None:
        self._upstream = upstream
        self._hold = hold
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            accepted = time.monotonic()
            server = socket.create_connection(self._upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, accepted + self._hold), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, 0.0), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, release_at: float) -> None:
        try:
            while chunk := source.recv(65536):
                time.sleep(max(release_at - time.monotonic(), 0.0))
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
