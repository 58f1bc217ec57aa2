#!/usr/bin/env python3
"""End-to-end tests of jazarid and the jazari CLI: a real service on 127.0.0.1 with an ephemeral
port, a temporary state directory and an 8-GPU topology fixture (AWS g4dn.metal, 8x T4).

Usage: test_service.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]
Each TEST is one of the functions named test_* below, without the prefix."""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ARGS = None

# What a sanitizer prints when it finds something (ASan, LSan, UBSan, TSan): a daemon's or a
# worker's log holding one of these fails the test, even when everything else passed.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")

# State folders of the test now running: removed when it passes, kept (and named) when it fails,
# so that the daemons' logs and the jobs' logs can be read afterwards.
FOLDERS = []
AFTER = []  # what to do once they are kept or removed (unmount the disk they were on, say)


def sanitizer_reports(folder):
    """The first lines of each sanitizer report in the logs of a state folder: its own *.log
    files and its jobs' logs (jobs/*/log, where a worker's stderr goes). Unreadable files are
    passed over (a job's folder may belong to another account)."""
    paths = glob.glob(os.path.join(folder, "*.log")) + \
        glob.glob(os.path.join(folder, "jobs", "*", "log"))
    found = []
    for path in sorted(paths):
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for i, line in enumerate(lines):
            if any(m in line for m in SANITIZER_MARKS):
                found.append("%s:%d:\n%s" % (path, i + 1, "\n".join(lines[i:i + 12])))
                break
    return found


def check_sanitizers(*folders):
    reports = [r for f in folders for r in sanitizer_reports(f)]
    assert not reports, "sanitizer report:\n" + "\n".join(reports)


def check_exit(proc, what, expected):
    """proc ended; expected is its exit status (Popen's: -N for a signal), None for any."""
    if expected is not None and proc.returncode != expected:
        raise AssertionError("%s ended with status %s, expected %s" %
                             (what, proc.returncode, expected))


