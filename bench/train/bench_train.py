#!/usr/bin/env python3
"""Train and inference benchmark: this project's train/infer plugins against PyTorch on the same
network (784-256-128-10 MLP, ReLU), data (Fashion-MNIST), normalisation, initialisation scheme,
batch size, optimizer (Adam, cosine schedule) and thread count, in the same run on the same
machine. Prints one JSON object.

Usage: bench_train.py --build BUILD_DIR [--epochs 20] [--threads 2] [--dataset DIR] [--infer-runs 5]
PyTorch comes from Debian's python3-torch; this script installs it with apt-get when missing
and then re-runs itself under /usr/bin/python3 (Debian's interpreter, where that package lives).
"""
import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def ensure_torch():
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        r = subprocess.run(["/usr/bin/python3", "-c", "import torch"], capture_output=True)
        if r.returncode != 0:
            apt_install()
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    apt_install()
    import torch  # noqa: F401


def apt_install():
    print("installing python3-torch with apt-get ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "python3-torch"],
                   check=True, env=env, stdout=sys.stderr)


def read_idx(path):
    import numpy as np
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims[0], -1) if ndim > 1 else arr


def find(d, base):
    for p in (os.path.join(d, base), os.path.join(d, base + ".gz")):
        if os.path.exists(p):
            return p
    raise SystemExit("missing %s in %s" % (base, d))


def bench_env(args):
    """The one environment both sides run in. Both Jazari's cpu backend and Debian's PyTorch mix
    OpenBLAS's pthread pool with an OpenMP pool; with OpenMP's default active waiting the two
    pools fight over the cores and both run several times slower, so both get passive waiting."""
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["OPENBLAS_NUM_THREADS"] = str(args.threads)
    return env


def run_jazari(args, work):
    env = bench_env(args)
    exe = os.path.join(args.build, "bin", "jazari-bench-train")
    train = subprocess.run(
        [exe, "train", os.path.join(work, "train"), "dataset=" + args.dataset, "layers=256,128",
         "activation=relu", "optimizer=adam", "lr=0.001", "lr_schedule=cosine",
         "batch_size=%d" % args.batch, "epochs=%d" % args.epochs, "seed=1"],
        capture_output=True, text=True, env=env)
    if train.returncode != 0:
        raise SystemExit("train failed: %s %s" % (train.stdout, train.stderr[-2000:]))
    t = json.loads(train.stdout)
    epoch_s = [v for n, s, v in t["history"] if n == "epoch_s"]
    accs = [v for n, s, v in t["history"] if n == "test_accuracy"]
    model = os.path.join(work, "train", "out", "model")
    # One pass over the 10k test images takes ~30 ms: a single pass is at the mercy of whatever
    # else the machine does, so both sides report the median of --infer-runs passes (here each a
    # fresh job, cold; PyTorch's in one process, warm).
    rates = []
    for r in range(args.infer_runs):
        infer = subprocess.run(
            [exe, "infer", os.path.join(work, "infer%d" % r), "model=" + model,
             "input=" + args.dataset, "batch_size=%d" % args.infer_batch],
            capture_output=True, text=True, env=env)
        if infer.returncode != 0:
            raise SystemExit("infer failed: %s %s" % (infer.stdout, infer.stderr[-2000:]))
        i = json.loads(infer.stdout)
        rates.append(i["metrics"]["samples_per_s"])
    return epoch_s, accs, rates, i["metrics"]["accuracy"]


