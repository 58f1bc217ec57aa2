#!/usr/bin/env python3
"""Fault injection through a real jazarid on 127.0.0.1 (the harness of tests/integration/service):
a store batch that the disk refuses (JAZARI_FAULT_STORE_FAIL_BATCH), corrupt rows edited into the
database between a stop and a start, and the wall clock jumping a day either way while jobs run
(JAZARI_FAKE_WALL_OFFSET_FILE). The kill -9 campaign is scripts/campaign.py.

Usage: test_faults.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import json
import os
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
import test_service  # noqa: E402
from test_service import Service, batch, run_tests  # noqa: E402

STOP_LINE = ("could not be made durable after retries; stopping so that a restart recovers "
             "from the database")
DAY_MS = 86400 * 1000


def all_jobs(svc, token):
    jobs, after = {}, 0
    while True:
        st, page = svc.http("GET", "/v1/jobs?limit=1000&after=%d" % after, token=token)
        assert st == 200, (st, page)
        for j in page["jobs"]:
            jobs[j["id"]] = j
        if page["next_after"] is None:
            return jobs
        after = page["next_after"]


def whole(j):
    """A record as submit writes it: nothing half there."""
    return (isinstance(j.get("id"), int) and j.get("plugin") == "batch" and
            isinstance(j.get("params", {}).get("argv"), list) and j.get("user") and
            j.get("state") in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED",
                               "TIMEOUT") and j.get("submit_time"))


# ------------------------------------------------------------------------------------------
def test_store_batch_fails(svc):
    """The Nth store batch fails as an I/O error would: jazarid stops with exit 1 and the
    documented line; after a restart nothing acknowledged (201) is lost, nothing unacknowledged
    is half there, and nothing ran twice."""
    t = svc.admin
    marks = os.path.join(svc.state, "marks")
    os.mkdir(marks)
    svc.stop()
    os.environ["JAZARI_FAULT_STORE_FAIL_BATCH"] = "40"
    try:
        svc.start()
    finally:
        del os.environ["JAZARI_FAULT_STORE_FAIL_BATCH"]
    accepted, lock = [], threading.Lock()

    def client(k):
        for n in range(400):
            argv = ["sh", "-c", "echo run >> %s/$JAZARI_JOB_ID" % marks]
            try:
                st, j = svc.http("POST", "/v1/jobs", batch(argv), t)
            except Exception:
                return  # jazarid stopped mid-request: not acknowledged
            if st == 201:
                with lock:
                    accepted.append(j["id"])
            elif svc.proc.poll() is not None:
                return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for th in threads:
        th.start()
    try:
        rc = svc.proc.wait(60)
    finally:
        for th in threads:
            th.join()
    svc.log.close()
    log = svc.read_log()
    assert rc == 1, (rc, log[-3000:])
    assert "fault injection: batch" in log, log[-3000:]
    assert STOP_LINE in log and "jazarid: stopped: the store could not be written" in log, \
        log[-3000:]
    assert len(accepted) >= 5, len(accepted)
    svc.start()
    jobs = all_jobs(svc, t)
    missing = [i for i in accepted if i not in jobs]
    assert not missing, "acknowledged jobs lost: %s" % missing[:10]
    for j in jobs.values():
        assert whole(j), j
    final = {i: svc.wait(t, i, timeout=120) for i in jobs}
    for i, j in final.items():
        assert j["state"] in ("SUCCEEDED", "FAILED"), j
        if j["state"] == "FAILED":
            assert "node lost" in j["reason"], j
    for name in os.listdir(marks):
        with open(os.path.join(marks, name)) as f:
            runs = f.read().count("run")
        assert runs <= 1, "job %s ran %d times" % (name, runs)
    print("store_batch_fails: %d acknowledged, %d after restart (%d unacknowledged kept)" %
          (len(accepted), len(jobs), len(set(jobs) - set(accepted))))


def test_corrupt_rows(svc):
    """Corrupt rows are reported by id and skipped: the others are served, the listing and new
    ids are right, and nothing crashes (issue 13: one id set to 99999999999)."""
    t = svc.admin
    n = 300
    body = [batch(["true"]) for _ in range(n)]
    ids = []
    for b in body:
        ids.append(svc.submit(t, b))
    for i in ids[-5:]:
        svc.wait(t, i)
    deadline = time.time() + 60
    while any(j["state"] in ("PENDING", "RUNNING") for j in all_jobs(svc, t).values()):
        assert time.time() < deadline
        time.sleep(0.2)
    svc.stop()
    top = max(ids)
    moved, notjson, badtype, otherid, huge = ids[10], ids[20], ids[30], ids[40], 12345678901
    db = sqlite3.connect(os.path.join(svc.state, "jazari.db"))
    db.execute("UPDATE jobs SET id = 99999999999 WHERE id = ?", (moved,))
    db.execute("UPDATE jobs SET doc = '{\"id\": ' || id || ', \"state\": ' WHERE id = ?",
               (notjson,))
    doc = json.loads(db.execute("SELECT doc FROM jobs WHERE id = ?", (badtype,)).fetchone()[0])
    doc["state"] = 5
    db.execute("UPDATE jobs SET doc = ? WHERE id = ?", (json.dumps(doc), badtype))
    doc = json.loads(db.execute("SELECT doc FROM jobs WHERE id = ?", (otherid,)).fetchone()[0])
    doc["id"] = top + 7
    db.execute("UPDATE jobs SET doc = ? WHERE id = ?", (json.dumps(doc), otherid))
    doc["id"] = huge
    db.execute("INSERT INTO jobs(id, user, tenant, state, doc) VALUES(?, ?, ?, ?, ?)",
               (huge, doc["user"], doc["tenant"], doc["state"], json.dumps(doc)))
    db.commit()
    db.close()
    svc.start()
    log = svc.read_log()
    for bad in (99999999999, notjson, badtype, otherid, huge):
        assert "job %d: corrupt stored record" % bad in log, (bad, log[-3000:])
    assert "skipped, not served" in log
    st, page = svc.http("GET", "/v1/jobs?order=desc&limit=1", token=t)
    assert st == 200 and [j["id"] for j in page["jobs"]] == [top], (st, page)
    jobs = all_jobs(svc, t)
    gone = {moved, notjson, badtype, otherid}
    assert set(jobs) == set(ids) - gone, sorted(set(ids) ^ set(jobs))
    for bad in (moved, notjson, badtype, otherid, 99999999999, huge):
        st, j = svc.http("GET", "/v1/jobs/%d" % bad, token=t)
        assert st == 404, (bad, st, j)
    new = svc.submit(t, batch(["true"]))
    assert new == top + 1, (new, top)
    assert svc.wait(t, new)["state"] == "SUCCEEDED"
    st, page = svc.http("GET", "/v1/jobs?order=desc&limit=1", token=t)
    assert [j["id"] for j in page["jobs"]] == [new], page
    assert svc.proc.poll() is None


def set_offset(path, ms):
    with open(path + ".tmp", "w") as f:
        f.write("%d\n" % ms)
    os.rename(path + ".tmp", path)
    time.sleep(0.3)  # re-read at most every 100 ms


def test_clock_jumps(svc):
    """The wall clock jumps a day forwards and back while jobs run: time limits, charges,
    retention and records go by the monotonic clock (durations) or stay sane (timestamps)."""
    t = svc.admin
    offset = os.path.join(svc.state, "wall-offset")
    set_offset(offset, 0)
    svc.stop()
    os.environ["JAZARI_FAKE_WALL_OFFSET_FILE"] = offset
    try:
        svc.start()
    finally:
        del os.environ["JAZARI_FAKE_WALL_OFFSET_FILE"]
    alice = svc.add_user("alice", tenant="clock")
    done = svc.submit(alice, batch(["true"]))
    assert svc.wait(alice, done)["state"] == "SUCCEEDED"
    # Forwards a day while a 1-GPU job with a 20 s limit runs for 2 s.
    fwd = svc.submit(alice, batch(["sleep", "2"], gpus=1, time_limit="20s"))
    svc.wait_running(alice, fwd)
    set_offset(offset, DAY_MS)
    j = svc.wait(alice, fwd)
    assert j["state"] == "SUCCEEDED", j
    # And back two days (one behind the real clock) while the next one runs.
    back = svc.submit(alice, batch(["sleep", "2"], gpus=1, time_limit="20s"))
    svc.wait_running(alice, back)
    set_offset(offset, -DAY_MS)
    j = svc.wait(alice, back)
    assert j["state"] == "SUCCEEDED", j
    st, u = svc.http("GET", "/v1/usage", token=alice)
    used_s = u["tenants"][0]["used_gpu_hours"] * 3600
    assert 3 < used_s < 10, ("charged %.1f GPU-seconds for two 2 s runs" % used_s, u)
    # Nothing was purged (retention is 2 days), nothing shows a run that ended before it began.
    assert svc.http("GET", "/v1/jobs/%d" % done, token=alice)[0] == 200
    for i in (done, fwd, back):
        j = svc.job(alice, i)
        assert j["start_time"] <= j["end_time"] or i == back, j
    # The local node stayed up through the jumps.
    st, nodes = svc.http("GET", "/v1/nodes", token=t)
    assert st == 200 and all(n["state"] != "down" for n in nodes["nodes"]), nodes
    set_offset(offset, 0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    retention = {"limits": {"retention_days": 2}}
    failed = run_tests(args.tests, globals(),
                       lambda name: Service(config=retention if name == "clock_jumps" else None))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
