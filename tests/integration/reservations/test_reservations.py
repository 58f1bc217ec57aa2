#!/usr/bin/env python3
"""Booked GPU slots (`jazari reserve`) against a real jazarid (127.0.0.1, ephemeral port,
temporary state directory, one local node with 8x T4): booking, refusals naming the bookings in
the way, credit held at booking, jobs bound to a booking (its nodes, its window, its tenant),
cancellation before and after the start with its report, and bookings that survive a restart
and a configuration reload.

Usage: test_reservations.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import datetime
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
import test_service  # noqa: E402
from test_service import Service, batch, run_tests  # noqa: E402


def iso(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def users(svc):
    """A tenant-admin and a member of physics, and a user of another tenant."""
    return (svc.add_user("tam", tenant="physics", role="tenant-admin"),
            svc.add_user("alice", tenant="physics"),
            svc.add_user("bob", tenant="startup-a"))


def book(svc, token, expect=201, **body):
    body.setdefault("start", "now")
    body.setdefault("end", iso(time.time() + 3600))
    st, j = svc.http("POST", "/v1/reservations", body, token)
    assert st == expect, (st, j, body)
    return j


def error(j, code, field=None):
    e = j.get("error", {}) if isinstance(j, dict) else {}
    return e.get("code") == code and (field is None or e.get("field") == field)


def test_book(svc):
    """Who may book and see; limits; packing on the node; conflicts name the bookings."""
    tam, alice, bob = users(svc)
    r1 = book(svc, tam, gpus=4, model="T4")
    assert r1["tenant"] == "physics" and r1["name"] == "resv:%d" % r1["id"], r1
    assert r1["nodes"] == [{"node": "local", "gpus": 4}], r1
    assert r1["state"] == "active" and abs(r1["price"] - 4.0) < 0.05, r1  # 4 GPU-hours, 1 each
    st, j = svc.http("POST", "/v1/reservations", {"gpus": 1, "start": "now",
                                                  "end": iso(time.time() + 3600)}, alice)
    assert st == 403 and error(j, "forbidden", "tenant"), (st, j)
    st, j = svc.http("POST", "/v1/reservations", {"gpus": 1, "start": "now",
                                                  "end": iso(time.time() + 3600),
                                                  "tenant": "startup-a"}, tam)
    assert st == 403, (st, j)
    j = book(svc, tam, 400, gpus=1, end=iso(time.time() + 120))  # shorter than 10 minutes
    assert error(j, "out_of_range", "end"), j
    j = book(svc, tam, 400, gpus=1, start=iso(time.time() + 100 * 86400),
             end=iso(time.time() + 101 * 86400))
    assert error(j, "out_of_range", "start"), j
    j = book(svc, tam, 400, gpus=1, start="tomorrow")
    assert j["error"]["field"] == "start", j
    j = book(svc, tam, 400, gpus=1, colour=1)
    assert error(j, "invalid"), j
    j = book(svc, tam, 409, gpus=1, model="A100")
    assert error(j, "conflict", "gpus") and "0 such GPUs" in j["error"]["message"], j
    # Members read; other tenants see nothing.
    st, j = svc.http("GET", "/v1/reservations", token=alice)
    assert st == 200 and [r["id"] for r in j["reservations"]] == [r1["id"]], j
    st, j = svc.http("GET", "/v1/reservations/%d" % r1["id"], token=alice)
    assert st == 200 and j["used_gpu_hours"] == 0, j
    st, j = svc.http("GET", "/v1/reservations/%d" % r1["id"], token=bob)
    assert st == 404 and error(j, "not_found"), (st, j)
    st, j = svc.http("GET", "/v1/reservations", token=bob)
    assert st == 200 and j["reservations"] == [], j
    st, j = svc.http("GET", "/v1/reservations?tenant=physics", token=svc.admin)
    assert st == 200 and len(j["reservations"]) == 1, j
    # An admin books for startup-a: the node's other 4 GPUs.
    r2 = book(svc, svc.admin, gpus=4, tenant="startup-a")
    assert r2["tenant"] == "startup-a" and r2["nodes"][0]["gpus"] == 4, r2
    j = book(svc, tam, 409, gpus=1)
    msg = j["error"]["message"]
    assert error(j, "conflict") and "resv:%d" % r1["id"] in msg and "resv:%d" % r2["id"] in msg, j
    assert "8 such GPUs, 0 of them free" in msg, msg
    # After both windows: room again.
    later = time.time() + 2 * 3600
    r3 = book(svc, tam, gpus=8, start=iso(later), end=iso(later + 3600))
    assert r3["state"] == "booked", r3
    st, j = svc.http("GET", "/v1/reservations/x", token=tam)
    assert st == 404, (st, j)


def test_credits(svc):
    """A metered tenant's booking is held from its credit; short of it, 409 credits with the
    amount missing."""
    tam, alice, bob = users(svc)
    st, j = svc.http("POST", "/v1/admin/credits", {"tenant": "physics", "credits": 3},
                     svc.admin)
    assert st == 201, (st, j)
    j = book(svc, tam, 409, gpus=4)  # 4 credits
    assert error(j, "credits", "credits") and "1.00 missing" in j["error"]["message"], j
    st, j = svc.http("POST", "/v1/admin/credits", {"tenant": "physics", "credits": 10},
                     svc.admin)
    assert st == 201, (st, j)
    r = book(svc, tam, gpus=4)
    # 13 bought, 4 held: a booking of 10 more GPU-hours does not fit.
    j = book(svc, tam, 409, gpus=4, end=iso(time.time() + 2.5 * 3600))
    assert error(j, "credits"), j
    # Cancelled before use... it started at once: the few seconds elapsed are charged.
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r["id"], token=tam)
    assert st == 200 and j["state"] == "cancelled", (st, j)
    rep = j["report"]
    assert 0 <= rep["charged"] < 0.1 and abs(rep["charged"] + rep["released"] - 4) < 1e-6, rep


def test_jobs(svc):
    """A job with "reservation" runs on the booking's node inside its window, is refused when
    its time limit passes the window's end or it is another tenant's booking; another tenant's
    job that would run into the window waits until the booking is gone."""
    tam, alice, bob = users(svc)
    r = book(svc, tam, gpus=2, end=iso(time.time() + 1200))
    rid = r["id"]
    jid = svc.submit(alice, dict(batch(["sh", "-c", "sleep 1"], gpus=2, time_limit="5m"),
                                 reservation=rid))
    j = svc.wait(alice, jid)
    assert j["state"] == "SUCCEEDED" and j["reservation"] == "resv:%d" % rid, j
    st, j = svc.http("POST", "/v1/jobs", dict(batch(["true"], gpus=1, time_limit="1h"),
                                              reservation=rid), alice)
    assert st == 400 and j["error"]["field"] == "resources.time_limit", (st, j)
    st, j = svc.http("POST", "/v1/jobs", dict(batch(["true"], gpus=1, time_limit="1m"),
                                              reservation=rid), bob)
    assert st == 400 and j["error"]["field"] == "reservation", (st, j)
    st, j = svc.http("POST", "/v1/jobs", dict(batch(["true"], gpus=4, time_limit="1m"),
                                              reservation=rid), alice)
    assert st == 400 and j["error"]["field"] == "reservation", (st, j)  # it holds 2
    st, j = svc.http("POST", "/v1/jobs", dict(batch(["true"], time_limit="1m"),
                                              reservation=rid), alice)
    assert st == 400 and j["error"]["field"] == "reservation", (st, j)  # no GPUs
    # A booking that opens in 15 minutes: its job waits for the window.
    later = time.time() + 900
    r2 = book(svc, tam, gpus=1, start=iso(later), end=iso(later + 900))
    wait = svc.submit(alice, dict(batch(["true"], gpus=1, time_limit="5m"),
                                  reservation=r2["id"]))
    svc.wait_reason(alice, wait, "reservation")
    # bob needs all 8 GPUs for an hour: the first booking holds 2 of them now.
    big = svc.submit(bob, batch(["sleep", "1"], gpus=8, time_limit="1h"))
    svc.wait_reason(bob, big, "reservation")
    st, j = svc.http("GET", "/v1/reservations/%d" % rid, token=alice)
    assert st == 200 and j["used_gpu_hours"] > 0, j
    st, j = svc.http("DELETE", "/v1/reservations/%d" % rid, token=tam)
    assert st == 200, (st, j)
    assert j["report"]["used_gpu_hours"] > 0, j
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r2["id"], token=tam)
    assert st == 200, (st, j)
    # The job waiting for the cancelled booking could never start: it is cancelled with it.
    j = svc.wait(alice, wait)
    assert j["state"] == "CANCELLED" and j["cancelled_by"] == "tam", j
    assert svc.wait(bob, big)["state"] == "SUCCEEDED"


def test_cancel(svc):
    """Before the start nothing is charged; after it, the elapsed part; twice is 409; only a
    tenant-admin or an admin cancels."""
    tam, alice, bob = users(svc)
    later = time.time() + 3600
    r = book(svc, tam, gpus=2, start=iso(later), end=iso(later + 3600))
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r["id"], token=alice)
    assert st == 403, (st, j)
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r["id"], token=bob)
    assert st == 404, (st, j)
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r["id"], token=tam)
    assert st == 200, (st, j)
    rep = j["report"]
    assert rep["charged"] == 0 and rep["paid_gpu_hours"] == 0 and rep["booked_gpu_hours"] == 2, rep
    assert abs(rep["released"] - r["price"]) < 1e-9, rep
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r["id"], token=tam)
    assert st == 409 and error(j, "conflict"), (st, j)
    r = book(svc, tam, gpus=2, end=iso(time.time() + 600))
    time.sleep(3)
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r["id"], token=svc.admin)
    assert st == 200, (st, j)
    rep = j["report"]
    assert 0 < rep["paid_gpu_hours"] < 0.01 and rep["unused_gpu_hours"] == rep["paid_gpu_hours"], rep
    assert 0 < rep["charged"] < r["price"], rep
    st, j = svc.http("GET", "/v1/reservations", token=alice)
    assert [x["state"] for x in j["reservations"]] == ["cancelled", "cancelled"], j
    # The GPUs are free again for everyone.
    jid = svc.submit(bob, batch(["true"], gpus=8, time_limit="1h"))
    assert svc.wait(bob, jid)["state"] == "SUCCEEDED"


def test_priced(svc):
    """A booking is priced at the GPUs it holds (here T4s at 5, the default 1), whatever model
    was asked; cancelling it ends its running jobs, which it no longer pays for."""
    tam, alice, bob = users(svc)
    st, j = svc.http("POST", "/v1/admin/credits", {"tenant": "physics", "credits": 100},
                     svc.admin)
    assert st == 201, (st, j)
    r = book(svc, tam, gpus=2, end=iso(time.time() + 3600))
    assert abs(r["price_per_gpu_hour"] - 5) < 1e-9 and abs(r["price"] - 10) < 0.01, r
    jid = svc.submit(alice, dict(batch(["sleep", "60"], gpus=2, time_limit="30m"),
                                 reservation=r["name"]))
    svc.wait_running(alice, jid)
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r["id"], token=tam)
    assert st == 200, (st, j)
    j = svc.wait(alice, jid, timeout=30)
    assert j["state"] == "CANCELLED", j
    st, u = svc.http("GET", "/v1/usage?tenant=physics", token=svc.admin)
    assert u["tenants"][0]["held"] == 0, u


def test_purge(svc):
    """A booking over for longer than the retention leaves the list and the store; its ledger
    entries stay. (Here: windows from 2 s, retention 3 s, both from the configuration.)"""
    tam, alice, bob = users(svc)
    r = book(svc, tam, gpus=1, end=iso(time.time() + 2))
    deadline = time.time() + 20
    while True:
        st, j = svc.http("GET", "/v1/reservations/%d" % r["id"], token=tam)
        if st == 404:
            break
        assert st == 200 and time.time() < deadline, (st, j)
        time.sleep(0.2)
    st, s = svc.http("GET", "/v1/tenants/physics/statement", token=tam)
    assert [e["kind"] for e in s["entries"] if e.get("ref") == r["name"]] == [
        "hold", "charge", "release"], s
    svc.stop()
    svc.start()
    st, j = svc.http("GET", "/v1/reservations", token=tam)
    assert j["reservations"] == [], j


def test_restart(svc):
    """Bookings are durable: after a restart they are listed, still refuse what does not fit
    and still keep other tenants' jobs out."""
    tam, alice, bob = users(svc)
    r = book(svc, tam, gpus=6)
    svc.stop()
    svc.start()
    st, j = svc.http("GET", "/v1/reservations/%d" % r["id"], token=alice)
    assert st == 200 and j["state"] == "active" and j["nodes"] == r["nodes"], (st, j)
    j = book(svc, tam, 409, gpus=4)
    assert "resv:%d" % r["id"] in j["error"]["message"], j
    r2 = book(svc, tam, gpus=2)
    assert r2["id"] == r["id"] + 1, r2
    big = svc.submit(bob, batch(["true"], gpus=1, time_limit="2h"))
    svc.wait_reason(bob, big, "reservation")
    jid = svc.submit(alice, dict(batch(["true"], gpus=6, time_limit="5m"), reservation=r["id"]))
    assert svc.wait(alice, jid)["state"] == "SUCCEEDED"


