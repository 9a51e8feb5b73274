#!/usr/bin/python3
"""Turns the raw outputs of bench/mpi_scaling.sh into bench/mpi_scaling.json
and bench/mpi_scaling.md, and puts the latter at the end of
bench/RESULTS.md (replacing an older copy of the section).

    mpi_scaling_report.py WORK OUT_DIR LOAD_BEFORE LOAD_AFTER SECONDS COMMIT MPI_VERSION

The cluster model: a step on R nodes takes the measured compute time of one
node at its per-node batch plus a ring all-reduce of the gradient buffer,
2 (R-1)/R * bytes / bandwidth + 2 (R-1) * latency (what assoc_dist_sum
sends; it starts after the backward pass, with nothing overlapped). The
bound beside it is what overlapping the sum with the backward pass could
give at best: a step of max(compute, all-reduce).

    mpi_scaling_report.py --render OUT_DIR

renders mpi_scaling.md and the RESULTS.md section again from
OUT_DIR/mpi_scaling.json (no new measurement).
"""
import datetime
import json
import os
import sys

SECTION = "## Data-parallel training over MPI"
LATENCY_S = 20e-6  # per message, TCP over Ethernet (assumed, not measured)
BANDWIDTHS_GBIT = (10, 25, 100)


def load(work, name):
    with open(os.path.join(work, name + ".json")) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def ring_seconds(ranks, nbytes, gbit):
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / (gbit * 1e9 / 8) + 2 * (ranks - 1) * LATENCY_S


def measured(work):
    rows = []
    for rt in ("1x1", "2x1", "4x1", "1x2"):
        r, t = (int(x) for x in rt.split("x"))
        c, p = load(work, "train_" + rt), load(work, "torch_" + rt)
        rows.append({"ranks": r, "threads": t, "ms_per_step": c["ms_per_step"],
                     "reduce_ms_per_step": c["reduce_ms_per_step"],
                     "samples_per_s": 32e3 / c["ms_per_step"],
                     "torch_ms_per_step": p["step_ms_median"],
                     "torch_samples_per_s": 32e3 / p["step_ms_median"]})
    return rows


