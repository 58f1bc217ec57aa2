#!/usr/bin/env python3
"""End-to-end tests of many nodes: one jazarid (no embedded local node) and jazari-node agents on
127.0.0.1, each with its own state folder and a real topology fixture (declared GPUs run on the
cpu fallback backend). Jobs check from inside that no GPU is held by two jobs at once.

Usage: test_nodes.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
import test_service  # noqa: E402
from test_service import Service, run_tests  # noqa: E402

TOPOLOGIES = ["aws-g4dn-metal-8xT4.xml", "nvidia-dgx2-16xV100-nvswitch.xml",
              "ibm-ac922-lassen-4xV100.xml", "juwels-booster-4xA100-nps4.xml"]

# A job takes a lock per GPU it was given (mkdir is atomic), holds it a moment and frees it:
# a GPU given to two jobs at once makes the second mkdir fail and the job exit 90.
LOCK_SCRIPT = r'''
set -e
locks=$1; shift
for g in $(echo "$JAZARI_GPUS" | tr ',' ' '); do
  mkdir "$locks/$JAZARI_NODE_NAME-$g" 2>/dev/null || { echo "GPU $g of $JAZARI_NODE_NAME taken"; exit 90; }
done
echo "job $JAZARI_JOB_ID on $JAZARI_NODE_NAME gpus=$JAZARI_GPUS"
sleep "$1"
for g in $(echo "$JAZARI_GPUS" | tr ',' ' '); do rmdir "$locks/$JAZARI_NODE_NAME-$g"; done
exit "$2"
'''


class Agent:
    """One jazari-node process with its own state folder."""

    def __init__(self, svc, name, topology, token, site=None, labels=(), extra=()):
        self.svc, self.name, self.token = svc, name, token
        self.state = tempfile.mkdtemp(prefix="jazari-node-%s-" % name)
        test_service.FOLDERS.append(self.state)  # removed or kept with the test's
        self.stop_status = 0  # its exit status after SIGTERM (None: any, for one that quit)
        self.topology = os.path.join(test_service.ARGS.fixtures, "topologies", topology)
        self.site, self.labels, self.extra = site, list(labels), list(extra)
        self.proc = None
        self.start()

    def start(self):
        b = test_service.ARGS.build
        cmd = [os.path.join(b, "bin", "jazari-node"), "--server", self.svc.url,
               "--name", self.name, "--topology", self.topology, "--state-dir", self.state,
               "--plugin-dir", os.path.join(b, "plugins") + ":" + os.path.join(b, "test-plugins"),
               "--log-level", "debug",
               # Jobs as the agent's own user: confinement has its own tests (confine/).
               "--no-confine"]
        if self.token:
            cmd += ["--join-token", self.token]
        if self.site:
            cmd += ["--site", self.site]
        for l in self.labels:
            cmd += ["--label", l]
        self.log = open(os.path.join(self.state, "agent.log"), "a")
        self.proc = subprocess.Popen(cmd + self.extra, stdout=self.log, stderr=subprocess.STDOUT)

    def read_log(self):
        with open(os.path.join(self.state, "agent.log"), errors="replace") as f:
            return f.read()

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None  # died by SIGKILL, as expected
        self.log.close()

    def close(self):
        """SIGTERM: the agent must exit with stop_status. Its folder (its log, its jobs' logs)
        is read for sanitizer reports by Cluster.close, and removed or kept by run_tests."""
        try:
            if self.proc:
                if self.proc.poll() is None:
                    os.kill(self.proc.pid, signal.SIGCONT)
                test_service.stop_process(self.proc, "jazari-node %s" % self.name,
                                          self.stop_status, grace=15)
        finally:
            self.proc = None
            self.log.close()


class Cluster(Service):
    """jazarid without a local node, and its agents (closed with it)."""

    def __init__(self, timeout=3):
        self.agents = []
        self.keep_port = True
        super().__init__(extra=["--no-local-node", "--node-timeout", str(timeout),
                                "--log-level", "debug"])

    def token(self, site=None):
        st, j = self.http("POST", "/v1/admin/node-tokens", {"site": site} if site else {},
                          self.admin)
        assert st == 201, (st, j)
        return j["token"]

    def add_agent(self, name, topology, token=None, **kw):
        a = Agent(self, name, topology, token if token is not None else self.token(), **kw)
        self.agents.append(a)
        return a

    def nodes(self):
        st, j = self.http("GET", "/v1/nodes", token=self.admin)
        assert st == 200, (st, j)
        return {n["name"]: n for n in j["nodes"]}

    def wait_nodes(self, names, state="up", timeout=30):
        deadline = time.time() + timeout
        while True:
            nodes = self.nodes()
            if all(n in nodes and nodes[n]["state"] == state for n in names):
                return nodes
            if time.time() > deadline:
                logs = "\n".join("--- %s ---\n%s" % (a.name, a.read_log()[-2000:])
                                 for a in self.agents)
                raise AssertionError("nodes not %s: %s\n%s" % (
                    state, {k: v["state"] for k, v in nodes.items()}, logs))
            time.sleep(0.05)

    def read_log(self):
        text = super().read_log()
        for a in self.agents:
            try:
                text += "\n--- agent %s ---\n%s" % (a.name, a.read_log()[-3000:])
            except OSError:
                pass
        return text

    def folders(self):
        return [self.state] + [a.state for a in self.agents]

    def close(self):
        """Every agent, then jazarid, is stopped even when one of them fails its checks; the
        first failure is raised."""
        errors = []
        for a in self.agents:
            try:
                a.close()
            except AssertionError as e:
                errors.append(e)
        try:
            super().close()
        except AssertionError as e:
            errors.append(e)
        if errors:
            raise AssertionError("\n".join(str(e) for e in errors))


def lock_job(locks, gpus, sleep_s=0.2, code=0, **extra):
    body = {"plugin": "batch",
            "params": {"argv": ["sh", "-c", LOCK_SCRIPT, "lock", locks, str(sleep_s), str(code)]},
            "resources": {"gpus": gpus}}
    body.update(extra)
    return body


def four_agents(svc):
    for i, topo in enumerate(TOPOLOGIES):
        svc.add_agent("n%d" % i, topo, labels=["switch=sw%d" % (i // 2)])
    return svc.wait_nodes(["n%d" % i for i in range(4)])


def test_agents(svc):
    """200 mixed jobs over 4 agents: no GPU held twice, every exit code and log right."""
    nodes = four_agents(svc)
    assert nodes["n1"]["gpus_total"] == 16 and nodes["n0"]["gpu_model"], nodes["n0"]
    locks = tempfile.mkdtemp(prefix="jazari-locks-")
    t = svc.admin
    jobs = {}
    for k in range(200):
        gpus = [0, 1, 1, 2, 4, 8][k % 6]
        code = 3 if k % 17 == 0 else 0
        jobs[svc.submit(t, lock_job(locks, gpus, 0.05 + (k % 5) * 0.05, code))] = (gpus, code)
    seen_nodes = set()
    for jid, (gpus, code) in jobs.items():
        j = svc.wait(t, jid, timeout=240)
        want = "SUCCEEDED" if code == 0 else "FAILED"
        assert j["state"] == want and j["exit_code"] == code, j
        assert len(j["gpus"]) == gpus, j
        st, log = svc.http("GET", "/v1/jobs/%d/log" % jid, token=t)
        assert "job %d on %s" % (jid, j["node"]) in log, (j, log)
        seen_nodes.add(j["node"])
    assert len(seen_nodes) >= 3, seen_nodes
    assert os.listdir(locks) == [], os.listdir(locks)
    shutil.rmtree(locks)
    print("agents: 200 jobs on nodes %s" % sorted(seen_nodes))


def test_kill9_server(svc):
    """kill -9 of jazarid while jobs run on agents: after a restart they end SUCCEEDED, with their
    logs and artifacts, both those that ended while jazarid was away and those still running."""
    four_agents(svc)
    t = svc.admin
    ids = []
    for k in range(12):
        pause = "0.3" if k % 2 else "3"
        argv = ["sh", "-c", 'echo before; sleep %s; echo after; echo %d > "$JAZARI_OUTPUT_DIR/out.txt"'
                % (pause, k)]
        ids.append(svc.submit(t, {"plugin": "batch", "params": {"argv": argv},
                                  "resources": {"gpus": 1}}))
    # A gang over two nodes is adopted as a whole.
    gang = svc.submit(t, {"plugin": "batch", "params": {"argv": [
        "sh", "-c", 'sleep 2; echo "rank $JAZARI_NODE_RANK done"']},
        "resources": {"nodes": 2, "gpus_per_node": 2}})
    for i in ids + [gang]:
        svc.wait_running(t, i, timeout=20)
    svc.kill9()
    time.sleep(1.5)
    svc.start()
    # The nodes are known from the store at once (their agents reconnect within a few seconds).
    assert sorted(svc.nodes()) == ["n0", "n1", "n2", "n3"], svc.nodes()
    for k, i in enumerate(ids):
        j = svc.wait(t, i, timeout=60)
        assert j["state"] == "SUCCEEDED" and j["exit_code"] == 0, j
        st, log = svc.http("GET", "/v1/jobs/%d/log" % i, token=t)
        assert "before" in log and "after" in log, log
        st, body = svc.http("GET", "/v1/jobs/%d/artifacts/out.txt" % i, token=t)
        assert st == 200 and str(body).strip() == str(k), (st, body)
    j = svc.wait(t, gang, timeout=60)
    st, log = svc.http("GET", "/v1/jobs/%d/log" % gang, token=t)
    assert j["state"] == "SUCCEEDED" and len(j["nodes"]) == 2, j
    assert "rank 0 done" in log and "rank 1 done" in log, log


def test_agent_failures(svc):
    """kill -9 of an agent under load; SIGSTOP of an agent past the timeout, then SIGCONT."""
    four_agents(svc)
    t = svc.admin
    # Jobs pinned to n2 (V100, lassen) by model, some preemptible (requeued), some not (failed).
    keep = [svc.submit(t, {"plugin": "batch", "params": {"argv": ["sleep", "30"]},
                           "resources": {"gpus": 1, "gpu_model": "V100"},
                           "preemptible": True}) for _ in range(2)]
    lose = [svc.submit(t, {"plugin": "batch", "params": {"argv": ["sleep", "30"]},
                           "resources": {"gpus": 1, "gpu_model": "V100"}})]
    for i in keep + lose:
        svc.wait_running(t, i, timeout=20)
    on = {i: svc.job(t, i)["node"] for i in keep + lose}
    victim = next(a for a in svc.agents if a.name == on[lose[0]])
    victim.kill9()
    j = svc.wait(t, lose[0], timeout=20)
    assert j["state"] == "FAILED" and "node lost" in j["reason"], j
    for i in keep:
        if on[i] == victim.name:
            j = svc.job(t, i)
            assert j["state"] in ("PENDING", "RUNNING") and j["requeues"] >= 1, j
    assert svc.nodes()[victim.name]["state"] == "down"
    # The agent comes back with its credential: the node is up again.
    victim.token = None
    victim.start()
    svc.wait_nodes([victim.name])
    # SIGSTOP: silent past the timeout, its job is requeued elsewhere; after SIGCONT the agent
    # reconnects and the stale copy is killed there, so the job never runs twice for long.
    marks = tempfile.mkdtemp(prefix="jazari-marks-")
    argv = ["sh", "-c", 'echo start >> %s/runs; sleep 6; echo done >> %s/runs' % (marks, marks)]
    jid = svc.submit(t, {"plugin": "batch", "params": {"argv": argv},
                         "resources": {"gpus": 8, "gpu_model": "T4"}, "requeue": True})
    svc.wait_running(t, jid, timeout=20)
    node = svc.job(t, jid)["node"]
    stopped = next(a for a in svc.agents if a.name == node)
    os.kill(stopped.proc.pid, signal.SIGSTOP)
    svc.wait_nodes([node], state="down", timeout=20)
    # No other node has 8 T4s: it waits for this one to come back.
    j = svc.job(t, jid)
    assert j["requeues"] == 1 and j["state"] == "PENDING", j
    assert "node lost" in j["reason"] or "1 node large enough is down" in j["reason"], j
    os.kill(stopped.proc.pid, signal.SIGCONT)
    svc.wait_nodes([node], timeout=20)
    j = svc.wait(t, jid, timeout=60)
    assert j["state"] == "SUCCEEDED", j
    # The stale copy was killed when its agent came back: two starts, one end.
    with open(os.path.join(marks, "runs")) as f:
        runs = f.read().split()
    assert runs.count("start") == 2 and runs.count("done") == 1, runs
    shutil.rmtree(marks)
    for i in keep:
        svc.http("POST", "/v1/jobs/%d/cancel" % i, token=t)


def raw_hello(port, hello, read_timeout=5):
    """Sends one hello on the agent port; returns the first reply header."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    s.sendall((json.dumps(hello) + "\n").encode())
    data = b""
    while b"\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data.split(b"\n")[0]) if data else None


def test_bad_agents(svc):
    """Forged tokens, malformed topologies, duplicate names: clear refusals, nothing else hurt."""
    a = svc.add_agent("good", TOPOLOGIES[0])
    svc.wait_nodes(["good"])
    st, info = svc.http("GET", "/v1/agent")
    port = info["port"]
    with open(a.topology) as f:
        xml = f.read()
    base = {"t": "hello", "v": 1, "name": "evil", "site": "", "labels": {}, "topology": xml,
            "running": [], "ended": []}
    r = raw_hello(port, dict(base, join_token="jzn_" + "0" * 48))
    assert r["t"] == "refuse" and r["status"] == 401, r
    r = raw_hello(port, dict(base, credential="jzc_" + "1" * 48, name="good"))
    assert r["t"] == "refuse" and r["status"] == 401, r
    tok = svc.token()
    r = raw_hello(port, dict(base, join_token=tok, topology="<topology><garbage"))
    assert r["t"] == "refuse" and "topology" in r["error"], r
    r = raw_hello(port, dict(base, join_token=tok, name="good"))
    assert r["t"] == "refuse" and r["status"] == 409, r
    r = raw_hello(port, dict(base, join_token=tok, name="bad name!"))
    assert r["t"] == "refuse" and r["status"] == 400, r
    # Not JSON at all, and a header line over the limit: the connection is closed.
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"this is not json\n")
    assert json.loads(s.recv(4096).split(b"\n")[0])["t"] == "refuse"
    s.close()
    # The node's own credential from a second place while the node is connected: refused
    # (retryable), and the node stays connected.
    with open(os.path.join(a.state, "credential")) as f:
        cred = f.read().strip()
    r = raw_hello(port, dict(base, credential=cred, name="good"))
    assert r["t"] == "refuse" and r["status"] == 503, r
    # A second agent under a taken name is refused and exits non-zero.
    dup = svc.add_agent("good", TOPOLOGIES[1], token=tok)
    assert dup.proc.wait(20) != 0
    dup.stop_status = None  # it ended by itself, with the status checked here
    assert "taken" in dup.read_log(), dup.read_log()
    log = svc.read_log()
    assert "refused" in log
    # The good node still works.
    jid = svc.submit(svc.admin, {"plugin": "batch", "params": {"argv": ["true"]},
                                 "resources": {"gpus": 1}})
    assert svc.wait(svc.admin, jid)["state"] == "SUCCEEDED"
    assert svc.nodes()["good"]["state"] == "up"


