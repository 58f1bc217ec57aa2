#!/usr/bin/env python3
"""End-to-end tests of the workload plugins (train, infer, simulate): a real jazarid on
127.0.0.1 with the 8-GPU topology fixture (declared GPUs run on the cpu fallback backend), jobs
submitted through the jazari CLI, metrics read with `jazari show --json`, artifacts fetched with
`jazari fetch`. Training uses a small Fashion-MNIST subset written to a temporary folder.

Usage: test_workloads.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
import test_service  # noqa: E402
from test_service import Service, run_tests  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"
DATA = None  # the subset folder, made once per process


def make_subset(dest, n_train=3000, n_test=1000):
    """Plain (not gzipped) IDX files holding the first samples of Fashion-MNIST."""
    os.makedirs(dest, exist_ok=True)
    for kind, n in (("train", n_train), ("t10k", n_test)):
        for part, per in (("images-idx3-ubyte", 784), ("labels-idx1-ubyte", 1)):
            with gzip.open(os.path.join(FASHION, "%s-%s.gz" % (kind, part)), "rb") as f:
                data = f.read()
            ndim = data[3]
            head = bytearray(data[:4 + 4 * ndim])
            head[4:8] = n.to_bytes(4, "big")
            body = data[4 + 4 * ndim:4 + 4 * ndim + n * per]
            with open(os.path.join(dest, "%s-%s" % (kind, part)), "wb") as f:
                f.write(bytes(head) + body)


def submit(svc, plugin, params, *extra):
    args = ["submit", "--plugin", plugin, *extra]
    for k, v in params.items():
        args += ["--param", "%s=%s" % (k, v)]
    rc, out, err = svc.cli(*args)
    assert rc == 0 and out.strip().isdigit(), (rc, out, err)
    return int(out)


def wait_show(svc, jid, timeout=240):
    rc, out, err = svc.cli("wait", str(jid), timeout=timeout)
    rc2, out2, err2 = svc.cli("show", "--json", str(jid))
    assert rc2 == 0, (rc2, out2, err2)
    return json.loads(out2)


def log_of(svc, jid):
    rc, out, err = svc.cli("logs", str(jid))
    assert rc == 0, (rc, out, err)
    return out


def fetch(svc, jid, name):
    dest = os.path.join(svc.state, "fetched-%d-%s" % (jid, name))
    rc, out, err = svc.cli("fetch", str(jid), name, "-o", dest)
    assert rc == 0, (rc, out, err)
    with open(dest, "rb") as f:
        return f.read()


def small_train(**over):
    p = {"dataset": DATA, "layers": "64,32", "epochs": 2, "batch_size": 64, "seed": 3}
    p.update(over)
    return p


# ------------------------------------------------------------------------------------------
def test_train_infer(svc):
    jid = submit(svc, "train", small_train())
    j = wait_show(svc, jid)
    assert j["state"] == "SUCCEEDED", j
    m = j["metrics"]
    for name in ("epoch", "train_loss", "train_accuracy", "test_accuracy", "samples_per_s"):
        assert name in m, m
    assert m["epoch"] == 2 and m["test_accuracy"] > 0.7 and m["train_loss"] < 1.0, m
    log = log_of(svc, jid)
    assert "train: epoch 1/2" in log and "train: epoch 2/2" in log, log
    model = fetch(svc, jid, "model")
    assert model[:8] == b"JZMLP\x00\r\n", model[:8]
    # infer with the artifact of the train job, referenced as job:ID/model
    iid = submit(svc, "infer", {"model": "job:%d/model" % jid, "input": DATA})
    ij = wait_show(svc, iid)
    assert ij["state"] == "SUCCEEDED", (ij, log_of(svc, iid))
    acc = ij["metrics"]["accuracy"]
    assert abs(acc - m["test_accuracy"]) <= 0.002, (acc, m["test_accuracy"])
    preds = fetch(svc, iid, "predictions.csv").decode().splitlines()
    assert preds[0] == "index,prediction,confidence,label" and len(preds) == 1001, preds[:3]
    cm = fetch(svc, iid, "confusion.csv").decode().splitlines()
    assert len(cm) == 11 and sum(int(v) for row in cm[1:] for v in row.split(",")[1:]) == 1000
    # another user may not point infer at this job's model
    bob = svc.add_user("bob", tenant="startup-a")
    st, e = svc.http("POST", "/v1/jobs", {"plugin": "infer", "params": {
        "model": "job:%d/model" % jid, "input": DATA}}, bob)
    assert st == 400 and e["error"]["field"] == "params.model", (st, e)


def test_data_parallel(svc):
    """2 declared GPUs (cpu fallback) vs none: the same training up to float rounding."""
    one = submit(svc, "train", small_train(epochs=1, optimizer="sgd", lr=0.02))
    two = submit(svc, "train", small_train(epochs=1, optimizer="sgd", lr=0.02), "--gpus", "2")
    j1, j2 = wait_show(svc, one), wait_show(svc, two)
    assert j1["state"] == "SUCCEEDED" and j2["state"] == "SUCCEEDED", (j1, j2)
    assert "devices 2 x cpu" in log_of(svc, two), log_of(svc, two)
    l1, l2 = j1["metrics"]["train_loss"], j2["metrics"]["train_loss"]
    assert abs(l1 - l2) < 1e-3 * l1, (l1, l2)
    a1, a2 = j1["metrics"]["test_accuracy"], j2["metrics"]["test_accuracy"]
    assert abs(a1 - a2) <= 0.003, (a1, a2)


def test_cancel_resume(svc):
    """Cancelled mid-way, resubmitted with --resume: continues from the checkpoint and ends with
    exactly the model an uninterrupted run produces."""
    params = small_train(epochs=8, batch_size=32, layers="256,128")
    first = submit(svc, "train", params)
    deadline = time.time() + 120
    while (svc.job(svc.admin, first).get("metrics") or {}).get("epoch", 0) < 1:
        assert time.time() < deadline and svc.job(svc.admin, first)["state"] in (
            "PENDING", "RUNNING"), svc.job(svc.admin, first)
        time.sleep(0.05)
    rc, out, err = svc.cli("cancel", str(first))
    assert rc == 0, (rc, out, err)
    j = wait_show(svc, first)
    assert j["state"] == "CANCELLED" and j.get("checkpoint_time"), j
    done_epochs = j["metrics"]["epoch"]
    assert done_epochs < 8, j
    second = submit(svc, "train", params, "--resume", str(first))
    j2 = wait_show(svc, second)
    assert j2["state"] == "SUCCEEDED", (j2, log_of(svc, second))
    log = log_of(svc, second)
    assert "train: resuming at epoch" in log, log
    assert "train: epoch 1/8" not in log, log
    assert j2["metrics"]["epoch"] == 8, j2
    whole = submit(svc, "train", params)
    jw = wait_show(svc, whole)
    assert jw["state"] == "SUCCEEDED", jw
    assert fetch(svc, second, "model") == fetch(svc, whole, "model")


def test_simulate(svc):
    heat = submit(svc, "simulate", {"model": "heat", "nx": 80, "ny": 72, "sigma": 4,
                                    "steps": 200, "snapshots": 2}, "--gpus", "2")
    nbody = submit(svc, "simulate", {"model": "nbody", "bodies": 200, "dt": 0.004,
                                     "softening": 0.05, "steps": 200, "snapshots": 1})
    jh, jn = wait_show(svc, heat), wait_show(svc, nbody)
    assert jh["state"] == "SUCCEEDED", (jh, log_of(svc, heat))
    assert jh["metrics"]["rel_l2_error"] < 0.01, jh["metrics"]
    st, arts = svc.http("GET", "/v1/jobs/%d/artifacts" % heat, token=svc.admin)
    names = sorted(a["name"] for a in arts["artifacts"])
    assert names == ["heat.png", "heat_00000100.f32", "heat_00000200.f32"], names
    assert fetch(svc, heat, "heat.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert jn["state"] == "SUCCEEDED", (jn, log_of(svc, nbody))
    assert jn["metrics"]["energy_drift"] < 1e-3, jn["metrics"]
    assert fetch(svc, nbody, "nbody_00000200.f32")[:8] == b"JZBODIES"
    # parameters are checked at submit time against the schema
    rc, out, err = svc.cli("submit", "--plugin", "simulate", "--param", "alpha=0.5")
    assert rc != 0 and "params.alpha" in err, (rc, out, err)


def test_bad_model(svc):
    """A corrupt model file fails the infer job with a clear reason; the worker does not crash."""
    path = os.path.join(svc.state, "broken.model")
    with open(path, "wb") as f:
        f.write(b"JZMLP\x00\r\n" + b"\x01\x00\x00\x00" * 12)
    jid = submit(svc, "infer", {"model": path, "input": DATA})
    j = wait_show(svc, jid)
    assert j["state"] == "FAILED" and j.get("signal") is None, j
    assert "model" in (j.get("reason") or ""), j
    assert "infer:" in log_of(svc, jid)


def main():
    global DATA
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    if not os.path.exists(os.path.join(FASHION, "train-images-idx3-ubyte.gz")):
        print("skipped: no Fashion-MNIST at " + FASHION)
        sys.exit(77)
    tmp = tempfile.mkdtemp(prefix="jazari-workloads-")
    DATA = os.path.join(tmp, "fashion-subset")
    make_subset(DATA)
    failed = 0
    try:
        failed = run_tests(args.tests, globals(), lambda name: Service())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
