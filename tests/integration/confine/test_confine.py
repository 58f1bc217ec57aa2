#!/usr/bin/env python3
"""Shared safely: jazarid started as root, running as an account of its own, with its local node
agent confining jobs as their users' Unix accounts in cgroups. Each test is one way a hostile
user of a shared hub got at the service, other tenants or the machine (issue 9), done again.

Needs root (Unix accounts and cgroups are made and removed here); skips (77) otherwise.
Usage: test_confine.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import glob
import json
import os
import pwd
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
import test_service  # noqa: E402
from test_service import Service, batch  # noqa: E402

TAG = "%05d" % (os.getpid() % 100000)
# [a-z_][a-z0-9_-]{0,31}: the service's account and two tenants' job accounts.
SRV, ACCT_A, ACCT_B = "jzs" + TAG, "jza" + TAG, "jzb" + TAG


def make_accounts():
    # The service's is a system account; jobs run as people's accounts (uid >= UID_MIN).
    for name, system in ((SRV, True), (ACCT_A, False), (ACCT_B, False)):
        subprocess.run(["useradd", *(["--system"] if system else []), "--no-create-home",
                        "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)


def remove_accounts():
    for name in (SRV, ACCT_A, ACCT_B):
        subprocess.run(["userdel", name], capture_output=True)


def procs_of(account):
    """Pids of processes running as account (read from /proc, so zombies count too)."""
    uid = pwd.getpwnam(account).pw_uid
    pids = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            if os.stat(d).st_uid == uid:
                with open(d + "/stat") as f:
                    if f.read().split(")")[-1].split()[0] != "Z":
                        pids.append(int(os.path.basename(d)))
        except (OSError, IndexError):
            pass
    return pids


def agent_cgroups():
    """Job cgroups of this test's agents still on the machine (v1 or v2 layouts)."""
    return [p for p in glob.glob("/sys/fs/cgroup/*/jazari/local-*/*") +
            glob.glob("/sys/fs/cgroup/jazari/local-*/*") if os.path.isdir(p)]


class Confined(Service):
    """jazarid as root with --user SRV: it runs as SRV, its local agent confines jobs."""

    def __init__(self, config=None, extra=()):
        cfg = {"limits": {"min_free_mb": 1}}
        cfg.update(config or {})
        super().__init__(extra=["--user", SRV, *extra], config=cfg)
        self.node_dir = self.state + "-node"  # the local agent's: its jobs' logs are there
        test_service.FOLDERS.append(self.node_dir)

    def add_user(self, name, tenant="physics", role="user", unix_user=None):
        body = {"name": name, "tenant": tenant, "role": role}
        if unix_user:
            body["unix_user"] = unix_user
        status, j = self.http("POST", "/v1/admin/users", body, self.admin)
        assert status == 201, (status, j)
        return j["token"]

    def folders(self):
        return [self.state, self.node_dir]

    def log_of(self, token, jid):
        status, text = self.http("GET", "/v1/jobs/%d/log" % jid, token=token)
        assert status == 200, (status, text)
        return text if isinstance(text, str) else str(text)


def sh(script, **res):
    return batch(["sh", "-c", script], **res)


