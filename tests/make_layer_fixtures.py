#!/usr/bin/python3
"""PyTorch reference fixtures for the layers test suite (tests/test_layers.c).

For each case it saves, as float64 .npy files tests/fixtures/layers_<case>_<name>.npy:
  - the inputs (and a `params` vector of the case's scalar arguments),
  - the output y,
  - a random weight w of y's shape,
  - the gradient of sum(w * y) with respect to every differentiable input (g_<input>).
Inputs and weights are rounded to float32-representable values, so the
float32 run of the C tests computes from exactly these inputs and its error
against these references is its own round-off. Seeds are fixed, so rerunning
reproduces the files bit for bit.

Run from the repository root:  /usr/bin/python3 tests/make_layer_fixtures.py
"""
import math
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def save(case, **arrays):
    for name, a in arrays.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().numpy()
        np.save(os.path.join(OUT, f"layers_{case}_{name}.npy"), np.asarray(a, dtype=np.float64))


def f32_exact(a):
    """Rounds to float32-representable values, so that the C float32 run sees
    exactly the inputs these float64 references were computed from."""
    return a.float().double()


def leaf(a):
    return f32_exact(a).requires_grad_(True)


def weighted_grads(y, inputs, mask=None):
    """w ~ N(0, 1) of y's shape (zero where mask is True); returns w and d sum(w*y) / d inputs."""
    w = f32_exact(torch.randn(y.shape))
    if mask is not None:
        w = torch.where(mask, torch.zeros_like(w), w)
    # where w is 0 and y is -inf, w*y is NaN: leave those entries out of the sum
    prod = torch.where(w == 0, torch.zeros_like(y), w * y)
    grads = torch.autograd.grad(prod.sum(), inputs)
    return w, grads


# ---- softmax / log_softmax ---------------------------------------------------

def softmax_cases():
    cases = {
        "last": (torch.randn(4, 7) * 2, -1),
        "mid": (torch.randn(2, 5, 3) * 2, 1),
        "first": (torch.randn(6, 4) * 2, 0),
        "long": (torch.randn(2, 300) * 2, -1),
        "widemid": (torch.randn(1, 4, 260) * 2, 1),
        "big": (torch.randn(3, 5) * 1e4, -1),
    }
    x = f32_exact(torch.randn(3, 6) * 2)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0, 1] = mask[0, 4] = mask[1, 0] = mask[2, 5] = True
    mask[1, 1:5] = True  # row 1 keeps one finite entry
    cases["mask"] = (x.masked_fill(mask, -math.inf), -1)
    for name, (x, axis) in cases.items():
        x = f32_exact(x)
        for fn, prefix in ((torch.softmax, "sm"), (torch.log_softmax, "lsm")):
            xl = leaf(x)
            y = fn(xl, axis)
            # log_softmax is -inf at masked entries: weight 0 there, so both
            # conventions for the gradient at masked entries agree (see docs)
            wmask = torch.isinf(x) if prefix == "lsm" else None
            w, (gx,) = weighted_grads(y, [xl], wmask)
            save(f"{prefix}_{name}", x=x, params=[axis], y=y, w=w, g_x=gx)


# ---- layer norm --------------------------------------------------------------

def layer_norm_cases():
    cases = {  # name: shape, has gain, has bias
        "gb": ((4, 8), True, True),
        "none": ((2, 3, 16), False, False),
        "gain": ((5, 64), True, False),
        "bias": ((3, 40), False, True),
        "blocks": ((70, 24), True, True),  # more than one block of rows in the backward
        "d1": ((3, 1), True, True),  # zero variance: y = bias, zero input gradient
    }
    eps = 1e-5
    for name, (shape, has_g, has_b) in cases.items():
        D = shape[-1]
        x = leaf(torch.randn(*shape) * 1.5 + 0.3)
        gain = leaf(1 + 0.5 * torch.randn(D)) if has_g else None
        bias = leaf(0.5 * torch.randn(D)) if has_b else None
        y = torch.nn.functional.layer_norm(x, (D,), gain, bias, eps)
        inputs = [t for t in (x, gain, bias) if t is not None]
        w, grads = weighted_grads(y, inputs)
        arrays = dict(x=x, params=[eps, has_g, has_b], y=y, w=w, g_x=grads[0])
        k = 1
        if has_g:
            arrays.update(gain=gain, g_gain=grads[k])
            k += 1
        if has_b:
            arrays.update(bias=bias, g_bias=grads[k])
        save(f"ln_{name}", **arrays)


