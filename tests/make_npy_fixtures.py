#!/usr/bin/python3
"""Writes the NumPy-made .npy/.npz fixtures that tests/test_npy.c,
tests/test_npz.c and tests/test_npz_rows.c read.

Run with a Python that has NumPy (the C test suite itself needs no Python):

    /usr/bin/python3 tests/make_npy_fixtures.py

Every value is arange-based so the C test can check it exactly; keep the two
in step when changing anything here. The files are small and committed.
"""
import io
import os
import struct
import zipfile
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")


def path(name):
    return os.path.join(OUT, name)


def save_npy(name, array, version=None):
    with open(path(name), "wb") as f:
        np.lib.format.write_array(f, array, version=version)


def write_npy_files():
    save_npy("numpy_f4.npy", np.arange(12, dtype="<f4").reshape(3, 4) / np.float32(4))
    save_npy("numpy_f8.npy", np.arange(24, dtype="<f8").reshape(2, 3, 4) * 0.5 - 3)
    save_npy("numpy_i8.npy", (np.arange(5, dtype="<i8") - 2) * 10**12)
    save_npy("numpy_i4.npy", np.arange(-3, 3, dtype="<i4").reshape(2, 3))
    save_npy("numpy_u1.npy", np.arange(250, 256, dtype="u1"))
    save_npy("numpy_bool.npy", np.arange(7) % 3 == 0)
    save_npy("numpy_0d.npy", np.array(2.5))
    save_npy("numpy_empty.npy", np.zeros((0, 3), dtype="<f4"))
    save_npy("numpy_v2.npy", np.arange(6, dtype="<f4").reshape(2, 3), version=(2, 0))
    # Refused by the reader: column-major data and big-endian data.
    save_npy("numpy_fortran.npy", np.asfortranarray(np.arange(6.0).reshape(2, 3)))
    save_npy("numpy_bigendian.npy", np.arange(4, dtype=">f8"))


def write_npz_files():
    np.savez(
        path("numpy_savez.npz"),
        a=np.arange(6, dtype="<f4").reshape(2, 3),
        b=np.arange(4, dtype="<i8"),
        flag=np.array(True),
        scalar=np.float64(1.5),
        mask=np.arange(5) % 2 == 0,
    )
    # 'big' is 240 kB raw: a deflate stream of many blocks.
    np.savez_compressed(
        path("numpy_savez_compressed.npz"),
        a=np.arange(6, dtype="<f4").reshape(2, 3),
        big=np.arange(30000, dtype="<f8") * 0.25,
        count=np.int64(7),
    )
    # Narrow integer types the reader widens to int32/int64.
    np.savez(
        path("numpy_narrow_ints.npz"),
        i1=np.array([-128, -1, 0, 127], dtype="i1"),
        i2=np.array([-32768, -1, 0, 32767], dtype="<i2"),
        u2=np.array([0, 1, 65535], dtype="<u2"),
        u4=np.array([0, 1, 4294967295], dtype="<u4"),
    )
    # Members the reader keeps but cannot load; 'x' must still load.
    np.savez(
        path("numpy_mixed.npz"),
        x=np.arange(3, dtype="<f8"),
        text=np.array(["ab", "cd"]),
        fortran=np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        big_endian=np.arange(3, dtype=">i4"),
    )


def write_zip64_local_sizes():
    """numpy.savez forces zip64 local headers; older Pythons left their size
    fields at 0xFFFFFFFF (the real sizes only in the zip64 extra field and
    the central directory). Rewrite a savez archive that way."""
    name = path("numpy_zip64_local.npz")
    np.savez(name, w=np.arange(10, dtype="<f8"), n=np.arange(3, dtype="<i4"))
    data = bytearray(open(name, "rb").read())
    with zipfile.ZipFile(name) as z:
        infos = z.infolist()
    for info in infos:
        offset = info.header_offset
        assert data[offset : offset + 4] == b"PK\x03\x04"
        extra_len = struct.unpack_from("<H", data, offset + 28)[0]
        assert extra_len >= 20, "numpy.savez no longer writes zip64 local headers"
        struct.pack_into("<II", data, offset + 18, 0xFFFFFFFF, 0xFFFFFFFF)
    open(name, "wb").write(bytes(data))
    check = np.load(name)
    assert (check["w"] == np.arange(10)).all() and (check["n"] == np.arange(3)).all()


# sinkgrad's chunk index: docs/design.md, ".npz members: the chunk index, and reading rows"
CHUNK_INDEX_ID = 0x6773


def deflate_in_chunks(raw, chunk):
    """pigz's layout, as sinkgrad's writer makes it: each chunk deflated on
    its own, every one but the last ending with a sync flush."""
    pieces, index = [], []
    for start in range(0, len(raw), chunk):
        part = raw[start : start + chunk]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        last = start + chunk >= len(raw)
        data = c.compress(part) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
        pieces.append(data)
        index.append((len(data), zlib.crc32(part)))
    return b"".join(pieces), index


def write_chunk_indexed(name, members, chunk):
    """An archive whose deflated members carry a chunk index of chunk-byte
    chunks (sinkgrad writes 1 MiB ones), written here independently of
    sinkgrad's writer: small files that exercise the reader's chunk path."""
    out, central = bytearray(), bytearray()
    for member, array in members.items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array, version=(1, 0))
        raw = buf.getvalue()
        data, index = deflate_in_chunks(raw, chunk)
        fname = (member + ".npy").encode()
        extra = struct.pack("<BI", 1, chunk) + b"".join(struct.pack("<II", *e) for e in index)
        extra = struct.pack("<HH", CHUNK_INDEX_ID, len(extra)) + extra
        common = struct.pack("<HHHHHIIIHH", 20, 0, 8, 0, 33, zlib.crc32(raw), len(data),
                             len(raw), len(fname), 0)
        offset = len(out)
        out += b"PK\x03\x04" + common + fname + data
        central += (b"PK\x01\x02" + struct.pack("<H", 20) + common[:-2]
                    + struct.pack("<HHHHII", len(extra), 0, 0, 0, 0, offset) + fname + extra)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(out), 0)
    open(path(name), "wb").write(bytes(out + central + end))
    with np.load(path(name)) as check:  # NumPy reads it, index and all
        for member, array in members.items():
            assert check[member].dtype == array.dtype and (check[member] == array).all()
    with zipfile.ZipFile(path(name)) as z:
        assert z.testzip() is None


def write_chunk_indexed_files():
    # 1000-byte chunks: the .npy header (128 bytes) shares the first chunk
    # with data, rows straddle chunks, elements never do (1000 = 125 * 8).
    write_chunk_indexed(
        "indexed_small_chunks.npz",
        {
            "f8": np.arange(2100, dtype="<f8").reshape(300, 7) * 0.5 - 7,
            "i2": (np.arange(1500, dtype="<i2") * 20 - 15000).reshape(500, 3),
            "b1": np.arange(2000) % 3 == 1,
            "u1": np.arange(900, dtype="u1").reshape(30, 5, 6),
            "one": np.arange(4, dtype="<i4"),  # one chunk, still indexed
            "s": np.float64(2.5),
        },
        1000,
    )


def main():
    os.makedirs(OUT, exist_ok=True)
    write_npy_files()
    write_npz_files()
    write_zip64_local_sizes()
    write_chunk_indexed_files()
    for name in sorted(os.listdir(OUT)):
        if name.startswith(("numpy_", "indexed_")):
            print(f"{name:32s} {os.path.getsize(path(name)):8d} bytes")


if __name__ == "__main__":
    main()
