#!/usr/bin/env python3
"""A researcher's workflow against a real jazarid (127.0.0.1, ephemeral port, temporary state
directory): job arrays with a throttle, dependencies of the four kinds, hold and release,
changing a pending job, history with wait, run time and GPU-hours, and everyone's queue; what
waits survives a restart.

Usage: test_workflow.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
import test_service  # noqa: E402
from test_service import Service, batch, run_tests  # noqa: E402


def log_of(svc, token, jid):
    req = urllib.request.Request(svc.url + "/v1/jobs/%d/log" % jid,
                                 headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def ms(iso):
    """ISO 8601 UTC ("...Z") to epoch milliseconds."""
    import datetime
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def max_overlap(jobs):
    """The most jobs that ran at once, from their start and end times."""
    points = []
    for j in jobs:
        points += [(ms(j["start_time"]), 1), (ms(j["end_time"]), -1)]
    points.sort(key=lambda p: (p[0], p[1]))  # an end before a start at the same instant
    now = best = 0
    for _, d in points:
        now += d
        best = max(best, now)
    return best


def wait_all(svc, token, ids, timeout=60):
    return [svc.wait(token, i, timeout) for i in ids]


def test_array(svc):
    """--array 0-9:3%2: four elements (0, 3, 6, 9) with consecutive ids, each knowing its index,
    never more than two at once; a list filter by array; cancelling the whole array."""
    alice = svc.add_user("alice")
    st, first = svc.http("POST", "/v1/jobs", dict(
        batch(["sh", "-c", "echo idx=$JAZARI_ARRAY_INDEX of=$JAZARI_ARRAY_ID "
                           "slurm=$SLURM_ARRAY_TASK_ID; sleep 0.6"]),
        array="0-9:3%2"), alice)
    assert st == 201, (st, first)
    aid = first["id"]
    assert first["array"] == {"id": aid, "index": 0, "count": 4, "throttle": 2}, first
    ids = list(range(aid, aid + 4))
    done = wait_all(svc, alice, ids)
    assert all(j["state"] == "SUCCEEDED" for j in done), done
    assert [j["array"]["index"] for j in done] == [0, 3, 6, 9], done
    for j in done:
        idx = j["array"]["index"]
        assert "idx=%d of=%d slurm=%d" % (idx, aid, idx) in log_of(svc, alice, j["id"])
    assert max_overlap(done) <= 2, done
    st, lst = svc.http("GET", "/v1/jobs?array=%d" % aid, token=alice)
    assert st == 200 and [j["id"] for j in lst["jobs"]] == ids, lst
    # A throttled array's waiting elements say why.
    st, big = svc.http("POST", "/v1/jobs", dict(batch(["sleep", "30"]), array="1-5%1"), alice)
    assert st == 201, big
    svc.wait_running(alice, big["id"])
    j = svc.job(alice, big["id"] + 1)
    assert j["state"] == "PENDING" and j["reason_code"] == "array_throttle", j
    # Cancel one element, then the rest of the array.
    st, one = svc.http("POST", "/v1/jobs/%d/cancel" % (big["id"] + 4), token=alice)
    assert st == 200, one
    st, c = svc.http("POST", "/v1/arrays/%d/cancel" % big["id"], token=alice)
    assert st == 200 and c["array_id"] == big["id"], c
    assert sorted(c["cancelled"] + c["already_ended"]) == list(range(big["id"], big["id"] + 5)), c
    assert big["id"] + 4 in c["already_ended"], c
    for i in range(big["id"], big["id"] + 5):
        assert svc.wait(alice, i)["state"] == "CANCELLED"
    # Bad specifications name the field.
    for spec in ("", "5-1", "0-10%0", "a", "0-20000", "1,,2", 7):
        st, e = svc.http("POST", "/v1/jobs", dict(batch(["true"]), array=spec), alice)
        assert st in (400, 413) and e["error"]["field"] == "array", (spec, st, e)
    st, e = svc.http("POST", "/v1/arrays/%d/cancel" % (aid + 1), token=alice)
    assert st == 404, (st, e)


def test_dependencies(svc):
    """afterok runs after a success and fails, naming why, after a failure; afternotok is the
    converse; after waits for a start; afterany for any end; a dependency on an array waits for
    every element."""
    t = svc.add_user("alice")
    ok = svc.submit(t, batch(["sleep", "1"]))
    bad = svc.submit(t, batch(["sh", "-c", "sleep 1; exit 3"]))
    d_ok = svc.submit(t, dict(batch(["true"]), dependencies=[{"type": "afterok", "job": ok}]))
    d_ok_bad = svc.submit(t, dict(batch(["true"]),
                                  dependencies=[{"type": "afterok", "job": bad}]))
    d_notok = svc.submit(t, dict(batch(["true"]),
                                 dependencies=[{"type": "afternotok", "job": bad}]))
    d_notok_ok = svc.submit(t, dict(batch(["true"]),
                                    dependencies=[{"type": "afternotok", "job": ok}]))
    d_any = svc.submit(t, dict(batch(["true"]), dependencies=[
        {"type": "afterany", "job": ok}, {"type": "afterany", "job": bad}]))
    j = svc.job(t, d_ok)
    assert j["state"] == "PENDING" and j["reason_code"] == "dependency", j
    assert "job %d" % ok in j["reason"], j
    assert j["dependencies"] == [{"type": "afterok", "job": ok, "state": "waiting"}], j
    assert svc.wait(t, d_ok)["state"] == "SUCCEEDED"
    j = svc.wait(t, d_ok_bad)
    assert j["state"] == "FAILED" and "dependency never satisfied" in j["reason"], j
    assert "job %d ended FAILED (afterok)" % bad in j["reason"], j
    assert svc.wait(t, d_notok)["state"] == "SUCCEEDED"
    j = svc.wait(t, d_notok_ok)
    assert j["state"] == "FAILED" and "afternotok" in j["reason"], j
    j = svc.wait(t, d_any)
    assert j["state"] == "SUCCEEDED", j
    assert all(d["state"] == "satisfied" for d in j["dependencies"]), j
    assert ms(j["start_time"]) >= max(ms(svc.job(t, ok)["end_time"]),
                                      ms(svc.job(t, bad)["end_time"])), j
    # after: starts once the other has started, not ended.
    long = svc.submit(t, batch(["sleep", "30"]))
    d_after = svc.submit(t, dict(batch(["true"]), dependencies=[{"type": "after", "job": long}]))
    assert svc.wait(t, d_after)["state"] == "SUCCEEDED"
    assert svc.job(t, long)["state"] == "RUNNING"
    svc.http("POST", "/v1/jobs/%d/cancel" % long, token=t)
    # A whole array.
    st, arr = svc.http("POST", "/v1/jobs", dict(batch(["sleep", "0.5"]), array="0-2"), t)
    assert st == 201
    after_arr = svc.submit(t, dict(batch(["true"]),
                                   dependencies=[{"type": "afterok", "job": arr["id"]}]))
    j = svc.wait(t, after_arr)
    assert j["state"] == "SUCCEEDED", j
    ends = [ms(svc.job(t, arr["id"] + k)["end_time"]) for k in range(3)]
    assert ms(j["start_time"]) >= max(ends), (j, ends)
    # One element failing makes an afterok on the array impossible at once, naming it.
    st, arr2 = svc.http("POST", "/v1/jobs", dict(
        batch(["sh", "-c", "[ $JAZARI_ARRAY_INDEX = 1 ] && exit 1; sleep 30"]), array="0-2"), t)
    waiter = svc.submit(t, dict(batch(["true"]),
                                dependencies=[{"type": "afterok", "job": arr2["id"]}]))
    j = svc.wait(t, waiter)
    assert j["state"] == "FAILED" and "of array %d ended without success" % arr2["id"] in \
        j["reason"], j
    assert svc.job(t, arr2["id"])["state"] == "RUNNING"
    svc.http("POST", "/v1/arrays/%d/cancel" % arr2["id"], token=t)
    # Unknown, invisible or malformed dependencies name the field.
    bob = svc.add_user("bob")
    st, e = svc.http("POST", "/v1/jobs", dict(batch(["true"]), dependencies=[
        {"type": "afterok", "job": ok}, {"type": "afterok", "job": 99999}]), t)
    assert st == 400 and e["error"]["field"] == "dependencies[1].job", (st, e)
    st, e = svc.http("POST", "/v1/jobs", dict(batch(["true"]), dependencies=[
        {"type": "afterok", "job": ok}]), bob)
    assert st == 400 and e["error"]["field"] == "dependencies[0].job", (st, e)
    st, e = svc.http("POST", "/v1/jobs", dict(batch(["true"]), dependencies=[
        {"type": "before", "job": ok}]), t)
    assert st == 400 and e["error"]["field"] == "dependencies[0].type", (st, e)
    st, e = svc.http("POST", "/v1/jobs", dict(batch(["true"]), dependencies=[
        {"type": "afterok", "job": ok}] * 17), t)
    assert st in (400, 413) and e["error"]["field"] == "dependencies", (st, e)


def test_hold(svc):
    """A job submitted held waits with reason "held" until released; holding a running job is
    a 409; a hold survives a restart, and so do dependencies."""
    t = svc.add_user("alice")
    jid = svc.submit(t, dict(batch(["true"]), hold=True))
    time.sleep(0.5)
    j = svc.job(t, jid)
    assert j["state"] == "PENDING" and j["held"] and j["held_by"] == "alice", j
    assert j["reason_code"] == "held", j
    other = svc.submit(t, batch(["sleep", "30"]))
    svc.wait_running(t, other)
    st, e = svc.http("POST", "/v1/jobs/%d/hold" % other, token=t)
    assert st == 409 and e["error"]["code"] == "not_pending", (st, e)
    dep = svc.submit(t, dict(batch(["true"]), dependencies=[{"type": "afterok", "job": jid}]))
    # Both wait across a restart.
    svc.stop()
    svc.start()
    j = svc.job(t, jid)
    assert j["state"] == "PENDING" and j["held"] and j["reason_code"] == "held", j
    j = svc.job(t, dep)
    assert j["state"] == "PENDING" and j["reason_code"] == "dependency", j
    st, j = svc.http("POST", "/v1/jobs/%d/release" % jid, token=t)
    assert st == 200 and not j["held"], j
    assert svc.wait(t, jid)["state"] == "SUCCEEDED"
    j = svc.wait(t, dep)
    assert j["state"] == "SUCCEEDED" and ms(j["start_time"]) >= ms(svc.job(t, jid)["end_time"]), j
    # What an admin held, only an admin releases; a held job's dependencies are recorded as
    # they are met.
    x = svc.submit(t, batch(["sleep", "30"]))
    jid2 = svc.submit(t, dict(batch(["true"]), hold=True,
                              dependencies=[{"type": "afterany", "job": x}]))
    st, j = svc.http("POST", "/v1/jobs/%d/hold" % jid2, token=svc.admin)
    assert st == 200 and j["held"] and j["held_by"] == "admin", j
    svc.http("POST", "/v1/jobs/%d/cancel" % x, token=t)
    svc.wait(t, x)
    time.sleep(0.3)
    j = svc.job(t, jid2)
    assert j["dependencies"][0]["state"] == "satisfied" and j["reason_code"] == "held", j
    st, e = svc.http("POST", "/v1/jobs/%d/release" % jid2, token=t)
    assert st == 403 and e["error"]["field"] == "id", (st, e)
    st, j = svc.http("POST", "/v1/jobs/%d/release" % jid2, token=svc.admin)
    assert st == 200 and svc.wait(t, jid2)["state"] == "SUCCEEDED"
    # Hold then release a queued job by the CLI's routes; another user cannot.
    jid = svc.submit(t, dict(batch(["true"]), hold=True))
    bob = svc.add_user("bob")
    st, e = svc.http("POST", "/v1/jobs/%d/release" % jid, token=bob)
    assert st == 404, (st, e)
    st, _ = svc.http("POST", "/v1/jobs/%d/release" % jid, token=t)
    assert st == 200 and svc.wait(t, jid)["state"] == "SUCCEEDED"


def test_modify(svc):
    """A pending job's name, time limit, nice and class change within what the user may do."""
    t = svc.add_user("alice")
    jid = svc.submit(t, dict(batch(["true"]), hold=True, resources={"time_limit": "2h"}))
    st, j = svc.http("PATCH", "/v1/jobs/%d" % jid, {"name": "renamed", "time_limit": "1:30:00",
                                                    "nice": 600}, t)
    assert st == 200, (st, j)
    assert j["name"] == "renamed" and j["resources"]["time_limit_s"] == 5400, j
    assert j["nice"] == 600, j
    for body, field, status in (({"time_limit": "3h"}, "time_limit", 403),
                                ({"nice": -5}, "nice", 403),
                                ({"class": "nope"}, "class", 400),
                                ({"gpus": 2}, "gpus", 400),
                                ({"name": ""}, "name", 400),
                                ({"time_limit_s": 0}, "time_limit_s", 400)):
        st, e = svc.http("PATCH", "/v1/jobs/%d" % jid, body, t)
        assert st == status and e["error"]["field"] == field, (body, st, e)
    # An admin may raise a limit and a priority.
    st, j = svc.http("PATCH", "/v1/jobs/%d" % jid, {"time_limit_s": 36000, "nice": -100},
                     svc.admin)
    assert st == 200 and j["resources"]["time_limit_s"] == 36000 and j["nice"] == -100, j
    st, j = svc.http("PATCH", "/v1/jobs/%d" % jid, {"nice": -100}, svc.admin)
    assert st == 200 and j["resources"]["time_limit_s"] == 36000 and j["nice"] == -100, j
    st, ev = svc.http("GET", "/v1/jobs/%d/events" % jid, token=t)
    assert [e for e in ev["events"] if e["type"] == "modify"], ev
    # A user may raise nice again, never lower it (an admin's penalty stays).
    st, j = svc.http("PATCH", "/v1/jobs/%d" % jid, {"nice": 500}, svc.admin)
    assert st == 200 and j["nice"] == 500, j
    st, e = svc.http("PATCH", "/v1/jobs/%d" % jid, {"nice": 100}, t)
    assert st == 403 and e["error"]["field"] == "nice", (st, e)
    st, j = svc.http("PATCH", "/v1/jobs/%d" % jid, {"nice": 900}, t)
    assert st == 200 and j["nice"] == 900, j
    # A job in the scheduler keeps its place; a running one cannot change.
    run = svc.submit(t, batch(["sleep", "30"], gpus=1))
    svc.wait_running(t, run)
    st, e = svc.http("PATCH", "/v1/jobs/%d" % run, {"name": "x"}, t)
    assert st == 409 and e["error"]["code"] == "not_pending", (st, e)
    q = svc.submit(t, batch(["true"], gpus=8))
    st, j = svc.http("PATCH", "/v1/jobs/%d" % q, {"time_limit": "10:00"}, t)
    assert st == 200 and j["resources"]["time_limit_s"] == 600, j
    assert j["state"] == "PENDING" and j["reason_code"] in ("resources", "new"), j
    svc.http("POST", "/v1/jobs/%d/cancel" % run, token=t)
    assert svc.wait(t, q)["state"] == "SUCCEEDED"
    # The change survives a restart.
    svc.stop()
    svc.start()
    j = svc.job(t, jid)
    assert j["name"] == "renamed" and j["nice"] == 900, j
    assert j["resources"]["time_limit_s"] == 36000, j