GANG_SCRIPT = r'''
echo "rank=$JAZARI_NODE_RANK of=$JAZARI_NUM_NODES nodes=$JAZARI_NODES node=$JAZARI_NODE_NAME master=$MASTER_ADDR:$MASTER_PORT world=$WORLD_SIZE gpus=$JAZARI_GPUS"
'''


def test_gang(svc):
    """A two-node job: one part per node, the environment of each, all-or-nothing, a failing part
    ends the whole job, and --gpus larger than any node spills over whole nodes."""
    for i in range(3):
        svc.add_agent("g%d" % i, TOPOLOGIES[0], labels=["switch=sw0"])
    svc.wait_nodes(["g0", "g1", "g2"])
    t = svc.admin
    jid = svc.submit(t, {"plugin": "batch", "params": {"argv": ["sh", "-c", GANG_SCRIPT]},
                         "resources": {"nodes": 2, "gpus_per_node": 4}})
    j = svc.wait(t, jid, timeout=30)
    assert j["state"] == "SUCCEEDED" and len(j["nodes"]) == 2 and len(j["gpus"]) == 8, j
    st, log = svc.http("GET", "/v1/jobs/%d/log" % jid, token=t)
    lines = [l for l in log.splitlines() if l.startswith("rank=")]
    assert sorted(l.split()[0] for l in lines) == ["rank=0", "rank=1"], log
    for l in lines:
        assert "of=2" in l and "world=2" in l and "nodes=%s" % ",".join(j["nodes"]) in l, l
        assert "master=127.0.0.1:" in l, l
    # 16 GPUs: two whole 8-GPU nodes.
    jid = svc.submit(t, {"plugin": "batch", "params": {"argv": ["true"]},
                         "resources": {"gpus": 16}})
    j = svc.wait(t, jid, timeout=30)
    assert j["state"] == "SUCCEEDED" and len(j["nodes"]) == 2, j
    assert j["resources"]["nodes"] == 2 and j["resources"]["gpus_per_node"] == 8, j
    st, e = svc.http("POST", "/v1/jobs", {"plugin": "batch", "params": {"argv": ["true"]},
                                          "resources": {"gpus": 12}}, t)
    assert st == 400 and e["error"]["field"] == "resources.gpus", (st, e)
    st, e = svc.http("POST", "/v1/jobs", {"plugin": "batch", "params": {"argv": ["true"]},
                                          "resources": {"nodes": 4, "gpus_per_node": 8}}, t)
    assert st == 400 and "never" in e["error"]["message"], (st, e)
    # Rank 1 fails at once: rank 0 (sleeping) is stopped and the job fails with rank 1's code.
    argv = ["sh", "-c", '[ "$JAZARI_NODE_RANK" = 1 ] && exit 7; sleep 60']
    jid = svc.submit(t, {"plugin": "batch", "params": {"argv": argv},
                         "resources": {"nodes": 2, "gpus_per_node": 2}})
    t0 = time.time()
    j = svc.wait(t, jid, timeout=40)
    assert j["state"] == "FAILED" and j["exit_code"] == 7 and time.time() - t0 < 30, j
    # Cancel stops every part.
    jid = svc.submit(t, {"plugin": "batch", "params": {"argv": ["sleep", "60"]},
                         "resources": {"nodes": 3, "gpus_per_node": 1}})
    svc.wait_running(t, jid, timeout=20)
    time.sleep(0.5)
    svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=t)
    j = svc.wait(t, jid, timeout=30)
    assert j["state"] == "CANCELLED", j
    assert all(n["running_jobs"] == 0 for n in svc.nodes().values())


