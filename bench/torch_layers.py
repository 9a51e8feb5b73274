#!/usr/bin/python3
"""The PyTorch side of the layer benchmark (bench/layers_run; the C side is
bench/layers.c, whose header describes the protocol).

The same cases, shapes, inputs and loss as bench_layers: float32,
torch.set_num_threads(2), per run: leaf gradients set to None, y = layer(x),
loss = sum(w * y) with a fixed w, backward. 5 warm-up runs, then at least
--min-runs timed runs, more (up to 2001) while under --budget seconds
(default 0.5); the median.
Inputs come from the same formulas (value i of input s: amp * sin(0.37 i + s)
+ offset, computed in float64 and rounded to float32; w_i = cos(0.11 i)).

The layers in PyTorch:
  softmax, log_softmax      torch.softmax / torch.log_softmax over the last axis
  gumbel_softmax            torch.softmax((logits + G) / tau): G is given (as
                            the models give it), and F.gumbel_softmax cannot
                            take it
  layer_norm                F.layer_norm with weight and bias
  sinkhorn                  the log-domain capacity iteration through
                            autograd (as bench/torch_gnn.py), 10 iterations;
                            PyTorch has no implicit form, so both sinkgrad
                            modes are compared with this one
  attention                 softmax(q k^T / sqrt(d)) v by torch.matmul, as
                            the models (bench/torch_gnn.py); torch 1.13 has no
                            fused scaled_dot_product_attention
  loss_only                 y = x: the loss sum(w * y) and its backward alone,
                            the part of every case that is not the layer

Usage: torch_layers.py [--threads T] [--min-runs N] [--budget S] [CASE ...]
Output, one tab-separated line per case, as bench_layers:
  case  median_us  runs  loss  grad_dot  grad_abs  cpu_us
(cpu_us: median process CPU time of a run, time.process_time)
"""
import argparse
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

WARMUP, MAX_RUNS = 5, 2001
GUMBEL_TAU, LN_EPS, SK_CAP, SK_ITERS = 0.5, 1e-5, 4.0, 10

# name -> (kind, x shape, d); the same list as CASES in bench/layers.c
CASES = {
    "softmax/256x8x2": ("softmax", (256, 8, 2), 0),
    "softmax/256x8x512": ("softmax", (256, 8, 512), 0),
    "log_softmax/256x8x2": ("log_softmax", (256, 8, 2), 0),
    "log_softmax/256x8x512": ("log_softmax", (256, 8, 512), 0),
    "gumbel_softmax/256x8x2": ("gumbel", (256, 8, 2), 0),
    "gumbel_softmax/256x8x512": ("gumbel", (256, 8, 512), 0),
    "layer_norm/256x8x64": ("layer_norm", (256, 8, 64), 64),
    "layer_norm/256x8x128": ("layer_norm", (256, 8, 128), 128),
    "layer_norm/256x8x512": ("layer_norm", (256, 8, 512), 512),
    "layer_norm/256x8x2x64": ("layer_norm", (256, 8, 2, 64), 64),
    "layer_norm/256x8x2x128": ("layer_norm", (256, 8, 2, 128), 128),
    "layer_norm/256x8x2x512": ("layer_norm", (256, 8, 2, 512), 512),
    "sinkhorn_unrolled/256x8x2": ("sinkhorn", (256, 8, 2), 0),
    "sinkhorn_implicit/256x8x2": ("sinkhorn", (256, 8, 2), 0),
    "attention/d64": ("attention", (256, 8, 1, 64), 64),
    "attention/d128": ("attention", (256, 8, 1, 128), 128),
    "attention/d512": ("attention", (256, 8, 1, 512), 512),
    "loss_only/256x8x2": ("loss_only", (256, 8, 2), 0),
    "loss_only/256x8x64": ("loss_only", (256, 8, 64), 0),
    "loss_only/256x8x128": ("loss_only", (256, 8, 128), 0),
    "loss_only/256x8x2x64": ("loss_only", (256, 8, 2, 64), 0),
    "loss_only/256x8x2x128": ("loss_only", (256, 8, 2, 128), 0),
    "loss_only/256x8x512": ("loss_only", (256, 8, 512), 0),
    "loss_only/256x8x2x512": ("loss_only", (256, 8, 2, 512), 0),
}


def formula(shape, seed, amp, offset, grad):
    n = int(np.prod(shape))
    v = amp * np.sin(0.37 * np.arange(n, dtype=np.float64) + seed) + offset
    return torch.from_numpy(v.astype(np.float32).reshape(shape)).requires_grad_(grad)


