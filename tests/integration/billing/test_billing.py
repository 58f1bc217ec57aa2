#!/usr/bin/env python3
"""The credit ledger through a real jazarid (127.0.0.1, ephemeral port, temporary state
directory, 8x T4): prices from the configuration, a hold of the time limit when a run starts, the
use charged and the rest released when it ends, jobs that a tenant cannot cover waiting with
reason "credits" and the amount missing, nothing charged twice across kill -9, statements in
JSON, CSV and HTML, and usage reports.

Usage: test_billing.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import csv
import io
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
import test_service  # noqa: E402
from test_service import Service, batch, run_tests  # noqa: E402

# A T4 GPU-hour costs 0.5 credits (2 for any other model), startups pay the list price.
PRICES = {"prices": {"default": 2.0, "models": {"T4": 0.5}, "classes": {"startup": 1.0}}}


def buy(svc, tenant, credits, kind="purchase", **kw):
    st, j = svc.http("POST", "/v1/admin/credits",
                     dict(tenant=tenant, credits=credits, kind=kind, **kw), svc.admin)
    assert st == 201, (st, j)
    return j


def usage(svc, tenant):
    st, j = svc.http("GET", "/v1/usage?tenant=" + tenant, token=svc.admin)
    assert st == 200, (st, j)
    return j["tenants"][0]


def statement(svc, tenant, token=None, query=""):
    st, j = svc.http("GET", "/v1/tenants/%s/statement%s" % (tenant, query),
                     token=token or svc.admin)
    assert st == 200, (st, j)
    return j


def close(a, b, eps=1e-6):
    return abs(a - b) <= eps * (1 + abs(a) + abs(b))


def test_holds(svc):
    """A run holds time limit x GPUs x price of the model it runs on; at its end its use is
    charged and the hold released; the balance is what was bought less what was charged."""
    alice = svc.add_user("alice", tenant="physics")
    buy(svc, "physics", 10)
    st, prices = svc.http("GET", "/v1/prices", token=alice)
    assert st == 200 and prices["models"] == {"T4": 0.5}, prices
    jid = svc.submit(alice, dict(batch(["sleep", "2"], gpus=2), resources={
        "gpus": 2, "time_limit": "1h"}))
    svc.wait_running(alice, jid)
    u = usage(svc, "physics")
    assert close(u["held"], 0.5 * 2 * 1), u       # on T4s: 1 credit held for the hour
    assert close(u["available"], 9), u
    j = svc.wait(alice, jid)
    assert j["state"] == "SUCCEEDED", j
    u = usage(svc, "physics")
    assert u["held"] == 0, u
    assert close(u["charged"], 0.5 * j["gpu_hours"], 1e-3), (u, j)
    assert close(u["balance"], 10 - u["charged"]), u
    assert 2 * 2 / 3600 * 0.9 <= j["gpu_hours"] <= 2 * 10 / 3600, j
    s = statement(svc, "physics")
    kinds = [e["kind"] for e in s["entries"]]
    assert kinds == ["purchase", "hold", "charge", "release"], kinds
    hold = s["entries"][1]
    assert hold["ref"] == "job:%d:0" % jid and hold["who"] == "alice", hold
    assert close(s["closing_balance"], u["balance"]) and s["closing_held"] == 0, s
    # An unmetered tenant is never stopped, and its use is recorded all the same.
    bob = svc.add_user("bob", tenant="open")
    j = svc.wait(bob, svc.submit(bob, batch(["true"], gpus=1)))
    assert j["state"] == "SUCCEEDED", j
    u = usage(svc, "open")
    assert not u["metered"] and u["available"] is None and u["jobs"] == 1, u
    # Adjustments below zero need an override; bad input names the field.
    st, e = svc.http("POST", "/v1/admin/credits", {"tenant": "physics", "credits": -1000,
                                                   "kind": "adjustment"}, svc.admin)
    assert st == 400 and e["error"]["field"] == "credits", (st, e)
    for body, field in (({"tenant": "physics", "credits": 1, "kind": "gift"}, "kind"),
                        ({"tenant": "physics", "credits": -1}, "credits"),
                        ({"tenant": "physics", "credits": 1, "extra": 1}, "extra"),
                        ({"tenant": "physics"}, "credits")):
        st, e = svc.http("POST", "/v1/admin/credits", body, svc.admin)
        assert st == 400 and e["error"]["field"] == field, (body, st, e)
    buy(svc, "physics", -1000, kind="adjustment", override=True, note="write-off")
    assert usage(svc, "physics")["balance"] < 0


def test_credits_wait(svc):
    """A job its tenant cannot cover waits with reason "credits" saying how much is missing,
    and starts once credit is bought; a running job's hold counts against the next one."""
    alice = svc.add_user("alice", tenant="startup-a")
    buy(svc, "startup-a", 3)
    # 4 T4 GPUs for 1 h = 2 credits: fits; a second one does not while the first holds.
    a = svc.submit(alice, dict(batch(["sleep", "30"], gpus=4), resources={
        "gpus": 4, "time_limit": "1h", "gpu_model": "T4"}))
    svc.wait_running(alice, a)
    b = svc.submit(alice, dict(batch(["true"], gpus=4), resources={
        "gpus": 4, "time_limit": "1h", "gpu_model": "T4"}))
    time.sleep(0.5)
    j = svc.job(alice, b)
    assert j["state"] == "PENDING" and j["reason_code"] == "credits", j
    assert "needs 2.0000 credits" in j["reason"] and "1.0000 missing" in j["reason"], j
    rc, out, err = svc.cli("why", str(b), token=alice)
    assert rc == 0 and "credits" in out, (rc, out, err)
    buy(svc, "startup-a", 5)
    j = svc.wait(alice, b)
    assert j["state"] == "SUCCEEDED", j
    svc.http("POST", "/v1/jobs/%d/cancel" % a, token=alice)
    svc.wait(alice, a)
    u = usage(svc, "startup-a")
    assert u["held"] == 0 and u["balance"] <= 8, u