# ------------------------------------------------------------------------------------------
def test_identity(svc):
    """Jobs run as their users' accounts; nothing of jazarid's or another tenant's is readable."""
    st = os.stat(svc.state)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == pwd.getpwnam(SRV).pw_uid, st
    for root, dirs, files in os.walk(svc.state):
        for name in files:
            mode = stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode)
            # jazarid.log is the harness's own (opened by root before jazarid started).
            assert mode & 0o077 == 0 or name == "jazarid.log", (name, oct(mode))
    # jazarid itself is no longer root.
    assert os.stat("/proc/%d" % svc.proc.pid).st_uid == pwd.getpwnam(SRV).pw_uid
    alice = svc.add_user("alice", tenant="inst-a", unix_user=ACCT_A)
    bob = svc.add_user("bob", tenant="startup-b", unix_user=ACCT_B)
    bob_job = svc.submit(bob, sh("echo bob-secret > $JAZARI_OUTPUT_DIR/secret; "
                                 "echo $JAZARI_OUTPUT_DIR"))
    j = svc.wait(bob, bob_job)
    assert j["state"] == "SUCCEEDED", j
    bob_out = svc.log_of(bob, bob_job).strip().splitlines()[-1]
    server_copy = os.path.join(svc.state, "jobs", str(bob_job), "out", "secret")
    assert os.path.exists(server_copy)
    script = ("id -un; "
              "cat %s/admin.token || echo DENIED-token; "
              "head -c 16 %s/jazari.db >/dev/null || echo DENIED-db; "
              "cat %s || echo DENIED-server-copy; "
              "cat %s/secret || echo DENIED-bob-node; "
              "ls %s/jobs || echo DENIED-list; "
              "grep -c jazari /proc/self/cgroup" % (svc.state, svc.state, server_copy, bob_out,
                                                      svc.node_dir))
    jid = svc.submit(alice, sh(script))
    assert svc.wait(alice, jid)["state"] == "SUCCEEDED"
    log = svc.log_of(alice, jid)
    for what in ("token", "db", "server-copy", "bob-node", "list"):
        assert "DENIED-" + what in log, (what, log)
    assert ACCT_A in log and "bob-secret" not in log and svc.admin not in log, log
    # A plain path parameter is opened by the plugin as the job's account: file permissions
    # decide (only job:ID references are checked by jazarid).
    jid = svc.submit(alice, {"plugin": "infer", "params": {"model": server_copy,
                                                           "input": server_copy}})
    j = svc.wait(alice, jid)
    assert j["state"] == "FAILED" and "ermission" in (j.get("reason") or ""), j
    # Nor as the service's own account, or another system account.
    mallory = svc.add_user("mallory", tenant="inst-a", unix_user=SRV)
    jid = svc.submit(mallory, sh("cat %s/admin.token" % svc.state))
    j = svc.wait(mallory, jid)
    assert j["state"] == "FAILED" and "service's own" in j["reason"], j
    daemon = svc.add_user("daemon", tenant="inst-a", unix_user="daemon")
    jid = svc.submit(daemon, sh("true"))
    j = svc.wait(daemon, jid)
    assert j["state"] == "FAILED" and "system account" in j["reason"], j
    # A user without an account (and no default) cannot run anything on a confined node.
    carol = svc.add_user("carol", tenant="inst-a")
    jid = svc.submit(carol, sh("true"))
    j = svc.wait(carol, jid)
    assert j["state"] == "FAILED" and "Unix account" in j["reason"], j


def test_links(svc):
    """Links a job leaves in its folder are never followed by the root agent or jazarid."""
    alice = svc.add_user("alice", unix_user=ACCT_A)
    token_file = os.path.join(svc.state, "admin.token")
    jid = svc.submit(alice, sh(
        "cd $JAZARI_OUTPUT_DIR/..; echo line-before; sleep 0.5; rm -f log; "
        "ln -s /etc/shadow log; ln -s /etc/shadow out/shadow; ln -s %s out/token; "
        "ln /etc/passwd out/passwd 2>/dev/null; echo fine > out/fine; mkfifo out/fifo" %
        token_file))
    assert svc.wait(alice, jid)["state"] == "SUCCEEDED"
    status, j = svc.http("GET", "/v1/jobs/%d/artifacts" % jid, token=alice)
    assert status == 200 and [a["name"] for a in j["artifacts"]] == ["fine"], j
    for name in ("shadow", "token", "passwd", "fifo"):
        status, _ = svc.http("GET", "/v1/jobs/%d/artifacts/%s" % (jid, name), token=alice)
        assert status == 404, (name, status)
    log = svc.log_of(alice, jid)
    assert "root:" not in log and svc.admin not in log, log
    # The output folder itself replaced by a link to the state folder.
    jid = svc.submit(alice, sh("rm -rf $JAZARI_OUTPUT_DIR; ln -s %s $JAZARI_OUTPUT_DIR" %
                               svc.state))
    assert svc.wait(alice, jid)["state"] == "SUCCEEDED"
    status, j = svc.http("GET", "/v1/jobs/%d/artifacts" % jid, token=alice)
    assert status == 200 and j["artifacts"] == [], j
    status, _ = svc.http("GET", "/v1/jobs/%d/artifacts/admin.token" % jid, token=alice)
    assert status == 404


def test_links_unconfined(svc):
    """Where jobs run in jazarid's own process (--user root), its API still never serves a
    link: the log or out/ replaced by a link to admin.token is refused."""
    token_file = os.path.join(svc.state, "admin.token")
    jid = svc.submit(svc.admin, sh(
        "cd $JAZARI_OUTPUT_DIR/..; rm -f log; ln -s %s log; ln -s %s out/token; "
        "echo fine > out/fine" % (token_file, token_file)))
    assert svc.wait(svc.admin, jid)["state"] == "SUCCEEDED"
    status, text = svc.http("GET", "/v1/jobs/%d/log" % jid, token=svc.admin)
    assert svc.admin not in str(text), text
    status, j = svc.http("GET", "/v1/jobs/%d/artifacts" % jid, token=svc.admin)
    assert [a["name"] for a in j["artifacts"]] == ["fine"], j
    status, text = svc.http("GET", "/v1/jobs/%d/artifacts/token" % jid, token=svc.admin)
    assert status == 404 and svc.admin not in str(text), (status, text)


