#!/usr/bin/python3
"""PyTorch reference fixtures for the beam ops (tests/test_beam_fixtures.c).

The ops are those of models/gnn/beamrate.c, written here from the spec
(docs/models.md "Beams", /work/shared/spec/beamforming.md section 1) in
complex128 arithmetic, independently of the C code (which works on real
and imaginary parts with real matrix products):
  couplings    c[b,m,k,l] = sum_n h[b,m,k,n] v[b,m,l,n]          (no conjugate)
  norm         ||V_m||^2 = sum_k a_km^2 ||v_mk||^2 + 1e-12
  projection   V_m <- V_m min(1, sqrt(P_m) / ||V_m||)  (at ||V_m|| = sqrt(P_m)
               the factor is the constant 1: the inside branch's gradient)
  full power   V_m <- V_m sqrt(P_m) / ||V_m||
  rate         s_k = sum_m a_km c[m,k,k], z_kl = sum_m a_lm c[m,k,l],
               R = sum_k log2(1 + |s_k|^2 / (sum_{l != k} |z_kl|^2 + noise))
  chain        the models' path: R(A, couplings(H, normalise(A, V))), loss -mean_b R.

It writes float64 files tests/fixtures/beams_<case>_<name>.npy:
  h_re h_im v_re v_im [B, M, K, N], a [B, K, M], params [noise, P_0 .. P_{M-1}]
  per op (small cases):
    c_re c_im            couplings;  wc_re wc_im its weights;
                         gc_<x> = d sum(wc * c) / d x  for x in h_re h_im v_re v_im
    n<j>_re n<j>_im      normalised beams, j = 0 projection, 1 full power;
                         wn_re wn_im weights; gn<j>_<x> for x in a v_re v_im
    r                    rate [B] of the unnormalised beams; wr weights;
                         gr_<x> for x in h_re h_im v_re v_im a
  chain (every case):
    x<j>_re x<j>_im      normalised beams (mode j), x<j>_r the rate [B] after them,
                         gx<j>_<x> = d (-mean_b R_b) / d x for x in h_re h_im v_re v_im a
Every input and weight is rounded to a float32-representable value, so a
float32 run would see exactly these inputs. Seeds are fixed: rerunning
reproduces the files bit for bit.

Cases: s1/s1i (B 2, M 2, K 3, N 2; fractional, integer A), s2/s2i (B 2,
M 3, K 5, N 3: K > M, a BS with a single UE), kink (every BS exactly on its
sphere, dyadic values, so ||V_m|| = sqrt(P_m) to the last bit), and at the
models' shape (B 64, M 2, K 8, N 4, link gains over 40 dB, noise 1) model
(A on the simplex) and modeli (integer, load-feasible, dropped UEs), chain
only and without gx<j>_h_re/im. Integer A has dropped UEs (zero rows). In the small cases each BS is
scaled inside (0.8 sqrt(P_m)) or outside (2.5 sqrt(P_m)) its ball.

Run from the repository root:  /usr/bin/python3 tests/make_beam_fixtures.py
"""
import glob
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
EPS = 1e-12  # ASSOC_BEAM_NORM_EPS


def f32_exact(a):
    return torch.as_tensor(a).float().double()


WRITTEN = []  # paths of the files written


def save(case, **arrays):
    for name, a in arrays.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().numpy()
        WRITTEN.append(os.path.join(OUT, f"beams_{case}_{name}.npy"))
        np.save(WRITTEN[-1], np.ascontiguousarray(a, dtype=np.float64))


# ---- the ops, in complex arithmetic ---------------------------------------------


def cplx(re, im):
    return torch.complex(re, im)


def couplings(h, v):
    """c[b,m,k,l] = h_mk^T v_ml."""
    return torch.einsum("bmkn,bmln->bmkl", h, v)


def normalise(a, v, power, mode):
    """a [B, K, M] real, v [B, M, K, N] complex; mode 0 projection, 1 full power."""
    energy = (v.conj() * v).real.sum(-1)  # ||v_mk||^2 [B, M, K]
    norm = torch.sqrt((a.transpose(1, 2) ** 2 * energy).sum(-1) + EPS)  # [B, M]
    root = torch.sqrt(torch.as_tensor(power))[None, :]
    if mode == 1:
        factor = root / norm
    else:  # where() differentiates the branch taken: at equality, the constant 1
        factor = torch.where(norm <= root, torch.ones_like(norm), root / norm)
    return v * factor[:, :, None, None]


def rate(a, c, noise):
    """a [B, K, M] real, c [B, M, K, K] complex -> R [B]."""
    z = torch.einsum("blm,bmkl->bkl", a.to(c.dtype), c)  # z[b,k,l] = sum_m a_lm c[m,k,l]
    p = (z.conj() * z).real
    K = p.shape[-1]
    eye = torch.eye(K, dtype=torch.bool)
    signal = p[:, eye]  # [B, K]: |s_k|^2
    interference = p.masked_fill(eye, 0).sum(-1)
    return torch.log2(1 + signal / (interference + noise)).sum(-1)