def test_array_credit(svc):
    """An array whose elements' holds do not fit the GPUs they are placed on (T4s, dearer than
    the default estimate) waits for credit, and its throttle is not lost to the take-back: once
    credit is bought every element runs."""
    import json
    with open(os.path.join(svc.state, "config.json"), "w") as f:
        json.dump({"prices": {"default": 1.0, "models": {"T4": 5.0}}}, f)
    st, _ = svc.http("POST", "/v1/admin/reload", token=svc.admin)
    assert st == 200
    alice = svc.add_user("alice", tenant="physics")
    buy(svc, "physics", 1)
    st, first = svc.http("POST", "/v1/jobs", dict(
        batch(["true"], gpus=1), array="0-2%1", resources={"gpus": 1, "time_limit": "30m"}),
        alice)
    assert st == 201, first
    j = svc.wait_reason(alice, first["id"], "credits")
    assert "placed on" in j["reason"], j
    buy(svc, "physics", 100)
    for k in range(3):
        assert svc.wait(alice, first["id"] + k)["state"] == "SUCCEEDED"


def test_kill9(svc):
    """kill -9 while a run holds credit: after the restart the run (lost with the embedded node)
    is charged once, for no longer than jazarid was alive, and its hold released once."""
    alice = svc.add_user("alice", tenant="physics")
    buy(svc, "physics", 100)
    jid = svc.submit(alice, dict(batch(["sleep", "60"], gpus=1), resources={
        "gpus": 1, "time_limit": "1h"}))
    svc.wait_running(alice, jid)
    started = time.time()
    time.sleep(2)
    for _ in range(20):  # batches while it runs keep STATE/alive fresh
        svc.http("GET", "/v1/jobs/%d" % jid, token=alice)
        svc.http("POST", "/v1/jobs", batch(["true"]), alice)
        time.sleep(0.05)
    killed = time.time()
    svc.kill9()
    time.sleep(1.5)
    svc.start()
    j = svc.wait(alice, jid)
    assert j["state"] == "FAILED" and "restarted" in (j["reason"] or ""), j
    for _ in range(2):  # and again: a second restart charges nothing more
        s = statement(svc, "physics")
        mine = [e for e in s["entries"] if e.get("ref") == "job:%d:0" % jid]
        assert sorted(e["kind"] for e in mine) == ["charge", "hold", "release"], s["entries"]
        charge = [e for e in mine if e["kind"] == "charge"][0]
        # charged until it was last known alive (within a second or so of the kill), not
        # for the downtime
        assert 0.4 / 3600 <= charge["gpu_hours"] <= (killed - started + 2) / 3600, charge
        assert close(s["closing_balance"], 100 - s["totals"]["charge"]), s
        assert s["closing_held"] == 0, s
        svc.stop()
        svc.start()


