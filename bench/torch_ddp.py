#!/usr/bin/python3
"""PyTorch DistributedDataParallel (gloo) on the work of bench/mpi_scaling.sh.

    torch_ddp.py F.npz --ranks R [--threads T] [--steps S] [--warmup W]

F.npz is what `bench_gnn export` writes (weights, a batch of inputs and
Gumbel noise; the network is torch_gnn.py's, the same as sinkgrad's). R
processes on this machine (torch.multiprocessing, gloo over loopback), T
intra-op threads each; rank r trains on its block B*r/R .. B*(r+1)/R of the
batch, DDP averages the gradients (equal blocks: the gradient of the whole
batch), every rank takes the Adam step. Prints one JSON object: the median
step time over S steps after W warm-up steps (the slowest rank's), and the
median time of a gloo all_reduce of a flat float32 buffer of the model's
size on its own.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gnn  # noqa: E402  (the same network as sinkgrad's)


def slowest(seconds):
    t = torch.tensor([seconds], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def time_steps(pb, opt, steps, warmup):
    out = []
    for i in range(warmup + steps):
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = pb.loss()
        loss.backward()
        opt.step()
        dt = slowest(time.perf_counter() - t0)
        if i >= warmup:
            out.append(1e3 * dt)
    return out


def time_all_reduce(n, reps):
    buf = torch.ones(n, dtype=torch.float32)
    out = []
    for i in range(reps + 2):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        dt = slowest(time.perf_counter() - t0)
        if i >= 2:
            out.append(1e3 * dt)
    return out


def worker(rank, a, port):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    pb = torch_gnn.load_problem(a.npz, with_infer=False)
    B = pb.train[0].shape[0]
    lo, hi = B * rank // a.ranks, B * (rank + 1) // a.ranks
    pb.train = [x[lo:hi].contiguous() for x in pb.train]
    n_params = torch_gnn.param_count(pb.model)
    if a.ranks > 1:
        pb.model = DDP(pb.model)
    opt = torch_gnn.make_adam(pb.model, pb.lr)
    step_ms = time_steps(pb, opt, a.steps, a.warmup)
    reduce_ms = time_all_reduce(n_params, a.steps) if a.ranks > 1 else [0.0]
    if rank == 0:
        print(json.dumps({"side": "torch_ddp_gloo", "ranks": a.ranks, "threads": a.threads,
                          "batch": int(B), "params": n_params, "steps": a.steps,
                          "step_ms_median": statistics.median(step_ms),
                          "step_ms": [round(x, 3) for x in step_ms],
                          "all_reduce_ms_median": statistics.median(reduce_ms),
                          "torch": torch.__version__}))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("npz")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    port = 29500 + os.getpid() % 1000
    mp.spawn(worker, args=(a, port), nprocs=a.ranks, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