def test_reload(svc):
    """A reload that changes the scheduler's section (and its configured reservations) keeps
    the booked ones."""
    tam, alice, bob = users(svc)
    r = book(svc, tam, gpus=8)
    far = time.time() + 30 * 86400
    cfg = {"scheduler": {"backfill_depth": 17, "reservations": [
        {"name": "maint", "tenant": "ops", "nodes": ["local"], "gpus_per_node": 2,
         "start": iso(far), "end": iso(far + 3600)}]}}
    with open(os.path.join(svc.state, "config.json"), "w") as f:
        json.dump(cfg, f)
    st, j = svc.http("POST", "/v1/admin/reload", None, svc.admin)
    assert st == 200, (st, j)
    jid = svc.submit(bob, batch(["true"], gpus=1, time_limit="5m"))
    svc.wait_reason(bob, jid, "reservation")
    # The configured reservation counts in the capacity too.
    j = book(svc, tam, 409, gpus=7, start=iso(far), end=iso(far + 3600))
    assert "configured reservation maint" in j["error"]["message"], j
    st, j = svc.http("DELETE", "/v1/reservations/%d" % r["id"], token=tam)
    assert st == 200, (st, j)
    assert svc.wait(bob, jid)["state"] == "SUCCEEDED"


def test_cli(svc):
    """jazari reserve / reservations / unreserve and submit --reservation."""
    tam, alice, bob = users(svc)
    rc, out, err = svc.cli("reserve", "--gpus", "2", "--model", "T4", "--start", "now",
                           "--duration", "30m", token=tam)
    assert rc == 0 and out.startswith("reservation 1 (resv:1): 2 GPUs of T4"), (rc, out, err)
    rc, out, err = svc.cli("reserve", "-g", "1", "--start", "+1h", "--end", "+2h", token=tam)
    assert rc == 0 and "reservation 2" in out, (rc, out, err)
    rc, out, err = svc.cli("reserve", "-g", "1", "--start", "1h", "--duration", "1h", token=tam)
    assert rc == 2 and "+DURATION" in err, (rc, out, err)
    rc, out, err = svc.cli("reserve", "-g", "100", "--start", "now", "--duration", "1h",
                           token=tam)
    assert rc == 1 and "do not fit" in err, (rc, out, err)
    rc, out, err = svc.cli("reservations", token=alice)
    assert rc == 0 and len(out.splitlines()) == 3 and "booked" in out, (rc, out, err)
    rc, out, err = svc.cli("--json", "reservations", token=alice)
    assert rc == 0 and len(json.loads(out)["reservations"]) == 2, (rc, out, err)
    rc, out, err = svc.cli("submit", "--gpus", "2", "--time", "5m", "--reservation", "1", "--",
                           "true", token=alice)
    assert rc == 0, (rc, out, err)
    assert svc.wait(alice, int(out.split()[-1]))["reservation"] == "resv:1"
    rc, out, err = svc.cli("unreserve", "2", token=tam)
    assert rc == 0 and "charged 0.00 credits" in out, (rc, out, err)
    rc, out, err = svc.cli("unreserve", "2", token=tam)
    assert rc == 1, (rc, out, err)
    rc, out, err = svc.cli("reservations", token=alice)
    assert rc == 0 and len(out.splitlines()) == 2, (rc, out, err)
    rc, out, err = svc.cli("reservations", "--all", token=alice)
    assert rc == 0 and len(out.splitlines()) == 3, (rc, out, err)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    failed = run_tests(args.tests, globals(),
                       lambda name: Service(config={} if name == "reload" else
                                            {"prices": {"default": 1, "models": {"T4": 5}}}
                                            if name == "priced" else
                                            {"booking": {"min_window_s": 1},
                                             "limits": {"retention_days": 3 / 86400}}
                                            if name == "purge" else None))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
