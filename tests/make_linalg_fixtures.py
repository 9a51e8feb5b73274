#!/usr/bin/python3
"""PyTorch reference fixtures for the linear-solve test suite (tests/test_linalg.c).

For each case it saves, as float64 .npy files tests/fixtures/linalg_<case>_<name>.npy:
the inputs A and B, the solution X = torch.linalg.solve(A, B), a random weight
w of X's shape, and the gradients g_A, g_B of sum(w * X). Inputs and weights
are rounded to float32-representable values, so the float32 run of the C
tests starts from exactly these inputs. Seeds are fixed: rerunning reproduces
the files bit for bit.

Run from the repository root:  /usr/bin/python3 tests/make_linalg_fixtures.py
"""
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def f32_exact(a):
    return a.float().double()


def save(case, A, B):
    A = f32_exact(A).requires_grad_(True)
    B = f32_exact(B).requires_grad_(True)
    X = torch.linalg.solve(A, B)
    w = f32_exact(torch.randn(X.shape))
    g_A, g_B = torch.autograd.grad((w * X).sum(), (A, B))
    for name, a in dict(A=A, B=B, X=X, w=w, g_A=g_A, g_B=g_B).items():
        path = os.path.join(OUT, f"linalg_{case}_{name}.npy")
        np.save(path, np.ascontiguousarray(a.detach().numpy(), dtype=np.float64))


def duality_matrices(batch, n, k):
    """I + G diag(lam) G^T with G [batch, n, 2k] ~ N(0, 1) and lam in [0.05, 1]:
    the matrices of BFGNN's duality head (2N = n, K = k UEs, each UE's channel
    as two real columns)."""
    G = torch.randn(batch, n, 2 * k)
    lam = 0.05 + 0.95 * torch.rand(batch, 1, 2 * k)
    return torch.eye(n) + (G * lam) @ G.transpose(-1, -2), G[..., :k]


def main():
    torch.manual_seed(20261207)
    # a small general batch, diagonally weighted so that it is well conditioned
    save("small", torch.randn(3, 4, 4) + 4 * torch.eye(4), torch.randn(3, 4, 2))
    # a zero leading entry: the first step must swap rows
    A = torch.tensor([[[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 1.0]]])
    save("pivot", A, torch.randn(1, 3, 5))
    # two leading axes and a 1 x 1 system
    save("scalar", torch.rand(2, 3, 1, 1) + 0.5, torch.randn(2, 3, 1, 4))
    # the model shape: batch 64 x M 2 BSs, 2N = 8, K = 8 right-hand sides
    A, B = duality_matrices(128, 8, 8)
    save("beam", A, B)


if __name__ == "__main__":
    main()