def stop_process(proc, what, expected=0, grace=20):
    """SIGTERM, then the exit status must be expected. A process that outlives grace seconds is
    killed, and that is a failure too."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("%s did not exit within %d s of SIGTERM" % (what, grace))
    check_exit(proc, what, expected)


def keep_folders(name, failed):
    """Ends a test's FOLDERS: removed if it passed; if it failed, moved under the build folder's
    Testing/kept/ (a test may have put them on a disk it unmounts) and their new place printed."""
    global FOLDERS, AFTER
    folders, FOLDERS = FOLDERS, []
    after, AFTER = AFTER, []
    for path in folders:
        if not os.path.exists(path):
            continue
        if not failed:
            shutil.rmtree(path, ignore_errors=True)
            continue
        dest = os.path.join(ARGS.build, "Testing", "kept", "%s-%s" % (name, os.path.basename(path)))
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            try:
                os.rename(path, dest)
            except OSError:  # another file system: copy what can be copied (not sockets)
                shutil.copytree(path, dest, symlinks=True, ignore_dangling_symlinks=True,
                                ignore=lambda d, names: [n for n in names if not (
                                    os.path.isdir(os.path.join(d, n)) or
                                    os.path.isfile(os.path.join(d, n)))])
                shutil.rmtree(path, ignore_errors=True)
        except OSError as e:
            print("kept state folder: %s (could not move it: %s)" % (path, e))
            continue
        print("kept state folder: %s" % dest)
    for fn in after:
        fn()


class Service:
    """One jazarid process with its own state directory."""

    def __init__(self, topology="aws-g4dn-metal-8xT4.xml", grace=1, extra=(), config=None):
        self.state = tempfile.mkdtemp(prefix="jazari-test-")
        FOLDERS.append(self.state)
        self.stop_status = 0  # jazarid's exit status after SIGTERM (None: any)
        extra = list(extra)
        if config is not None:
            path = os.path.join(self.state, "config.json")
            with open(path, "w") as f:
                json.dump(config, f)
            extra += ["--config", path]
        self.topology = os.path.join(ARGS.fixtures, "topologies", topology)
        self.grace = grace
        self.extra = list(extra)
        self.proc = None
        self.start()
        with open(os.path.join(self.state, "admin.token")) as f:
            self.admin = f.read().strip()

    def start(self):
        port_file = os.path.join(self.state, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        plugins = ":".join([os.path.join(ARGS.build, "plugins"),
                            os.path.join(ARGS.build, "test-plugins")])
        self.log = open(os.path.join(self.state, "jazarid.log"), "a")
        # A restart keeps the port when asked (node agents know jazarid by its URL).
        port = self.port if getattr(self, "keep_port", False) and getattr(self, "port", 0) else 0
        self.proc = subprocess.Popen(
            [os.path.join(ARGS.build, "bin", "jazarid"), "--listen", "127.0.0.1:%d" % port,
             "--state-dir", self.state, "--topology", self.topology, "--plugin-dir", plugins,
             "--kill-grace", str(self.grace), "--port-file", port_file,
             # As root, jazarid would run as the 'jazari' account with a confined local node
             # (tests/integration/confine); these tests keep everything in one process.
             *(["--user", "root"] if os.geteuid() == 0 else []), *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("jazarid did not start:\n" + self.read_log())
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read())
        self.url = "http://127.0.0.1:%d" % self.port

    def read_log(self):
        with open(os.path.join(self.state, "jazarid.log"), errors="replace") as f:
            return f.read()

    def folders(self):
        """The folders whose logs the harness reads for sanitizer reports."""
        return [self.state]

    def stop(self, status=None):
        """SIGTERM; jazarid must exit with status (self.stop_status unless given: 0) and no
        sanitizer report may be in the logs. A jazarid already gone must have ended so too."""
        try:
            if self.proc:
                stop_process(self.proc, "jazarid",
                             self.stop_status if status is None else status)
        finally:
            self.proc = None
            if not self.log.closed:
                self.log.close()
        check_sanitizers(*self.folders())

    def kill9(self):
        """kill -9: it dies by SIGKILL, as expected."""
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.log.close()
        check_sanitizers(*self.folders())

    def close(self):
        """Stops jazarid with the checks of stop(); the state folder is removed or kept by
        run_tests once the test is over (keep_folders)."""
        self.stop()

    # --- raw HTTP ---------------------------------------------------------------------------
    def http(self, method, path, body=None, token=None, raw=None, headers=None):
        """Returns (status, parsed JSON or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def submit(self, token, body):
        status, j = self.http("POST", "/v1/jobs", body, token)
        assert status == 201, (status, j)
        return j["id"]

    def job(self, token, job_id):
        status, j = self.http("GET", "/v1/jobs/%d" % job_id, token=token)
        assert status == 200, (status, j)
        return j

    def wait(self, token, job_id, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.job(token, job_id)
            if j["state"] not in ("PENDING", "RUNNING"):
                return j
            time.sleep(0.05)
        raise AssertionError("job %d did not end: %s" % (job_id, j))

    def wait_running(self, token, job_id, timeout=10):
        deadline = time.time() + timeout
        while self.job(token, job_id)["state"] != "RUNNING":
            assert time.time() < deadline, self.job(token, job_id)
            time.sleep(0.02)

    def wait_reason(self, token, job_id, code, timeout=10):
        """Waits until the job is PENDING with reason_code `code`; returns its record."""
        deadline = time.time() + timeout
        while True:
            j = self.job(token, job_id)
            if j["state"] == "PENDING" and j.get("reason_code") == code:
                return j
            assert time.time() < deadline, j
            time.sleep(0.05)

    def add_user(self, name, tenant="physics", role="user"):
        status, j = self.http("POST", "/v1/admin/users",
                              {"name": name, "tenant": tenant, "role": role}, self.admin)
        assert status == 201, (status, j)
        return j["token"]

    # --- the CLI ----------------------------------------------------------------------------
    def cli(self, *args, token=None, timeout=120, cwd=None):
        env = dict(os.environ, JAZARI_URL=self.url, JAZARI_TOKEN=token or self.admin,
                   JAZARI_CONFIG="/nonexistent")
        r = subprocess.run([os.path.join(ARGS.build, "bin", "jazari"), *args], env=env,
                           capture_output=True, text=True, timeout=timeout, cwd=cwd)
        # Even where the test expects the command to fail, a sanitizer report fails the test.
        assert not any(m in r.stderr for m in SANITIZER_MARKS), r.stderr
        return r.returncode, r.stdout, r.stderr


def batch(argv, gpus=0, **res):
    body = {"plugin": "batch", "params": {"argv": argv}, "resources": dict(gpus=gpus, **res)}
    return body


# ------------------------------------------------------------------------------------------
def test_auth(svc):
    st, j = svc.http("GET", "/v1/jobs")
    assert st == 401 and j["error"]["code"] == "unauthorized", (st, j)
    assert j["error"]["field"] == "Authorization"
    st, j = svc.http("GET", "/v1/jobs", token="jz_" + "0" * 48)
    assert st == 401, (st, j)
    st, j = svc.http("GET", "/healthz")
    assert st == 200 and j["status"] == "ok"
    mode = os.stat(os.path.join(svc.state, "admin.token")).st_mode & 0o777
    assert mode == 0o600, oct(mode)
    alice, bob = svc.add_user("alice"), svc.add_user("bob", tenant="startup-a")
    st, j = svc.http("POST", "/v1/admin/users", {"name": "mallory", "tenant": "x"}, alice)
    assert st == 403, (st, j)
    st, j = svc.http("POST", "/v1/admin/users", {"name": "alice", "tenant": "x"}, svc.admin)
    assert st == 409, (st, j)
    jid = svc.submit(alice, batch(["sleep", "30"]))
    # Another user's job is answered as a missing one (tests/integration/http checks it all).
    st, j = svc.http("GET", "/v1/jobs/%d" % jid, token=bob)
    assert st == 404 and j["error"] == {"code": "not_found", "message": "no job %d" % jid,
                                        "field": "id"}, (st, j)
    st, j = svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=bob)
    assert st == 404, (st, j)
    st, j = svc.http("GET", "/v1/jobs/%d/log" % jid, token=bob)
    assert st == 404, (st, j)
    st, j = svc.http("GET", "/v1/jobs", token=bob)
    assert st == 200 and j["jobs"] == [], j
    st, j = svc.http("GET", "/v1/jobs?user=alice", token=bob)
    assert st == 403, (st, j)
    st, j = svc.http("GET", "/v1/jobs?user=alice", token=svc.admin)
    assert st == 200 and [x["id"] for x in j["jobs"]] == [jid], j
    st, j = svc.http("GET", "/v1/whoami", token=bob)
    assert j == {"name": "bob", "tenant": "startup-a", "role": "user"}, j
    st, j = svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=alice)
    assert st == 200, (st, j)
    assert svc.wait(alice, jid)["state"] == "CANCELLED"
    # Tokens are stored hashed: the token text is nowhere in the database.
    with open(os.path.join(svc.state, "jazari.db"), "rb") as f:
        db = f.read()
    with open(os.path.join(svc.state, "jazari.db-wal"), "rb") as f:
        db += f.read()
    assert alice.encode() not in db and svc.admin.encode() not in db


