"""The streaming TestG reader (personsearch.data.mat5) against scipy.io.loadmat, on files written by
scipy.io.savemat (plain and compressed) and on MATLAB-style files (doubles stored as uint8/uint16, UTF-8 or
UTF-16 chars, empty fields as 1x0 doubles or as zero-byte matrices, miCOMPRESSED); plus the cache."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from personsearch.data.cuhk_sysu import _parse_protocol_mat, load_gallery_protocol
from personsearch.data.mat5 import Mat5Unsupported, read_protocol

POOL = [f"s{i}.jpg" for i in (12, 5, 300, 18199, 77, 1001, 9)]


def _rows(seed):
    """Protocol rows: (query name, query xywh, [(gallery name, xywh or None), ...])."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(6):
        qname = POOL[q % len(POOL)]
        entries = [(POOL[(q + 1) % 7], [10, 20, 30, 60]), (POOL[(q + 2) % 7], [300, 2, 40, 90])]
        if q == 1:
            entries.append((entries[0][0], [11, 21, 30, 60]))  # the same image twice
        if q == 2:
            entries.insert(0, (qname, [5, 5, 20, 40]))  # the query's own image
        for g in rng.permutation(7).tolist():
            if len(entries) >= 5:
                break
            if POOL[g] not in {e[0] for e in entries}:
                entries.append((POOL[g], None))
        rows.append((qname, [q + 1, 2, 30, 70 + 300 * (q % 2)], entries))
    return rows


def _box(values, kind):
    arr = np.asarray(values).reshape(1, 4)
    if kind == "smallest":
        return arr.astype(np.uint8 if arr.max() < 256 else np.uint16)
    return arr.astype(np.float64) + (0.7 if kind == "fraction" else 0.0)


def _scipy_file(path, size, rows, kind, compress):
    empty = np.zeros((1, 0))
    s = np.zeros((1, len(rows)), dtype=[("Query", "O"), ("Gallery", "O")])
    for q, (qname, qbox, entries) in enumerate(rows):
        query = np.zeros((1, 1), dtype=[("imname", "O"), ("idlocate", "O"), ("ishard", "O"), ("idname", "O")])
        query[0, 0] = (qname, _box(qbox, kind), np.array([[0]], np.uint8), f"p{q}")
        gal = np.zeros((1, size), dtype=[("imname", "O"), ("idlocate", "O"), ("ishard", "O")])
        for k, (name, box) in enumerate(entries):
            gal[0, k] = (
                name,
                empty if box is None else _box(box, kind),
                empty if box is None else np.array([[1]], np.uint8),
            )
        s[0, q] = (query, gal)
    scipy.io.savemat(path, {f"TestG{size}": s}, do_compression=compress)


