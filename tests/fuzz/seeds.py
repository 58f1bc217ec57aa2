#!/usr/bin/env python3
"""Writes the hand-made seed inputs of tests/fuzz/corpus/ (run from anywhere; idempotent).

Seeds are small, valid or nearly valid inputs that start each fuzzer deep in its parser. Inputs
the fuzzers found that crashed are kept beside them as crash-*; this script never removes files.
"""
import gzip
import json
import os
import struct
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def js(v):
    return json.dumps(v, separators=(",", ":"))


# --- job requests (the body of POST /v1/jobs) ---------------------------------------------------
reqs = {
    "example": {"plugin": "example"},
    "example-full": {"plugin": "example", "name": "count to 5", "params": {"count": "5"},
                     "resources": {"cpus": 2, "time_limit": "1h30m", "memory_mb": 512},
                     "preemptible": True, "requeue": False, "class": "batch",
                     "submit_dir": "/home/u"},
    "train": {"plugin": "train", "params": {"dataset": "/data/mnist", "layers": "256,128",
                                             "lr": "0.01", "epochs": 2},
              "resources": {"gpus": 2, "cpus_per_gpu": 4, "gpu_model": "V100",
                            "gpu_memory_min_mb": 16000}},
    "train-spill": {"plugin": "train", "params": {"dataset": "/d"}, "resources": {"gpus": 16}},
    "batch-gang": {"plugin": "batch", "params": {"argv": ["sh", "-c", "hostname"]},
                   "resources": {"nodes": 2, "gpus_per_node": 4, "time_limit_s": 600}},
    "batch-both": {"plugin": "batch", "params": {"argv": "true"},
                   "resources": {"nodes": 2, "gpus": 6, "gpus_per_node": 3}},
    "infer-ref": {"plugin": "infer", "params": {"model": "job:12/model", "input": "/x.csv"},
                  "resume_from": 7},
    "simulate": {"plugin": "simulate", "params": {"model": "heat", "nx": 64, "alpha": 0.1}},
    "refused": {"plugin": "refused"},
    "unknown-field": {"plugin": "example", "resources": {"gpu": 1}},
    "bad-time": {"plugin": "example", "resources": {"time_limit": "1x"}},
}
for k, v in reqs.items():
    put("job_request", k + ".json", js(v))

# --- parameters: first byte picks the schema (train, infer, simulate, example, batch) -----------
params = [
    (0, {"dataset": "/data", "layers": [64, 32], "optimizer": "sgd", "lr": 1e-3}),
    (0, {"dataset": "/data", "layers": "256,128", "batch_size": "64", "activation": "gelu"}),
    (1, {"model": "/m", "input": "/i.csv", "batch_size": 10}),
    (2, {"model": "nbody", "bodies": 100, "dt": "0.01", "seed": 3}),
    (3, {"count": 5, "delay_ms": "0"}),
    (4, {"argv": "echo hi", "env": ["A=1", "B=2"], "cwd": "/tmp"}),
    (4, {"argv": ["a", "b"], "unknown": 1}),
]
for i, (sel, p) in enumerate(params):
    put("params", "p%d.json" % i, bytes([sel]) + js(p).encode())


# --- MLP model files ----------------------------------------------------------------------------
def mlp(sizes, act=1):
    """A model image as plugins/common/model.c writes it: header, sizes, mean, std, then each
    layer's weights and biases (little-endian float32), and a CRC-32 of all that."""
    n_layers = len(sizes) - 1
    vals = [0.5] * sizes[0] + [1.0] * sizes[0]
    for i in range(n_layers):
        vals += [0.25 * ((j % 7) - 3) for j in range(sizes[i] * sizes[i + 1])]
        vals += [0.0] * sizes[i + 1]
    data = struct.pack("<%dI" % len(sizes), *sizes) + struct.pack("<%df" % len(vals), *vals)
    img = b"JZMLP\0\r\n" + struct.pack("<IIIIQ", 1, act, n_layers, 0, len(data)) + data
    return img + struct.pack("<I", zlib.crc32(img) & 0xFFFFFFFF)


put("model", "2-2.bin", mlp([2, 2]))
put("model", "3-4-2-gelu.bin", mlp([3, 4, 2], act=2))
put("model", "1-1-1-2.bin", mlp([1, 1, 1, 2]))


