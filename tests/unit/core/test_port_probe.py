"""`atlas up` right after `atlas down`: the connections the stopped suite leaves in TIME_WAIT
do not make its ports look taken; a live listener still does."""

from __future__ import annotations

import socket

from atlas_core.launcher._objectstore import port_is_free


def test_time_wait_connections_do_not_hold_a_port_but_a_listener_does() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    assert not port_is_free(port)
    accepted.close()  # the server side closes first: its end waits in TIME_WAIT on `port`
    client.recv(1)
    client.close()
    listener.close()
    assert port_is_free(port)