# --- a minimal MATLAB-style writer --------------------------------------------------------------
def _el(typ, payload, small_ok=True):
    if small_ok and 0 < len(payload) <= 4:
        return struct.pack("<HH", typ, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", typ, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(cls, dims, body, name=b""):
    flags = _el(6, struct.pack("<II", cls, 0), small_ok=False)
    dims_el = _el(5, struct.pack(f"<{len(dims)}i", *dims), small_ok=False)
    name_el = _el(1, name) if name else struct.pack("<II", 1, 0)
    return _el(14, flags + dims_el + name_el + body, small_ok=False)


def _char(text, wide):
    data = text.encode("utf-16-le") if wide else text.encode("ascii")
    return _matrix(4, (1, len(text)), _el(4 if wide else 16, data))


def _double(values):
    arr = np.asarray(values).reshape(-1)
    storage = (2, np.uint8) if arr.max() < 256 else (4, np.uint16)
    return _matrix(6, (1, arr.size), _el(storage[0], arr.astype(storage[1]).tobytes()))


def _empty(zero_bytes):
    return struct.pack("<II", 14, 0) if zero_bytes else _matrix(6, (1, 0), struct.pack("<II", 9, 0))


def _struct(dims, fields, elements, name=b""):
    width = 32
    names = b"".join(f.encode().ljust(width, b"\0") for f in fields)
    body = _el(5, struct.pack("<i", width)) + _el(1, names) + b"".join(b"".join(e) for e in elements)
    return _matrix(2, dims, body, name)


def _matlab_file(path, size, rows, wide, zero_bytes):
    items = []
    for q, (qname, qbox, entries) in enumerate(rows):
        query = _struct(
            (1, 1),
            ["imname", "idlocate", "ishard", "idname"],
            [[_char(qname, wide), _double(qbox), _double([0]), _char(f"p{q}", wide)]],
        )
        gal = [
            [
                _char(n, wide),
                _empty(zero_bytes) if b is None else _double(b),
                _empty(zero_bytes) if b is None else _double([1]),
            ]
            for n, b in entries
        ]
        while len(gal) < size:
            gal.append([_char(POOL[0], wide), _empty(zero_bytes), _empty(zero_bytes)])
        items.append([query, _struct((1, size), ["imname", "idlocate", "ishard"], gal)])
    var = _struct((1, len(rows)), ["Query", "Gallery"], items, name=f"TestG{size}".encode())
    header = b"MATLAB 5.0 MAT-file, Platform: MACI64, Created on: Sun Nov  1 12:06:30 2015".ljust(116)
    header += b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    packed = zlib.compress(var)
    Path(path).write_bytes(header + struct.pack("<II", 15, len(packed)) + packed)


def _same(fast, path, size):
    slow = _parse_protocol_mat(Path(path), size, POOL)
    assert list(fast["query_names"]) == list(slow["query_names"])
    assert np.array_equal(fast["query_boxes_xywh"], slow["query_boxes_xywh"])
    assert np.array_equal(fast["entries"], slow["entries"])
    assert np.array_equal(fast["positive"], slow["positive"])
    assert np.array_equal(fast["positive_boxes_xywh"], slow["boxes_xywh"][slow["positive"]])


@pytest.mark.parametrize("kind", ["smallest", "double", "fraction"])
@pytest.mark.parametrize("compress", [False, True])
def test_scipy_written_files(tmp_path, kind, compress):
    path = tmp_path / "TestG5.mat"
    rows = _rows(0)
    _scipy_file(path, 5, rows, kind, compress)
    fast = read_protocol(path, "TestG5", POOL)
    _same(fast, path, 5)
    assert fast["positive"].sum() == sum(b is not None for _, _, e in rows for _, b in e)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("zero_bytes", [False, True])
def test_matlab_style_files(tmp_path, wide, zero_bytes):
    path = tmp_path / "TestG6.mat"
    _matlab_file(path, 6, _rows(1), wide, zero_bytes)
    loaded = scipy.io.loadmat(path)["TestG6"]  # scipy agrees the file is valid
    assert loaded.shape == (1, 6)
    _same(read_protocol(path, "TestG6", POOL), path, 6)


def test_unknown_image_and_fallback(tmp_path, monkeypatch):
    path = tmp_path / "TestG5.mat"
    _scipy_file(path, 5, _rows(2), "smallest", True)
    with pytest.raises(KeyError):
        read_protocol(path, "TestG5", POOL[1:])
    with pytest.raises(Mat5Unsupported):
        read_protocol(path, "TestG50", POOL)


def test_load_gallery_protocol_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONSEARCH_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "CUHK-SYSU"
    folder = root / "annotation/test/train_test"
    folder.mkdir(parents=True)
    pool = np.empty((len(POOL), 1), dtype=object)
    for i, n in enumerate(POOL):
        pool[i, 0] = n
    scipy.io.savemat(root / "annotation/pool.mat", {"pool": pool})
    _scipy_file(folder / "TestG5.mat", 5, _rows(3), "smallest", True)
    first = load_gallery_protocol(root, 5)
    assert len(list((tmp_path / "cache").glob("cuhk-testg5-sparse-*.npz"))) == 1
    again = load_gallery_protocol(root, 5)
    assert np.array_equal(first.entries, again.entries)
    rows = _rows(4)
    _scipy_file(folder / "TestG5.mat", 5, rows, "smallest", True)
    os.utime(folder / "TestG5.mat", ns=(1, 1))  # a changed file (size or mtime) is parsed again
    changed = load_gallery_protocol(root, 5)
    assert [POOL[i] for i in changed.entries[0] if i >= 0] == [n for n, _ in rows[0][2]]
    assert changed.boxes_xywh.shape == (6, 5, 4)
