#!/usr/bin/python3
"""The PyTorch side of the comparison (bench/run; the C side is bench_gnn.c).

The same AttSKGS-GNN / SKGS-GNN as models/gnn/gnn.c (docs/models.md): the same
layers in the same order, the same parameter names and shapes (loaded from
the .npz that `bench_gnn export` writes), the same split first Linear of
every MLP on concatenated inputs (a [x, y] input is applied as
x W_x^T + y W_y^T + b with broadcasting over the leading axes, as
sg_mlp_forward_parts does), messages averaged before their MLP's last
Linear (as sg_mlp_forward_parts_mean does; the Linear is affine, so this is
the same function), so that both sides do the same arithmetic work; the
same Gumbel noise, the same log-domain capacity Sinkhorn with exactly T
iterations, the same sum-rate and loss.

BFGNN (models/gnn/bfgnn.c, the .npz of `bench_gnn export --variant bfgnn`):
the same trunk (SKGS-GNN's MLP edge update) on [X, a_km], the beam head
mlp_v, the mask a_km, the per-BS normalisation, the beam couplings and the
sum-rate; loss -mean R; its eval output is the beams (no argmax). With
`--head duality` the head is the duality one: mlp_v gives lambda and w per
edge and the beams come from the same 2N x 2N real-form systems as
sg_solve's, solved by torch.linalg.solve.

Modes (one process each, so that peak memory is per measurement):
  check F.npz   loss, gradients, loss after one Adam step and the eval
                output against the C results in F.npz; exits 1 on mismatch
  train F.npz   median time of a training step (zero_grad, forward, sum-rate,
                loss, backward, Adam)
  infer F.npz   eval forward + row argmax latency: 1 sample and 256
  gemm          torch.mm GFLOP/s (context for the provider numbers)
Each prints one JSON object on stdout. Threads: torch.set_num_threads(2);
bench/run sets the OpenBLAS/OpenMP environment of this process.
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

THREADS = 2


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def involuntary_switches():
    """Times the scheduler took the CPU away (a busy machine shows here)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


RSS_AFTER_IMPORT = peak_rss_mib()


class MLP(nn.Sequential):
    """Linear(in, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, out):
    parameter names <name>.0/.2/.4.weight/bias, as the C registry."""

    def __init__(self, fin, hidden, fout):
        super().__init__(nn.Linear(fin, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, fout))

    def hidden(self, *xs):
        """The last hidden activations of the MLP on the concatenation of xs
        along the last axis, the parts broadcasting over the leading axes
        (first Linear split by columns)."""
        first, h1, off = self[0], None, 0
        for i, x in enumerate(xs):
            w = first.weight[:, off:off + x.shape[-1]]
            y = F.linear(x, w, first.bias if i == 0 else None)
            h1 = y if h1 is None else h1 + y
            off += x.shape[-1]
        return F.relu(self[2](F.relu(h1)))

    def parts(self, *xs):
        return self[4](self.hidden(*xs))

    def parts_mean(self, axis, *xs):
        """parts(*xs).mean(axis), the mean taken before the last Linear."""
        return self[4](self.hidden(*xs).mean(axis))


class Layer(nn.Module):
    def __init__(self, d, h, attention, node_update):
        super().__init__()
        self.node_update = node_update
        if node_update:
            self.f1, self.f2, self.f3, self.f4 = (MLP(2 * d, h, d) for _ in range(4))
        self.attention = attention
        if attention:
            self.w_q = nn.Linear(d, d, bias=False)
            self.w_k = nn.Linear(d, d, bias=False)
            self.w_v = nn.Linear(d, d, bias=False)
            self.ln = nn.LayerNorm(d, eps=1e-5)
            self.f5 = MLP(2 * d, h, d)
        else:
            self.f5 = MLP(3 * d, h, d)

    def forward(self, b, c, e):
        """b [B, M, d], c [B, K, d], e [B, K, M, d] (UE-major, as gnn.c)."""
        bv, cv = b.unsqueeze(1), c.unsqueeze(2)  # [B, 1, M, d], [B, K, 1, d]
        nb, nc = b, c
        if self.node_update:
            nb = self.f2.parts(b, self.f1.parts_mean(1, cv, e))
            nc = self.f4.parts(c, self.f3.parts_mean(2, bv, e))
        if self.attention:
            q, k, v = self.w_q(cv), self.w_k(bv), self.w_v(e)  # [B,K,1,d] [B,1,M,d] [B,K,M,d]
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # [B,K,1,M]
            att = torch.matmul(torch.softmax(scores, -1), v)  # [B, K, 1, d]
            ne = self.f5.parts(e, self.ln(att))
        else:
            ne = self.f5.parts(e, bv, cv)
        return nb, nc, ne