def test_history(svc):
    """Finished jobs with wait, run time and GPU-hours; since/until select by end time."""
    t = svc.add_user("alice")
    a = svc.submit(t, batch(["sleep", "1"], gpus=2))
    b = svc.submit(t, batch(["sh", "-c", "exit 4"]))
    ja, jb = svc.wait(t, a), svc.wait(t, b)
    assert ja["run_s"] >= 1 and ja["wait_s"] >= 0, ja
    assert 2 * 1 / 3600 * 0.9 <= ja["gpu_hours"] < 2 * 10 / 3600, ja
    assert jb["exit_code"] == 4 and jb["gpu_hours"] == 0, jb
    st, lst = svc.http("GET", "/v1/jobs?state=SUCCEEDED,FAILED&since=%d" % (
        ms(ja["submit_time"]) // 1000 - 5), token=t)
    assert st == 200 and {j["id"] for j in lst["jobs"]} == {a, b}, lst
    st, lst = svc.http("GET", "/v1/jobs?until=2000-01-01", token=t)
    assert st == 200 and lst["jobs"] == [], lst
    st, lst = svc.http("GET", "/v1/jobs?since=" + ja["end_time"], token=t)
    assert st == 200 and a in {j["id"] for j in lst["jobs"]}, lst
    for q in ("since=yesterday", "until=2026-13-01", "scope=everyone", "array=x"):
        st, e = svc.http("GET", "/v1/jobs?" + q, token=t)
        assert st == 400 and e["error"]["field"] == q.split("=")[0], (q, st, e)


def test_everyone(svc):
    """scope=all: everyone's pending and running jobs, reduced for others' (no parameters), and
    anonymised for other tenants when hide_other_tenants is set (here, after a reload)."""
    alice = svc.add_user("alice", tenant="physics")
    bob = svc.add_user("bob", tenant="physics")
    carol = svc.add_user("carol", tenant="hospital")
    ab = svc.submit(alice, dict(batch(["sleep", "30"]), name="alice-run"))
    ab2 = svc.submit(alice, dict(batch(["true"]), name="alice-held", hold=True))
    cb = svc.submit(carol, dict(batch(["true"]), name="carol-held", hold=True))
    done = svc.submit(carol, batch(["true"]))
    svc.wait(carol, done)
    st, lst = svc.http("GET", "/v1/jobs?scope=all", token=bob)
    assert st == 200, lst
    seen = {j["id"]: j for j in lst["jobs"]}
    assert set(seen) == {ab, ab2, cb}, seen  # not carol's finished job
    assert seen[ab]["user"] == "alice" and seen[ab]["name"] == "alice-run", seen
    assert seen[ab]["reduced"] and "params" not in seen[ab], seen
    assert seen[cb]["tenant"] == "hospital" and seen[cb]["reason_code"] == "held", seen
    # Still only their own in full, and no one else's by id.
    st, _ = svc.http("GET", "/v1/jobs/%d" % ab, token=bob)
    assert st == 404
    st, mine = svc.http("GET", "/v1/jobs", token=bob)
    assert mine["jobs"] == [], mine
    # Anonymised for other tenants.
    path = os.path.join(svc.state, "config.json")
    with open(path, "w") as f:
        f.write('{"hide_other_tenants": true}')
    svc.stop()
    svc.extra = [a for a in svc.extra if a != "--config" and a != path] + ["--config", path]
    svc.start()
    st, lst = svc.http("GET", "/v1/jobs?scope=all", token=bob)
    seen = {j["id"]: j for j in lst["jobs"]}
    assert seen[ab2]["user"] == "alice", seen  # same tenant
    assert seen[cb]["user"] is None and seen[cb]["tenant"] is None, seen
    assert seen[cb]["name"] is None, seen
    st, lst = svc.http("GET", "/v1/jobs?scope=all&tenant=hospital", token=bob)
    assert lst["jobs"] == [], lst  # a filter does not tell whose they are
    # The nodes are everyone's to see.
    st, nodes = svc.http("GET", "/v1/nodes", token=bob)
    assert st == 200 and nodes["nodes"], nodes


def test_cli(svc):
    """The CLI's workflow commands: submit --array/--after*/--hold/--nice, hold, release,
    modify, cancel of an array, history."""
    t = svc.add_user("alice")
    rc, out, err = svc.cli("submit", "--array", "0-3%2", "--", "sh", "-c",
                           "echo $JAZARI_ARRAY_INDEX", token=t)
    assert rc == 0, (rc, out, err)
    aid = int(out.split()[-1])
    for k in range(4):
        assert svc.wait(t, aid + k)["state"] == "SUCCEEDED"
    # A held array is one line in the queue, an element each with --expand; cancelled by
    # element (ARRAY_INDEX) and as a whole (ARRAY_*).
    rc, out, err = svc.cli("submit", "--array", "5-8", "--hold", "--", "true", token=t)
    assert rc == 0, (rc, out, err)
    held = int(out.split()[-1])
    rc, out, err = svc.cli("queue", token=t)
    assert rc == 0 and "%d_[5-8]" % held in out, (rc, out, err)
    rc, out, err = svc.cli("queue", "--expand", token=t)
    assert rc == 0 and all("%d_%d" % (held, i) in out for i in range(5, 9)), (rc, out, err)
    rc, out, err = svc.cli("cancel", "%d_6" % held, token=t)
    assert rc == 0 and "cancelled job %d" % (held + 1) in out, (rc, out, err)
    rc, out, err = svc.cli("cancel", "%d_*" % held, token=t)
    assert rc == 0 and "cancelled 3 jobs of array %d (1 had already ended)" % held in out, \
        (rc, out, err)
    rc, out, err = svc.cli("cancel", "%d_42" % held, token=t)
    assert rc != 0 and "no element 42" in err, (rc, out, err)
    rc, out, err = svc.cli("--json", "submit", "--hold", "--nice", "60", "--afterok", "1",
                           "--", "true", token=t)
    assert rc == 0, (rc, out, err)
    import json
    j = json.loads(out)
    assert j["held"] and j["nice"] == 60, j
    assert [(d["type"], d["job"]) for d in j["dependencies"]] == [("afterok", 1)], j
    jid = j["id"]
    rc, out, err = svc.cli("modify", str(jid), "-t", "30:00", "-n", "short", token=t)
    assert rc == 0, (rc, out, err)
    j = svc.job(t, jid)
    assert j["resources"]["time_limit_s"] == 1800 and j["name"] == "short", j
    rc, out, err = svc.cli("modify", str(jid), "--time-limit", "99:00:00", token=t)
    assert rc != 0 and "time_limit" in err, (rc, out, err)
    rc, out, err = svc.cli("release", str(jid), token=t)
    assert rc == 0, (rc, out, err)
    assert svc.wait(t, jid)["state"] == "SUCCEEDED"
    rc, out, err = svc.cli("hold", str(jid), token=t)
    assert rc != 0 and "pending" in err, (rc, out, err)
    rc, out, err = svc.cli("history", "--format", "csv", token=t)
    assert rc == 0 and out.splitlines()[0].startswith("id,"), (rc, out, err)
    assert str(jid) in out, out
    rc, out, err = svc.cli("--json", "history", "--state", "SUCCEEDED", token=t)
    assert rc == 0 and all(j["state"] == "SUCCEEDED" for j in json.loads(out)), out
    rc, out, err = svc.cli("history", "--since", "1h", "--until", "now", token=t)
    assert rc == 0 and out.splitlines()[0].split()[:4] == ["ID", "NAME", "USER", "STATE"], out
    rc, out, err = svc.cli("history", "--since", "yesterday-ish", token=t)
    assert rc == 2 and "not a time" in err, (rc, out, err)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    failed = run_tests(args.tests, globals(), lambda name: Service())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