def test_cgroups(svc):
    """Memory and pids limits hold; nothing a job started outlives it, however it ends."""
    alice = svc.add_user("alice", unix_user=ACCT_A)
    # A memory limit that kills: the job fails "out of memory".
    jid = svc.submit(alice, batch(["python3", "-c", "x = bytearray(400 << 20); print(len(x))"],
                                  memory_mb=64))
    j = svc.wait(alice, jid)
    assert j["state"] == "FAILED" and j["reason"].startswith("out of memory"), j
    jid = svc.submit(alice, batch(["python3", "-c", "x = bytearray(8 << 20); print('small')"],
                                  memory_mb=256))
    assert svc.wait(alice, jid)["state"] == "SUCCEEDED"
    # A pids limit that holds (limits.pids is 64 here): forking stops at the limit.
    fork_loop = ("import os, time\n"
                 "n = 0\n"
                 "for i in range(200):\n"
                 "    try:\n"
                 "        pid = os.fork()\n"
                 "    except OSError:\n"
                 "        break\n"
                 "    if pid == 0:\n"
                 "        time.sleep(60)\n"
                 "        os._exit(0)\n"
                 "    n += 1\n"
                 "print('forked', n, flush=True)\n")
    jid = svc.submit(alice, batch(["python3", "-c", fork_loop]))
    assert svc.wait(alice, jid)["state"] == "SUCCEEDED"
    forked = int(svc.log_of(alice, jid).split("forked ")[1].split()[0])
    assert 10 < forked < 64, forked
    wait_gone(ACCT_A)  # the 60-second children went with their job
    # A setsid orphan is killed with its job when the job ends by itself.
    jid = svc.submit(alice, sh("setsid sleep 901 </dev/null >/dev/null 2>&1 & sleep 0.5"))
    assert svc.wait(alice, jid)["state"] == "SUCCEEDED"
    wait_gone(ACCT_A)
    # kill -9 of the worker: the job fails, and the job's own processes go with it.
    jid = svc.submit(alice, sh("setsid sleep 902 </dev/null >/dev/null 2>&1 & sleep 903"))
    svc.wait_running(alice, jid)
    deadline = time.time() + 10
    worker = None
    while worker is None and time.time() < deadline:
        r = subprocess.run(["pgrep", "-u", ACCT_A, "-f", "jazari-worker"], capture_output=True,
                           text=True)
        pids = [int(p) for p in r.stdout.split()]
        worker = min(pids) if pids else None  # the supervisor forked the job process
        time.sleep(0.05)
    assert worker, "no worker"
    time.sleep(0.5)
    os.kill(worker, signal.SIGKILL)
    j = svc.wait(alice, jid)
    assert j["state"] == "FAILED", j
    wait_gone(ACCT_A)
    # Cancel: the whole cgroup goes.
    jid = svc.submit(alice, sh("setsid sleep 904 </dev/null >/dev/null 2>&1 & sleep 905"))
    svc.wait_running(alice, jid)
    time.sleep(0.3)
    svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=alice)
    assert svc.wait(alice, jid)["state"] == "CANCELLED"
    wait_gone(ACCT_A)
    assert agent_cgroups() == [] or all(svc.node_dir not in c for c in agent_cgroups())


def wait_gone(account, timeout=10):
    deadline = time.time() + timeout
    while procs_of(account):
        assert time.time() < deadline, "left running as %s: %s" % (account, procs_of(account))
        time.sleep(0.05)


