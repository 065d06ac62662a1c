"""A hostile AMI peer on 127.0.0.1: it greets like Asterisk's manager and refuses every action, echoing the
action's own lines (the Login's ``Secret:`` among them) in its ``Message``, as a misbehaving vendor might."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

BANNER = b"Asterisk Call Manager/5.0.2\r\n"


class EchoingAmi:
    """Listens on ``127.0.0.1:port`` until :meth:`stop`; one thread per connection."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, name="echoing-ami", daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self._connections.append(connection)
            thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.sendall(BANNER)
            pending = b""
            while chunk := connection.recv(4096):
                pending += chunk
                while b"\r\n\r\n" in pending:
                    action, pending = pending.split(b"\r\n\r\n", 1)
                    lines = action.decode("utf-8", "replace").split("\r\n")
                    action_id = next((line[10:] for line in lines if line.startswith("ActionID: ")), "")
                    echoed = "; ".join(line for line in lines if not line.startswith("ActionID: "))
                    answer = f"Response: Error\r\nActionID: {action_id}\r\nMessage: refused ({echoed})\r\n\r\n"
                    connection.sendall(answer.encode())

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept: closing alone does not
        self._server.close()
        self._accepting.join(5)
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)


@contextlib.contextmanager
def echoing_ami() -> Iterator[EchoingAmi]:
    peer = EchoingAmi()
    try:
        yield peer
    finally:
        peer.stop()