# ---- inputs ------------------------------------------------------------------------


def leaves(*ts):
    return [f32_exact(t).requires_grad_(True) for t in ts]


def weight(shape):
    return f32_exact(torch.randn(shape))


def integer_assoc(B, K, M, cap, drop):
    """UE k on BS (b + k) % M while it has room; UEs in `drop` (and any
    without room) dropped: a zero row."""
    a = torch.zeros(B, K, M)
    for b in range(B):
        load = [0] * M
        for k in range(K):
            m = (b + k) % M
            if (b, k) in drop or (b % 2 == 1 and k == 0) or load[m] == cap:
                continue
            a[b, k, m] = 1
            load[m] += 1
    return a


def bs_norm(a, v):
    energy = (v.conj() * v).real.sum(-1)
    return torch.sqrt((a.transpose(1, 2) ** 2 * energy).sum(-1) + EPS)


def scale_beams(a, vr, vi, power, ratio):
    """Scales BS m of sample b to ratio[b, m] sqrt(P_m)."""
    norm = bs_norm(a, cplx(vr, vi))
    f = ratio * torch.sqrt(torch.as_tensor(power))[None, :] / norm
    return vr * f[:, :, None, None], vi * f[:, :, None, None]


# ---- cases -------------------------------------------------------------------------


def grads(loss, xs):
    return torch.autograd.grad(loss, xs, retain_graph=True)


def chain_arrays(hr, hi, vr, vi, a, power, noise, h_grad=True):
    out = {}
    wrt = dict(h_re=hr, h_im=hi, v_re=vr, v_im=vi, a=a)
    if not h_grad:
        del wrt["h_re"], wrt["h_im"]
    for j in (0, 1):
        x = normalise(a, cplx(vr, vi), power, j)
        R = rate(a, couplings(cplx(hr, hi), x), noise)
        g = grads(-R.mean(), list(wrt.values()))
        out.update({f"x{j}_re": x.real, f"x{j}_im": x.imag, f"x{j}_r": R})
        out.update({f"gx{j}_{name}": t for name, t in zip(wrt, g)})
    return out


def op_arrays(hr, hi, vr, vi, a, power, noise):
    h, v = cplx(hr, hi), cplx(vr, vi)
    out = {}
    c = couplings(h, v)
    wc_re, wc_im = weight(c.shape), weight(c.shape)
    g = grads((wc_re * c.real + wc_im * c.imag).sum(), [hr, hi, vr, vi])
    out.update(c_re=c.real, c_im=c.imag, wc_re=wc_re, wc_im=wc_im)
    out.update({f"gc_{n}": t for n, t in zip(("h_re", "h_im", "v_re", "v_im"), g)})
    wn_re, wn_im = weight(v.shape), weight(v.shape)
    out.update(wn_re=wn_re, wn_im=wn_im)
    for j in (0, 1):
        y = normalise(a, v, power, j)
        g = grads((wn_re * y.real + wn_im * y.imag).sum(), [a, vr, vi])
        out.update({f"n{j}_re": y.real, f"n{j}_im": y.imag})
        out.update({f"gn{j}_{n}": t for n, t in zip(("a", "v_re", "v_im"), g)})
    R = rate(a, c, noise)
    wr = weight(R.shape)
    g = grads((wr * R).sum(), [hr, hi, vr, vi, a])
    out.update(r=R, wr=wr)
    out.update({f"gr_{n}": t for n, t in zip(("h_re", "h_im", "v_re", "v_im", "a"), g)})
    return out


def small_case(name, B, M, K, N, integer, power, noise):
    a = integer_assoc(B, K, M, N, {(0, K - 1)}) if integer else 0.05 + 0.95 * torch.rand(B, K, M)
    a = f32_exact(a)
    hr, hi, vr, vi = (torch.randn(B, M, K, N) for _ in range(4))
    ratio = torch.tensor([[0.8 if (b + m) % 2 == 0 else 2.5 for m in range(M)] for b in range(B)])
    vr, vi = scale_beams(a, vr, vi, power, ratio)
    hr, hi, vr, vi, a = leaves(hr, hi, vr, vi, a)
    params = [noise] + list(power)
    arrays = dict(h_re=hr, h_im=hi, v_re=vr, v_im=vi, a=a, params=params)
    arrays.update(op_arrays(hr, hi, vr, vi, a, power, noise))
    arrays.update(chain_arrays(hr, hi, vr, vi, a, power, noise))
    report(name, a, vr, vi, power, arrays)
    save(name, **arrays)


