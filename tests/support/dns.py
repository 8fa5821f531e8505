"""A tiny authoritative DNS responder on a loopback UDP port, for tests.

It answers A queries for the names it was given (several addresses per name, as a
Kubernetes headless Service's DNS does), NOERROR with no answers for other types of a known
name (AAAA, TXT, SRV) and NXDOMAIN otherwise. gRPC's c-ares resolver can be pointed at it
with the authority form of a target, ``dns://127.0.0.1:PORT/name:port``, so no /etc/hosts
or system resolver change is needed.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

_TYPE_A = 1
_CLASS_IN = 1


def _question(packet: bytes) -> tuple[str, int, int] | None:
    """(lower-case name, qtype, end offset of the question) of a query's first question."""
    labels, pos = [], 12
    while pos < len(packet):
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        labels.append(packet[pos : pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(packet):
        return None
    qtype = struct.unpack_from("!H", packet, pos)[0]
    return ".".join(labels).lower(), qtype, pos + 4


def answer(packet: bytes, records: Mapping[str, Sequence[str]]) -> bytes | None:
    """The response to one query packet (None for a packet that is not a query)."""
    if len(packet) < 12:
        return None
    ident, flags, qdcount = struct.unpack_from("!HHH", packet)
    parsed = _question(packet)
    if flags & 0x8000 or qdcount < 1 or parsed is None:
        return None
    name, qtype, end = parsed
    addresses = records.get(name.rstrip("."))
    rcode = 3 if addresses is None else 0  # NXDOMAIN for names it does not serve
    body = b""
    count = 0
    if addresses is not None and qtype == _TYPE_A:
        for address in addresses:
            # 0xC00C: the owner name is the question's, by compression pointer
            body += struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, 5, 4)
            body += socket.inet_aton(address)
            count += 1
    # QR, authoritative, recursion desired as asked, recursion available
    out_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode
    header = struct.pack("!HHHHHH", ident, out_flags, 1, count, 0, 0)
    return header + packet[12:end] + body


@contextmanager
def dns_responder(records: Mapping[str, Sequence[str]]) -> Iterator[int]:
    """Serve ``records`` (lower-case name → IPv4 addresses) on 127.0.0.1; yields the UDP
    port. The mapping is read per query: a test changes it to add or remove a "pod"."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)  # so the thread sees the stop flag promptly
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                packet, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            response = answer(packet, records)
            if response is not None:
                sock.sendto(response, peer)

    thread = threading.Thread(target=serve, name="test-dns", daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
