#!/usr/bin/python3
"""Checks that NumPy reads what sinkgrad writes.

Usage:
    build/tests/npz_writer_demo OUT_DIR
    /usr/bin/python3 tests/check_numpy_reads.py OUT_DIR

Opens every .npy/.npz file in OUT_DIR with numpy.load (no pickles) and
compares dtypes, shapes and values with what tests/npz_writer_demo.c writes;
also checks the zip CRCs and that stored.npz / compressed.npz really use the
stored / deflate methods. Exits 1 on any mismatch, on a file it has no
expectation for, or on an expected file that is missing.
"""
import os
import sys
import zipfile

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