def test_restart(svc):
    """kill -9 of jazarid: its local agent kills what the jobs started (setsid included), and
    a preemptible job requeued after the restart runs once, not twice."""
    alice = svc.add_user("alice", unix_user=ACCT_A)
    body = sh("setsid sleep 906 </dev/null >/dev/null 2>&1 & sleep 907")
    body["preemptible"] = True
    jid = svc.submit(alice, body)
    svc.wait_running(alice, jid)
    deadline = time.time() + 10
    while len(procs_of(ACCT_A)) < 3 and time.time() < deadline:
        time.sleep(0.05)
    svc.kill9()
    wait_gone(ACCT_A)  # before any restart: the agent saw its socket close
    svc.start()
    deadline = time.time() + 30
    while svc.job(alice, jid)["state"] != "RUNNING":
        assert time.time() < deadline, svc.job(alice, jid)
        time.sleep(0.05)
    time.sleep(1)
    r = subprocess.run(["pgrep", "-a", "-u", ACCT_A, "sleep"], capture_output=True, text=True)
    # (zombies of the killed run wait for init to reap them: they run nothing)
    assert sorted(l.split(None, 1)[1] for l in r.stdout.splitlines()
                  if "<defunct>" not in l) == \
        ["sleep 906", "sleep 907"], r.stdout  # one run: its setsid child and its own sleep
    svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=alice)
    svc.wait(alice, jid)
    wait_gone(ACCT_A)


def test_log_limit(svc):
    """A job past limits.log_bytes fails with reason 'log limit'; the service goes on."""
    alice = svc.add_user("alice", unix_user=ACCT_A)
    t0 = time.time()
    jid = svc.submit(alice, batch(["yes"]))
    j = svc.wait(alice, jid)
    assert j["state"] == "FAILED" and j["reason"].startswith("log limit"), j
    assert time.time() - t0 < 20
    log_path = os.path.join(svc.state, "jobs", str(jid), "log")
    assert os.path.getsize(log_path) < 8 << 20, os.path.getsize(log_path)
    jid = svc.submit(alice, batch(["true"]))
    assert svc.wait(alice, jid)["state"] == "SUCCEEDED"


def test_output_limit(svc):
    """A job past limits.output_bytes fails with reason 'output limit'."""
    alice = svc.add_user("alice", unix_user=ACCT_A)
    jid = svc.submit(alice, sh("head -c 4000000 /dev/zero > $JAZARI_OUTPUT_DIR/big; sleep 5"))
    j = svc.wait(alice, jid)
    assert j["state"] == "FAILED" and j["reason"].startswith("output limit"), j