def test_malformed(svc):
    t = svc.admin
    cases = [
        (dict(raw=b"{not json"), 400, "body"),
        (dict(raw=b"[1,2]"), 400, "body"),
        (dict(body={"plugin": "nope"}), 400, "plugin"),
        (dict(body={"params": {}}), 400, "plugin"),
        (dict(body={"plugin": 7}), 400, "plugin"),
        (dict(body={"plugin": "batch", "params": {"argv": "x"}, "colour": 1}), 400, "colour"),
        (dict(body={"plugin": "batch"}), 400, "params.argv"),
        (dict(body={"plugin": "batch", "params": {"argv": [1, 2]}}), 400, "params.argv"),
        (dict(body={"plugin": "batch", "params": {"argv": ["true"], "bogus": 1}}), 400,
         "params.bogus"),
        (dict(body={"plugin": "sleeper", "params": {"seconds": "abc"}}), 400, "params.seconds"),
        (dict(body={"plugin": "sleeper", "params": {"seconds": [1]}}), 400, "params.seconds"),
        (dict(body={"plugin": "batch", "params": {"argv": ["true"]},
                    "resources": {"gpus": "two"}}), 400, "resources.gpus"),
        (dict(body={"plugin": "batch", "params": {"argv": ["true"]},
                    "resources": {"gpus": 9}}), 400, "resources.gpus"),
        (dict(body={"plugin": "batch", "params": {"argv": ["true"]},
                    "resources": {"time_limit_s": 0}}), 400, "resources.time_limit_s"),
        (dict(body={"plugin": "batch", "params": {"argv": ["true"]},
                    "resources": {"time_limit": "forever"}}), 400, "resources.time_limit"),
        (dict(body={"plugin": "batch", "params": {"argv": ["true"]}, "name": "x" * 500}), 400,
         "name"),
        (dict(raw=b'{"plugin": "batch", "params": {"argv": ["' + b"a" * (2 << 20) + b'"]}}'),
         413, "body"),
        (dict(raw=b'{"a":' * 100 + b"1" + b"}" * 100), 413, "body"),
        (dict(raw=b"[" * 3000 + b"]" * 3000), 413, "body"),
        # Messages that quote user text cut mid-character still come back as JSON.
        (dict(body={"plugin": "a" * 63 + "\u00e9\u00e9"}), 400, "plugin"),
        (dict(body={"plugin": "batch", "params": {"argv": ["true"]},
                    "resources": {"\u00e9" * 80: 1}}), 400, "resources." + "\u00e9" * 50),
        (dict(body={"plugin": "batch", "params": {"argv": ["true"]},
                    "submit_dir": "/" + "d" * 1100}), 400, "submit_dir"),
        # A job with no core would run unbound on all of the node's.
        (dict(body={"plugin": "batch", "params": {"argv": ["true"]},
                    "resources": {"gpus": 1, "cpus_per_gpu": 0}}), 400, "resources.cpus_per_gpu"),
        # Parameters stay in memory while the job waits: 64 KiB in all (limits.params_bytes).
        (dict(body={"plugin": "batch", "params": {"argv": ["true"] + ["x" * 60000] * 2}}), 400,
         "params"),
    ]
    for kw, status, field in cases:
        st, j = svc.http("POST", "/v1/jobs", token=t, **kw)
        assert st == status, (kw.get("body"), st, j)
        assert isinstance(j, dict) and j["error"]["field"] == field, (kw.get("body"), j)
        assert j["error"]["message"], j
    st, j = svc.http("GET", "/v1/jobs/999999", token=t)
    assert st == 404 and j["error"]["code"] == "not_found", (st, j)
    st, j = svc.http("GET", "/v1/jobs/abc", token=t)
    assert st == 404, (st, j)
    st, j = svc.http("DELETE", "/v1/jobs", token=t)
    assert st == 405, (st, j)
    st, j = svc.http("GET", "/v1/jobs?limit=0", token=t)
    assert st == 400 and j["error"]["field"] == "limit", (st, j)
    st, j = svc.http("GET", "/v1/jobs?state=SLEEPING", token=t)
    assert st == 400 and j["error"]["field"] == "state", (st, j)
    st, j = svc.http("GET", "/v1/jobs?state=%ff%fe", token=t)
    assert st == 400 and j["error"]["field"] == "state", (st, j)
    # Nothing was created, and the server still serves.
    st, j = svc.http("GET", "/v1/jobs", token=t)
    assert st == 200 and j["jobs"] == [], j
    jid = svc.submit(t, {"plugin": "sleeper", "params": {"seconds": "0.1"}})
    job = svc.wait(t, jid)
    assert job["state"] == "SUCCEEDED" and job["params"]["seconds"] == 0.1, job