def test_statement(svc):
    """Statements: a month, JSON totals, CSV that parses, an HTML page with everything
    escaped; a plain member gets 403, another tenant's 404."""
    alice = svc.add_user("alice", tenant="physics")
    bob = svc.add_user("bob", tenant="chem")
    buy(svc, "physics", 7, note="<script>alert(1)</script>, \"quoted\"")
    svc.wait(alice, svc.submit(alice, batch(["true"], gpus=1)))
    month = time.strftime("%Y-%m", time.gmtime())
    s = statement(svc, "physics", query="?month=" + month)
    assert s["opening_balance"] == 0 and s["totals"]["purchase"] == 7, s
    assert s["from"].startswith(month) and s["unit"] == "credits", s
    s2 = statement(svc, "physics", query="?month=2000-01")
    assert s2["entries"] == [] and s2["opening_balance"] == 0, s2
    req = urllib.request.Request(svc.url + "/v1/tenants/physics/statement?format=csv",
                                 headers={"Authorization": "Bearer " + svc.admin})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/csv"), r.headers
        rows = list(csv.reader(io.StringIO(r.read().decode())))
    assert rows[0][:4] == ["time", "kind", "amount", "balance_change"], rows
    assert rows[1][1] == "opening_balance" and rows[-1][1] == "closing_balance", rows
    assert any(row[7] == "<script>alert(1)</script>, \"quoted\"" for row in rows), rows
    req = urllib.request.Request(svc.url + "/v1/tenants/physics/statement?format=html",
                                 headers={"Authorization": "Bearer " + svc.admin})
    with urllib.request.urlopen(req, timeout=30) as r:
        page = r.read().decode()
    assert "<script>alert" not in page and "&lt;script&gt;" in page, page
    assert "Closing balance" in page, page
    st, e = svc.http("GET", "/v1/tenants/physics/statement", token=alice)
    assert st == 403 and e["error"]["field"] == "name", (st, e)
    st, e = svc.http("GET", "/v1/tenants/physics/statement", token=bob)
    assert st == 404 and e["error"]["field"] == "name", (st, e)
    st, e2 = svc.http("GET", "/v1/tenants/nosuch/statement", token=svc.admin)
    assert st == 404 and e2["error"]["field"] == "name", (st, e2)
    for q, field in (("?month=2026-13", "month"), ("?format=pdf", "format"),
                     ("?month=2026-11&since=2026-11-01", "month"), ("?bogus=1", "bogus")):
        st, e = svc.http("GET", "/v1/tenants/physics/statement" + q, token=svc.admin)
        assert st == 400 and e["error"]["field"] == field, (q, st, e)