def make_case(kind, shape, d):
    """(leaves, constants, forward function of leaves and constants)."""
    if kind in ("softmax", "log_softmax", "sinkhorn", "loss_only"):
        leaves, consts = [formula(shape, 0.0, 3.0, 0.0, True)], []
    elif kind == "gumbel":
        leaves, consts = [formula(shape, 0.0, 3.0, 0.0, True)], [formula(shape, 1.0, 1.2, 0.5, False)]
    elif kind == "layer_norm":
        leaves = [formula(shape, 0.0, 2.0, 0.3, True), formula((d,), 2.0, 0.1, 1.0, True),
                  formula((d,), 3.0, 0.05, 0.0, True)]
        consts = []
    else:  # attention: q [B, K, 1, d], k [B, 1, 2, d], v [B, K, 2, d]
        B, K = shape[0], shape[1]
        leaves = [formula(shape, 0.0, 1.0, 0.0, True), formula((B, 1, 2, d), 1.0, 1.0, 0.0, True),
                  formula((B, K, 2, d), 2.0, 1.0, 0.0, True)]
        consts = []
    return leaves, consts, FORWARD[kind]


def sinkhorn(x):
    """Column step (cap each column's mass at SK_CAP; relu: equality is not
    capped), then row step (rows sum to 1), SK_ITERS times, in the log domain."""
    log_cap = math.log(SK_CAP)
    for _ in range(SK_ITERS):
        x = x - torch.relu(torch.logsumexp(x, dim=-2, keepdim=True) - log_cap)
        x = x - torch.logsumexp(x, dim=-1, keepdim=True)
    return x


def attention(q, k, v):
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.matmul(torch.softmax(scores, -1), v)


FORWARD = {
    "softmax": lambda L, C: torch.softmax(L[0], -1),
    "log_softmax": lambda L, C: torch.log_softmax(L[0], -1),
    "gumbel": lambda L, C: torch.softmax((L[0] + C[0]) / GUMBEL_TAU, -1),
    "layer_norm": lambda L, C: F.layer_norm(L[0], (L[0].shape[-1],), L[1], L[2], LN_EPS),
    "sinkhorn": lambda L, C: sinkhorn(L[0]),
    "attention": lambda L, C: attention(*L),
    "loss_only": lambda L, C: L[0],
}


def run_once(leaves, consts, fwd, w):
    for t in leaves:
        t.grad = None
    loss = (w * fwd(leaves, consts)).sum()
    loss.backward()
    return loss


def grad_checksums(leaves):
    dot = abs_sum = 0.0
    for t in leaves:
        g = t.grad.detach().double().reshape(-1).numpy()
        dot += float(np.dot(g, np.cos(0.7 * np.arange(g.size, dtype=np.float64))))
        abs_sum += float(np.abs(g).sum())
    return dot, abs_sum


def bench(name, min_runs, budget):
    kind, shape, d = CASES[name]
    leaves, consts, fwd = make_case(kind, shape, d)
    n = int(np.prod(shape))  # the output has x's (or q's) shape
    w = torch.from_numpy(np.cos(0.11 * np.arange(n, dtype=np.float64)).astype(np.float32)
                         .reshape(shape))
    for _ in range(WARMUP):
        loss = run_once(leaves, consts, fwd, w)
    times, cpu_times, start = [], [], time.perf_counter()
    while len(times) < MAX_RUNS and (len(times) < min_runs or time.perf_counter() - start < budget):
        t0, c0 = time.perf_counter(), time.process_time()
        run_once(leaves, consts, fwd, w)
        cpu_times.append(time.process_time() - c0)
        times.append(time.perf_counter() - t0)
    dot, abs_sum = grad_checksums(leaves)
    print(f"{name}\t{1e6 * median(times):.3f}\t{len(times)}\t{loss.item():.9g}\t"
          f"{dot:.9g}\t{abs_sum:.9g}\t{1e6 * median(cpu_times):.3f}", flush=True)


def median(v):
    return sorted(v)[len(v) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-runs", type=int, default=51)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    unknown = [c for c in a.cases if c not in CASES]
    if unknown or a.threads < 1 or not 1 <= a.min_runs <= MAX_RUNS or not a.budget >= 0:
        sys.exit(f"torch_layers.py: bad arguments (unknown cases: {unknown})")
    torch.set_num_threads(a.threads)
    for name in a.cases or CASES:
        bench(name, a.min_runs, a.budget)


if __name__ == "__main__":
    main()
