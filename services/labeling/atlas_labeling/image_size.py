"""Pixel size of an image read from its header (PNG, JPEG, GIF, BMP, WebP), so items record
the size their boxes are measured in without decoding the image."""

from __future__ import annotations

import struct


class UnknownImageFormat(ValueError):
    pass


def image_size(head: bytes) -> tuple[int, int]:
    """(width, height) from the first bytes of an image file.

    Raises:
        UnknownImageFormat: not one of the supported formats, or the header is cut short.
    """
    try:
        return _size(head)
    except (struct.error, IndexError):
        raise UnknownImageFormat("image header is truncated") from None


def _size(head: bytes) -> tuple[int, int]:
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", head[6:10])
        return width, height
    if head[:2] == b"BM":
        width, height = struct.unpack("<ii", head[18:26])
        return width, abs(height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(head)
    if head[:2] == b"\xff\xd8":
        return _jpeg(head)
    raise UnknownImageFormat("not a PNG, JPEG, GIF, BMP or WebP image")


def _webp(head: bytes) -> tuple[int, int]:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        b = head[21:25]
        width = 1 + (((b[1] & 0x3F) << 8) | b[0])
        height = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return width, height
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return width, height
    raise UnknownImageFormat("unsupported WebP variant")


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(head: bytes) -> tuple[int, int]:
    pos = 2
    while True:
        while head[pos] != 0xFF:
            pos += 1
        while head[pos] == 0xFF:
            pos += 1
        marker = head[pos]
        pos += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length
        (length,) = struct.unpack(">H", head[pos : pos + 2])
        if marker in _SOF:
            height, width = struct.unpack(">HH", head[pos + 3 : pos + 7])
            return width, height
        pos += length