def test_many_jobs(svc):
    """200 batch jobs with mixed GPU counts: never a GPU double-booked, logs and exit codes right."""
    t = svc.admin
    rng = random.Random(int(os.environ.get("JZ_TEST_SEED", time.time())))
    ids = {}
    for i in range(200):
        gpus = rng.choice([0, 1, 1, 2, 2, 4, 8])
        code = 3 if i % 7 == 0 else 0
        argv = ["sh", "-c", 'echo "job $JAZARI_JOB_ID devices=$CUDA_VISIBLE_DEVICES"; '
                'sleep 0.0%d; exit %d' % (rng.randint(0, 9), code)]
        ids[svc.submit(t, batch(argv, gpus=gpus))] = (gpus, code)
    jobs = {jid: svc.wait(t, jid, timeout=240) for jid in ids}
    for jid, (gpus, code) in ids.items():
        j = jobs[jid]
        want = "SUCCEEDED" if code == 0 else "FAILED"
        assert j["state"] == want and j["exit_code"] == code, j
        assert len(j["gpus"]) == gpus, j
        if code:
            assert j["reason"].startswith("exit code 3"), j
        devices = ",".join(str(g["index"]) for g in j["gpus"])
        st, log = svc.http("GET", "/v1/jobs/%d/log" % jid, token=t)
        assert st == 200 and ("job %d devices=%s\n" % (jid, devices)) in log, (jid, log)
    # No GPU (and no core) held by two jobs at once: intervals on each GPU must not overlap.
    per_gpu = {}
    for j in jobs.values():
        for g in j["gpus"]:
            per_gpu.setdefault(g["index"], []).append((j["start_time"], j["end_time"], j["id"]))
    for gpu, spans in per_gpu.items():
        spans.sort()
        for a, b in zip(spans, spans[1:]):
            assert b[0] >= a[1], "GPU %d double-booked by jobs %d and %d" % (gpu, a[2], b[2])
    st, n = svc.http("GET", "/v1/nodes", token=t)
    assert n["nodes"][0]["gpus_free"] == 8 and n["nodes"][0]["gpus_total"] == 8, n


def test_cancel(svc):
    t = svc.admin
    big = svc.submit(t, batch(["sleep", "60"], gpus=8))
    waiting = svc.submit(t, batch(["true"], gpus=8))
    svc.wait_running(t, big)
    j = svc.job(t, waiting)
    assert j["state"] == "PENDING" and j["reason_code"] == "resources", j
    assert "8 GPUs" in j["reason"] and j["estimated_start"], j
    st, j = svc.http("POST", "/v1/jobs/%d/cancel" % waiting, token=t)
    assert st == 200 and j["state"] == "CANCELLED", (st, j)
    t0 = time.time()
    st, j = svc.http("POST", "/v1/jobs/%d/cancel" % big, token=t)
    assert st == 200, (st, j)
    j = svc.wait(t, big, timeout=20)
    assert j["state"] == "CANCELLED" and time.time() - t0 < 10, j
    st, j = svc.http("POST", "/v1/jobs/%d/cancel" % big, token=t)
    assert st == 409 and j["error"]["code"] == "already_ended", (st, j)
    # The GPUs are free again.
    assert svc.wait(t, svc.submit(t, batch(["true"], gpus=8)))["state"] == "SUCCEEDED"
    # Cancels that race the worker's start-up still cancel, and never reach jazarid itself.
    ids = [svc.submit(t, batch(["sleep", "100"])) for _ in range(40)]
    for i in ids:
        st, j = svc.http("POST", "/v1/jobs/%d/cancel" % i, token=t)
        assert st == 200, (st, j)
    for i in ids:
        j = svc.wait(t, i, timeout=30)
        assert j["state"] == "CANCELLED", j
    assert svc.proc.poll() is None and svc.http("GET", "/healthz")[0] == 200


def test_time_limit(svc):
    t = svc.admin
    a = svc.submit(t, batch(["sleep", "60"], time_limit_s=1))
    # The hang plugin ignores cancellation and SIGTERM: the worker must KILL it after the grace.
    b = svc.submit(t, {"plugin": "hang", "resources": {"time_limit": "1s"}})
    t0 = time.time()
    ja, jb = svc.wait(t, a, 30), svc.wait(t, b, 30)
    assert ja["state"] == "TIMEOUT" and "time limit" in ja["reason"], ja
    assert jb["state"] == "TIMEOUT", jb
    assert time.time() - t0 < 15


def test_plugins(svc):
    t = svc.admin
    st, j = svc.http("GET", "/v1/plugins", token=t)
    by = {p["name"]: p for p in j["plugins"]}
    assert by["batch"]["status"] == "ok" and by["batch"]["abi"]["major"] == 1, by["batch"]
    assert by["badabi"]["status"] == "refused" and "ABI" in by["badabi"]["reason"], by["badabi"]
    assert by["nodesc"]["status"] == "refused" and by["nodesc"]["reason"], by["nodesc"]
    st, e = svc.http("POST", "/v1/jobs", {"plugin": "badabi"}, t)
    assert st == 400 and e["error"]["field"] == "plugin" and "refused" in e["error"]["message"]
    crash = svc.wait(t, svc.submit(t, {"plugin": "crash"}))
    assert crash["state"] == "FAILED" and crash["signal"] == 11, crash
    assert "SIGSEGV" in crash["reason"], crash
    ok = svc.wait(t, svc.submit(t, {"plugin": "sleeper", "params": {"seconds": 0.3}}))
    assert ok["state"] == "SUCCEEDED", ok
    bad = svc.wait(t, svc.submit(t, {"plugin": "sleeper", "params": {"seconds": 0.1,
                                                                         "fail": True}}))
    assert bad["state"] == "FAILED" and bad["exit_code"] == 3, bad


