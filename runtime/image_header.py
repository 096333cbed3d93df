"""The pixel size an encoded image announces, read from its header before anything is decoded.

A "decompression bomb" is a small file that decodes to gigabytes (a deflate TIFF of 20000x20000 is 1 MB; a
JPEG's size marker may sit after 64 KiB segments of padding). `cv2.imdecode` allocates the whole image before
anyone can look at it, so the size must be known first: `announced_size` reads it for every format OpenCV
decodes that has a readable header (PNG, JPEG at any offset, BMP, TIFF and BigTIFF, WebP, GIF, PNM/PAM,
JPEG 2000, Sun raster, Radiance HDR, PFM) and returns None for anything else: a caller then refuses the file
instead of decoding it blind. numpy + stdlib only.
"""
from __future__ import annotations

import re
import struct
from typing import Any, Callable, List, Optional, Tuple

Size = Tuple[int, int]  # (width, height)

_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _png(b: bytes) -> Optional[Size]:
    return struct.unpack(">II", b[16:24]) if len(b) >= 24 and b[12:16] == b"IHDR" else None


def _bmp(b: bytes) -> Optional[Size]:
    if len(b) < 26:
        return None
    if struct.unpack("<I", b[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", b[18:22])
    w, h = struct.unpack("<ii", b[18:26])
    return abs(w), abs(h)


def _jpeg(b: bytes) -> Optional[Size]:
    """Walk the segments over the whole file (padding segments may push the frame header anywhere)."""
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_SOF:
            if i + 9 > len(b):
                return None
            h, w = struct.unpack(">HH", b[i + 5:i + 9])
            return w, h
        if marker == 0xDA:  # scan data before any frame header: not a JPEG we can size
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            i += 2
            continue
        i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
    return None


def _tiff(b: bytes) -> Optional[Size]:
    """ImageWidth (256) and ImageLength (257) of the first IFD (the page imdecode reads); BigTIFF too."""
    end = "<" if b[:2] == b"II" else ">"
    big = struct.unpack(end + "H", b[2:4])[0] == 43
    try:
        if big:
            offset = struct.unpack(end + "Q", b[8:16])[0]
            count, entry, first = struct.unpack(end + "Q", b[offset:offset + 8])[0], 20, offset + 8
        else:
            offset = struct.unpack(end + "I", b[4:8])[0]
            count, entry, first = struct.unpack(end + "H", b[offset:offset + 2])[0], 12, offset + 2
        found = {}
        for k in range(min(count, 4096)):
            e = b[first + k * entry:first + (k + 1) * entry]
            tag, kind = struct.unpack(end + "HH", e[:4])
            if tag in (256, 257):
                value = e[12:] if big else e[8:]
                fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
                if fmt is None:
                    return None
                found[tag] = struct.unpack(end + fmt, value[:struct.calcsize(fmt)])[0]
        return (found[256], found[257]) if len(found) == 2 else None
    except (struct.error, IndexError):
        return None


def _webp(b: bytes) -> Optional[Size]:
    chunk = b[12:16]
    if chunk == b"VP8 " and len(b) >= 30 and b[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", b[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(b) >= 25 and b[20] == 0x2F:
        bits = struct.unpack("<I", b[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(b) >= 30:
        return (int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1)
    return None


def _pnm(b: bytes) -> Optional[Size]:
    text = bytes(b[:4096]).decode("latin-1")
    if text[:2] == "P7":  # PAM: WIDTH / HEIGHT lines
        w = re.search(r"^WIDTH\s+(\d+)", text, re.M)
        h = re.search(r"^HEIGHT\s+(\d+)", text, re.M)
        return (int(w.group(1)), int(h.group(1))) if w and h else None
    tokens = re.sub(r"#[^\n]*", " ", text[2:]).split()
    return (int(tokens[0]), int(tokens[1])) if len(tokens) >= 2 and tokens[0].isdigit() and tokens[1].isdigit() \
        else None


def _jp2(b: Any) -> Optional[Size]:
    """The larger of the header box's size and the codestream's (the decoder allocates the codestream's)."""
    k = bytes(b[:4096]).find(b"ihdr")
    if k < 0 or k + 12 > len(b):
        return None
    h, w = struct.unpack(">II", b[k + 4:k + 12])
    siz = bytes(b).find(b"\xff\x4f\xff\x51")
    if siz < 0:
        return None
    cw, ch = _j2k(b[siz:]) or (0, 0)
    return max(w, cw), max(h, ch)


def _gif(b: Any) -> Optional[Size]:
    """The logical screen, grown to cover the first image's descriptor (it may claim more than the screen)."""
    if len(b) < 13:
        return None
    w, h = struct.unpack("<HH", b[6:10])
    i = 13 + (3 << ((b[10] & 7) + 1) if b[10] & 0x80 else 0)
    while i < len(b):
        if b[i] == 0x2C and i + 9 <= len(b):  # image descriptor: left, top, width, height
            left, top, iw, ih = struct.unpack("<HHHH", b[i + 1:i + 9])
            return max(w, left + iw), max(h, top + ih)
        if b[i] != 0x21 or i + 2 >= len(b):  # anything but an extension before the first image
            return None
        i += 2
        while i < len(b) and b[i]:  # the extension's sub-blocks
            i += 1 + b[i]
        i += 1
    return None


def _j2k(b: Any) -> Optional[Size]:
    if len(b) < 24:
        return None
    x, y, x0, y0 = struct.unpack(">IIII", b[8:24])
    return x - x0, y - y0


def _radiance(b: bytes) -> Optional[Size]:
    m = re.search(rb"\n\n([-+][YX]) (\d+) ([-+][YX]) (\d+)", bytes(b[:65536]))
    if not m:
        return None
    first, second = int(m.group(2)), int(m.group(4))
    return (second, first) if m.group(1).endswith(b"Y") else (first, second)


def _pfm(b: bytes) -> Optional[Size]:
    tokens = bytes(b[2:256]).split()
    return (int(tokens[0]), int(tokens[1])) if len(tokens) >= 2 and tokens[0].isdigit() and tokens[1].isdigit() \
        else None


# (signature test, size reader), tried in order
_FORMATS: List[Tuple[Callable[[bytes], bool], Callable[[Any], Optional[Size]]]] = [
    (lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    (lambda b: b.startswith(b"\xff\xd8"), _jpeg),
    (lambda b: b.startswith(b"BM"), _bmp),
    (lambda b: b[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    (lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", _webp),
    (lambda b: b[:6] in (b"GIF87a", b"GIF89a"), _gif),
    (lambda b: len(b) > 2 and b[:1] == b"P" and b[1:2] in b"1234567" and b[2:3].isspace(), _pnm),
    (lambda b: b[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n", _jp2),
    (lambda b: b[:4] == b"\xff\x4f\xff\x51", _j2k),
    (lambda b: b[:4] == b"\x59\xa6\x6a\x95", lambda b: struct.unpack(">II", b[4:12]) if len(b) >= 12 else None),
    (lambda b: b.startswith((b"#?RADIANCE", b"#?RGBE")), _radiance),
    (lambda b: b[:2] in (b"PF", b"Pf") and b[2:3].isspace(), _pfm),
]


def announced_size(data: Any) -> Optional[Size]:
    """(width, height) the encoded image `data` (bytes, or a uint8 numpy array: read in place) announces, or
    None when its format is not one whose header can be read here (or the header is damaged): such a file must
    not be decoded blind."""
    view = memoryview(data).cast("B")  # type: ignore[arg-type]
    head = bytes(view[:16])
    for matches, size_of in _FORMATS:
        if matches(head):
            try:
                return size_of(view)
            except (struct.error, ValueError, IndexError):
                return None
    return None


__all__ = ["announced_size"]