class Trunk(nn.Module):
    """The pre-processing MLPs and the L update layers (gnn_internal.h)."""

    def __init__(self, attention, d, h, L, fp, fq, fe):
        super().__init__()
        self.mlp_p, self.mlp_q, self.mlp_e = MLP(fp, h, d), MLP(fq, h, d), MLP(fe, h, d)
        self.layers = nn.ModuleList(Layer(d, h, attention, l < L - 1) for l in range(L))

    def embed(self, p, q, H):
        """The final edge embeddings e [B, K, M, d] of H [B, M, K, fe]."""
        b, c = self.mlp_p(p), self.mlp_q(q)
        e = self.mlp_e(H.permute(0, 2, 1, 3))
        for layer in self.layers:
            b, c, e = layer(b, c, e)
        return e


class GNN(Trunk):
    def __init__(self, attention, d, h, L, fp=1, fq=1, fe=8, tau=1.0, sk_iters=10, capacity=4.0):
        super().__init__(attention, d, h, L, fp, fq, fe)
        self.mlp_out = MLP(d, h, 1)
        self.tau, self.sk_iters, self.log_cap = tau, sk_iters, math.log(capacity)

    def sinkhorn(self, x):
        """Log domain, exactly T iterations: column step (cap each BS column
        at N; relu: at equality not capped), then row step (rows sum to 1)."""
        for _ in range(self.sk_iters):
            x = x - torch.relu(torch.logsumexp(x, dim=-2, keepdim=True) - self.log_cap)
            x = x - torch.logsumexp(x, dim=-1, keepdim=True)
        return x

    def forward(self, p, q, H, noise=None):
        """A~ [B, K, M]; noise None: eval mode (G = 0)."""
        B, M, K = p.shape[0], p.shape[1], q.shape[1]
        logits = self.mlp_out(self.embed(p, q, H)).reshape(B, K, M)
        x = logits if noise is None else logits + noise
        x = torch.log_softmax(x / self.tau, -1)
        return torch.exp(self.sinkhorn(x))