def test_report(svc):
    """Usage reports by tenant, user, plugin, model and site: jobs, GPU-hours, wait times."""
    alice = svc.add_user("alice", tenant="physics")
    bob = svc.add_user("bob", tenant="chem")
    for tok, g in ((alice, 2), (alice, 1), (bob, 1)):
        svc.wait(tok, svc.submit(tok, batch(["sleep", "1"], gpus=g)))
    st, r = svc.http("GET", "/v1/reports/usage?by=tenant", token=svc.admin)
    assert st == 200 and r["by"] == "tenant", r
    rows = {x["key"]: x for x in r["rows"]}
    assert rows["physics"]["jobs"] == 2 and rows["chem"]["jobs"] == 1, rows
    assert rows["physics"]["gpu_hours"] > rows["chem"]["gpu_hours"] > 0, rows
    assert rows["physics"]["wait_s"]["p95"] >= rows["physics"]["wait_s"]["p50"] >= 0, rows
    for by, key in (("model", "Tesla T4"), ("site", "default"), ("plugin", "batch"),
                    ("user", "alice")):
        st, r = svc.http("GET", "/v1/reports/usage?by=" + by, token=svc.admin)
        assert st == 200 and key in {x["key"] for x in r["rows"]}, (by, r)
    # A user sees only its own jobs; another tenant by name is refused.
    st, r = svc.http("GET", "/v1/reports/usage?by=user", token=alice)
    assert st == 200 and [x["key"] for x in r["rows"]] == ["alice"], r
    st, e = svc.http("GET", "/v1/reports/usage?tenant=chem", token=alice)
    assert st == 403 and e["error"]["field"] == "tenant", (st, e)
    st, r = svc.http("GET", "/v1/reports/usage?until=2000-01-01&since=1999-01-01",
                     token=svc.admin)
    assert st == 200 and r["rows"] == [], r
    st, e = svc.http("GET", "/v1/reports/usage?by=colour", token=svc.admin)
    assert st == 400 and e["error"]["field"] == "by", (st, e)


def test_cli(svc):
    """The CLI: admin credit add, usage, statement (JSON, CSV, HTML to a file), report usage."""
    alice = svc.add_user("alice", tenant="physics")
    rc, out, err = svc.cli("admin", "credit", "add", "physics", "12.5", "--note", "grant 42")
    assert rc == 0, (rc, out, err)
    svc.wait(alice, svc.submit(alice, batch(["true"], gpus=1)))
    rc, out, err = svc.cli("usage", "physics")
    assert rc == 0 and "physics" in out and "12.5" in out, (rc, out, err)
    rc, out, err = svc.cli("statement", "--tenant", "physics")
    assert rc == 0 and "Opening balance" in out and "purchase" in out, (rc, out, err)
    rc, out, err = svc.cli("statement", "--tenant", "physics", "--format", "csv")
    assert rc == 0 and out.splitlines()[0].startswith("time,kind,amount"), (rc, out, err)
    page = os.path.join(svc.state, "statement.html")
    rc, out, err = svc.cli("statement", "--tenant", "physics", "--format", "html", "-o", page)
    assert rc == 0 and open(page).read().startswith("<!DOCTYPE html>"), (rc, out, err)
    rc, out, err = svc.cli("report", "usage", "--by", "user")
    assert rc == 0 and "alice" in out and "GPU-H" in out, (rc, out, err)
    rc, out, err = svc.cli("report", "usage", "--by", "nothing")
    assert rc == 2 and "--by" in err, (rc, out, err)


