#!/usr/bin/python3
"""Recomputes in NumPy the sum-rates of the beams assoc beams writes.

Usage:
    /usr/bin/python3 tests/check_numpy_beams.py DATA.npz ASSOC.npz KEY BEAMS.npz...

DATA is a data set of assoc gen, ASSOC the .npz of assoc baselines --out (or
assoc eval --out) and every BEAMS file the output of
    assoc beams DATA ASSOC.npz --assoc-key KEY --method mrt|zf|wmmse|bfgnn=CKPT --out BEAMS.npz
The method is read from the file's `method` member. For each file, from the
data set's H_re/H_im, pt_dbm, noise_dbm and the written V_re/V_im alone
(docs/system.md, "Beamformers for a given association"):

- dtypes and shapes of V_re, V_im, rate, iters, assoc; `assoc` equals
  KEY_assoc of ASSOC.npz; the method name; iters 0 unless WMMSE (1..100);
- v_mk is zero unless assoc[k] = m (dropped UEs have no beam anywhere);
- every sample's sum-rate, SINR_k = |h_mk^T v_mk|^2 / (sum_{l != k}
  |sum_m h_mk^T v_ml|^2 + sigma^2) with no conjugate, P_t and sigma^2 in W,
  agrees with the written `rate` to 1e-9 relative;
- every BS radiates sum_k ||v_mk||^2 <= P_t (1 + 1e-9); for MRT exactly
  n P_t / N with n the UEs it serves, for ZF exactly P_t when it serves any;
- ZF: the intra-cell leakage |h_mk^T v_ml| (k != l served by m) is below
  max(1e-12, 1e-15 cond) of the UE's signal |h_mk^T v_mk|, cond the condition
  number of the Gram matrix of BS m's served channels (at most 1e13, where ZF
  refuses; rounding in its inverse grows with it);
- MRT: the rate equals KEY_rate of ASSOC.npz (which uses MRT) to 1e-9.

Prints what differs (sample, BS, UE, values) and exits 1 on any failure.
"""
import sys

import numpy as np

RATE_RTOL = 1e-9
POWER_RTOL = 1e-9
ZF_LEAK_FLOOR = 1e-12
ZF_LEAK_EPS = 1e-15
SHOW = 5  # failing entries printed per check


def dbm_to_w(dbm):
    return 10.0 ** (float(dbm) / 10.0) / 1000.0


class Checker:
    def __init__(self):
        self.problems = []

    def fail(self, label, msg):
        self.problems.append(f"{label}: {msg}")

    def where(self, label, what, bad, describe):
        """Reports the first SHOW indices where the boolean array bad holds."""
        idx = np.argwhere(bad)
        if len(idx) == 0:
            return True
        lines = [describe(tuple(i)) for i in idx[:SHOW]]
        more = f" (first {SHOW} shown)" if len(idx) > SHOW else ""
        entries = "entry" if len(idx) == 1 else "entries"
        self.fail(label, f"{what} fails at {len(idx)} {entries}{more}:\n    " + "\n    ".join(lines))
        return False


def load(path):
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def expect_array(ck, label, f, name, dtype, shape):
    if name not in f:
        ck.fail(label, f"no member {name}")
        return False
    x = f[name]
    if x.dtype != np.dtype(dtype) or x.shape != shape:
        ck.fail(label, f"{name} is {x.dtype.str} {x.shape}, expected {np.dtype(dtype).str} {shape}")
        return False
    return True