class BFGNN(Trunk):
    """models/gnn/bfgnn.c: the SMA-GNN trunk on [X, a_km] (Fe = 2N + 1), the
    beam head mlp_v, the mask a_km and the per-BS normalisation
    (assoc_beam_normalize: projection onto the power ball or full power).
    Direct head: mlp_v (d -> 2N) gives the beams; duality head: mlp_v
    (d -> 2) gives lambda and w per edge (duality_beams)."""

    def __init__(self, d, h, L, N=4, power=1.0, full_power=False, eps=1e-12, duality=False):
        super().__init__(False, d, h, L, 1, 1, 2 * N + 1)
        self.mlp_v = MLP(d, h, 2 if duality else 2 * N)
        self.N, self.power, self.full_power, self.eps = N, power, full_power, eps
        self.duality = duality

    def forward(self, p, q, X, A):
        """The beams (V_re, V_im), each [B, M, K, N], of association A [B, K, M]."""
        B, K, M = A.shape
        a = A.transpose(1, 2).reshape(B, M, K, 1)
        e = self.embed(p, q, torch.cat([X, a], -1))
        o = self.mlp_v(e).permute(0, 2, 1, 3)  # [B, M, K, 2N], or [B, M, K, 2]
        if self.duality:
            o = self.duality_beams(o, X, A)
        v_re, v_im = o[..., :self.N] * a, o[..., self.N:] * a
        energy = (v_re.square() + v_im.square()).sum(-1)  # [B, M, K]
        norm = ((a.squeeze(-1).square() * energy).sum(-1) + self.eps).sqrt().reshape(B, M, 1, 1)
        rp = math.sqrt(self.power)
        factor = rp / (norm if self.full_power else rp + torch.relu(norm - rp))
        return v_re * factor, v_im * factor

    def duality_beams(self, o, X, A):
        """The duality head's 2N-real beams [B, M, K, 2N] (bfgnn.c
        duality_beams) from mlp_v's o [B, M, K, 2]: lambda_mk =
        exp(10 tanh(o0 / 10)) served_k, sqrt(w_mk) = exp(5 tanh(o1 / 10)),
        u_mk = S_m^{-1} conj(x_mk) with S_m = I + sum_l lambda_ml conj(x_ml)
        x_ml^T in the 2N x 2N real form (torch.linalg.solve, LU as sg_solve),
        then sqrt(w) u / |u|."""
        B, K, N = A.shape[0], A.shape[1], self.N
        bounded_exp = lambda x, c: torch.exp(torch.tanh(x * (1.0 / 10.0)) * (c * 10.0))
        served = A.sum(2).reshape(B, 1, K, 1)  # a dropped UE needs no protection
        lam = bounded_exp(o[..., 0:1], 1.0) * served
        power = bounded_exp(o[..., 1:2], 0.5)
        re, im = X[..., :N], X[..., N:]
        c1, c2 = torch.cat([re, -im], -1), torch.cat([im, re], -1)  # conj(x), j conj(x)
        cols, w = torch.cat([c1, c2], 2), torch.cat([lam, lam], 2)  # [B, M, 2K, 2N], [.., 1]
        S = torch.matmul(cols.transpose(-1, -2), w * cols) + torch.eye(2 * N, dtype=X.dtype)
        u = torch.linalg.solve(S, c1.transpose(-1, -2)).transpose(-1, -2)  # [B, M, K, 2N]
        return u / (u.square().sum(-1, keepdim=True) + 1e-30).sqrt() * power


def beam_rate(A, G_re, G_im, V_re, V_im):
    """R [B] of A with beams V on channels G (assoc_bfgnn_rate): couplings
    h^T v (no conjugate) [B, M, K, K], then sum_rate with noise 1."""
    dot = lambda x, y: torch.matmul(x, y.transpose(-1, -2))
    c_re = dot(G_re, V_re) - dot(G_im, V_im)
    c_im = dot(G_re, V_im) + dot(G_im, V_re)
    return sum_rate(A, c_re, c_im, 1.0)


def sum_rate(A, c_re, c_im, noise=1.0):
    """R [B] of A [B, K, M] from couplings [B, M, K, K] (models/gnn/sumrate.c)."""
    B, K, M = A.shape
    a = A.transpose(1, 2).reshape(B, M, 1, K)
    z_re, z_im = (c_re * a).sum(1), (c_im * a).sum(1)  # [B, K, K]
    power = z_re.square() + z_im.square()
    eye = torch.eye(K, dtype=A.dtype)
    signal = (power * eye).sum(-1)
    interference = (power * (1 - eye)).sum(-1)
    sinr = signal / (interference + noise)
    return torch.log(sinr + 1).sum(-1) / math.log(2.0)


def assoc_loss(rate, A, mu, capacity, delta):
    excess = torch.relu(A.sum(1) - (capacity - delta)).mean(0)  # [M]
    return (excess * mu).sum() - rate.mean()


def load_params(model, z, dtype):
    """The C side's weights ("param/<name>" of z) into model, as dtype."""
    names = {k[len("param/"):] for k in z.files if k.startswith("param/")}
    own = dict(model.named_parameters())
    if names != set(own):
        raise SystemExit("parameter names differ: only C %s, only torch %s" %
                         (sorted(names - set(own)), sorted(set(own) - names)))
    with torch.no_grad():
        for n, prm in own.items():
            arr = z["param/" + n]
            if tuple(arr.shape) != tuple(prm.shape):
                raise SystemExit("shape of %s: C %s, torch %s" % (n, arr.shape, prm.shape))
            prm.data = torch.from_numpy(arr).to(dtype)