def test_config(svc):
    """Bad prices or booking limits are refused before anything starts, naming the key; a
    reload with new prices prices the next holds."""
    import json
    import subprocess
    for bad, key in (({"prices": {"default": -1}}, "prices.default"),
                     ({"prices": {"models": {"T4": "cheap"}}}, "prices.models.T4"),
                     ({"prices": {"currency": "EUR"}}, "prices.currency"),
                     ({"booking": {"min_window_s": 0}}, "booking.min_window_s"),
                     ({"booking": {"min_window_s": 600, "max_window_s": 60}},
                      "booking.min_window_s")):
        path = os.path.join(svc.state, "bad.json")
        with open(path, "w") as f:
            json.dump(bad, f)
        r = subprocess.run([os.path.join(test_service.ARGS.build, "bin", "jazarid"), "--config",
                            path, "--state-dir", os.path.join(svc.state, "other")],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and key in r.stderr, (bad, r.returncode, r.stderr)
    alice = svc.add_user("alice", tenant="physics")
    buy(svc, "physics", 100)
    with open(os.path.join(svc.state, "config.json"), "w") as f:
        json.dump({"prices": {"default": 2.0, "models": {"T4": 4.0}}}, f)
    st, _ = svc.http("POST", "/v1/admin/reload", token=svc.admin)
    assert st == 200
    jid = svc.submit(alice, dict(batch(["sleep", "5"], gpus=1), resources={
        "gpus": 1, "time_limit": "1h"}))
    svc.wait_running(alice, jid)
    assert close(usage(svc, "physics")["held"], 4.0), usage(svc, "physics")
    svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=alice)


# A class that may preempt, for test_preempt_credit.
PREEMPT_POLICY = dict(PRICES, scheduler={
    "preempt_grace": 1, "classes": [{"name": "normal", "rank": 50},
                                    {"name": "guaranteed", "rank": 90, "can_preempt": True}]})


def test_preempt_credit(svc):
    """A preemptor whose tenant's credit ran out after it left the gate stops no one: its
    victims run on and it waits with reason "credits" (the credit was checked before the
    victims were stopped, not only at the start that would follow)."""
    alice = svc.add_user("alice", tenant="physics")  # not metered
    carol = svc.add_user("carol", tenant="hospital")
    buy(svc, "hospital", 1.5)
    keep = svc.submit(alice, batch(["sleep", "600"], gpus=4))
    victim = svc.submit(alice, dict(batch(["sleep", "600"], gpus=4), preemptible=True))
    svc.wait_running(alice, keep)
    svc.wait_running(alice, victim)
    # 8 T4 GPUs for 15 min (0.5 a GPU-hour) = 1 credit: covered now, but only one of the
    # running jobs may be stopped for it, which is not enough: it waits.
    boss = svc.submit(carol, dict(batch(["true"], gpus=8), resources={
        "gpus": 8, "time_limit": "15m", "gpu_model": "T4"}, **{"class": "guaranteed"}))
    svc.wait_reason(carol, boss, "resources")
    # The credit goes (an adjustment), then the job that may not be stopped ends: stopping the
    # victim would now free enough GPUs for a run the tenant cannot pay.
    buy(svc, "hospital", -1, kind="adjustment")
    svc.http("POST", "/v1/jobs/%d/cancel" % keep, token=alice)
    svc.wait(alice, keep)
    j = svc.wait_reason(carol, boss, "credits")
    assert "needs 1.0000 credits" in j["reason"] and "0.5000 missing" in j["reason"], j
    time.sleep(2.5)  # more than the grace a preemption would have given
    v = svc.job(alice, victim)
    assert v["state"] == "RUNNING" and v.get("requeues", 0) == 0, v
    st, ev = svc.http("GET", "/v1/jobs/%d/events" % victim, token=alice)
    assert not any(e["type"] == "preempt" for e in ev["events"]), ev
    # With the credit back, the preemption happens and the preemptor runs.
    buy(svc, "hospital", 10)
    assert svc.wait(carol, boss, timeout=60)["state"] == "SUCCEEDED"
    st, ev = svc.http("GET", "/v1/jobs/%d/events" % victim, token=alice)
    assert any(e["type"] == "preempt" for e in ev["events"]), ev
    svc.http("POST", "/v1/jobs/%d/cancel" % victim, token=alice)
    svc.wait(alice, victim)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    failed = run_tests(args.tests, globals(), lambda name: Service(
        config=PREEMPT_POLICY if name == "preempt_credit" else PRICES))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
