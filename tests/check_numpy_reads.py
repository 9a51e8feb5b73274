#!/usr/bin/python3
"""Checks that NumPy reads what sinkgrad writes.

Usage:
    build/tests/npz_writer_demo OUT_DIR
    /usr/bin/python3 tests/check_numpy_reads.py OUT_DIR

Opens every .npy/.npz file in OUT_DIR with numpy.load (no pickles) and
compares dtypes, shapes and values with what tests/npz_writer_demo.c writes;
also checks the zip CRCs and that stored.npz / compressed.npz really use the
stored / deflate methods. compressed.npz's member 'big' (3.7 MB, 4 chunks)
must carry sinkgrad's chunk index (zip extra field 0x6773): NumPy reads it
regardless, and each chunk, inflated here on its own, must match the
index's length and CRC. Exits 1 on any mismatch, on a file it has no
expectation for, or on an expected file that is missing.
"""
import os
import struct
import sys
import zipfile
import zlib

import numpy as np


def npz_members(big):
    members = {
        "weights": np.arange(6, dtype="<f8").reshape(2, 3) * 0.125,
        "counts": np.arange(5, dtype="<i8") * -3,
        "ids": np.array([[7, -1], [0, -(2**31)]], dtype="<i4"),
        "pixels": np.arange(250, 256, dtype="u1"),
        "mask": np.array([True, False, False, True]),
        "empty": np.zeros((0, 3), dtype="<f4"),
        "lr": np.array(0.001),
        "step": np.array(123456789012, dtype="<i8"),
    }
    if big:
        members["big"] = np.arange(460000, dtype="<f8").reshape(920, 500) * 0.25
    return members


CHUNK_INDEX_ID = 0x6773
INDEXED = {"compressed.npz": {"big": 4}}  # member: chunks


def chunk_index(extra):
    """(chunk size, [(compressed length, crc)]) from an extra field, or None."""
    while len(extra) >= 4:
        tag, size = struct.unpack_from("<HH", extra)
        if tag == CHUNK_INDEX_ID:
            version, chunk = struct.unpack_from("<BI", extra, 4)
            assert version == 1, f"chunk index version {version}"
            entries = [struct.unpack_from("<II", extra, 9 + 8 * k) for k in range((size - 5) // 8)]
            return chunk, entries
        extra = extra[4 + size :]
    return None


def check_chunk_index(path, z, info, chunks, problems):
    """Inflates each chunk of the member on its own (as sinkgrad's reader
    does) and compares it with the index and with the whole member."""
    found = chunk_index(info.extra)
    if found is None:
        problems.append(f"{path}[{info.filename}]: no chunk index")
        return
    chunk, entries = found
    if len(entries) != chunks:
        problems.append(f"{path}[{info.filename}]: {len(entries)} chunks, expected {chunks}")
    whole = z.read(info)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        f.seek(info.header_offset + 30 + name_len + extra_len)
        data = f.read(info.compress_size)
    at = 0
    for k, (length, crc) in enumerate(entries):
        part = zlib.decompressobj(-15).decompress(data[at : at + length])
        if part != whole[k * chunk : (k + 1) * chunk] or zlib.crc32(part) != crc:
            problems.append(f"{path}[{info.filename}]: chunk {k + 1} does not match its index entry")
        at += length
    if at != len(data):
        problems.append(f"{path}[{info.filename}]: the chunks' lengths sum to {at}, not {len(data)}")


EXPECTED = {
    "demo.npy": np.arange(12, dtype="<f4").reshape(3, 4) * np.float32(0.5) - np.float32(1),
    "stored.npz": (npz_members(big=False), zipfile.ZIP_STORED),
    "compressed.npz": (npz_members(big=True), zipfile.ZIP_DEFLATED),
}


def compare(label, got, want, problems):
    if got.dtype != want.dtype:
        problems.append(f"{label}: dtype {got.dtype.str}, expected {want.dtype.str}")
    elif got.shape != want.shape:
        problems.append(f"{label}: shape {got.shape}, expected {want.shape}")
    elif not np.array_equal(got, want):
        problems.append(f"{label}: values differ")


def check_npy(path, want, problems):
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
    if version != (1, 0):
        problems.append(f"{path}: format version {version}, expected (1, 0)")
    compare(path, np.load(path, allow_pickle=False), want, problems)


def check_npz(path, members, method, problems):
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()  # reads every member and checks its CRC
        if bad is not None:
            problems.append(f"{path}: member {bad} fails its CRC check")
        for info in z.infolist():
            if info.compress_type != method:
                problems.append(f"{path}: member {info.filename} uses method "
                                f"{info.compress_type}, expected {method}")
            chunks = INDEXED.get(os.path.basename(path), {}).get(info.filename[:-4])
            if chunks:
                check_chunk_index(path, z, info, chunks, problems)
            elif chunk_index(info.extra) is not None:
                problems.append(f"{path}[{info.filename}]: an index on a single-chunk member")
    with np.load(path, allow_pickle=False) as archive:
        if list(archive.files) != list(members):
            problems.append(f"{path}: members {archive.files}, expected {list(members)}")
        for name, want in members.items():
            if name in archive.files:
                compare(f"{path}[{name}]", archive[name], want, problems)


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory = argv[1]
    problems = []
    found = sorted(f for f in os.listdir(directory) if f.endswith((".npy", ".npz")))
    for name in found:
        path = os.path.join(directory, name)
        if name not in EXPECTED:
            problems.append(f"{path}: no expectation for this file")
            continue
        try:
            if name.endswith(".npy"):
                check_npy(path, EXPECTED[name], problems)
            else:
                check_npz(path, *EXPECTED[name], problems)
        except Exception as e:  # numpy/zipfile refusing the file is a failure to report
            problems.append(f"{path}: {type(e).__name__}: {e}")
    for name in sorted(set(EXPECTED) - set(found)):
        problems.append(f"{os.path.join(directory, name)}: missing")
    for p in problems:
        print("FAIL", p, file=sys.stderr)
    if problems:
        return 1
    print(f"numpy {np.__version__} read {len(found)} files from {directory}: all values match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