def check_beams(ck, label, data, assoc_file, key, f):
    H = data["H_re"] + 1j * data["H_im"]  # S x M x K x N
    S, M, K, N = H.shape
    pt = dbm_to_w(data["pt_dbm"])
    sigma2 = dbm_to_w(data["noise_dbm"])
    ok = all([
        expect_array(ck, label, f, "V_re", "<f8", (S, M, K, N)),
        expect_array(ck, label, f, "V_im", "<f8", (S, M, K, N)),
        expect_array(ck, label, f, "rate", "<f8", (S,)),
        expect_array(ck, label, f, "iters", "<i4", (S,)),
        expect_array(ck, label, f, "assoc", "<i4", (S, K)),
    ])
    if "method" not in f or f["method"].dtype != np.uint8 or f["method"].ndim != 1:
        ck.fail(label, "no uint8 member method")
        return None
    method = bytes(f["method"]).decode()
    if method not in ("mrt", "zf", "wmmse", "bfgnn"):
        ck.fail(label, f"unknown method {method!r}")
        ok = False
    if not ok:
        return method
    label = f"{label} ({method}, {key})"

    assoc = f["assoc"].astype(np.int64)
    want_assoc = assoc_file.get(f"{key}_assoc")
    if want_assoc is None:
        ck.fail(label, f"the association file has no {key}_assoc")
    elif want_assoc.shape != assoc.shape or not np.array_equal(want_assoc, assoc):
        ck.fail(label, f"assoc differs from {key}_assoc of the association file")
    if np.any((assoc < -1) | (assoc >= M)):
        ck.fail(label, "assoc holds values outside -1..M-1")
        return method

    iters = f["iters"]
    if method == "wmmse":
        ck.where(label, "iters in 1..100", (iters < 1) | (iters > 100),
                 lambda i: f"sample {i[0]}: iters {iters[i]}")
    else:
        ck.where(label, "iters == 0", iters != 0, lambda i: f"sample {i[0]}: iters {iters[i]}")

    V = f["V_re"] + 1j * f["V_im"]  # S x M x K x N
    if not np.all(np.isfinite(V)):
        ck.fail(label, "non-finite beams")
        return method
    # serves[s, m, k]: BS m serves UE k in sample s.
    serves = assoc[:, None, :] == np.arange(M)[None, :, None]
    norm2 = np.sum(np.abs(V) ** 2, axis=3)  # S x M x K
    ck.where(label, "v_mk = 0 unless assoc[k] = m", (~serves) & (norm2 != 0),
             lambda i: f"sample {i[0]} BS {i[1]} UE {i[2]} (assoc {assoc[i[0], i[2]]}): "
                       f"||v||^2 = {norm2[i]:.6g}")

    # c[s, m, k, l] = h_mk^T v_ml (no conjugate); z[s, k, l] = sum_m c.
    c = np.einsum("smkn,smln->smkl", H, V)
    z = c.sum(axis=1)
    power = np.abs(z) ** 2
    signal = np.einsum("skk->sk", power)
    interference = power.sum(axis=2) - signal
    sinr = signal / (interference + sigma2)
    served = assoc >= 0
    rate = np.where(served, np.log2(1.0 + sinr), 0.0).sum(axis=1)
    written = f["rate"]
    rel = np.abs(rate - written) / np.maximum(np.abs(rate), np.finfo(float).tiny)
    ck.where(label, f"numpy sum-rate = written rate to {RATE_RTOL:g}", ~(rel <= RATE_RTOL),
             lambda i: f"sample {i[0]}: numpy {rate[i]:.17g}, written {written[i]:.17g}, "
                       f"relative {rel[i]:.3g}")

    bs_power = norm2.sum(axis=2)  # S x M
    load = serves.sum(axis=2)
    ck.where(label, f"sum_k ||v_mk||^2 <= P_t (1 + {POWER_RTOL:g}), P_t = {pt:g} W",
             ~(bs_power <= pt * (1 + POWER_RTOL)) & (load <= N),
             lambda i: f"sample {i[0]} BS {i[1]}: {bs_power[i]:.17g} W "
                       f"(relative excess {bs_power[i] / pt - 1:.3g})")
    if method == "mrt":  # n P_t / N, also when overloaded (n > N)
        want = load * pt / N
        ck.where(label, "MRT power n P_t / N", ~(np.abs(bs_power - want) <= POWER_RTOL * pt),
                 lambda i: f"sample {i[0]} BS {i[1]} serving {load[i]}: {bs_power[i]:.17g} W, "
                           f"expected {want[i]:.17g} W")
        want_rate = assoc_file.get(f"{key}_rate")
        if want_rate is not None and want_rate.shape == rate.shape:
            rrel = np.abs(rate - want_rate) / np.maximum(np.abs(want_rate), np.finfo(float).tiny)
            ck.where(label, f"numpy MRT sum-rate = {key}_rate to {RATE_RTOL:g}",
                     ~(rrel <= RATE_RTOL),
                     lambda i: f"sample {i[0]}: numpy {rate[i]:.17g}, {key}_rate "
                               f"{want_rate[i]:.17g}")
    else:
        over = np.argwhere(load > N)
        if len(over):
            s, m = over[0]
            ck.fail(label, f"sample {s}: BS {m} serves {load[s, m]} > N = {N} UEs")
    leak_max = cond_max = 0.0
    if method == "zf":
        full = load > 0
        ck.where(label, "ZF power P_t", full & ~(np.abs(bs_power - pt) <= POWER_RTOL * pt),
                 lambda i: f"sample {i[0]} BS {i[1]}: {bs_power[i]:.17g} W, expected {pt:.17g} W")
        # Per BS: leak = |h_mk^T v_ml| / |h_mk^T v_mk| over k != l served by m,
        # against ZF_LEAK_EPS times the condition number of the Gram matrix of
        # its served channels (rounding in the inverse grows with it), at
        # least ZF_LEAK_FLOOR.
        leaks = []
        for s in range(S):
            for m in range(M):
                ks = np.flatnonzero(serves[s, m])
                if len(ks) < 2:
                    continue
                cm = c[s, m][np.ix_(ks, ks)]
                own = np.abs(np.diag(cm))
                off = np.abs(cm - np.diag(np.diag(cm)))
                with np.errstate(divide="ignore", invalid="ignore"):
                    amp = off / own[:, None]
                amp[~np.isfinite(amp) & (off > 0)] = np.inf
                amp = np.nan_to_num(amp, nan=0.0)
                G = H[s, m, ks]
                cond = np.linalg.cond(G.conj() @ G.T)
                tol = max(ZF_LEAK_FLOOR, ZF_LEAK_EPS * cond)
                leak_max = max(leak_max, float(amp.max()))
                cond_max = max(cond_max, float(cond))
                i, j = np.unravel_index(np.argmax(amp), amp.shape)
                if not amp[i, j] <= tol:
                    leaks.append(f"sample {s} BS {m} UE {ks[i]} from UE {ks[j]}'s beam: "
                                 f"|leak| {off[i, j]:.3g}, signal {own[i]:.3g}, ratio "
                                 f"{amp[i, j]:.3g} > {tol:.3g} (Gram condition {cond:.3g})")
        if leaks:
            more = f" (first {SHOW} shown)" if len(leaks) > SHOW else ""
            ck.fail(label, f"ZF leakage |h_mk^T v_ml| <= max({ZF_LEAK_FLOOR:g}, {ZF_LEAK_EPS:g} "
                           f"cond) |h_mk^T v_mk| fails at {len(leaks)} BSs{more}:\n    "
                    + "\n    ".join(leaks[:SHOW]))
    print(f"{label}: S={S} M={M} N={N} K={K}, {int((~served).sum())} dropped UEs, "
          f"max relative rate difference {rel.max():.2g}, "
          f"max BS power / P_t {bs_power.max() / pt:.15f}"
          + (f", max ZF leakage / signal {leak_max:.2g} (max Gram condition {cond_max:.2g})" if method == "zf" else ""))
    return method


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    data_path, assoc_path, key, beam_paths = argv[1], argv[2], argv[3], argv[4:]
    ck = Checker()
    try:
        data = load(data_path)
        assoc_file = load(assoc_path)
    except Exception as e:
        print(f"FAIL {data_path} / {assoc_path}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for path in beam_paths:
        try:
            check_beams(ck, path, data, assoc_file, key, load(path))
        except Exception as e:  # a file numpy cannot read, a missing member, ...
            ck.fail(path, f"{type(e).__name__}: {e}")
    for p in ck.problems:
        print("FAIL", p, file=sys.stderr)
    if ck.problems:
        return 1
    print(f"numpy {np.__version__}: the rates of {len(beam_paths)} beam files on {data_path} "
          f"agree with their beams")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