class Problem:
    """Model, inputs and loss settings from the .npz of `bench_gnn export`."""

    def __init__(self, path, dtype=torch.float32, with_infer=True):
        z = np.load(path)
        scalar = lambda k: float(z[k])
        self.attention = scalar("cfg/variant") == 0
        self.model = GNN(self.attention, int(scalar("cfg/d")), int(scalar("cfg/h")),
                         int(scalar("cfg/L")), tau=scalar("cfg/tau"),
                         sk_iters=int(scalar("cfg/sk_iters")), capacity=scalar("cfg/capacity"))
        self.capacity, self.delta, self.lr = scalar("cfg/capacity"), scalar("cfg/delta"), scalar(
            "cfg/lr")
        load_params(self.model, z, dtype)
        t = lambda k: torch.from_numpy(z[k]).to(dtype)
        self.train = [t("train/" + k) for k in ("p", "q", "H", "noise", "c_re", "c_im")]
        self.mu = t("cfg/mu")
        self.infer = [t("infer/" + k) for k in ("p", "q", "H")] if with_infer else None
        self.npz = z
        self.name = "AttSKGS-GNN" if self.attention else "SKGS-GNN"

    def loss(self):
        p, q, H, noise, c_re, c_im = self.train
        A = self.model(p, q, H, noise)
        return assoc_loss(sum_rate(A, c_re, c_im), A, self.mu, self.capacity, self.delta)

    @staticmethod
    def predict(model, inputs):
        """The eval output and the association (row argmax)."""
        A = model(*inputs)
        return A, A.argmax(-1)


class BfProblem(Problem):
    """BFGNN's model, inputs and loss (-mean R) from `bench_gnn export
    --variant bfgnn`; the association is an input (ES, from the C side)."""

    KEYS = ("p", "q", "X", "A", "G_re", "G_im")

    def __init__(self, path, dtype=torch.float32, with_infer=True):
        z = np.load(path)
        scalar = lambda k: float(z[k])
        duality = "cfg/head_duality" in z.files and scalar("cfg/head_duality") != 0
        self.model = BFGNN(int(scalar("cfg/d")), int(scalar("cfg/h")), int(scalar("cfg/L")),
                           N=int(scalar("cfg/N")), power=scalar("cfg/power"),
                           full_power=scalar("cfg/norm_full_power") != 0,
                           eps=scalar("cfg/norm_eps"), duality=duality)
        self.lr, self.npz = scalar("cfg/lr"), z
        self.name = "BFGNN duality" if duality else "BFGNN"
        load_params(self.model, z, dtype)
        t = lambda k: torch.from_numpy(z[k]).to(dtype)
        self.train = [t("train/" + k) for k in self.KEYS]
        self.infer = [t("infer/" + k) for k in self.KEYS[:4]] if with_infer else None

    def loss(self):
        p, q, X, A, G_re, G_im = self.train
        return -beam_rate(A, G_re, G_im, *self.model(p, q, X, A)).mean()

    @staticmethod
    def predict(model, inputs):
        return model(*inputs)


def load_problem(path, dtype=torch.float32, with_infer=True):
    bf = "cfg/bfgnn" in np.load(path).files
    return (BfProblem if bf else Problem)(path, dtype, with_infer)