TORCH_SCRIPT = r'''
import os, torch, torch.distributed as dist
dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
t = torch.tensor([float(os.environ["RANK"]) + 1.0])
dist.all_reduce(t)
print("rank %s allreduce %.1f" % (os.environ["RANK"], t.item()), flush=True)
dist.destroy_process_group()
'''


def test_torch_gang(svc):
    """A real torch.distributed all-reduce (gloo) across two nodes' parts."""
    py = "/usr/bin/python3"
    if subprocess.run([py, "-c", "import torch.distributed"], capture_output=True).returncode:
        print("SKIP: python3-torch is not installed")
        sys.exit(77)
    for i in range(2):
        svc.add_agent("t%d" % i, TOPOLOGIES[2])
    svc.wait_nodes(["t0", "t1"])
    t = svc.admin
    jid = svc.submit(t, {"plugin": "batch", "params": {"argv": [py, "-c", TORCH_SCRIPT]},
                         "resources": {"nodes": 2, "gpus_per_node": 1, "time_limit_s": 120}})
    j = svc.wait(t, jid, timeout=150)
    st, log = svc.http("GET", "/v1/jobs/%d/log" % jid, token=t)
    assert j["state"] == "SUCCEEDED", (j, log)
    assert "rank 0 allreduce 3.0" in log and "rank 1 allreduce 3.0" in log, log