def model(compute, nbytes):
    weak, strong = [], []
    for R in (8, 16, 32, 64):
        for g in BANDWIDTHS_GBIT:
            comm = ring_seconds(R, nbytes, g)
            t = compute[32] / 1e3
            weak.append({"nodes": R, "gbit": g, "comm_ms": 1e3 * comm,
                         "samples_per_s": R * 32 / (t + comm), "efficiency": t / (t + comm)})
            if 32 % R == 0 and 32 // R in compute:
                tb = compute[32 // R] / 1e3
                strong.append({"nodes": R, "gbit": g, "per_node_batch": 32 // R,
                               "comm_ms": 1e3 * comm, "samples_per_s": 32 / (tb + comm),
                               "speedup": t / (tb + comm)})
    return weak, strong


def markdown(res):
    m = res["measured"]
    one = m[0]["samples_per_s"]
    out = [SECTION, ""]
    out.append("Written by `bench/mpi_scaling.sh` on %s (sinkgrad %s, %s). Machine: AMD EPYC "
               "family 25 model 17, 2 cores, AVX-512. Load average (1 min) %s before, %s after; "
               "the run took %s s. AttSKGS-GNN at the paper width (d 512, h 1024, L 2, %d "
               "parameters: a %.1f MB float32 gradient buffer), global batch 32, float32, %d steps "
               "per measurement (the first included)." % (
                   res["date"], res["commit"], res["mpi"], res["load_before"],
                   res["load_after"], res["seconds"], res["params"], res["bytes"] / 1e6,
                   res["steps"]))
    if float(res["load_before"]) >= 1.0:
        out += ["", "**The machine was busy (load average %s on 2 cores): the timings are not "
                "reliable.**" % res["load_before"]]
    out += ["", "### This machine: ranks of `mpirun -np R assoc train`", "",
            "| ranks x threads | ms per step | samples/s | vs 1 x 1 | in the gradient sum "
            "| PyTorch DDP (gloo) ms per step | samples/s |",
            "|---|---|---|---|---|---|---|"]
    for r in m:
        out.append("| %d x %d | %.0f | %.1f | %.2f | %.1f ms (%.0f%%) | %.0f | %.1f |" % (
            r["ranks"], r["threads"], r["ms_per_step"], r["samples_per_s"],
            r["samples_per_s"] / one, r["reduce_ms_per_step"],
            100 * r["reduce_ms_per_step"] / r["ms_per_step"], r["torch_ms_per_step"],
            r["torch_samples_per_s"]))
    out += ["", "The time in the gradient sum includes waiting for the slowest rank. 4 ranks "
            "share the 2 cores (oversubscribed): they measure the scheme's overhead, not a "
            "speed-up. PyTorch runs `bench/torch_ddp.py` (the same network, weights and batch: "
            "torch_gnn.py's; DDP's bucketed all-reduce overlaps the backward pass).", "",
            "### The gradient sum alone (`bench/mpi_allreduce`, the model's buffer)", "",
            "| ranks | fixed-order ring (assoc_dist_sum) ms | MPI_Allreduce ms | ring bus "
            "bandwidth GB/s | PyTorch gloo all_reduce ms |", "|---|---|---|---|---|"]
    for a in res["allreduce"]:
        out.append("| %d | %.1f | %.1f | %.2f | %.1f |" % (
            a["ranks"], a["ring_ms"]["median"], a["mpi_allreduce_ms"]["median"],
            2 * (a["ranks"] - 1) / a["ranks"] * a["bytes"] / a["ring_ms"]["median"] / 1e6,
            a["torch_ms"]))
    out += ["", "Medians of 12 calls (slowest rank). The ring sends 2 (R-1)/R of the buffer per "
            "rank, in 2 (R-1) messages; its order of additions is fixed (docs/design.md), "
            "MPI_Allreduce's is not.", "",
            "### Compute time per step at a per-node batch (one process, 2 threads)", "",
            "| batch | " + " | ".join(str(b) for b in sorted(res["compute_ms"])) + " |",
            "|---|" + "---|" * len(res["compute_ms"]),
            "| ms per step | " + " | ".join("%.0f" % res["compute_ms"][b]
                                            for b in sorted(res["compute_ms"])) + " |",
            "", "### Model: 8 to 64 nodes like this one", "",
            "A step = the measured compute time at the per-node batch + a ring all-reduce of "
            "%.1f MB: 2 (R-1)/R x bytes / bandwidth + 2 (R-1) x %g us (latency assumed, TCP), "
            "nothing overlapped. Weak scaling: batch 32 per node (global 32 R). The last "
            "column bounds what overlapping the sum with the backward pass (as PyTorch DDP's "
            "buckets do; sinkgrad does not) could give at best: a step of max(compute, all-reduce) "
            "(less in practice: the sum can only run beside the backward pass, and the last "
            "bucket after it)."
            % (res["bytes"] / 1e6, LATENCY_S * 1e6), "",
            "| nodes | Gbit/s | all-reduce ms | samples/s | efficiency | bound with overlap |",
            "|---|---|---|---|---|---|"]
    compute32 = res["compute_ms"][max(res["compute_ms"], key=int)]
    for w in res["weak"]:
        bound = compute32 / max(compute32, w["comm_ms"])
        out.append("| %d | %d | %.0f | %.0f | %.0f%% | %.0f%% |" % (
            w["nodes"], w["gbit"], w["comm_ms"], w["samples_per_s"], 100 * w["efficiency"],
            100 * bound))
    out += ["", "Strong scaling: the paper's global batch 32 split over the nodes (at most 32: "
            "a rank needs a sample); speed-up over one node.", "",
            "| nodes | per-node batch | Gbit/s | all-reduce ms | samples/s | speed-up |",
            "|---|---|---|---|---|---|"]
    for s in res["strong"]:
        out.append("| %d | %d | %d | %.0f | %.0f | %.2f |" % (
            s["nodes"], s["per_node_batch"], s["gbit"], s["comm_ms"], s["samples_per_s"],
            s["speedup"]))
    return "\n".join(out) + "\n"


def splice(results_md, section):
    text = open(results_md).read() if os.path.exists(results_md) else ""
    at = text.find(SECTION)
    if at >= 0:
        text = text[:at]
    text = text.rstrip("\n") + "\n\n" + section if text else section
    with open(results_md, "w") as f:
        f.write(text)


def render(out_dir):
    with open(os.path.join(out_dir, "mpi_scaling.json")) as f:
        res = json.load(f)
    res["compute_ms"] = {int(b): ms for b, ms in res["compute_ms"].items()}  # JSON keys are text
    md = markdown(res)
    with open(os.path.join(out_dir, "mpi_scaling.md"), "w") as f:
        f.write(md)
    splice(os.path.join(out_dir, "RESULTS.md"), md)


def main(argv):
    if len(argv) == 3 and argv[1] == "--render":
        return render(argv[2])
    work, out_dir, lb, la, seconds, commit, mpi = argv[1:8]
    c1 = load(work, "train_1x1")
    compute = {}
    for b in (1, 2, 4, 8, 16, 32):
        compute[b] = load(work, "compute_b%d" % b)["ms_per_step"]
    allreduce = []
    for r in (2, 4):
        a = load(work, "allreduce_%d" % r)
        a["torch_ms"] = load(work, "torch_%dx1" % r)["all_reduce_ms_median"]
        allreduce.append(a)
    nbytes = 4 * (c1["params"] + 4)
    weak, strong = model(compute, nbytes)
    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "commit": commit, "mpi": mpi, "load_before": lb, "load_after": la,
           "seconds": int(seconds), "params": c1["params"], "bytes": nbytes,
           "steps": c1["steps"], "measured": measured(work), "allreduce": allreduce,
           "compute_ms": compute, "latency_s": LATENCY_S, "weak": weak, "strong": strong}
    with open(os.path.join(out_dir, "mpi_scaling.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    md = markdown(res)
    with open(os.path.join(out_dir, "mpi_scaling.md"), "w") as f:
        f.write(md)
    splice(os.path.join(out_dir, "RESULTS.md"), md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