def make_adam(model, lr):
    # foreach: the multi-tensor Adam, measured faster than the per-parameter
    # loop on this CPU at every width (same arithmetic).
    return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def header(mode, pb, batch):
    m = pb.model
    d = m.mlp_p[4].out_features
    return {"side": "torch", "mode": mode, "variant": pb.name,
            "d": d, "h": m.mlp_p[0].out_features, "L": len(m.layers), "batch": batch,
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "params": param_count(m), "rss_after_import_mib": round(RSS_AFTER_IMPORT, 1),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS")}


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def grad_vector(model, names):
    prms = dict(model.named_parameters())
    return torch.cat([prms[n].grad.detach().double().reshape(-1) for n in names])


def run_check(path):
    """Same function on both sides: compares the C results with torch float32
    and reports both against torch float64 (the exact-arithmetic proxy)."""
    res = {}
    for name, dt in (("f32", torch.float32), ("f64", torch.float64)):
        pb = load_problem(path, dt)
        loss = pb.loss()
        loss.backward()
        gnames = sorted(k[len("grad/"):] for k in pb.npz.files if k.startswith("grad/"))
        g = grad_vector(pb.model, gnames)
        opt = torch.optim.Adam(pb.model.parameters(), lr=pb.lr)
        opt.step()
        with torch.no_grad():
            after = pb.loss().item()
        res[name] = dict(pb=pb, loss=loss.item(), grad=g, after=after)
    pb, z = res["f32"]["pb"], res["f32"]["pb"].npz
    gnames = sorted(k[len("grad/"):] for k in z.files if k.startswith("grad/"))
    c_vec = lambda prefix: torch.cat(
        [torch.from_numpy(z[prefix + n]).double().reshape(-1) for n in gnames])
    g_c, g_c64 = c_vec("grad/"), c_vec("ref64/grad/")
    # the eval output at the initial weights, from a fresh float32 model
    fresh = load_problem(path, torch.float32)
    with torch.no_grad():
        out_t = fresh.model(*fresh.infer)
    c_loss, c_after = float(z["ref/loss"]), float(z["ref/loss_after_step"])
    t64, t32 = res["f64"], res["f32"]
    gnorm = lambda v: (v - t64["grad"]).norm().item() / t64["grad"].norm().item()
    out = header("check", pb, int(pb.train[0].shape[0]))
    out.update({
        "cpu": cpu_model(),
        "loss_c": c_loss, "loss_torch32": t32["loss"], "loss_torch64": t64["loss"],
        "loss_rel_c_vs_torch32": rel(c_loss, t32["loss"]),
        "loss_rel_c_vs_torch64": rel(c_loss, t64["loss"]),
        "loss_rel_torch32_vs_torch64": rel(t32["loss"], t64["loss"]),
        "loss_rel_c64_vs_torch64": rel(float(z["ref64/loss"]), t64["loss"]),
        "grad_rel_c64_vs_torch64": gnorm(g_c64),
        "grad_rel_c_vs_torch32": (g_c - t32["grad"]).norm().item() / t32["grad"].norm().item(),
        "grad_rel_c_vs_torch64": gnorm(g_c), "grad_rel_torch32_vs_torch64": gnorm(t32["grad"]),
        "grad_params_compared": len(gnames),
        "loss_after_step_rel_c_vs_torch32": rel(c_after, t32["after"]),
    })
    if isinstance(pb, BfProblem):
        V_c = [torch.from_numpy(z["ref/V_" + k]).double() for k in ("re", "im")]
        fresh64 = load_problem(path, torch.float64)
        with torch.no_grad():
            out_t64 = fresh64.model(*fresh64.infer)
        dist = lambda x, y: max((a.double() - b).abs().max().item() for a, b in zip(x, y))
        out["beams_eval_max_abs_c_vs_torch32"] = dist(V_c, out_t)
        out["beams_eval_max_abs_c_vs_torch64"] = dist(V_c, out_t64)
        out["beams_eval_max_abs_torch32_vs_torch64"] = dist(out_t, out_t64)
        out["beams_eval_max_abs"] = max(t.abs().max().item() for t in out_t)
        out["ok"] = check_ok_bfgnn(out)
    else:
        A_c = torch.from_numpy(z["ref/assoc_eval"]).float()
        out.update({
            "grad_rel_c32_vs_c64_same_kinks": float(z["prec/grad_rel"]),
            "relu_decisions_replayed": int(z["prec/relu_flips"]),
            "f32_comparable": bool(z["prec/comparable"]),
            "assoc_eval_max_abs_c_vs_torch32": (A_c - out_t).abs().max().item(),
            "assoc_eval_argmax_agree": float((A_c.argmax(-1) == out_t.argmax(-1)).float().mean()),
        })
        out["ok"] = check_ok(out)
    out["tolerances"] = TOLERANCES
    if not out["ok"]:
        out["worst_params_c64_vs_torch64"] = worst_params(z, gnames, t64["grad"], "ref64/grad/")
        if "prec/param_rel" in z.files:
            out["worst_params_c32_vs_c64"] = worst_c32_params(z)
    return out


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def worst_params(z, gnames, ref, prefix, top=3):
    """The parameter tensors whose C gradient differs most from ref."""
    errs, off = [], 0
    for n in gnames:
        c = torch.from_numpy(z[prefix + n]).double().reshape(-1)
        r = ref[off:off + c.numel()]
        off += c.numel()
        errs.append((n, (c - r).norm().item() / max(r.norm().item(), 1e-300)))
    return sorted(errs, key=lambda e: -e[1])[:top]


def worst_c32_params(z, top=3):
    names = [k[len("param/"):] for k in z.files if k.startswith("param/")]  # registration order
    return sorted(zip(names, z["prec/param_rel"].tolist()), key=lambda e: -e[1])[:top]


# Tolerances of the equality check. Same function: the C float64 loss and
# gradient against torch's float64 (both sides sum in different orders;
# float64 round-off leaves 1e-10 of room many times over). Float32 accuracy:
# the C float32 gradient against its float64 gradient with the same ReLU
# decisions (models/train/precision.c: a pre-activation within float32 round-off
# of zero is cut in one precision and passed in the other about once per
# million, and the models' gradients then differ by up to 6% on either
# side, torch's included: bench/RESULTS.md), 1e-4 relative; the float32
# losses, the loss after one Adam step and the eval output against torch's
# float32 (a ReLU flip moves the loss by 1e-12, not the gradient's 1e-2).
# The float32 gradients of the two sides are reported, not checked.
LOSS_RTOL, GRAD_RTOL, ASSOC_ATOL = 1e-5, 1e-4, 1e-5
SAME_FUNCTION_RTOL = 1e-10
TOLERANCES = {"loss": LOSS_RTOL, "grad_f32_vs_f64": GRAD_RTOL, "assoc": ASSOC_ATOL,
              "f64_same_function": SAME_FUNCTION_RTOL}


def check_ok_bfgnn(o):
    """BFGNN: the same function in float64, the float32 losses and the eval
    beams (entries of at most sqrt(power)) as for the association GNNs; the
    float32 gradient no further from float64 than torch's float32 (no ReLU
    decisions are replayed for BFGNN) or within GRAD_RTOL. The beams of the
    duality head go through 2N x 2N solves whose float32 round-off alone
    moves them by ~2e-5 (torch's float32 against its float64 as much): the
    C float32 beams may instead be no further from torch's float64 than
    twice torch's float32 is."""
    beams_ok = (o["beams_eval_max_abs_c_vs_torch32"] <= ASSOC_ATOL
                or o["beams_eval_max_abs_c_vs_torch64"]
                <= max(ASSOC_ATOL, 2 * o["beams_eval_max_abs_torch32_vs_torch64"]))
    return (o["loss_rel_c64_vs_torch64"] <= SAME_FUNCTION_RTOL
            and o["grad_rel_c64_vs_torch64"] <= SAME_FUNCTION_RTOL
            and o["grad_rel_c_vs_torch64"] <= max(GRAD_RTOL, 2 * o["grad_rel_torch32_vs_torch64"])
            and o["loss_rel_c_vs_torch32"] <= LOSS_RTOL
            and o["loss_after_step_rel_c_vs_torch32"] <= LOSS_RTOL and beams_ok)


def check_ok(o):
    return (o["loss_rel_c64_vs_torch64"] <= SAME_FUNCTION_RTOL
            and o["grad_rel_c64_vs_torch64"] <= SAME_FUNCTION_RTOL
            and o["f32_comparable"] and o["grad_rel_c32_vs_c64_same_kinks"] <= GRAD_RTOL
            and o["loss_rel_c_vs_torch32"] <= LOSS_RTOL
            and o["loss_after_step_rel_c_vs_torch32"] <= LOSS_RTOL
            and o["assoc_eval_max_abs_c_vs_torch32"] <= ASSOC_ATOL)


def run_train(path, steps, warmup):
    pb = load_problem(path, with_infer=False)
    opt = make_adam(pb.model, pb.lr)
    ms, first, switches = [], None, 0
    for i in range(warmup + steps):
        if i == warmup:
            switches = involuntary_switches()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = pb.loss()
        loss.backward()
        opt.step()
        v = loss.item()
        dt = 1e3 * (time.perf_counter() - t0)
        first = v if first is None else first
        if not math.isfinite(v):
            raise SystemExit("non-finite loss")
        if i >= warmup:
            ms.append(dt)
    out = header("train", pb, int(pb.train[0].shape[0]))
    out.update({"first_loss": first, "warmup": warmup, "steps": steps,
                "step_ms": [round(x, 4) for x in ms], "step_ms_median": statistics.median(ms),
                "peak_rss_mib": peak_rss_mib(),
                "involuntary_switches": involuntary_switches() - switches})
    return out


def time_infer(pb, inputs, reps, warmup):
    ms = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            t0 = time.perf_counter()
            pb.predict(pb.model, inputs)
            dt = 1e3 * (time.perf_counter() - t0)
            if i >= warmup:
                ms.append(dt)
    return ms


def run_infer(path, reps, batch_reps):
    pb = load_problem(path)
    del pb.train
    pb.model.eval()
    one = [x[:1].contiguous() for x in pb.infer]
    switches = involuntary_switches()
    single = time_infer(pb, one, reps, 10)
    rss_single = peak_rss_mib()
    batch = time_infer(pb, pb.infer, batch_reps, 2)
    switches = involuntary_switches() - switches
    n = pb.infer[0].shape[0]
    out = header("infer", pb, int(n))
    out.update({"single_ms": [round(x, 5) for x in single],
                "batch_ms": [round(x, 4) for x in batch], "single_reps": reps,
                "single_ms_median": statistics.median(single), "infer_batch": int(n),
                "batch_reps": batch_reps, "batch_ms_median": statistics.median(batch),
                "batch_per_sample_ms": statistics.median(batch) / n,
                "peak_rss_mib_single": rss_single, "peak_rss_mib": peak_rss_mib(),
                "involuntary_switches": switches})
    return out


def run_gemm():
    shapes = ((512, 1024, 1024), (4096, 1024, 1024), (2048, 2048, 2048))
    best = [math.inf] * len(shapes)
    for _ in range(4):  # rounds over the shapes, as bench_gnn gemm
        for i, (m, n, k) in enumerate(shapes):
            a, w = torch.rand(m, k), torch.rand(n, k)
            for _ in range(3):
                t0 = time.perf_counter()
                F.linear(a, w)
                best[i] = min(best[i], time.perf_counter() - t0)
    res = [{"m": m, "n": n, "k": k, "gflops": 2.0 * m * n * k / b / 1e9}
           for (m, n, k), b in zip(shapes, best)]
    return {"side": "torch", "mode": "gemm", "threads": torch.get_num_threads(),
            "torch": torch.__version__, "linear": res}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["check", "train", "infer", "gemm"])
    ap.add_argument("npz", nargs="?")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=200)
    a = ap.parse_args()
    torch.set_num_threads(THREADS)
    if a.mode != "gemm" and not a.npz:
        ap.error("this mode needs the .npz of bench_gnn export")
    if a.mode == "check":
        out = run_check(a.npz)
    elif a.mode == "train":
        out = run_train(a.npz, a.steps, a.warmup)
    elif a.mode == "infer":
        out = run_infer(a.npz, a.reps, a.steps)
    else:
        out = run_gemm()
    print(json.dumps(out))
    return 0 if out.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
