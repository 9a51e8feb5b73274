#!/usr/bin/python3
"""Reference fixtures for sg_sinkhorn, computed with PyTorch in float64.

Run once from the repository root with Debian's python3-torch:
    /usr/bin/python3 tests/make_sinkhorn_fixtures.py
It writes tests/fixtures/sinkhorn_<case>_{x,w,y,gx,meta}.npy:
    x     input log masses [S, K, M]
    w     output weights; the loss is sum(w * y)
    y     forward output
    gx    d loss / d x (unrolled: autograd through the iterations run;
          implicit: the fixed-point gradient, computed independently below)
    meta  [row_mass, col_cap, max_iters, tol, mode (0 unrolled, 1 implicit),
           iterations run (largest over samples), largest column excess,
           converged (1/0), balanced (1: sg_sinkhorn_balanced)]

The iteration is the one of docs/models.md in the log domain:
    column step  x <- x - relu(logsumexp_k x - log col_cap)
    row step     x <- x - logsumexp_m x + log row_mass
with per-sample stopping: a sample is frozen after the first iteration that
leaves its column excess max(0, max_m sum_k exp(x_km) - col_cap) below tol
(tol <= 0: never), exactly as ops/sinkhorn.c documents. The balanced
variant (sg_sinkhorn_balanced, K row_mass = M col_cap) scales every column:
    column step  x <- x - (logsumexp_k x - log col_cap)
and its excess is max_m |sum_k exp(x_km) - col_cap|.
"""
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def col_step(x, log_cap, balanced=False):
    shift = torch.logsumexp(x, dim=-2, keepdim=True) - log_cap
    return x - (shift if balanced else torch.relu(shift))


def row_step(x, log_row):
    return x - torch.logsumexp(x, dim=-1, keepdim=True) + log_row


def col_excess(x, col_cap, balanced=False):
    if balanced:
        return (torch.exp(x).sum(-2) - col_cap).abs().amax(-1)
    return torch.clamp((torch.exp(x).sum(-2) - col_cap).amax(-1), min=0)


def sinkhorn(x, row_mass, col_cap, max_iters, tol, balanced=False):
    """Returns y, per-sample iterations, per-sample excess, per-sample
    active set (columns capped at an iteration after the first), and the
    smallest |LSE_k - log cap| met by a column step of a column not yet in
    the active set (distance to the kink). Active columns are exempt: rows
    enter every iteration after the first normalised, so a column capped
    there stays at or above its capacity for every nearby input, and the
    function is locally the capped branch however small its excess gets."""
    log_cap, log_row = np.log(col_cap), np.log(row_mass)
    S, K, M = x.shape
    running = torch.ones(S, dtype=torch.bool)
    iters = torch.zeros(S, dtype=torch.int64)
    excess = torch.zeros(S)
    active = torch.zeros(S, M, dtype=torch.bool)
    kink = np.inf
    for t in range(max_iters):
        if not running.any():
            break
        lse = torch.logsumexp(x, dim=-2).detach()
        free = running[:, None] & ~active
        if free.any() and not balanced:  # balanced: no kink
            kink = min(kink, (lse - log_cap)[free].abs().min().item())
        if t >= 1:
            active |= (lse > log_cap) & running[:, None]
        new = row_step(col_step(x, log_cap, balanced), log_row)
        ex = col_excess(new, col_cap, balanced).detach()
        x = torch.where(running[:, None, None], new, x)
        iters += running
        excess = torch.where(running, ex, excess)
        if tol > 0:  # stopping decisions must not sit on the threshold
            assert (ex[running] - tol).abs().min() > 1e-3 * tol, "excess too close to tol"
        running = running & ~(ex < tol)
    return x, iters, excess, active, kink


def implicit_grad(x, y, active, w, row_mass, col_cap, balanced=False):
    """Fixed-point gradient: solve the linearised optimality conditions with
    a pseudo-inverse (minimum-norm, so no gauge choice is shared with the C
    code), then backpropagate through the first column step by autograd."""
    S, K, M = x.shape
    if K * row_mass >= M * col_cap * (1 - 1e-12):
        # Total row mass fills every column: all end tight (or over), and
        # all are active whether the iteration capped them or not.
        active = torch.ones_like(active)
    P = torch.exp(y.detach())
    gz = torch.empty_like(w)
    for s in range(S):
        A = torch.nonzero(active[s]).flatten()
        PA = P[s][:, A]
        n = K + len(A)
        J = torch.zeros(n, n)
        J[:K, :K] = torch.diag(P[s].sum(1))
        J[:K, K:] = PA
        J[K:, :K] = PA.T
        J[K:, K:] = torch.diag(PA.sum(0))
        rhs = torch.cat([w[s].sum(1), w[s].sum(0)[A]])
        sol = torch.linalg.pinv(J, hermitian=True) @ rhs
        beta = torch.zeros(M)
        beta[A] = sol[K:]
        gz[s] = w[s] - P[s] * (sol[:K, None] + beta[None, :])
    xl = x.detach().clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(col_step(xl, np.log(col_cap), balanced), xl, gz)
    return gx


def inputs(rng, shape, spread, bias, normalise=True):
    """log_softmax of random logits (rows sum to 1), or the raw logits."""
    logits = torch.tensor(rng.normal(0, spread, shape)) + torch.tensor(bias)
    return torch.log_softmax(logits, -1) if normalise else logits