# --- IDX files ----------------------------------------------------------------------------------
def idx(type_code, dims, values):
    h = bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    if type_code == 0x08:
        return h + bytes(values)
    return h + b"".join(struct.pack(">f", v) for v in values)


put("idx", "images-2x3x3.idx", idx(0x08, [2, 3, 3], range(18)))
put("idx", "labels-4.idx", idx(0x08, [4], [0, 1, 2, 9]))
put("idx", "float-2x2.idx", idx(0x0D, [2, 2], [0.5, -1.0, 3.25, 0.0]))
put("idx", "images-1x2x2.idx.gz", gzip.compress(idx(0x08, [1, 2, 2], [1, 2, 3, 4]), mtime=0))

# --- CSV: first byte picks expect_features (its value mod 8; 0: the first column is the label) --
put("csv", "labelled", b"\x00label,a,b\n0,1.5,2\n1,3,4e-1\n2,-1,0\n")
put("csv", "expect3", b"\x03 1, 2, 3\n4,5,6\r\n")
put("csv", "expect2-labels", b"\x020,1,2\n1,3,4\n\n")
put("csv", "header-only", b"\x00x,y\n")

# --- CPU lists and durations --------------------------------------------------------------------
for i, s in enumerate(["0-3,8,10-11", "", "5", "0-8191", "3,2,1,1", "0-", "7-3"]):
    put("cpulist", "c%d" % i, s)
for i, s in enumerate(["90", "1h30m", "01:30:00", "2d", "45s", "1d2h3m4s",
                       "2026-11-25T19:00:00.123Z", "1970-01-01T00:00:00Z"]):
    put("duration", "d%d" % i, s)

# --- the worker's SPEC.json ---------------------------------------------------------------------
spec = {"job_id": "42", "plugin_path": "/usr/lib/jazari/plugins/batch.so",
        "output_dir": "/var/lib/jazari/jobs/42/out", "log_path": "/var/lib/jazari/jobs/42/log",
        "checkpoint_dir": "/var/lib/jazari/jobs/42/ckpt", "submit_dir": "/home/u",
        "cpus": "0-3", "numa_nodes": "0", "bind": True, "time_limit_s": 3600,
        "kill_grace_s": 10, "log_max_bytes": 1 << 20, "min_free_bytes": 0,
        "params": {"argv": ["sh", "-c", "true"]}, "env": {"A": "1"},
        "devices": [{"backend": "opencl", "ordinal": 0, "node_index": 3,
                     "pci_bus_id": "0000:3b:00.0"}]}
put("spec", "full.json", js(spec))
put("spec", "minimal.json", js({"job_id": "1", "plugin_path": "/p.so", "output_dir": "/o"}))

# --- event lines from a worker ------------------------------------------------------------------
put("event_line", "run", "\n".join(js(e) for e in [
    {"type": "started", "pid": 1234},
    {"type": "progress", "fraction": 0.5, "message": "epoch 1"},
    {"type": "metric", "name": "loss", "value": 0.25, "step": 10},
    {"type": "checkpoint", "path": "/x"},
    {"type": "error", "message": "bad input"},
    {"type": "exit", "status": "failed", "exit_code": 3, "signal": 9, "message": "m"},
]) + "\n")
put("event_line", "exit-ok", js({"type": "exit", "status": "succeeded", "exit_code": 0}))

# --- agent protocol frames: first byte = piece size - 1 (and 0x80: a 64-byte header limit) ------
frames = (js({"t": "hello", "v": 1, "node": "n1", "topology": "<topology/>"}) + "\n" +
          js({"t": "log", "job": 3, "part": 0, "len": 5}) + "\nhello" +
          js({"t": "ev", "job": 3, "ev": {"type": "progress", "fraction": 1}}) + "\n" +
          js({"t": "file", "job": 3, "name": "model", "off": 0, "last": True, "len": 3}) + "\nabc")
put("proto", "frames-whole", b"\x7f" + frames.encode())
put("proto", "frames-bytewise", b"\x00" + frames.encode())
put("proto", "frames-small-limit", b"\x83" + frames.encode())

# --- hwloc XML topologies: small synthetic machines, and one with GPUs and NVLink ---------------
for name, desc in [("synthetic-1", "node:1 core:1 pu:1"),
                   ("synthetic-2numa", "pack:1 node:2 core:2 pu:2")]:
    xml = subprocess.run(["lstopo", "-i", desc, "--of", "xml", "-"], check=True,
                         capture_output=True).stdout
    put("topo", name + ".xml", xml)