# ---- Gumbel-Softmax ----------------------------------------------------------

def gumbel(shape):
    u = torch.rand(shape).clamp(1e-12, 1 - 1e-12)
    return -torch.log(-torch.log(u))


def gumbel_softmax_ref(logits, noise, tau, axis, hard):
    """torch.nn.functional.gumbel_softmax with the noise given instead of drawn."""
    y_soft = ((logits + noise) / tau).softmax(axis)
    if not hard:
        return y_soft
    index = y_soft.max(axis, keepdim=True)[1]
    y_hard = torch.zeros_like(y_soft).scatter_(axis, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


def gumbel_cases():
    cases = {  # name: shape, tau, axis, hard
        "t1": ((4, 5), 1.0, -1, False),
        "t01": ((4, 5), 0.1, -1, False),
        "t5": ((4, 5), 5.0, -1, False),
        "hard": ((6, 4), 0.5, -1, True),
        "mid": ((3, 4, 2), 2.0, 1, False),
        "hardmid": ((3, 4, 2), 0.7, 1, True),
    }
    for name, (shape, tau, axis, hard) in cases.items():
        logits = leaf(torch.randn(*shape))
        noise = leaf(gumbel(shape))
        y = gumbel_softmax_ref(logits, noise, tau, axis, hard)
        w, (gl, gn) = weighted_grads(y, [logits, noise])
        assert torch.equal(gl, gn)
        save(f"gs_{name}", logits=logits, noise=noise, params=[tau, axis, hard], y=y, w=w,
             g_logits=gl)


# ---- attention ---------------------------------------------------------------

def attention_ref(q, k, v):
    d = q.shape[-1]
    p = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), -1)
    return p @ v


def attention_cases():
    cases = {  # name: q, k, v shapes
        "basic": ((2, 3, 5), (2, 4, 5), (2, 4, 6)),
        "skgs": ((2, 3, 1, 8), (2, 1, 2, 8), (2, 3, 2, 8)),  # AttSKGS-GNN: [B,K,1,d],[B,1,M,d],[B,K,M,d]
        "lk1": ((3, 2, 4), (3, 1, 4), (3, 1, 2)),
        "shared": ((2, 2, 3, 4), (3, 4), (2, 1, 3, 5)),
        "long": ((2, 1, 70), (2, 3, 70), (2, 3, 33)),
    }
    for name, (qs, ks, vs) in cases.items():
        q, k, v = leaf(torch.randn(*qs)), leaf(torch.randn(*ks)), leaf(torch.randn(*vs))
        y = attention_ref(q, k, v)
        # the formula above is what torch's fused op computes
        sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
        if sdpa is not None:
            assert torch.allclose(sdpa(q, k, v), y, rtol=1e-12, atol=1e-12)
        w, (gq, gk, gv) = weighted_grads(y, [q, k, v])
        save(f"at_{name}", q=q, k=k, v=v, y=y, w=w, g_q=gq, g_k=gk, g_v=gv)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.startswith("layers_") and f.endswith(".npy"):
            os.remove(os.path.join(OUT, f))
    torch.manual_seed(20240517)
    softmax_cases()
    layer_norm_cases()
    gumbel_cases()
    attention_cases()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT)
                if f.startswith("layers_"))
    print(f"wrote layers_*.npy fixtures: {total} bytes")
    assert total < 1 << 20, "fixtures must stay under 1 MB"


if __name__ == "__main__":
    main()