def test_files(svc):
    """What jobs on remote nodes write comes back to jazarid (a multi-chunk artifact, logs), a
    checkpoint written on one node resumes the job on another, and another job's artifact
    (job:ID) is staged onto the node that needs it."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                    "workloads"))
    import test_workloads  # noqa: E402
    for i in range(2):
        svc.add_agent("f%d" % i, TOPOLOGIES[0])
    svc.wait_nodes(["f0", "f1"])
    t = svc.admin
    # 3 MB of random bytes: several chunks; the log says their hash.
    argv = ["sh", "-c", 'head -c 3000000 /dev/urandom > "$JAZARI_OUTPUT_DIR/blob"; '
            'sha256sum "$JAZARI_OUTPUT_DIR/blob"']
    jid = svc.submit(t, {"plugin": "batch", "params": {"argv": argv}})
    assert svc.wait(t, jid)["state"] == "SUCCEEDED"
    st, log = svc.http("GET", "/v1/jobs/%d/log" % jid, token=t)
    rc, out, err = svc.cli("fetch", str(jid), "blob", "-o", os.path.join(svc.state, "blob"))
    assert rc == 0, (out, err)
    got = subprocess.run(["sha256sum", os.path.join(svc.state, "blob")], capture_output=True,
                         text=True).stdout.split()[0]
    assert got in log, (got, log)
    # jazari logs -f follows a job on a remote node as its lines arrive.
    argv = ["sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done"]
    jid = svc.submit(t, {"plugin": "batch", "params": {"argv": argv}})
    rc, out, err = svc.cli("logs", "-f", str(jid), timeout=60)
    assert rc == 0 and all("tick %d" % i in out for i in range(1, 6)), (rc, out, err)
    # Checkpoint on one node, resume on the other.
    first = svc.submit(t, {"plugin": "example", "params": {"count": 40, "delay_ms": 50}})
    deadline = time.time() + 20
    while ((svc.job(t, first).get("progress") or {}).get("fraction") or 0) < 0.2:
        assert time.time() < deadline, svc.job(t, first)
        time.sleep(0.05)
    node = svc.job(t, first)["node"]
    svc.http("POST", "/v1/jobs/%d/cancel" % first, token=t)
    j = svc.wait(t, first)
    assert j["state"] == "CANCELLED" and j["checkpoint_time"], j
    st, _ = svc.http("POST", "/v1/nodes/%s/drain" % node, {"reason": "test"}, t)
    assert st == 200
    second = svc.submit(t, {"plugin": "example", "resume_from": first,
                            "params": {"count": 40, "delay_ms": 1}})
    j = svc.wait(t, second)
    st, log = svc.http("GET", "/v1/jobs/%d/log" % second, token=t)
    assert j["state"] == "SUCCEEDED" and j["node"] != node, j
    assert "example: resuming at" in log and "sum of 1..40 is 820" in log, log
    svc.http("POST", "/v1/nodes/%s/resume" % node, {}, t)
    # Train on one node, infer on the other with the model staged there.
    data = tempfile.mkdtemp(prefix="jazari-fashion-")
    test_workloads.make_subset(data, n_train=1000, n_test=300)
    try:
        tid = svc.submit(t, {"plugin": "train", "params": {
            "dataset": data, "layers": "32", "epochs": 1, "batch_size": 64, "seed": 3}})
        tj = svc.wait(t, tid, timeout=120)
        assert tj["state"] == "SUCCEEDED", tj
        st, _ = svc.http("POST", "/v1/nodes/%s/drain" % tj["node"], {"reason": "test"}, t)
        iid = svc.submit(t, {"plugin": "infer", "params": {"model": "job:%d/model" % tid,
                                                          "input": data}})
        ij = svc.wait(t, iid, timeout=120)
        st, log = svc.http("GET", "/v1/jobs/%d/log" % iid, token=t)
        assert ij["state"] == "SUCCEEDED" and ij["node"] != tj["node"], (ij, log)
        assert abs(ij["metrics"]["accuracy"] - tj["metrics"]["test_accuracy"]) <= 0.002, (ij, tj)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_operators(svc):
    """Tokens, jazari nodes, drain/resume/rm and revoke through the CLI."""
    rc, out, err = svc.cli("admin", "node", "token", "--site", "rabat")
    assert rc == 0 and out.strip().startswith("jzn_"), (rc, out, err)
    svc.add_agent("r1", TOPOLOGIES[2], token=out.strip(), labels=["rack=a"])
    svc.add_agent("c1", TOPOLOGIES[0], token=svc.token("casa"))
    svc.wait_nodes(["r1", "c1"])
    nodes = svc.nodes()
    assert nodes["r1"]["site"] == "rabat" and nodes["c1"]["site"] == "casa", nodes
    rc, out, err = svc.cli("nodes", "--site", "rabat")
    assert rc == 0 and "r1" in out and "c1" not in out, (out, err)
    # Drained with a job running: draining until it ends, then drained.
    busy = svc.submit(svc.admin, {"plugin": "batch", "params": {"argv": ["sleep", "1.5"]},
                                  "resources": {"gpus": 1, "gpu_model": "V100"}})
    svc.wait_running(svc.admin, busy, timeout=20)
    rc, out, err = svc.cli("node", "drain", "r1", "--reason", "disk swap")
    assert rc == 0, (out, err)
    assert svc.nodes()["r1"]["state"] == "draining", svc.nodes()["r1"]
    rc, out, err = svc.cli("nodes")
    assert "disk swap" in out, out
    assert svc.wait(svc.admin, busy)["state"] == "SUCCEEDED"
    assert svc.nodes()["r1"]["state"] == "drained"
    jid = svc.submit(svc.admin, {"plugin": "batch", "params": {"argv": ["true"]},
                                 "resources": {"gpus": 1, "gpu_model": "V100"}})
    time.sleep(1.0)
    assert svc.job(svc.admin, jid)["state"] == "PENDING"
    rc, out, err = svc.cli("node", "resume", "r1")
    assert rc == 0, (out, err)
    assert svc.wait(svc.admin, jid)["state"] == "SUCCEEDED"
    # A user may list nodes but not manage them.
    user = svc.add_user("alice")
    rc, out, err = svc.cli("nodes", token=user)
    assert rc == 0 and "r1" in out, (out, err)
    rc, out, err = svc.cli("node", "drain", "r1", "--reason", "x", token=user)
    assert rc != 0, (out, err)
    # rm refuses while jobs run; revoke disconnects and refuses the credential afterwards.
    jid = svc.submit(svc.admin, {"plugin": "batch", "params": {"argv": ["sleep", "30"]},
                                 "resources": {"gpus": 1, "gpu_model": "T4"}})
    svc.wait_running(svc.admin, jid, timeout=20)
    rc, out, err = svc.cli("node", "rm", "c1")
    assert rc != 0 and "run" in err, (rc, out, err)
    rc, out, err = svc.cli("admin", "node", "revoke", "c1")
    assert rc == 0, (out, err)
    j = svc.wait(svc.admin, jid, timeout=20)
    assert j["state"] == "FAILED" and "revoked" in j["reason"], j
    c1 = next(a for a in svc.agents if a.name == "c1")
    assert c1.proc.wait(20) != 0, "a revoked agent must stop trying"
    c1.stop_status = None  # it ended by itself, with the status checked here
    rc, out, err = svc.cli("node", "rm", "c1")
    assert rc == 0, (rc, out, err)
    assert "c1" not in svc.nodes()
    st, text = svc.http("GET", "/metrics", token=svc.admin)
    assert 'jazari_node_gpus{node="r1",site="rabat",model="Tesla V100-SXM2-16GB",' \
        'state="free"} 4' in text, text
    assert 'node="c1"' not in text, text  # a removed node leaves the metrics


def main():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    failed = run_tests(args.tests, globals(), lambda name: Cluster())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
