#!/usr/bin/env python3
"""Train and inference benchmark: this project's train/infer plugins against PyTorch on the same
network (784-256-128-10 MLP, ReLU), data (Fashion-MNIST), normalisation, initialisation scheme,
batch size, optimizer (Adam, cosine schedule) and thread count, in the same run on the same
machine. Prints one JSON object.

Usage: bench_train.py --build BUILD_DIR [--epochs 20] [--threads 2] [--dataset DIR]
                      [--time-rounds 4] [--time-epochs 3] [--infer-runs 5] [--infer-rounds 4]
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


def run_jazari_train(args, work, epochs=None, name="train"):
    """Trains with the train plugin; returns the epoch times, test accuracies and model path."""
    exe = os.path.join(args.build, "bin", "jazari-bench-train")
    train = subprocess.run(
        [exe, "train", os.path.join(work, name), "dataset=" + args.dataset, "layers=256,128",
         "activation=relu", "optimizer=adam", "lr=0.001", "lr_schedule=cosine",
         "batch_size=%d" % args.batch, "epochs=%d" % (epochs or args.epochs), "seed=1"],
        capture_output=True, text=True, env=bench_env(args))
    if train.returncode != 0:
        raise SystemExit("train failed: %s %s" % (train.stdout, train.stderr[-2000:]))
    t = json.loads(train.stdout)
    epoch_s = [v for n, s, v in t["history"] if n == "epoch_s"]
    accs = [v for n, s, v in t["history"] if n == "test_accuracy"]
    return epoch_s, accs, os.path.join(work, name, "out", "model")


def run_torch_train(args, me, torch_model, epochs=None):
    """PyTorch's training in its own process; returns the epoch times and test accuracies."""
    cmd = me + ["--torch-worker", "--torch-model", torch_model]
    if epochs:
        cmd += ["--epochs", str(epochs)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=bench_env(args))
    if r.returncode != 0:
        raise SystemExit("torch run failed: " + r.stderr[-2000:])
    t = json.loads(r.stdout.strip().splitlines()[-1])
    return t["epoch_s"], t["acc"]


def run_jazari_infer(args, work, model, r):
    """One inference round of the infer plugin in a fresh process: 1 + --infer-runs passes over
    the test images. Returns (cold samples/s, [warm samples/s], accuracy)."""
    exe = os.path.join(args.build, "bin", "jazari-bench-train")
    infer = subprocess.run(
        [exe, "infer", os.path.join(work, "infer%d" % r), "model=" + model,
         "input=" + args.dataset, "batch_size=%d" % args.infer_batch,
         "runs=%d" % (1 + args.infer_runs)],
        capture_output=True, text=True, env=bench_env(args))
    if infer.returncode != 0:
        raise SystemExit("infer failed: %s %s" % (infer.stdout, infer.stderr[-2000:]))
    i = json.loads(infer.stdout)
    rates = [run["samples_per_s"] for run in i["runs"]]
    return rates[0], rates[1:], i["metrics"]["accuracy"]


def run_torch_infer_round(args, me, torch_model):
    """The same round for PyTorch: a fresh process loads the trained model and the data, then
    makes 1 + --infer-runs passes."""
    r = subprocess.run(me + ["--torch-infer", torch_model],
                       capture_output=True, text=True, env=bench_env(args))
    if r.returncode != 0:
        raise SystemExit("torch inference failed: " + r.stderr[-2000:])
    t = json.loads(r.stdout.strip().splitlines()[-1])
    return t["infer"][0], t["infer"][1:]


def torch_data(args):
    """Fashion-MNIST as both sides see it: the plugin's normalisation (per-feature mean, std
    floored at a quarter of the mean std), as float32 tensors."""
    import numpy as np
    import torch
    d = args.dataset
    xtr = read_idx(find(d, "train-images-idx3-ubyte")).astype(np.float32)
    ytr = read_idx(find(d, "train-labels-idx1-ubyte")).astype(np.int64)
    xte = read_idx(find(d, "t10k-images-idx3-ubyte")).astype(np.float32)
    yte = read_idx(find(d, "t10k-labels-idx1-ubyte")).astype(np.int64)
    mean = xtr.mean(0)
    std = xtr.std(0)
    std = np.maximum(std, 0.25 * std.mean())
    return (torch.from_numpy((xtr - mean) / std), torch.from_numpy(ytr),
            torch.from_numpy((xte - mean) / std), torch.from_numpy(yte))


def torch_net():
    import torch
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 128), torch.nn.ReLU(),
                               torch.nn.Linear(128, 10))


def torch_infer_pass(args, net, xte):
    """One pass as the infer plugin makes it: batched forward, softmax, argmax; samples/s."""
    import torch
    with torch.no_grad():
        t0 = time.perf_counter()
        preds = []
        for b in range(0, len(xte), args.infer_batch):
            p = torch.softmax(net(xte[b:b + args.infer_batch]), 1)
            preds.append(p.argmax(1))
        secs = time.perf_counter() - t0
    return len(xte) / secs


def run_torch_infer(args):
    """A fresh process: loads the saved model, then 1 + --infer-runs passes (samples/s each)."""
    import torch
    torch.set_num_threads(args.threads)
    _, _, xte, _ = torch_data(args)
    net = torch_net()
    net.load_state_dict(torch.load(args.torch_infer))
    net.eval()
    return [torch_infer_pass(args, net, xte) for _ in range(1 + args.infer_runs)]


