"""Fast numpy packing of vector fields into $readmemh lines, and parsing $fwrite("%h") output.

A row is the concatenation of its fields, the first field in the most significant bits, each
field at most 64 bits wide (uint64 arrays). Lines are fixed width, which keeps both directions
vectorised: no Python per vector.
"""

from __future__ import annotations

import numpy as np

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLE = np.full(256, 255, dtype=np.uint8)  # 255 marks x/z or garbage
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i

Fields = list[tuple[str, int]]


def _field_bits(values: np.ndarray, width: int) -> np.ndarray:
    """(N, width) bit matrix, most significant bit first."""
    v = np.ascontiguousarray(np.asarray(values, dtype=np.uint64)).astype(">u8")
    bits = np.unpackbits(v.view(np.uint8).reshape(-1, 8), axis=1)
    return bits[:, 64 - width :]


def pack_hex(fields: Fields, data: dict[str, np.ndarray]) -> bytes:
    """$readmemh text of the rows (one line per row, fixed width)."""
    total = sum(w for _, w in fields)
    digits = -(-total // 4)
    n = len(data[fields[0][0]])
    out = []
    for start in range(0, n, 1 << 18):  # chunks bound the bit matrix's memory
        stop = min(n, start + (1 << 18))
        parts = [np.zeros((stop - start, digits * 4 - total), dtype=np.uint8)]
        for name, w in fields:
            v = np.asarray(data[name][start:stop], dtype=np.uint64)
            if w < 64 and v.size and int(v.max()) >> w:
                raise ValueError(f"field {name!r} holds a value wider than {w} bits")
            parts.append(_field_bits(v, w))
        bits = np.concatenate(parts, axis=1).reshape(stop - start, digits, 4)
        nib = bits @ np.array([8, 4, 2, 1], dtype=np.uint8)
        text = np.empty((stop - start, digits + 1), dtype=np.uint8)
        text[:, :digits] = _HEX[nib]
        text[:, digits] = ord("\n")
        out.append(text.tobytes())
    return b"".join(out)


def unpack_hex(fields: Fields, text: bytes, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parse n fixed-width "%h" lines into fields; also a per-row flag of x/z digits."""
    total = sum(w for _, w in fields)
    digits = -(-total // 4)
    raw = np.frombuffer(text, dtype=np.uint8)
    if raw.size != n * (digits + 1):
        raise ValueError(
            f"simulator output has {raw.size} bytes, expected {n} lines of {digits} digits"
        )
    raw = raw.reshape(n, digits + 1)
    if not np.all(raw[:, digits] == ord("\n")):
        raise ValueError("simulator output lines are not fixed width")
    nib = _NIBBLE[raw[:, :digits]]
    unknown = np.any(nib == 255, axis=1)
    nib = np.where(nib == 255, 0, nib).astype(np.uint8)
    bits = np.unpackbits(nib[:, :, None], axis=2)[:, :, 4:].reshape(n, digits * 4)
    bits = bits[:, digits * 4 - total :]
    out: dict[str, np.ndarray] = {}
    pos = 0
    for name, w in fields:
        fb = np.zeros((n, 64), dtype=np.uint8)
        fb[:, 64 - w :] = bits[:, pos : pos + w]
        out[name] = np.packbits(fb, axis=1).view(">u8").reshape(n).astype(np.uint64)
        pos += w
    return out, unknown
