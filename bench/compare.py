#!/usr/bin/python3
"""Merges the JSON outputs of bench_gnn (C) and torch_gnn.py (PyTorch) that
bench/run collects in a work directory into results.json and RESULTS.md.

Every row: name, ours, torch, unit, ratio (above 1: sinkgrad is better;
torch/ours for times and memory, ours/torch for throughputs) and, where
a target exists, the target ratio and whether it is met.

BFGNN rows (variant "bfgnn", the direct head, and "bfgnn-duality", the
duality head) have no targets; their goal is against WMMSE (C, the "wmmse"
section): at least 100x faster per sample.

Usage: compare.py WORKDIR --out DIR [--load-before X --load-after Y
       --seconds S --steps N --reps N] [--merge]
--merge: WORKDIR holds only BFGNN and WMMSE results (bench/run --bfgnn); they
replace the BFGNN and WMMSE parts of DIR/results.json, the rest is kept, and
the run's date and load are recorded under "bfgnn_run".
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

WIDTHS = {
    "tiny": "tiny (d 16, h 32, batch 256)",
    "small": "small (d 64, h 128, batch 256)",
    "medium": "medium (d 128, h 256, batch 256)",
    "paper": "paper (d 512, h 1024, batch 32)",
}
VARIANTS = {"attskgs": "AttSKGS-GNN", "skgs": "SKGS-GNN", "bfgnn": "BFGNN",
            "bfgnn-duality": "BFGNN duality"}
# BFGNN's heads: variant -> key of the "wmmse" section and label of its rows
BF_HEADS = {"bfgnn": ("bfgnn", ""), "bfgnn-duality": ("bfgnn_duality", "duality head, ")}
ASSOC_VARIANTS = ("attskgs", "skgs")
# the fused inference of the duality head (bench_gnn fused): width -> label
FUSED_WIDTHS = {"tiny": "tiny (d 16, h 32, L 2)", "micro": "micro (d 8, h 16, L 2)"}
FUSED_LABEL = "duality head, fused, "
WMMSE_GOAL = 100.0  # BFGNN inference per sample at least 100x faster than WMMSE
# the targets of the association GNNs: (kind, width) -> minimum ratio
TARGETS = {
    ("train", "small"): 2.0, ("train", "medium"): 2.0, ("train", "paper"): 1.2,
    ("infer1", "small"): 5.0, ("infer1", "paper"): 1.5,
    ("mem_train", "small"): 4.0, ("mem_train", "medium"): 4.0, ("mem_train", "paper"): 4.0,
    ("mem_infer", "small"): 4.0, ("mem_infer", "medium"): 4.0, ("mem_infer", "paper"): 4.0,
}


def load(work, name):
    path = os.path.join(work, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def quantile(v, q):
    v = sorted(v)
    x = q * (len(v) - 1)
    i = int(x)
    return v[i] if i + 1 >= len(v) else v[i] + (x - i) * (v[i + 1] - v[i])


def pooled(work, side, mode, tag):
    """The rounds of one measurement (<side>_<mode>_<tag>_r<n>.json) pooled:
    medians and quartiles over all their samples, the largest peak memory,
    the summed involuntary context switches; None if absent."""
    rounds = []
    while True:
        r = load(work, "_".join(x for x in (side, mode, tag) if x) + "_r%d" % (len(rounds) + 1))
        if r is None:
            break
        rounds.append(r)
    if not rounds:
        return None
    out = dict(rounds[0], rounds=len(rounds))
    out["peak_rss_mib"] = max(r["peak_rss_mib"] for r in rounds)
    out["involuntary_switches"] = sum(r.get("involuntary_switches", 0) for r in rounds)
    keys = {"train": ["step_ms"], "wmmse": ["single_pass_mean_ms", "batch_ms"]}.get(
        mode, ["single_ms", "batch_ms"])
    for k in keys:
        v = [x for r in rounds for x in r[k]]
        out[k] = v
        out[k + "_median"] = quantile(v, 0.5)
        out[k + "_quartiles"] = [quantile(v, 0.25), quantile(v, 0.75)]
    if mode in ("infer", "wmmse", "fused"):
        n = out["samples" if mode == "wmmse" else "infer_batch"]
        out["batch_per_sample_ms"] = out["batch_ms_median"] / n
        out["batch_per_sample_quartiles"] = [x / n for x in out["batch_ms_quartiles"]]
    return out


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine():
    info = {}
    for line in run(["lscpu"]).splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("Model name", "CPU(s)", "CPU family", "Model", "Vendor ID",
                           "Hypervisor vendor", "L2 cache", "L3 cache"):
            info[key.strip()] = val.strip()
    info["avx512f"] = "avx512f" in run(["grep", "-m1", "-o", "avx512f", "/proc/cpuinfo"])
    with open("/proc/meminfo") as f:
        kib = int(f.readline().split(":")[1].split()[0])
        info["MemTotal"] = "%.1f GiB" % (kib / 1048576)
    info["kernel"] = platform.release()
    return info


def versions(torch_info):
    dpkg = lambda pkg: run(["dpkg-query", "-W", "-f=${Version}", pkg])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = run(["git", "-C", root, "rev-parse", "--short", "HEAD"])
    dirty = run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"])
    return {
        "sinkgrad": commit + (" (uncommitted changes in the tree)" if dirty else ""),
        "torch": torch_info.get("torch", "unknown"),
        "python3-torch": dpkg("python3-torch"),
        "numpy": run(["/usr/bin/python3", "-c", "import numpy; print(numpy.__version__)"]),
        "BLIS (libblis4-openmp, sinkgrad's provider)": dpkg("libblis4-openmp"),
        "OpenBLAS (libopenblas0-pthread, torch's BLAS)": dpkg("libopenblas0-pthread"),
        "gcc": run(["gcc", "--version"]).splitlines()[0].replace("gcc ", "", 1),
        "python": platform.python_version(),
    }


def row(name, ours, torch, unit, higher_is_better=False, target=None, kind=None, spread=None):
    if ours is None or torch is None:
        ratio = None
    else:
        ratio = ours / torch if higher_is_better else torch / ours
    r = {"name": name, "ours": ours, "torch": torch, "unit": unit, "ratio": ratio}
    if kind:
        r["kind"] = kind
    if spread:  # quartiles of the timed samples, ours and torch
        r["ours_quartiles"], r["torch_quartiles"] = spread
    if target is not None:
        r["target"] = target
        r["met"] = ratio is not None and ratio >= target
    return r


def config_rows(work, w, v):
    tag = "%s_%s" % (v, w)
    ct, tt = pooled(work, "c", "train", tag), pooled(work, "torch", "train", tag)
    ci, ti = pooled(work, "c", "infer", tag), pooled(work, "torch", "infer", tag)
    if not (ct and tt and ci and ti):
        return []
    label = "%s, %s" % (VARIANTS[v], WIDTHS[w])
    t = lambda kind: TARGETS.get((kind, w)) if v in ASSOC_VARIANTS else None
    q = lambda key: (ci[key], ti[key])
    return [
        row("training step, " + label, ct["step_ms_median"], tt["step_ms_median"], "ms",
            target=t("train"), kind="train",
            spread=(ct["step_ms_quartiles"], tt["step_ms_quartiles"])),
        row("inference, 1 sample, " + label, ci["single_ms_median"], ti["single_ms_median"], "ms",
            target=t("infer1"), kind="infer1", spread=q("single_ms_quartiles")),
        row("inference per sample, batch 256, " + label, ci["batch_per_sample_ms"],
            ti["batch_per_sample_ms"], "ms", kind="inferB", spread=q("batch_per_sample_quartiles")),
        row("peak memory, training, " + label, ct["peak_rss_mib"], tt["peak_rss_mib"], "MiB",
            target=t("mem_train"), kind="mem_train"),
        row("peak memory, inference (1 then 256 samples), " + label, ci["peak_rss_mib"],
            ti["peak_rss_mib"], "MiB", target=t("mem_infer"), kind="mem_infer"),
    ]


def gemm_section(work, widths):
    cg, tg = load(work, "c_gemm"), load(work, "torch_gemm")
    prov = max(s["provider_gflops"] for s in cg["sgemm"])
    tpeak = max(s["gflops"] for s in tg["linear"])
    out = {"provider": cg["blas"], "provider_sgemm": cg["sgemm"], "provider_peak_gflops": prov,
           "torch_linear": tg["linear"], "torch_linear_peak_gflops": tpeak,
           "read_gbps": cg["read_gbps"], "training_step": {}}
    rows = [row("GEMM throughput, best measured shape (%s sgemm vs torch F.linear)" % cg["blas"],
                prov, tpeak, "GFLOP/s", higher_is_better=True, kind="gemm")]
    for w in widths:
        for v in VARIANTS:
            tag = "%s_%s" % (v, w)
            ct, tt = pooled(work, "c", "train", tag), pooled(work, "torch", "train", tag)
            if not (ct and tt):
                continue
            gf = ct["gemm_gflop_per_step"]
            ours, theirs = gf / (ct["step_ms_median"] / 1e3), gf / (tt["step_ms_median"] / 1e3)
            floor_ms = gf / prov * 1e3  # every GEMM at the provider's best rate, nothing else
            out["training_step"][tag] = {
                "gemm_gflop_per_step": gf, "ours_gflops": ours, "torch_gflops": theirs,
                "ours_fraction_of_provider": ours / prov, "torch_fraction_of_its_linear": theirs / tpeak,
                "gemm_floor_ms": floor_ms, "best_possible_ratio": tt["step_ms_median"] / floor_ms}
            if w == "paper":
                rows.append(row("training step GEMM rate, %s, %s" % (VARIANTS[v], WIDTHS[w]), ours,
                                theirs, "GFLOP/s", higher_is_better=True, kind="gemm_step"))
    return out, rows


def limits(work, widths, read_gbps):
    """Single-sample inference reads every weight once: bytes / bandwidth."""
    out = {}
    for w in widths:
        for v in VARIANTS:
            ci = pooled(work, "c", "infer", "%s_%s" % (v, w))
            ti = pooled(work, "torch", "infer", "%s_%s" % (v, w))
            if not ci:
                continue
            bound = ci["weight_bytes"] / (read_gbps * 1e9) * 1e3
            out["%s_%s" % (v, w)] = {
                "weight_bytes": ci["weight_bytes"], "weight_read_bound_ms": bound,
                "ours_ms": ci["single_ms_median"], "ours_over_bound": ci["single_ms_median"] / bound,
                "torch_ms": ti["single_ms_median"] if ti else None}
    return out


def memory(work, widths):
    out = {}
    for w in widths:
        for v in VARIANTS:
            tag = "%s_%s" % (v, w)
            ct, tt = pooled(work, "c", "train", tag), pooled(work, "torch", "train", tag)
            if ct and tt:
                n, mib = ct["params"], 1048576.0
                out[tag] = {"params": n, "ours_state_mib": 16 * n / mib, "torch_state_mib": 16 * n / mib,
                            "ours_peak_mib": ct["peak_rss_mib"], "ours_arena_mib": ct["arena_mib"],
                            "ours_forward_mib": ct.get("arena_forward_mib"),
                            "ours_step_mib": ct.get("arena_step_mib"),
                            "torch_peak_mib": tt["peak_rss_mib"]}
    return out


def switches(work, widths):
    out = {}
    for w in widths:
        for v in VARIANTS:
            for side in ("c", "torch"):
                for mode in ("train", "infer"):
                    p = pooled(work, side, mode, "%s_%s" % (v, w))
                    if p:
                        out["%s %s %s_%s" % (side, mode, v, w)] = p["involuntary_switches"]
    return out


def checks(work, widths):
    out = []
    for w in widths:
        for v in VARIANTS:
            c = load(work, "torch_check_%s_%s" % (v, w))
            if c:
                keep = {k: c[k] for k in c if "rel" in k or "assoc" in k or "beams" in k or k in ("ok", "loss_c",
                        "loss_torch32", "loss_torch64", "grad_params_compared", "tolerances",
                        "cpu", "relu_decisions_replayed", "f32_comparable")}
                out.append(dict(config="%s, %s" % (VARIANTS[v], WIDTHS[w]), **keep))
    return out


def wmmse_section(work, widths):
    """WMMSE (C) per sample on BFGNN's 256 inference samples and ES
    association, and BFGNN's C inference against it at each width, for
    either head ("bfgnn": direct, "bfgnn_duality")."""
    wm = pooled(work, "c", "wmmse", "")
    if not wm:
        return None
    out = {"samples": wm["samples"], "association": wm["association"], "threads": wm["threads"],
           "rounds": wm["rounds"], "iters_mean": wm["iters_mean"], "rate_mean": wm["rate_mean"],
           # the mean over the samples of a pass, median over the passes of all rounds
           "single_ms": wm["single_pass_mean_ms_median"],
           "single_ms_quartiles": wm["single_pass_mean_ms_quartiles"],
           "single_ms_median_sample": wm["single_ms_median"],
           "batch_per_sample_ms": wm["batch_per_sample_ms"],
           "batch_per_sample_quartiles": wm["batch_per_sample_quartiles"],
           "peak_rss_mib": wm["peak_rss_mib"], "goal": WMMSE_GOAL,
           "single_cpu_ms": rounds_median(work, "c_wmmse", "single_cpu_ms")}
    def against(ci):
        r1 = out["single_ms"] / ci["single_ms_median"]
        rb = out["batch_per_sample_ms"] / ci["batch_per_sample_ms"]
        return {"single_ms": ci["single_ms_median"], "batch_per_sample_ms": ci["batch_per_sample_ms"],
                "single_ratio": r1, "batch_ratio": rb,
                "single_met": r1 >= WMMSE_GOAL, "batch_met": rb >= WMMSE_GOAL}
    for v, (key, _) in BF_HEADS.items():
        out[key] = {}
        for w in widths:
            ci = pooled(work, "c", "infer", "%s_%s" % (v, w))
            if ci:
                out[key][w] = against(ci)
    out["bfgnn_fused"] = {}
    for w in FUSED_WIDTHS:
        ci = pooled(work, "c", "fused", "bfgnn-duality_" + w)
        if ci:
            name = "c_fused_bfgnn-duality_" + w
            cpu1 = rounds_median(work, name, "single_cpu_ms")
            cpub = rounds_median(work, name, "batch_1thread_cpu_per_sample_ms")
            out["bfgnn_fused"][w] = dict(
                against(ci), params=ci["params"], single_cpu_ms=cpu1,
                batch_1thread_cpu_per_sample_ms=cpub,
                single_cpu_ratio=out["single_cpu_ms"] / cpu1 if out["single_cpu_ms"] else None,
                batch_cpu_ratio=out["single_cpu_ms"] / cpub if out["single_cpu_ms"] else None,
                max_abs_vs_ops=max(load(work, "%s_r%d" % (name, r + 1))["max_abs_vs_ops"]
                                   for r in range(ci["rounds"])))
    return out


def rounds_median(work, name, key):
    """The median over the rounds <name>_r<n>.json of a scalar, or None."""
    v = []
    while True:
        r = load(work, "%s_r%d" % (name, len(v) + 1))
        if r is None or key not in r:
            break
        v.append(r[key])
    return quantile(v, 0.5) if v else None


def wmmse_rows(wm):
    """(width label, BFGNN against WMMSE) of each head and width, then of the
    fused inference."""
    rows = [(label + WIDTHS[w], b) for key, label in BF_HEADS.values()
            for w, b in wm.get(key, {}).items()]
    return rows + [(FUSED_LABEL + FUSED_WIDTHS[w], b) for w, b in wm.get("bfgnn_fused", {}).items()]


def is_bfgnn(key):
    return "bfgnn" in key or "BFGNN" in key


def merge(path, new):
    """The BFGNN and WMMSE parts of new in place of those of the results
    at path (kept otherwise); new alone when path does not exist."""
    if not os.path.exists(path):  # the header of new describes its run
        return new
    run = {k: new[k] for k in ("date", "load_before", "load_after", "seconds", "rounds", "steps",
                               "warmup", "reps", "versions")}
    run["provider_peak_gflops"] = new["gemm"]["provider_peak_gflops"]
    with open(path) as f:
        old = json.load(f)
    rows = [r for r in old["rows"] if not is_bfgnn(r["name"])]
    k = next((i for i, r in enumerate(rows) if r.get("kind") == "gemm"), len(rows))
    bf = [r for r in new["rows"] if is_bfgnn(r["name"])]
    old["rows"] = (rows[:k] + [r for r in bf if r.get("kind") != "gemm_step"] + rows[k:] +
                   [r for r in bf if r.get("kind") == "gemm_step"])
    keep = lambda d: {kk: vv for kk, vv in d.items() if not is_bfgnn(kk)}
    for key in ("memory", "limits", "involuntary_switches"):
        old[key] = dict(keep(old.get(key, {})), **new[key])
    old["gemm"]["training_step"] = dict(keep(old["gemm"]["training_step"]),
                                        **new["gemm"]["training_step"])
    old["checks"] = [c for c in old["checks"] if not is_bfgnn(c["config"])] + new["checks"]
    old["wmmse"], old["bfgnn_run"] = new["wmmse"], run
    return old


def fmt(x, unit=""):
    if x is None:
        return "-"
    if unit == "MiB" or abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    if abs(x) >= 1:
        return "%.2f" % x
    return "%.3g" % x


def markdown(res):
    m, ver = res["machine"], res["versions"]
    L = ["# sinkgrad vs PyTorch: association GNNs and BFGNN", "",
         "Written by `bench/run` on %s. Both sides: 2 threads, float32, the paper scenario "
         "(M = 2 base stations, N = 4 antennas, K = 8 users), the same weights and inputs." %
         res["date"], "",
         "Machine: %s (%s CPUs, family %s model %s%s), %s RAM, Linux %s. Load average (1 min) "
         "%s before, %s after; the run took %s s." % (
             m.get("Model name"), m.get("CPU(s)"), m.get("CPU family"), m.get("Model"),
             ", AVX-512" if m.get("avx512f") else "", m.get("MemTotal"), m.get("kernel"),
             res["load_before"], res["load_after"], res["seconds"]), "",
         "Versions: " + "; ".join("%s %s" % kv for kv in ver.items()) + ".", ""]
    if res["load_before"] is not None and float(res["load_before"]) >= 1.0:
        L += ["**The machine was busy when this run started (load average %s on 2 cores): "
              "timings are not reliable.**" % res["load_before"], ""]
    bf = res.get("bfgnn_run")
    if bf:
        L += ["The BFGNN rows and WMMSE come from a later run of their own, `bench/run --bfgnn`, "
              "on %s (sinkgrad %s): load average (1 min) %s before, %s after; it took %s s; "
              "%d rounds of %d steps. Its provider GEMM peak (for BFGNN's GEMM floor) was "
              "%.0f GFLOP/s. The other rows are from the run above." % (
                  bf["date"], bf["versions"]["sinkgrad"], bf["load_before"], bf["load_after"],
                  bf["seconds"], bf["rounds"], bf["steps"], bf["provider_peak_gflops"]), ""]
        if bf["load_before"] is not None and float(bf["load_before"]) >= 1.0:
            L += ["**The machine was busy when the BFGNN run started (load average %s on 2 "
                  "cores): its timings are not reliable.**" % bf["load_before"], ""]
    sw = res.get("involuntary_switches", {})
    if sw:
        most = lambda side: max((kv for kv in sw.items() if kv[0].startswith(side + " ")),
                                key=lambda kv: kv[1])
        (c_name, c_n), (t_name, t_n) = most("c"), most("torch")
        L += ["Involuntary context switches per measurement (other processes taking the CPU; "
              "PyTorch's also count its own OpenMP and OpenBLAS thread pools competing for the 2 "
              "cores): at most %d on the sinkgrad side (%s), %d on the PyTorch side (%s); all of "
              "them are in results.json, with the quartiles of every timing. On a shared machine "
              "repeated runs differ: compare runs before trusting a ratio near its target." % (
                  c_n, c_name, t_n, t_name), ""]
    L += ["## Targets", "", "Targets of the association GNNs; BFGNN's goal is against WMMSE "
          "(below).", "", "| target | row | ratio | met |", "|---|---|---|---|"]
    for r in res["rows"]:
        if "target" in r:
            L.append("| >= %gx | %s | %s | %s |" % (r["target"], r["name"], fmt(r["ratio"]),
                                                     "yes" if r["met"] else "**no**"))
    L += ["", "## All rows", "",
          "Ratio above 1: sinkgrad is better (PyTorch / sinkgrad for times and memory, sinkgrad / "
          "PyTorch for throughputs). Times are medians pooled over %d rounds (separate processes, "
          "alternating which side runs first) of %d training steps (each after %s warm-up "
          "steps), %d single-sample forwards and %d batch forwards; results.json also has the "
          "quartiles." % (res["rounds"], res["steps"], res["warmup"], res["reps"], res["steps"]),
          "",
          "| row | sinkgrad | PyTorch | unit | ratio |", "|---|---|---|---|---|"]
    for r in res["rows"]:
        L.append("| %s | %s | %s | %s | %s |" % (r["name"], fmt(r["ours"], r["unit"]),
                                                 fmt(r["torch"], r["unit"]), r["unit"],
                                                 fmt(r["ratio"])))
    g = res["gemm"]
    L += ["", "## GEMM throughput and the memory limit", "",
          "Provider (%s) sgemm, C = A B^T, 2 threads, best of 12 calls (4 rounds over the shapes): " % g["provider"] +
          ", ".join("%dx%dx%d %.0f GFLOP/s (through sg_linear %.0f)" % (
              s["m"], s["n"], s["k"], s["provider_gflops"], s["sg_linear_gflops"])
              for s in g["provider_sgemm"]) + ". PyTorch F.linear: " +
          ", ".join("%dx%dx%d %.0f" % (s["m"], s["n"], s["k"], s["gflops"]) for s in g["torch_linear"])
          + " GFLOP/s. Memory read bandwidth (2 threads, sum over 512 MiB, best of 5): %.1f GB/s." % g["read_gbps"], "",
          "| training step | GEMM GFLOP per step | sinkgrad GFLOP/s | fraction of provider peak "
          "| PyTorch GFLOP/s | fraction of its F.linear peak | GEMM floor (ms) | best possible "
          "ratio |", "|---|---|---|---|---|---|---|---|"]
    for tag, s in g["training_step"].items():
        v, w = tag.split("_")
        L.append("| %s, %s | %.2f | %.1f | %.0f%% | %.1f | %.0f%% | %.1f | %.2f |" % (
            VARIANTS[v], w, s["gemm_gflop_per_step"], s["ours_gflops"],
            100 * s["ours_fraction_of_provider"], s["torch_gflops"],
            100 * s["torch_fraction_of_its_linear"], s["gemm_floor_ms"], s["best_possible_ratio"]))
    L += ["", "GEMM GFLOP counts the Linear layers only (forward, weight gradients, input gradients "
          "where needed; it equals the matrix-product FLOPs torch.profiler counts); attention, "
          "Sinkhorn and element-wise work are excluded. GEMM floor: the step's GEMM work at the "
          "provider's best measured rate with nothing else; best possible ratio: PyTorch's step "
          "time over that floor, the most any GEMM-bound implementation on this provider could "
          "reach.", "",
          "Single-sample inference reads every weight once, so it cannot beat weight bytes / "
          "read bandwidth (small widths fit in cache and are not bound by it):", "",
          "| model | weights (MB) | read bound (ms) | sinkgrad (ms) | x bound | PyTorch (ms) |",
          "|---|---|---|---|---|---|"]
    for tag, s in res["limits"].items():
        v, w = tag.split("_")
        L.append("| %s, %s | %.1f | %.3f | %.3f | %.1f | %s |" % (
            VARIANTS[v], w, s["weight_bytes"] / 1e6, s["weight_read_bound_ms"], s["ours_ms"],
            s["ours_over_bound"], fmt(s["torch_ms"])))
    L += ["", "## Memory", "",
          "Training keeps the model state: weights, gradients and Adam's two moments, 4 B "
          "per parameter each on both sides. A step's tensors live in sinkgrad's arena; what is "
          "dead is released and its memory reused within the step: pre-activations once their "
          "ReLU has run, gradients once used (or taken over in place by an element-wise "
          "backward), everything consumed in inference. Arena columns: bytes in use after the "
          "forward and loss (the values the backward reads) and after the backward, and bytes "
          "reserved.", "",
          "| config | parameters | PyTorch peak (MiB) | a quarter of it | model state, sinkgrad "
          "(MiB) | model state, PyTorch (MiB) | sinkgrad peak | arena: forward / step / "
          "reserved (MiB) |",
          "|---|---|---|---|---|---|---|---|"]
    for tag, m in res["memory"].items():
        v, w = tag.split("_")
        L.append("| %s, %s | %.2f M | %.0f | %.0f | %.0f | %.0f | %.0f | %s / %s / %.0f |" % (
            VARIANTS[v], w, m["params"] / 1e6, m["torch_peak_mib"], m["torch_peak_mib"] / 4,
            m["ours_state_mib"], m["torch_state_mib"], m["ours_peak_mib"],
            fmt(m["ours_forward_mib"]), fmt(m["ours_step_mib"]), m["ours_arena_mib"]))
    tol = res["tolerances"]
    L += ["", "## Same function on both sides", "",
          "Before any timing, torch_gnn.py loads the C side's weights and inputs. The same "
          "function: the C side's float64 loss and gradient must match torch's float64 to "
          "%g (relative). Float32 accuracy: the C float32 gradient must be within %g (relative "
          "L2) of its float64 gradient taken with the same ReLU decisions (a pre-activation "
          "within float32 round-off of zero, about one in a million, is cut in one precision "
          "and passed in the other; these models' gradients then move by up to 6%%, torch's "
          "float32 as much as ours: the 'vs 64' columns), and the float32 loss (%g), loss after "
          "one Adam step (%g) and eval-mode output A~ (absolute %g) must match torch's float32. "
          "The float32 gradients of the two sides are shown, not checked. CPU: %s." % (
              tol["f64_same_function"], tol["grad_f32_vs_f64"], tol["loss"], tol["loss"],
              tol["assoc"], res["checks"][0].get("cpu", "?") if res["checks"] else "?"),
          "", "| config | f64 loss C vs torch | f64 grad C vs torch | grad C32 vs C64, same "
          "ReLU decisions (replayed) | loss C vs torch32 | grad C vs torch32 | grad C32 vs 64 | "
          "grad torch32 vs 64 | loss after step | A~ max abs | ok |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in (c for c in res["checks"] if not is_bfgnn(c["config"])):
        L.append("| %s | %.1e | %.1e | %.1e (%d) | %.1e | %.1e | %.1e | %.1e | %.1e | %.1e | %s |" % (
            c["config"], c["loss_rel_c64_vs_torch64"], c["grad_rel_c64_vs_torch64"],
            c["grad_rel_c32_vs_c64_same_kinks"], c["relu_decisions_replayed"],
            c["loss_rel_c_vs_torch32"], c["grad_rel_c_vs_torch32"], c["grad_rel_c_vs_torch64"],
            c["grad_rel_torch32_vs_torch64"], c["loss_after_step_rel_c_vs_torch32"],
            c["assoc_eval_max_abs_c_vs_torch32"], "yes" if c["ok"] else "**no**"))
    bfc = [c for c in res["checks"] if is_bfgnn(c["config"])]
    if bfc:
        L += ["", "BFGNN: the same float64 (%g) and float32 loss, loss after one step (%g) and "
              "eval-mode beams (absolute %g) checks; its float32 gradient must be within %g of "
              "float64, or no further than twice torch's float32 (no ReLU decisions are replayed "
              "for BFGNN). The duality head's beams go through 2N x 2N solves whose float32 "
              "round-off moves them by ~2e-5 on either side: its C float32 beams may instead be "
              "no further from torch's float64 than twice torch's float32 (absolute)." % (
                  tol["f64_same_function"], tol["loss"], tol["assoc"], tol["grad_f32_vs_f64"]), "",
              "| config | f64 loss C vs torch | f64 grad C vs torch | loss C vs torch32 | grad C vs "
              "torch32 | grad C32 vs 64 | grad torch32 vs 64 | loss after step | beams max abs "
              "(largest entry) | beams C32 / torch32 vs 64 | ok |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        nan = float("nan")
        for c in bfc:
            L.append("| %s | %.1e | %.1e | %.1e | %.1e | %.1e | %.1e | %.1e | %.1e (%.2f) | %.1e / "
                     "%.1e | %s |" % (
                         c["config"], c["loss_rel_c64_vs_torch64"], c["grad_rel_c64_vs_torch64"],
                         c["loss_rel_c_vs_torch32"], c["grad_rel_c_vs_torch32"],
                         c["grad_rel_c_vs_torch64"], c["grad_rel_torch32_vs_torch64"],
                         c["loss_after_step_rel_c_vs_torch32"],
                         c["beams_eval_max_abs_c_vs_torch32"], c["beams_eval_max_abs"],
                         c.get("beams_eval_max_abs_c_vs_torch64", nan),
                         c.get("beams_eval_max_abs_torch32_vs_torch64", nan),
                         "yes" if c["ok"] else "**no**"))
    wm = res.get("wmmse")
    if wm:
        L += ["", "## BFGNN against WMMSE (both C)", "",
              "Goal: BFGNN's inference at least %gx faster per sample than WMMSE. WMMSE "
              "(models/beam, float64, from full-power MRT, %.1f updates on average, mean "
              "sum-rate %.2f bps/Hz) on the same %d samples and %s association as BFGNN's "
              "inference batch, in the same run: one sample at a time on 1 thread (%.3f ms: "
              "the mean over the samples, median of %d passes; the median sample takes %.3f "
              "ms), and the batch over %d threads (`assoc_beams_run`, OpenMP over samples, "
              "%.3f ms per sample). BFGNN: the rows above (float32, 2 threads; one sample, and "
              "a batch of 256 per sample); fused: `bench_gnn fused`, the fused float32 "
              "inference (`assoc_bfgnn_fused_beams`, untrained weights of that size) of one "
              "sample on 1 thread (each timing the mean of 100 calls) and of the batch of 256 "
              "over 2 threads. Ratio: WMMSE / BFGNN." % (
                  wm["goal"], wm["iters_mean"], wm["rate_mean"], wm["samples"],
                  wm["association"], wm["single_ms"], 3 * wm["rounds"],
                  wm["single_ms_median_sample"], wm["threads"], wm["batch_per_sample_ms"]), "",
              "| BFGNN width | BFGNN 1 sample (ms) | WMMSE 1 sample (ms) | ratio | BFGNN per "
              "sample, batch (ms) | WMMSE per sample, batch (ms) | ratio | >= %gx |" % wm["goal"],
              "|---|---|---|---|---|---|---|---|"]
        for name, b in wmmse_rows(wm):
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                name, fmt(b["single_ms"]), fmt(wm["single_ms"]), fmt(b["single_ratio"]),
                fmt(b["batch_per_sample_ms"]), fmt(wm["batch_per_sample_ms"]),
                fmt(b["batch_ratio"]), "yes" if b["single_met"] and b["batch_met"] else "**no**"))
    fused = wm.get("bfgnn_fused", {}) if wm else {}
    if fused and wm.get("single_cpu_ms"):
        L += ["", "By CPU time of the one thread that does the work (`CLOCK_THREAD_CPUTIME_ID`; "
              "a loaded machine inflates it far less than the wall clock): WMMSE %.3f ms per "
              "sample one at a time; the fused BFGNN one sample alone, and per sample of the "
              "batch of 256 on that one thread." % wm["single_cpu_ms"], "",
              "| fused BFGNN | params | 1 sample (ms) | ratio | batch on 1 thread, per sample "
              "(ms) | ratio |", "|---|---|---|---|---|---|"]
        for w, b in fused.items():
            L.append("| %s | %d | %s | %s | %s | %s |" % (
                FUSED_WIDTHS[w], b["params"], fmt(b["single_cpu_ms"]), fmt(b["single_cpu_ratio"]),
                fmt(b["batch_1thread_cpu_per_sample_ms"]), fmt(b["batch_cpu_ratio"])))
    L += ["", "## What is measured", "",
          "- training step: zero the gradients, forward in train mode with the fixed Gumbel "
          "noise, differentiable MRT sum-rate, loss with the dual penalty (mu = [0.25, 0.5], "
          "delta 2), backward, Adam. Inputs are prepared once, outside the timing, on both sides.",
          "- inference: eval-mode forward (no noise; log-softmax, 10 Sinkhorn iterations, exp) "
          "and the row argmax, without gradient recording; one sample, and a batch of 256 "
          "(reported per sample).",
          "- BFGNN (`assoc_bfgnn_config_paper` with the widths set: projection onto the power "
          "ball, power 1; L 2, N 4) on the ES association of each sample (0/1 rows, an input): "
          "training step: zero the gradients, forward (trunk on [X, a_km], beam head, mask, "
          "per-BS normalisation), beam couplings and sum-rate, loss -mean R, backward, Adam; "
          "inference: the beams of one sample and of a batch of 256 in one forward each, "
          "without gradients, on both sides (no chunking: BFGNN has no chunked predict).",
          "- BFGNN duality (`--head duality`, `ASSOC_BFGNN_HEAD_DUALITY`; at tiny width its "
          "trained configuration): the same, with mlp_v giving lambda and w per edge and the "
          "beams u = S^{-1} conj(x) from the per-BS 2N x 2N real-form systems S = I + sum "
          "lambda conj(x) x^T (`sg_solve`; PyTorch: `torch.linalg.solve` on the same matrices), "
          "then sqrt(w) u / |u|, masked and normalised as the direct head's. Its GEMM counts "
          "leave out the matrices S and the solves.",
          "- peak memory: ru_maxrss of a process that does only that measurement (the PyTorch "
          "figure includes the interpreter and libtorch: %s MiB right after `import torch`)."
          % res.get("torch_rss_after_import_mib", "?"),
          "- inference on the sinkgrad side goes through `assoc_gnn_predict`, which evaluates a "
          "batch in chunks whose widest activation stays within 2 MiB: 32 samples at the paper's "
          "width, 128 at d 128, the whole batch at d 64. PyTorch evaluates the batch in one call. "
          "At the paper's width the chunks are what keeps the batch's activations near 15 MiB "
          "instead of ~100 MiB (`bench_gnn infer --chunk 256` shows the one-call figure).",
          "- PyTorch: eager mode, the same split first Linear of every MLP on concatenated inputs "
          "and the same mean of the node-update messages before their MLP's last Linear as "
          "sinkgrad (so both do the same arithmetic), multi-tensor Adam (foreach), "
          "`zero_grad(set_to_none=True)`, `torch.inference_mode()`, environment "
          "OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4 and "
          "2 threads (OMP_NUM_THREADS=2 too, except for BFGNN duality, whose batched "
          "`torch.linalg.solve` ran several times slower with it; torch.set_num_threads(2) on "
          "every row).", ""]
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--out", required=True)
    ap.add_argument("--load-before")
    ap.add_argument("--load-after")
    ap.add_argument("--seconds", type=int)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int)
    ap.add_argument("--merge", action="store_true")
    a = ap.parse_args()
    here = lambda v, w: load(a.work, "c_train_%s_%s_r1" % (v, w)) is not None
    widths = [w for w in WIDTHS if any(here(v, w) for v in VARIANTS)]
    if not widths:
        sys.exit("compare.py: no results in " + a.work)
    first = next(v for v in VARIANTS if here(v, widths[0]))
    rows = []
    for w in widths:
        for v in VARIANTS:
            rows += config_rows(a.work, w, v)
    gemm, gemm_rows = gemm_section(a.work, widths)
    some_torch = load(a.work, "torch_train_%s_%s_r1" % (first, widths[0]))
    first_check = load(a.work, "torch_check_%s_%s" % (first, widths[0]))
    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "versions": versions(some_torch), "threads": 2,
        "load_before": a.load_before, "load_after": a.load_after, "seconds": a.seconds,
        "rounds": a.rounds, "steps": a.steps, "warmup": a.warmup, "reps": a.reps,
        "involuntary_switches": switches(a.work, widths), "memory": memory(a.work, widths),
        "torch_rss_after_import_mib": some_torch.get("rss_after_import_mib"),
        "rows": rows + gemm_rows, "gemm": gemm, "limits": limits(a.work, widths, gemm["read_gbps"]),
        "checks": checks(a.work, widths), "tolerances": first_check["tolerances"],
        "wmmse": wmmse_section(a.work, widths),
    }
    if a.merge:
        res = merge(os.path.join(a.out, "results.json"), res)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    md = markdown(res)
    # bench/mpi_scaling.sh's section (its own run) stays at the end
    mpi = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_scaling.md")
    if os.path.exists(mpi):
        with open(mpi) as f:
            md = md.rstrip("\n") + "\n\n" + f.read()
    with open(os.path.join(a.out, "RESULTS.md"), "w") as f:
        f.write(md)
    # the table of ratios on the terminal
    for r in res["rows"]:
        tgt = "" if "target" not in r else "  (target %gx: %s)" % (r["target"],
                                                                  "met" if r["met"] else "NOT met")
        print("%-88s %10s %10s %-8s %6sx%s" % (r["name"], fmt(r["ours"], r["unit"]),
                                               fmt(r["torch"], r["unit"]), r["unit"],
                                               fmt(r["ratio"]), tgt))
    wm = res.get("wmmse")
    for name, b in (wmmse_rows(wm) if wm else ()):
        print("BFGNN %s vs WMMSE (C): 1 sample %.4f vs %.3f ms (%.1fx), batch per sample %.5f vs "
              "%.4f ms (%.1fx); goal %gx" % (name, b["single_ms"], wm["single_ms"], b["single_ratio"],
                                            b["batch_per_sample_ms"], wm["batch_per_sample_ms"],
                                            b["batch_ratio"], wm["goal"]))
    print("wrote %s and %s" % (os.path.join(a.out, "results.json"), os.path.join(a.out, "RESULTS.md")))


if __name__ == "__main__":
    main()