def run_torch(args):
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    xtr, ytr, xte, yte = torch_data(args)
    net = torch_net()
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
    torch.save(net.state_dict(), args.torch_model)
    return epoch_s, accs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--dataset", default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--infer-batch", type=int, default=1024)
    ap.add_argument("--time-rounds", type=int, default=4,
                    help="paired training-time rounds, the sides alternated")
    ap.add_argument("--time-epochs", type=int, default=3,
                    help="epochs per side in a training-time round")
    ap.add_argument("--infer-runs", type=int, default=5,
                    help="warm inference passes per round, after the cold one (both sides)")
    ap.add_argument("--infer-rounds", type=int, default=4,
                    help="inference rounds, each a fresh process per side, sides alternated")
    ap.add_argument("--omp-wait-policy", default="PASSIVE")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torch-model", help=argparse.SUPPRESS)
    ap.add_argument("--torch-infer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    for name in ("epochs", "threads", "batch", "infer_batch", "time_rounds", "time_epochs",
                 "infer_runs", "infer_rounds"):
        if getattr(args, name) < 1:
            ap.error("--%s must be at least 1" % name.replace("_", "-"))
    ensure_torch()
    import torch
    if args.torch_worker:
        t_epoch, t_acc = run_torch(args)
        print(json.dumps({"epoch_s": t_epoch, "acc": t_acc}))
        return
    if args.torch_infer:
        print(json.dumps({"infer": run_torch_infer(args)}))
        return
    work = tempfile.mkdtemp(prefix="jazari-bench-train-")
    me = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    try:
        j_epoch, j_acc, model = run_jazari_train(args, work)
        # PyTorch in its own processes, so it reads the same environment at start-up.
        torch_model = os.path.join(work, "torch-model.pt")
        t_epoch, t_acc = run_torch_train(args, me, torch_model)
        # The two 20-epoch runs are a minute apart, and this VM's speed changes in steps that last
        # minutes (both sides' epochs move by up to 40% between runs): so the epoch ratio is also
        # taken in rounds of --time-epochs epochs per side, the sides alternating, seconds apart;
        # each round's ratio is of the medians of its epochs after the first.
        train_ratios = []
        for rnd in range(args.time_rounds):
            def ours():
                e, _, _ = run_jazari_train(args, work, args.time_epochs, "round%d" % rnd)
                return statistics.median(e[1:] or e)

            def theirs():
                e, _ = run_torch_train(args, me, os.path.join(work, "round.pt"), args.time_epochs)
                return statistics.median(e[1:] or e)
            if rnd % 2 == 0:
                je_r = ours()
                te_r = theirs()
            else:
                te_r = theirs()
                je_r = ours()
            train_ratios.append(je_r / te_r)
        # Inference in rounds: each side's round is a fresh process that loads its trained model
        # and the data, then makes one cold pass (the first in the process, as a fresh job's)
        # and --infer-runs warm ones. The sides take turns going first, seconds apart, and each
        # ratio is taken within a round: this VM's speed drifts by tens of percent over minutes,
        # which made ratios of passes timed minutes apart swing from 0.75x to 2.1x.
        j_cold, j_warm, t_cold, t_warm, cold_ratios, warm_ratios = [], [], [], [], [], []
        for rnd in range(args.infer_rounds):
            if rnd % 2 == 0:
                jc, jw, j_inf_acc = run_jazari_infer(args, work, model, rnd)
                tc, tw = run_torch_infer_round(args, me, torch_model)
            else:
                tc, tw = run_torch_infer_round(args, me, torch_model)
                jc, jw, j_inf_acc = run_jazari_infer(args, work, model, rnd)
            j_cold.append(jc), t_cold.append(tc), j_warm.extend(jw), t_warm.extend(tw)
            cold_ratios.append(jc / tc)
            warm_ratios.append(statistics.median(jw) / statistics.median(tw))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    je, te = statistics.median(j_epoch), statistics.median(t_epoch)
    out = {
        "epochs": args.epochs, "batch_size": args.batch, "threads": args.threads,
        "omp_wait_policy": args.omp_wait_policy,
        "network": "784-256-128-10 relu, adam lr 1e-3 cosine",
        "torch_version": torch.__version__,
        "epoch_s": round(je, 4), "torch_epoch_s": round(te, 4),
        "epoch_s_ratio": round(statistics.median(train_ratios), 3),
        "epoch_s_ratio_rounds": [round(x, 3) for x in train_ratios],
        "epoch_s_ratio_20": round(je / te, 3),
        "epoch_s_all": [round(x, 3) for x in j_epoch],
        "torch_epoch_s_all": [round(x, 3) for x in t_epoch],
        "test_accuracy": round(j_acc[-1], 4), "torch_test_accuracy": round(t_acc[-1], 4),
        "infer_accuracy": round(j_inf_acc, 4),
        "infer_samples_per_s": round(statistics.median(j_warm)),
        "torch_infer_samples_per_s": round(statistics.median(t_warm)),
        "infer_ratio": round(statistics.median(warm_ratios), 3),
        "infer_ratio_rounds": [round(x, 3) for x in warm_ratios],
        "infer_cold_samples_per_s": round(statistics.median(j_cold)),
        "torch_infer_cold_samples_per_s": round(statistics.median(t_cold)),
        "infer_cold_ratio": round(statistics.median(cold_ratios), 3),
        "infer_cold_ratio_rounds": [round(x, 3) for x in cold_ratios],
        "infer_samples_per_s_all": [round(x) for x in j_warm],
        "torch_infer_samples_per_s_all": [round(x) for x in t_warm],
        "infer_cold_samples_per_s_all": [round(x) for x in j_cold],
        "torch_infer_cold_samples_per_s_all": [round(x) for x in t_cold],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
