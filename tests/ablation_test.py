#!/usr/bin/env python3
"""End-to-end checks of `assoc ablation --seeds N` on a tiny configuration
(2 epochs of 2 mini-batches of 8, d 8, h 16, 16 test samples, K 4..6 on the
curve): per-seed values, means and sds in ablation.json, the files of each
seed, the table, the curve and per-epoch CSVs, one seed against today's
single-seed run, reproducibility, 1 against 2 threads, and refusals.

usage: ablation_test.py path/to/assoc"""
import csv
import json
import math
import os
import subprocess
import sys
import tempfile

TINY = ["--epochs", "2", "--batches-per-epoch", "2", "--batch", "8", "--d", "8", "--h", "16",
        "--train-samples", "64", "--val-samples", "16", "--test-samples", "16",
        "--curve-samples", "8", "--k-max", "6", "--quiet"]
MODELS = ["attskgs-gnn", "skgs-gnn", "gs-gnn", "sma-gnn"]
METRICS = ["violation_ratio", "rate", "rate_load_balanced", "rate_no_violation", "mean_dropped",
           "es_rate", "ratio_to_es", "ratio_no_violation_to_es", "infer_us", "latency_us"]
# Fields that measure time (or the thread count), not results.
TIMING = {"train_seconds", "infer_us", "latency_us", "seconds_total", "threads", "plots"}

failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def run(assoc, out, *args, status=(0,)):
    p = subprocess.run([assoc, "ablation", *TINY, "--out", out, *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode not in status:
        sys.exit(f"assoc ablation {' '.join(args)}: status {p.returncode}\n{p.stderr}")
    return p


def load(out):
    with open(os.path.join(out, "ablation.json")) as f:
        return json.load(f)


def close(a, b, scale):
    """Equal up to the JSON's 10 significant digits of values of size scale."""
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-8, abs_tol=2e-9 * scale + 1e-12)


def mean_sd(values):
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return m, sd


def without_timing(x):
    if isinstance(x, dict):
        return {k: without_timing(v) for k, v in x.items() if k not in TIMING}
    if isinstance(x, list):
        return [without_timing(v) for v in x]
    return x


def models_of(report):
    return [m for m in report["methods"] if m["kind"] == "model"]


def check_per_seed(report):
    """Per-seed values for every model; mean and sd equal a recomputation."""
    models = models_of(report)
    check(len(models) == 4, "four models in ablation.json")
    for m in models:
        name = m["name"]
        check(m["seeds"] == [5, 6], f"{name}: seeds [5, 6]")
        ps, sd = m["per_seed"], m["sd"]
        for key in METRICS + ["train_seconds"]:
            values = ps[key]
            mean = m["train_seconds"] if key == "train_seconds" else m["metrics"][key]
            want_mean, want_sd = mean_sd(values)
            scale = max(abs(v) for v in values)
            ok = len(values) == 2 and close(mean, want_mean, scale) and \
                close(sd[key], want_sd, scale)
            check(ok, f"{name}: {key} mean and sd of {values}")
    for b in report["methods"]:
        if b["kind"] == "baseline":
            check("per_seed" not in b and "sd" not in b, f"{b['name']}: one evaluation")


def check_seeds_differ(report, out):
    """Each model's two runs differ: checkpoint bytes, and metrics somewhere."""
    for key in MODELS:
        with open(os.path.join(out, f"{key}-seed5.npz"), "rb") as a, \
                open(os.path.join(out, f"{key}-seed6.npz"), "rb") as b:
            check(a.read() != b.read(), f"{key}: seeds 5 and 6 give different checkpoints")
    differ = [m["name"] for m in models_of(report)
              if m["per_seed"]["rate"][0] != m["per_seed"]["rate"][1]]
    check(len(differ) > 0, f"per-seed metrics differ between the seeds ({differ})")


def check_files(out):
    names = set(os.listdir(out))
    for key in MODELS:
        want = {f"{key}-seed5.npz", f"{key}-seed6.npz", f"train_{key}-seed5.csv",
                f"train_{key}-seed6.csv", f"train_{key}-seeds.csv"}
        check(want <= names and f"{key}.npz" not in names, f"{key}: files of each seed")


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def check_epochs_csv(out):
    """train_<model>-seeds.csv: per-epoch mean and sd of the two logs."""
    for key in MODELS:
        rows = read_csv(os.path.join(out, f"train_{key}-seeds.csv"))
        logs = [read_csv(os.path.join(out, f"train_{key}-seed{s}.csv")) for s in (5, 6)]
        ok = len(rows) == 2
        for e, row in enumerate(rows):
            for col in ("violation_ratio", "test_violation_ratio", "loss"):
                m, sd = mean_sd([float(log[e][col]) for log in logs])
                ok &= math.isclose(float(row[col + "_mean"]), m, rel_tol=1e-6, abs_tol=1e-8)
                ok &= math.isclose(float(row[col + "_sd"]), sd, rel_tol=1e-6, abs_tol=1e-8)
        check(ok, f"train_{key}-seeds.csv: mean and sd of the seeds' logs")


def check_table_and_curve(out, report):
    with open(os.path.join(out, "table.md")) as f:
        rows = [r for r in f if r.startswith("| ")]
    models = [r for r in rows if "-GNN |" in r]
    baselines = [r for r in rows if r.startswith(("| ES |", "| DA |", "| LocalSearch |"))]
    check(len(models) == 4 and all(r.count("±") >= 9 for r in models), "table: mean ± sd cells")
    check(len(baselines) == 3 and not any("±" in r for r in baselines), "table: baselines once")
    with open(os.path.join(out, "curve_k.csv")) as f:
        header = f.readline().strip().split(",")
    check("GS-GNN sd" in header and "GS-GNN no-violation sd" in header, "curve_k.csv: sd columns")
    curve = {m["name"]: m for m in report["curves"][0]["methods"]}
    check("rate_load_balanced_sd" in curve["GS-GNN"] and "rate_load_balanced_sd" not in curve["ES"],
          "ablation.json curve: sd for models only")


def check_one_seed(assoc, tmp, two):
    """--seeds 1 is the single-seed run: same files and results as without
    the option, and the same as the first seed of --seeds 2."""
    run(assoc, os.path.join(tmp, "s0"), "--seed", "5", "--no-plots")
    run(assoc, os.path.join(tmp, "s1"), "--seed", "5", "--seeds", "1", "--no-plots")
    d0, d1 = load(os.path.join(tmp, "s0")), load(os.path.join(tmp, "s1"))
    check(without_timing(d0) == without_timing(d1), "--seeds 1 equals the run without --seeds")
    names = set(os.listdir(os.path.join(tmp, "s1")))
    check({f"{k}.npz" for k in MODELS} <= names and not any("seed" in n for n in names),
          "--seeds 1 keeps the single-seed file names")
    for m1, m2 in zip(models_of(d1), models_of(two)):
        same = all(m1["metrics"][k] == m2["per_seed"][k][0] for k in METRICS if k not in TIMING)
        check(same and m1["per_seed"]["rate"] == [m1["metrics"]["rate"]],
              f"{m1['name']}: seed 5 alone equals the first of --seeds 2")
        check(m1["sd"]["rate"] is None, f"{m1['name']}: no sd with one seed")
    for key in MODELS:
        with open(os.path.join(tmp, "s1", f"{key}.npz"), "rb") as a, \
                open(os.path.join(tmp, "two", f"{key}-seed5.npz"), "rb") as b:
            check(a.read() == b.read(), f"{key}: the seed-5 checkpoint does not depend on --seeds")


def check_reproducible(assoc, tmp, two):
    """The same command on 1 thread (and with plots) gives the same results."""
    p = run(assoc, os.path.join(tmp, "two1"), "--seed", "5", "--seeds", "2", "--threads", "1",
            status=(0, 3))
    again = load(os.path.join(tmp, "two1"))
    check(without_timing(again) == without_timing(two), "--seeds 2: 1 thread equals 2 threads")
    if p.returncode == 0:
        with open(os.path.join(tmp, "two1", "plots.gp")) as f:
            gp = f.read()
        check("filledcurves" in gp and "train_gs-gnn-seeds.csv" in gp, "plots.gp draws bands")


def check_refusals(assoc, tmp):
    for args in (["--seeds", "0"], ["--seeds", "101"], ["--seeds", "x"],
                 ["--seed", str(2 ** 62), "--seeds", "2"]):
        p = subprocess.run([assoc, "ablation", "--out", os.path.join(tmp, "bad"), *args],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        check(p.returncode == 2 and "seed" in p.stderr, f"refused: {' '.join(args)}")


def main():
    assoc = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "two")
        run(assoc, out, "--seed", "5", "--seeds", "2", "--no-plots")
        two = load(out)
        check(two["config"]["seeds"] == 2 and two["config"]["train_data_seeds"] == [5, 2 ** 62 + 6],
              "config: seeds and training-set seeds")
        check_per_seed(two)
        check_seeds_differ(two, out)
        check_files(out)
        check_epochs_csv(out)
        check_table_and_curve(out, two)
        check_one_seed(assoc, tmp, two)
        check_reproducible(assoc, tmp, two)
        check_refusals(assoc, tmp)
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