def run_torch(args):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    d = args.dataset
    xtr = read_idx(find(d, "train-images-idx3-ubyte")).astype(np.float32)
    ytr = read_idx(find(d, "train-labels-idx1-ubyte")).astype(np.int64)
    xte = read_idx(find(d, "t10k-images-idx3-ubyte")).astype(np.float32)
    yte = read_idx(find(d, "t10k-labels-idx1-ubyte")).astype(np.int64)
    # The plugin's normalisation: per-feature mean, std floored at a quarter of the mean std.
    mean = xtr.mean(0)
    std = xtr.std(0)
    std = np.maximum(std, 0.25 * std.mean())
    xtr = torch.from_numpy((xtr - mean) / std)
    xte = torch.from_numpy((xte - mean) / std)
    ytr = torch.from_numpy(ytr)
    yte = torch.from_numpy(yte)
    net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, 10))
    for m in net:
        if isinstance(m, torch.nn.Linear):  # the plugin's He-normal weights, zero biases
            torch.nn.init.normal_(m.weight, 0.0, (2.0 / m.in_features) ** 0.5)
            torch.nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps_per_epoch = (len(xtr) + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch * args.epochs)
    lossf = torch.nn.CrossEntropyLoss()
    epoch_s, accs = [], []
    for _ in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        t0 = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            xb, yb = xtr[idx], ytr[idx]
            opt.zero_grad(set_to_none=True)
            loss = lossf(net(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
        epoch_s.append(time.perf_counter() - t0)
        net.eval()
        with torch.no_grad():
            accs.append(float((net(xte).argmax(1) == yte).float().mean()))
    # Inference as the infer plugin does it: batched forward, softmax, argmax.
    rates = []
    with torch.no_grad():
        for _ in range(args.infer_runs):
            t0 = time.perf_counter()
            preds = []
            for b in range(0, len(xte), args.infer_batch):
                p = torch.softmax(net(xte[b:b + args.infer_batch]), 1)
                preds.append(p.argmax(1))
            secs = time.perf_counter() - t0
            rates.append(len(xte) / secs)
    return epoch_s, accs, rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--dataset", default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--infer-batch", type=int, default=1024)
    ap.add_argument("--infer-runs", type=int, default=5)
    ap.add_argument("--omp-wait-policy", default="PASSIVE")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    ensure_torch()
    import torch
    if args.torch_worker:
        t_epoch, t_acc, t_inf = run_torch(args)
        print(json.dumps({"epoch_s": t_epoch, "acc": t_acc, "infer": t_inf}))
        return
    work = tempfile.mkdtemp(prefix="jazari-bench-train-")
    try:
        j_epoch, j_acc, j_inf, j_inf_acc = run_jazari(args, work)
        # PyTorch in its own process, so it reads the same environment at start-up.
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--torch-worker"] +
                           sys.argv[1:], capture_output=True, text=True, env=bench_env(args))
        if r.returncode != 0:
            raise SystemExit("torch run failed: " + r.stderr[-2000:])
        t = json.loads(r.stdout.strip().splitlines()[-1])
        t_epoch, t_acc, t_inf = t["epoch_s"], t["acc"], t["infer"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    je, te = statistics.median(j_epoch), statistics.median(t_epoch)
    ji, ti = statistics.median(j_inf), statistics.median(t_inf)
    out = {
        "epochs": args.epochs, "batch_size": args.batch, "threads": args.threads,
        "omp_wait_policy": args.omp_wait_policy,
        "network": "784-256-128-10 relu, adam lr 1e-3 cosine",
        "torch_version": torch.__version__,
        "epoch_s": round(je, 4), "torch_epoch_s": round(te, 4),
        "epoch_s_ratio": round(je / te, 3),
        "epoch_s_all": [round(x, 3) for x in j_epoch],
        "torch_epoch_s_all": [round(x, 3) for x in t_epoch],
        "test_accuracy": round(j_acc[-1], 4), "torch_test_accuracy": round(t_acc[-1], 4),
        "infer_accuracy": round(j_inf_acc, 4),
        "infer_samples_per_s": round(ji), "torch_infer_samples_per_s": round(ti),
        "infer_ratio": round(ji / ti, 3),
        "infer_samples_per_s_all": [round(x) for x in j_inf],
        "torch_infer_samples_per_s_all": [round(x) for x in t_inf],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