def test_remote_agent(svc):
    """A jazari-node run as root confines jobs the same way: its account, its cgroup, and
    nothing left when the agent stops."""
    alice = svc.add_user("alice", unix_user=ACCT_A)
    st, j = svc.http("POST", "/v1/admin/node-tokens", {}, svc.admin)
    assert st == 201, (st, j)
    state = svc.state + "-n1"
    test_service.FOLDERS.append(state)  # removed or kept with the test's
    b = test_service.ARGS.build
    log = open(os.path.join(svc.state, "n1.log"), "w")  # read for sanitizer reports at stop
    agent = subprocess.Popen(
        [os.path.join(b, "bin", "jazari-node"), "--server", svc.url, "--join-token", j["token"],
         "--name", "n1", "--topology",
         os.path.join(test_service.ARGS.fixtures, "topologies", "llnl-pascal-2xP100-pcie.xml"),
         "--state-dir", state, "--plugin-dir", os.path.join(b, "plugins"), "--min-free-mb", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while True:
            st, j = svc.http("GET", "/v1/nodes", token=svc.admin)
            if any(n["name"] == "n1" and n["state"] == "up" for n in j["nodes"]):
                break
            assert time.time() < deadline and agent.poll() is None, open(log.name).read()
            time.sleep(0.05)
        jid = svc.submit(alice, sh("id -un; grep -c jazari/n1- /proc/self/cgroup; "
                                   "setsid sleep 908 </dev/null >/dev/null 2>&1 & sleep 909"))
        svc.wait_running(alice, jid)
        deadline = time.time() + 10
        while len(procs_of(ACCT_A)) < 3 and time.time() < deadline:
            time.sleep(0.05)
        assert svc.job(alice, jid)["node"] == "n1"
        mode = stat.S_IMODE(os.stat(state).st_mode)
        assert mode == 0o711, oct(mode)
        part = os.path.join(state, "jobs", str(jid))
        assert os.stat(part).st_uid == pwd.getpwnam(ACCT_A).pw_uid
        assert stat.S_IMODE(os.stat(part).st_mode) == 0o700
        deadline = time.time() + 10
        while ACCT_A not in svc.log_of(alice, jid):  # shipped from the node
            assert time.time() < deadline, svc.log_of(alice, jid)
            time.sleep(0.05)
        text = svc.log_of(alice, jid)
        # Lines of /proc/self/cgroup naming the agent's cgroups (one per v1 hierarchy).
        assert re.search(r"\n[1-9][0-9]*\n", text), text
        test_service.stop_process(agent, "jazari-node n1")
        wait_gone(ACCT_A)
        test_service.check_sanitizers(state)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()


def test_disk_full(svc):
    """State and node folders on a 24 MB disk. A job that fills it is failed ("disk full")
    before the service is hurt; a disk filled by someone else makes jazarid answer writes with
    507 while reads go on, and it recovers by itself once there is space."""
    alice = svc.add_user("alice", unix_user=ACCT_A)
    jid = svc.submit(alice, batch(["sh", "-c", "yes | head -c 100000000"]))
    j = svc.wait(alice, jid)
    assert j["state"] == "FAILED" and j["reason"].startswith("disk full"), j
    # The disk may have filled before the job was stopped: writes are refused (507) until the
    # node has released the job's folder, and then go through by themselves.
    deadline = time.time() + 20
    while True:
        st, j = http_quick(svc, "POST", "/v1/jobs", batch(["true"]), alice)
        if st == 201:
            break
        assert st == 507 and time.time() < deadline, (st, j)
        time.sleep(0.2)
    ok = j["id"]
    assert svc.wait(alice, ok)["state"] == "SUCCEEDED"
    # Now the disk fills from outside.
    fill = os.path.join(svc.mount, "fill")
    subprocess.run(["dd", "if=/dev/zero", "of=" + fill, "bs=1M"], capture_output=True)
    results = []
    waiter = threading.Thread(target=lambda: results.append(
        svc.http("POST", "/v1/jobs", batch(["true"]), alice)))
    waiter.start()  # its change waits for space, or it is refused: it is never lost
    deadline = time.time() + 20
    while True:
        try:
            st, j = http_quick(svc, "POST", "/v1/jobs", batch(["true"]), alice)
        except OSError:
            st, j = 0, None
        if st == 507:
            break
        assert time.time() < deadline, (st, j)
        time.sleep(0.2)
    assert j["error"]["code"] == "insufficient_storage", j
    st, j = http_quick(svc, "GET", "/v1/jobs/%d" % ok, None, alice)
    assert st == 200 and j["state"] == "SUCCEEDED", (st, j)
    st, j = http_quick(svc, "GET", "/healthz", None, None)
    assert st == 200
    os.unlink(fill)
    waiter.join(30)
    # Accepted before the store knew (then answered once durable) or refused: never lost.
    assert results and results[0][0] in (201, 507), results
    deadline = time.time() + 10
    while True:
        st, j = http_quick(svc, "POST", "/v1/jobs", batch(["true"]), alice)
        if st == 201:
            break
        assert time.time() < deadline and st == 507, (st, j)
        time.sleep(0.2)
    assert svc.wait(alice, j["id"])["state"] == "SUCCEEDED"
    assert svc.proc.poll() is None


def http_quick(svc, method, path, body, token):
    """svc.http with a short timeout, for a service that may hold a request back."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(svc.url + path, data=data, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


class OnSmallDisk(Confined):
    """A Confined service whose state and node folders are on a tmpfs of 24 MB."""

    def __init__(self, **kw):
        self.mount = tempfile.mkdtemp(prefix="jazari-disk-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs",
                        self.mount], check=True)
        saved, tempfile.tempdir = tempfile.tempdir, self.mount
        try:
            super().__init__(**kw)
        finally:
            tempfile.tempdir = saved

    def close(self):
        # Unmounted once the test's folders, on this disk, have been kept or removed.
        test_service.AFTER.append(self.unmount)
        super().close()

    def unmount(self):
        subprocess.run(["umount", "-l", self.mount], capture_output=True)
        os.rmdir(self.mount)


CONFIGS = {
    "cgroups": {"limits": {"pids": 64, "min_free_mb": 1}},
    "log_limit": {"limits": {"log_bytes": 1 << 20, "min_free_mb": 1}},
    "output_limit": {"limits": {"output_bytes": 1 << 20, "min_free_mb": 1}},
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    if os.geteuid() != 0:
        print("SKIP: needs root (Unix accounts and cgroups)")
        sys.exit(77)
    make_accounts()
    try:
        def make(name):
            if name == "links_unconfined":
                return Service()
            if name == "disk_full":
                return OnSmallDisk(config={"limits": {"min_free_mb": 6}})
            if name == "remote_agent":
                return Confined(extra=["--no-local-node"])
            return Confined(config=CONFIGS.get(name))
        failed = test_service.run_tests(args.tests, globals(), make)
    finally:
        for acct in (ACCT_A, ACCT_B):
            for pid in procs_of(acct):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        remove_accounts()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