def kink_case():
    """B 1, M 2, K 3, N 2, dyadic beams and A (with a dropped UE on BS 1's
    side): ||V_m||^2 is exact up to the added 1e-12, and P_m = ||V_m||^2
    rounded has sqrt(P_m) = ||V_m|| exactly (asserted)."""
    vr = torch.tensor([[[[1, 0.5], [-0.25, 0], [0.5, 0.5]], [[0.75, -1], [0.25, 0.5], [1, 0]]]])
    vi = torch.tensor([[[[0.5, 0], [1, -1], [0, 0.25]], [[0, 0.5], [-0.5, 0.25], [0.5, 1]]]])
    a = torch.tensor([[[1, 0], [0.5, 0.5], [0, 0]]])  # UE 2 dropped
    norm = bs_norm(a, cplx(vr, vi))[0]
    power = [float(n * n) for n in norm]
    assert all(np.sqrt(p) == float(n) for p, n in zip(power, norm)), "not exactly on the sphere"
    hr, hi = torch.randn(1, 2, 3, 2), torch.randn(1, 2, 3, 2)
    hr, hi, vr, vi, a = leaves(hr, hi, vr, vi, a)
    arrays = dict(h_re=hr, h_im=hi, v_re=vr, v_im=vi, a=a, params=[0.3] + power)
    arrays.update(op_arrays(hr, hi, vr, vi, a, power, 0.3))
    arrays.update(chain_arrays(hr, hi, vr, vi, a, power, 0.3))
    # the projection is the identity there, and its gradient the inside branch's
    assert torch.equal(arrays["n0_re"], vr) and torch.equal(arrays["n0_im"], vi)
    assert torch.equal(arrays["gn0_a"], torch.zeros_like(a))
    save("kink", **arrays)
    print(f"kink       powers {power}")


def model_cases():
    """The models' shape: channels h/sigma with link gains over 40 dB,
    beams N(0, 1) (a BS within 5% of its sphere scaled by 0.8), P = (1, 30):
    BS 0 outside its ball, BS 1 inside it in most samples."""
    B, M, K, N = 64, 2, 8, 4
    power, noise = [1.0, 30.0], 1.0
    gain = 10 ** (-1.5 + 2 * torch.rand(B, M, K, 1))
    hr, hi = gain * torch.randn(B, M, K, N), gain * torch.randn(B, M, K, N)
    vr, vi = torch.randn(B, M, K, N), torch.randn(B, M, K, N)
    frac = torch.softmax(2 * torch.randn(B, K, M), -1)
    drop = {(b, k) for b in range(0, B, 3) for k in (2, 5)}
    for name, a in (("model", frac), ("modeli", integer_assoc(B, K, M, N, drop))):
        # keep every BS off its sphere (projection kink): shrink those near it
        ratio = bs_norm(a, cplx(vr, vi)) / torch.sqrt(torch.tensor(power))[None, :]
        f = torch.where((ratio - 1).abs() < 0.05, 0.8, 1.0)[:, :, None, None]
        hl, il, vl, wl, al = leaves(hr, hi, vr * f, vi * f, a)
        arrays = dict(h_re=hl, h_im=il, v_re=vl, v_im=wl, a=al, params=[noise] + power)
        # at this size without the gradient in H (the models' H has none;
        # the small cases check it), to keep the files under 1 MB
        arrays.update(chain_arrays(hl, il, vl, wl, al, power, noise, h_grad=False))
        report(name, al, vl, wl, power, arrays)
        save(name, **arrays)


def report(name, a, vr, vi, power, arrays):
    ratio = bs_norm(a, cplx(vr, vi)) / torch.sqrt(torch.as_tensor(power))[None, :]
    assert ((ratio - 1).abs() > 1e-3).all(), f"{name}: a BS within 1e-3 of its sphere"
    dropped = int((a.sum(-1) == 0).sum())
    print(f"{name:10s} shape {list(vr.shape)} inside {int((ratio < 1).sum())}/{ratio.numel()} "
          f"dropped {dropped} rate0 {arrays['x0_r'].mean().item():.3f} "
          f"rate1 {arrays['x1_r'].mean().item():.3f}")


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in glob.glob(os.path.join(OUT, "beams_*.npy")):
        os.remove(f)
    torch.manual_seed(20261207)
    small_case("s1", 2, 2, 3, 2, False, [1.5, 1.0], 0.3)
    small_case("s1i", 2, 2, 3, 2, True, [1.5, 1.0], 0.3)
    small_case("s2", 2, 3, 5, 3, False, [1.5, 1.0, 2.0], 0.3)
    small_case("s2i", 2, 3, 5, 3, True, [1.5, 1.0, 2.0], 0.3)
    kink_case()
    model_cases()
    total = sum(map(os.path.getsize, WRITTEN))
    print(f"wrote {len(WRITTEN)} beams_*.npy fixtures, {total} bytes")
    assert total < 1 << 20, "fixtures must stay under 1 MB"


if __name__ == "__main__":
    main()