def save(name, x, w, y, gx, meta):
    for part, arr in (("x", x), ("w", w), ("y", y), ("gx", gx), ("meta", meta)):
        np.save(os.path.join(OUT, f"sinkhorn_{name}_{part}.npy"),
                np.ascontiguousarray(arr.detach().numpy() if torch.is_tensor(arr) else arr,
                                     dtype=np.float64))


def make(name, rng, x, row_mass, col_cap, max_iters, tol, mode, min_kink=1e-5, balanced=False):
    x = x.detach().clone().requires_grad_(True)
    y, iters, excess, active, kink = sinkhorn(x, row_mass, col_cap, max_iters, tol, balanced)
    w = torch.tensor(rng.normal(0, 1, tuple(x.shape)))
    if mode == 0:
        (gx,) = torch.autograd.grad((w * y).sum(), x)
        # Finite differences (step 1e-6, which moves an LSE by at most 1e-6)
        # must not straddle the max(0, .) kink.
        assert kink > min_kink, f"{name}: a column step is {kink:.2e} from its kink"
    else:
        gx = implicit_grad(x, y, active, w, row_mass, col_cap, balanced)
    converged = bool((tol > 0) and (excess < tol).all())
    meta = [row_mass, col_cap, max_iters, tol, mode, iters.max().item(), excess.max().item(),
            float(converged), float(balanced)]
    save(name, x, w, y, gx, np.array(meta))
    print(f"{name:22s} shape {list(x.shape)} cap {col_cap} iters {iters.tolist()} "
          f"excess {excess.max().item():.3e} kink {kink:.2e} active {active.sum().item()}")


def main():
    rng = np.random.default_rng(20240601)
    os.makedirs(OUT, exist_ok=True)
    # Unrolled at 1, 3 and 20 iterations: K < M*N, K = M*N (M = 2 and 3).
    shapes = {"lt": ((3, 6, 2), 4.0, [1.5, 0.0]),   # K = 6 < M*N = 8
              "eq2": ((2, 8, 2), 4.0, [0.8, 0.0]),  # K = M*N = 8
              "eq3": ((4, 6, 3), 2.0, [0.9, 0.3, 0.0])}  # K = M*N = 6
    for tag, (shape, cap, bias) in shapes.items():
        x = inputs(rng, shape, 1.5, bias)
        for t in (1, 3, 20):
            make(f"{tag}_t{t}", rng, x, 1.0, cap, t, 0.0, 0)
    # K < M*N with three columns: some capped, some not.
    make("lt3_t10", rng, inputs(rng, (3, 5, 3), 1.5, [1.0, 0.0, -0.5]), 1.0, 2.0, 10, 0.0, 0)
    # Per-sample stopping at a tolerance.
    make("tol_unrolled", rng, inputs(rng, (5, 6, 3), 1.5, [1.0, 0.2, 0.0]), 1.0, 2.5, 400, 1e-6, 0)
    # Unnormalised input rows and row_mass 2.
    xu = inputs(rng, (3, 4, 3), 1.0, [0.5, 0.0, 0.0], normalise=False)
    make("unnorm_unrolled", rng, xu, 2.0, 3.0, 5, 0.0, 0)
    make("unnorm_implicit", rng, xu, 2.0, 3.0, 500, 1e-13, 1)
    # K > M*N: infeasible, runs max_iters.
    xi = inputs(rng, (2, 10, 2), 1.5, [0.5, 0.0])
    make("infeasible_unrolled", rng, xi, 1.0, 4.0, 20, 1e-3, 0)
    make("infeasible_implicit", rng, xi, 1.0, 4.0, 20, 1e-3, 1)
    # Implicit on converged inputs (K < M*N and K = M*N) and not converged.
    make("conv_implicit_lt", rng, inputs(rng, (3, 6, 3), 1.5, [1.0, 0.0, -0.3]), 1.0, 2.5, 2000,
         1e-13, 1)
    make("conv_implicit_eq", rng, inputs(rng, (3, 8, 2), 1.5, [0.8, 0.0]), 1.0, 4.0, 2000, 1e-13,
         1)
    make("conv_implicit_eq3", rng, inputs(rng, (3, 6, 3), 1.5, [0.8, 0.0, -0.3]), 1.0, 2.0, 2000,
         1e-13, 1)
    make("noconv_implicit", rng, inputs(rng, (3, 6, 3), 2.0, [1.5, 0.0, 0.0]), 1.0, 2.0, 3, 0.0, 1)
    # Balanced (K row_mass = M col_cap): unrolled at 3 and 20 iterations,
    # unnormalised rows, per-sample stopping, implicit at convergence.
    xb = inputs(rng, (2, 8, 2), 1.5, [0.8, 0.0])
    for t in (3, 20):
        make(f"bal_eq2_t{t}", rng, xb, 1.0, 4.0, t, 0.0, 0, balanced=True)
    make("bal_eq3_t20", rng, inputs(rng, (4, 6, 3), 1.5, [0.9, 0.3, 0.0]), 1.0, 2.0, 20, 0.0, 0,
         balanced=True)
    make("bal_unnorm", rng, inputs(rng, (3, 6, 3), 1.0, [0.5, 0.0, 0.0], normalise=False), 1.5,
         3.0, 5, 0.0, 0, balanced=True)
    make("bal_tol_unrolled", rng, inputs(rng, (3, 8, 2), 1.5, [1.0, 0.0]), 1.0, 4.0, 400, 1e-6, 0,
         balanced=True)
    make("bal_conv_implicit", rng, inputs(rng, (3, 8, 2), 1.5, [0.8, 0.0]), 1.0, 4.0, 2000, 1e-13,
         1, balanced=True)


if __name__ == "__main__":
    main()