def test_kill9(svc):
    """kill -9 of jazarid under load, restart: nothing acknowledged is lost, nothing runs twice."""
    t = svc.admin
    marks = os.path.join(svc.state, "marks")
    os.mkdir(marks)
    accepted, stop = [], threading.Event()
    lock = threading.Lock()

    def client(k):
        n = 0
        while not stop.is_set() and n < 150:
            n += 1
            argv = ["sh", "-c", 'echo x >> %s/$JAZARI_JOB_ID; sleep 0.%d' % (marks, n % 3)]
            try:
                st, j = svc.http("POST", "/v1/jobs", batch(argv, gpus=k % 3), t)
            except Exception:
                return  # the server died mid-request: that submission was not acknowledged
            if st == 201:
                with lock:
                    accepted.append(j["id"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    deadline = time.time() + 20
    while len(accepted) < 40 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # kill while submissions and jobs are in flight
    svc.kill9()
    stop.set()
    for th in threads:
        th.join()
    assert len(accepted) > 20, len(accepted)
    # Workers die with jazarid (PR_SET_PDEATHSIG): nothing of the old run keeps running.
    time.sleep(0.5)
    svc.start()
    jobs = {}
    after = 0
    while True:
        st, page = svc.http("GET", "/v1/jobs?limit=1000&after=%d" % after, token=t)
        for j in page["jobs"]:
            jobs[j["id"]] = j
        if page["next_after"] is None:
            break
        after = page["next_after"]
    missing = [i for i in accepted if i not in jobs]
    assert not missing, "acknowledged jobs lost: %s" % missing[:10]
    final = {i: svc.wait(t, i, timeout=120) for i in jobs}
    lost = [j for j in final.values() if j["state"] == "FAILED" and "node lost" in j["reason"]]
    for i, j in final.items():
        assert j["state"] in ("SUCCEEDED", "FAILED"), j
        if j["state"] == "FAILED":
            assert "node lost" in j["reason"], j
    for name in os.listdir(marks):
        with open(os.path.join(marks, name)) as f:
            runs = f.read().count("x")
        # A job killed with the old jazarid may have been stopped before its echo ran.
        assert runs <= 1, "job %s ran %d times" % (name, runs)
        if final[int(name)]["state"] == "SUCCEEDED":
            assert runs == 1, final[int(name)]
    for i, j in final.items():
        if j["state"] == "SUCCEEDED":
            assert os.path.exists(os.path.join(marks, str(i))), j
    print("kill9: %d acknowledged, %d jobs after restart, %d node lost" %
          (len(accepted), len(jobs), len(lost)))


def pgrep(pattern):
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def test_orphans(svc):
    """What a job started dies with it, even when jazarid is killed: after a restart a requeued
    job runs exactly once, and a failed one leaves nothing behind."""
    t = svc.admin
    mark = "%d.%06d" % (300 + os.getpid() % 100, random.randrange(10 ** 6))
    keep = svc.submit(t, dict(batch(["sh", "-c", "sleep %s1; true" % mark], gpus=1),
                              preemptible=True))
    lost = svc.submit(t, batch(["sh", "-c", "sleep %s2; true" % mark], gpus=1))
    svc.wait_running(t, keep)
    svc.wait_running(t, lost)
    deadline = time.time() + 10
    while len(pgrep("^sleep %s" % mark)) < 2:
        assert time.time() < deadline, pgrep("^sleep %s" % mark)
        time.sleep(0.05)
    svc.kill9()
    svc.start()
    svc.wait_running(t, keep)
    assert svc.job(t, lost)["state"] == "FAILED"
    time.sleep(0.5)
    assert pgrep("^sleep %s2" % mark) == [], "the failed job's command outlived it"
    assert len(pgrep("^sleep %s1" % mark)) == 1, "the requeued job runs more than once"
    svc.http("POST", "/v1/jobs/%d/cancel" % keep, token=t)
    assert svc.wait(t, keep, timeout=20)["state"] == "CANCELLED"
    time.sleep(0.3)
    assert pgrep("^sleep %s" % mark) == []


def test_leftover(svc):
    """A process that escaped the job (own session) and holds the worker's event pipe neither
    keeps the job RUNNING nor outlives it."""
    t = svc.admin
    jid = svc.submit(t, {"plugin": "leaky"})
    t0 = time.time()
    j = svc.wait(t, jid, timeout=30)
    took = time.time() - t0
    st, pid = svc.http("GET", "/v1/jobs/%d/artifacts/leftover" % jid, token=t)
    assert j["state"] == "SUCCEEDED" and took < 15, (j, took)
    # The worker is a child subreaper: even a process that left the job's session dies with it.
    try:
        os.kill(int(pid), 0)
        alive = open("/proc/%d/stat" % int(pid)).read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        alive = False
    if alive:
        os.kill(int(pid), signal.SIGKILL)
    assert not alive, "a process that escaped the job outlived it"


def test_cli(svc):
    t = svc.admin
    work = tempfile.mkdtemp(prefix="jazari-cli-")
    try:
        rc, out, err = svc.cli("submit", "--gpus", "2", "--name", "hello", "--",
                               "sh", "-c", "pwd; echo devices=$CUDA_VISIBLE_DEVICES; exit 4",
                               cwd=work)
        assert rc == 0 and out.strip().isdigit(), (rc, out, err)
        jid = int(out)
        rc, out, err = svc.cli("wait", str(jid))
        assert rc == 4, (rc, out, err)
        rc, out, err = svc.cli("logs", str(jid))
        assert rc == 0 and work in out and "devices=" in out, (rc, out, err)
        rc, out, err = svc.cli("show", "--json", str(jid))
        j = json.loads(out)
        assert j["state"] == "FAILED" and j["exit_code"] == 4 and j["name"] == "hello", j
        rc, out, err = svc.cli("show", str(jid))
        assert rc == 0 and "FAILED" in out, (rc, out, err)
        # Following a running job's log streams it until the job ends.
        rc, out, err = svc.cli("submit", "--", "sh", "-c",
                               "for i in 1 2 3; do echo tick $i; sleep 0.3; done")
        jid2 = int(out)
        rc, out, err = svc.cli("logs", "-f", jid2.__str__(), timeout=30)
        assert rc == 0 and "tick 1" in out and "tick 3" in out, (rc, out, err)
        rc, out, err = svc.cli("submit", "--time", "1m", "--", "sleep", "30")
        jid3 = int(out)
        rc, out, err = svc.cli("queue")
        assert rc == 0 and str(jid3) in out, (rc, out, err)
        rc, out, err = svc.cli("cancel", str(jid3))
        assert rc == 0, (rc, out, err)
        rc, out, err = svc.cli("wait", str(jid3))
        assert rc == 130, (rc, out, err)
        rc, out, err = svc.cli("submit", "--plugin", "sleeper", "--param", "seconds=abc")
        assert rc != 0 and "params.seconds" in err and len(err.strip().splitlines()) == 1, err
        rc, out, err = svc.cli("nodes")
        assert rc == 0 and "8" in out, (rc, out, err)
        rc, out, err = svc.cli("plugins")
        assert rc == 0 and "batch" in out and "refused" in out, (rc, out, err)
        rc, out, err = svc.cli("admin", "user", "add", "carol", "--tenant", "bio")
        assert rc == 0 and out.strip().startswith("jz_"), (rc, out, err)
        carol = out.strip()
        rc, out, err = svc.cli("show", str(jid), token=carol)
        assert rc != 0 and "no job %d (404)" % jid in err, (rc, out, err)
        rc, out, err = svc.cli("queue", token="jz_" + "1" * 48)
        assert rc != 0 and "401" in err, (rc, out, err)
    finally:
        shutil.rmtree(work, ignore_errors=True)


POLICY_CONFIG = {"scheduler": {
    "half_life": "1d", "preempt_grace": 1,
    "classes": [{"name": "normal", "rank": 50},
                {"name": "guaranteed", "rank": 90, "can_preempt": True}],
    "tenants": [{"name": "physics", "weight": 2, "max_gpus": 2},
                {"name": "startup-a", "weight": 1}]}}


def test_policy(svc):
    """The scheduler library drives the service: quotas, preemption, reasons and estimates."""
    alice = svc.add_user("alice", tenant="physics")
    bob = svc.add_user("bob", tenant="startup-a")
    carol = svc.add_user("carol", tenant="hospital")
    # Quota: physics may hold 2 GPUs at once.
    a1 = svc.submit(alice, batch(["sleep", "30"], gpus=2))
    a2 = svc.submit(alice, batch(["true"], gpus=2))
    svc.wait_running(alice, a1)
    j = svc.job(alice, a2)
    assert j["state"] == "PENDING" and j["reason_code"] == "quota", j
    rc, out, err = svc.cli("why", str(a2), token=alice)
    assert rc == 0 and "quota" in out, (rc, out, err)
    # Preemption: a preemptible job holds the other 6 GPUs; a guaranteed job needs 4 of them.
    b1 = svc.submit(bob, dict(batch(["sleep", "60"], gpus=6), preemptible=True))
    svc.wait_running(bob, b1)
    c1 = svc.submit(carol, dict(batch(["sh", "-c", "echo guaranteed"], gpus=4),
                                **{"class": "guaranteed"}))
    j = svc.wait(carol, c1, timeout=30)
    assert j["state"] == "SUCCEEDED", j
    b = svc.job(bob, b1)
    assert b["requeues"] >= 1, b
    st, ev = svc.http("GET", "/v1/jobs/%d/events" % b1, token=bob)
    assert any(e["type"] == "preempt" for e in ev["events"]), ev
    # An unknown class is refused at submit time.
    st, e = svc.http("POST", "/v1/jobs", dict(batch(["true"]), **{"class": "vip"}), carol)
    assert st == 400 and e["error"]["field"] == "class", (st, e)
    for jid, tok in ((a1, alice), (b1, bob)):
        svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=tok)


def test_graceful_stop(svc):
    """SIGTERM under load: jazarid answers what it has read before it exits, so every job that
    exists after the restart is one whose submission was acknowledged (a request it never read
    fails at the client, and leaves nothing behind)."""
    t = svc.admin
    accepted, stop = [], threading.Event()

    def client():
        while not stop.is_set():
            try:
                st, j = svc.http("POST", "/v1/jobs", batch(["sleep", "0.2"], gpus=1), t)
            except Exception:
                continue  # refused, reset: the service is going or gone
            if st == 201:
                accepted.append(j["id"])

    threads = [threading.Thread(target=client) for _ in range(3)]
    for th in threads:
        th.start()
    deadline = time.time() + 20
    while len(accepted) < 30 and time.time() < deadline:
        time.sleep(0.02)
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(20) == 0
    stop.set()
    for th in threads:
        th.join()
    svc.log.close()
    svc.start()
    st, page = svc.http("GET", "/v1/jobs?limit=1000", token=t)
    present = {j["id"] for j in page["jobs"]}
    assert present == set(accepted), (sorted(present - set(accepted)),
                                      sorted(set(accepted) - present))
    for j in page["jobs"]:  # placed but never started at the stop: back in the queue
        assert j["state"] != "FAILED" or "node lost" in j["reason"], j


def test_logs(svc):
    """Large logs: plain reads page by 1 MiB; a stream delivers everything, then ends."""
    t = svc.admin
    jid = svc.submit(t, batch(["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo END"]))
    assert svc.wait(t, jid)["state"] == "SUCCEEDED"
    req = urllib.request.Request(svc.url + "/v1/jobs/%d/log" % jid,
                                 headers={"Authorization": "Bearer " + t})
    with urllib.request.urlopen(req, timeout=30) as r:
        first = r.read()
        nxt = int(r.headers["X-Jazari-Next-Offset"])
    assert len(first) == 1 << 20 and nxt == 1 << 20, (len(first), nxt)
    req = urllib.request.Request(svc.url + "/v1/jobs/%d/log?follow=1&offset=%d" % (jid, nxt),
                                 headers={"Authorization": "Bearer " + t})
    with urllib.request.urlopen(req, timeout=30) as r:
        rest = r.read()
    log = first + rest
    assert b"x" * 3000000 + b"END\n" in log, len(log)


def test_retention(svc):
    """Finished jobs are purged after limits.retention_days (here 3 s): record, events and
    files; the usage they were charged stays, and their ids are never given again."""
    alice = svc.add_user("alice", tenant="inst-a")
    old = svc.submit(alice, batch(["sh", "-c", "sleep 0.3; echo out > $JAZARI_OUTPUT_DIR/x"],
                                  gpus=1))
    assert svc.wait(alice, old)["state"] == "SUCCEEDED"
    st, u = svc.http("GET", "/v1/usage", token=alice)
    used = u["tenants"][0]["used_gpu_hours"]
    assert used > 0, u
    folder = os.path.join(svc.state, "jobs", str(old))
    assert os.path.isdir(folder)
    time.sleep(3.5)
    svc.stop()
    svc.start()  # the first purge runs a second after start, then hourly
    deadline = time.time() + 10
    while svc.http("GET", "/v1/jobs/%d" % old, token=alice)[0] != 404:
        assert time.time() < deadline, svc.job(alice, old)
        time.sleep(0.1)
    assert not os.path.exists(folder)
    st, u = svc.http("GET", "/v1/usage", token=alice)
    assert u["tenants"][0]["used_gpu_hours"] == used, u
    svc.stop()
    svc.start()  # the highest id was purged: it is still not given again
    new = svc.submit(alice, batch(["true"]))
    assert new == old + 1, (new, old)


def test_credits(svc):
    """Metered tenants: a run holds its time limit's GPU-hours (a credit is a GPU-hour without a
    price list) and is charged its use; a job its tenant cannot cover waits for credit."""
    alice = svc.add_user("alice", tenant="startup-a")
    rc, out, err = svc.cli("admin", "credit", "add", "startup-a", "0.0005", "--note", "trial")
    assert rc == 0 and "startup-a" in out, (rc, out, err)
    # 0.0005 credits: the 2 GPUs x 10 s this job would hold (0.0056) do not fit.
    first = svc.submit(alice, dict(batch(["sleep", "1.5"], gpus=2),
                                   resources={"gpus": 2, "time_limit_s": 10}))
    deadline = time.time() + 5
    while svc.job(alice, first).get("reason_code") != "credits":
        assert time.time() < deadline, svc.job(alice, first)
        time.sleep(0.05)
    j = svc.job(alice, first)
    assert j["state"] == "PENDING" and "missing" in j["reason"], j
    st, e = svc.http("POST", "/v1/admin/credits", {"tenant": "startup-a", "gpu_hours": 1,
                                                   "note": "invoice 7"}, svc.admin)
    assert st == 201 and e["balance_gpu_hours"] > 0.99, (st, e)
    assert svc.wait(alice, first)["state"] == "SUCCEEDED"
    st, u = svc.http("GET", "/v1/usage", token=alice)
    row = u["tenants"][0]
    assert st == 200 and row["tenant"] == "startup-a" and row["metered"], u
    # this job used about 2 x 1.5 GPU-seconds
    assert row["jobs"] == 1 and 2.9 / 3600 < row["used_gpu_hours"] < 4.5 / 3600, row
    assert row["used_gpu_hours_by_plugin"]["batch"] == row["used_gpu_hours"], row
    assert row["held"] == 0 and abs(row["balance"] - (1.0005 - row["charged"])) < 1e-9, row
    second = svc.submit(alice, dict(batch(["true"], gpus=1),
                                    resources={"gpus": 1, "time_limit_s": 60}))
    assert svc.wait(alice, second)["state"] == "SUCCEEDED"
    # Users see their own tenant only; grants are checked.
    st, e = svc.http("GET", "/v1/usage?tenant=other", token=alice)
    assert st == 403 and e["error"]["field"] == "tenant", (st, e)
    st, e = svc.http("POST", "/v1/admin/credits", {"tenant": "startup-a", "gpu_hours": 0},
                     svc.admin)
    assert st == 400 and e["error"]["field"] == "gpu_hours", (st, e)
    st, e = svc.http("POST", "/v1/admin/credits", {"tenant": "x", "gpu_hours": 1}, alice)
    assert st == 403, (st, e)
    # Unmetered tenants (never granted anything) are never held.
    st, u = svc.http("GET", "/v1/usage", token=svc.admin)
    assert {r["tenant"] for r in u["tenants"]} >= {"startup-a"}, u
    # The ledger survives a restart.
    svc.stop()
    svc.start()
    st, u = svc.http("GET", "/v1/usage?tenant=startup-a", token=svc.admin)
    assert u["tenants"][0]["jobs"] == 2 and u["tenants"][0]["granted_gpu_hours"] > 1, u
    rc, out, err = svc.cli("usage", token=alice)
    assert rc == 0 and "startup-a" in out, (rc, out, err)


def test_artifacts(svc):
    t = svc.admin
    bob = svc.add_user("bob")
    src = svc.submit(t, batch(["sh", "-c", 'echo result-42 > "$JAZARI_OUTPUT_DIR/result.txt";'
                               'ln -s /etc/passwd "$JAZARI_OUTPUT_DIR/sneaky"']))
    assert svc.wait(t, src)["state"] == "SUCCEEDED"
    st, j = svc.http("GET", "/v1/jobs/%d/artifacts" % src, token=t)
    assert st == 200 and [a["name"] for a in j["artifacts"]] == ["result.txt"], j
    st, body = svc.http("GET", "/v1/jobs/%d/artifacts/result.txt" % src, token=t)
    assert st == 200 and body.strip() == "result-42", (st, body)
    for bad in ("sneaky", "..%2Fspec.json", ".hidden", "nope"):
        st, e = svc.http("GET", "/v1/jobs/%d/artifacts/%s" % (src, bad), token=t)
        assert st in (400, 404) and e["error"]["field"] == "name", (bad, st, e)
    st, e = svc.http("GET", "/v1/jobs/%d/artifacts/result.txt" % src, token=bob)
    assert st == 404 and e["error"]["message"] == "no job %d" % src, (st, e)
    out = os.path.join(svc.state, "fetched.txt")
    rc, _, err = svc.cli("fetch", str(src), "result.txt", "-o", out)
    assert rc == 0 and open(out).read().strip() == "result-42", (rc, err)
    rc, _, err = svc.cli("fetch", str(src), "missing.bin", "-o", out + ".2")
    assert rc == 1 and "404" in err and not os.path.exists(out + ".2"), (rc, err)
    # job:ID/NAME hands another job's artifact to a plugin, only to those who may see it.
    use = svc.submit(t, {"plugin": "batch", "params": {
        "argv": ["sh", "-c", "cat \"$0\"", "job:%d/result.txt" % src]}})
    st, e = svc.http("POST", "/v1/jobs", {"plugin": "batch", "params": {
        "argv": ["true"], "cwd": "job:%d/result.txt" % src}}, bob)
    assert st == 400 and e["error"]["field"] == "params.cwd", (st, e)
    st, e = svc.http("POST", "/v1/jobs", {"plugin": "batch", "params": {
        "argv": ["true"], "cwd": "job:%d/nothing" % src}}, t)
    assert st == 400 and "no artifact" in e["error"]["message"], (st, e)
    svc.wait(t, use)


def test_resume(svc):
    """A checkpointing plugin stopped mid-way continues from its checkpoint when resubmitted."""
    t = svc.admin
    first = svc.submit(t, {"plugin": "example", "params": {"count": 40, "delay_ms": 50}})
    deadline = time.time() + 20
    while ((svc.job(t, first).get("progress") or {}).get("fraction") or 0) < 0.2:
        assert time.time() < deadline, svc.job(t, first)
        time.sleep(0.05)
    svc.http("POST", "/v1/jobs/%d/cancel" % first, token=t)
    j = svc.wait(t, first)
    # The plugin saves a checkpoint when it is cancelled.
    assert j["state"] == "CANCELLED" and j["checkpoint_time"], j
    st, e = svc.http("POST", "/v1/jobs", {"plugin": "example", "resume_from": 999}, t)
    assert st == 400 and e["error"]["field"] == "resume_from", (st, e)
    rc, out, err = svc.cli("submit", "--plugin", "example", "--resume", str(first),
                           "--param", "count=40", "--param", "delay_ms=1")
    assert rc == 0, (rc, out, err)
    second = int(out)
    j = svc.wait(t, second)
    assert j["state"] == "SUCCEEDED", j
    st, log = svc.http("GET", "/v1/jobs/%d/log" % second, token=t)
    assert "example: resuming at" in log and "sum of 1..40 is 820" in log, log


RETENTION_CONFIG = {"limits": {"retention_days": 3 / 86400}}


def run_tests(names, namespace, make_service):
    """Runs namespace["test_NAME"](service) for each name, each on a fresh service; prints
    PASS/FAIL lines (with the end of jazarid's log on failure) and returns the failure count.
    Closing the service is part of the test: a daemon that exits non-zero or left a sanitizer
    report fails it. A failed test's state folders are kept (keep_folders)."""
    import traceback
    failed = 0
    for name in names:
        fn = namespace["test_" + name]
        t0 = time.time()
        svc, ok = None, False
        try:
            svc = make_service(name)
            fn(svc)
            ok = True
        except Exception:
            traceback.print_exc()
            if svc is not None:
                print("--- jazarid log ---\n" + svc.read_log()[-4000:])
        if svc is not None:
            try:
                svc.close()
            except Exception:
                ok = False
                traceback.print_exc()
        keep_folders(name, not ok)
        if ok:
            print("PASS %s (%.1fs)" % (name, time.time() - t0))
        else:
            failed += 1
            print("FAIL %s" % name)
    return failed


def run_in_folders(names, namespace, prefix):
    """Runs namespace["test_NAME"](tmp) for each name, tmp a temporary folder of its own (the
    test starts and closes its services itself; their folders go with tmp, kept when the test
    fails); prints PASS/FAIL lines and returns the failure count."""
    import traceback
    failed = 0
    for name in names:
        tmp = tempfile.mkdtemp(prefix=prefix)
        FOLDERS.append(tmp)
        t0 = time.time()
        ok = False
        try:
            namespace["test_" + name](tmp)
            ok = True
        except Exception:
            traceback.print_exc()
        keep_folders(name, not ok)
        if ok:
            print("PASS %s (%.1fs)" % (name, time.time() - t0))
        else:
            failed += 1
            print("FAIL %s" % name)
    return failed


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    ARGS = p.parse_args()
    ARGS.build = os.path.abspath(ARGS.build)
    ARGS.fixtures = os.path.abspath(ARGS.fixtures)
    failed = run_tests(ARGS.tests, globals(),
                       lambda name: Service(config=POLICY_CONFIG if name == "policy" else
                                            RETENTION_CONFIG if name == "retention" else None))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
