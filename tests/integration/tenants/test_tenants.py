#!/usr/bin/env python3
"""Tenants as objects and the tenant-admin role against a real jazarid (127.0.0.1, ephemeral
port, temporary state directory, an 8x T4 topology): the access matrix of the roles (a user, a
tenant-admin of tenant A, a tenant-admin of tenant B, an admin) over the tenant routes and every
job route, the event stream, tenant objects surviving a restart, quotas (overall and per GPU
model) taking effect, a reload keeping the objects' values, and the CLI (docs/tenants.md).

Usage: test_tenants.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import http.client
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
import test_service  # noqa: E402
from test_service import Service, batch, run_tests  # noqa: E402


def ok(st, j, want=200):
    assert st == want, (st, j)
    return j


def err(st, j, status, code=None, field=None):
    assert st == status, (st, j)
    e = j["error"]
    if code:
        assert e["code"] == code, j
    if field:
        assert e["field"] == field, j
    return e


class Roles:
    """alice (user of A), carol (tenant-admin of A), dora (tenant-admin of B), bob (user of B)
    and the admin, with tenant objects A and B."""

    def __init__(self, svc):
        self.svc = svc
        ok(*svc.http("POST", "/v1/admin/tenants", {"name": "A", "class": "university"},
                     svc.admin), want=201)
        ok(*svc.http("POST", "/v1/admin/tenants", {"name": "B", "class": "startup"},
                     svc.admin), want=201)
        self.alice = svc.add_user("alice", tenant="A")
        self.carol = svc.add_user("carol", tenant="A", role="tenant-admin")
        self.dora = svc.add_user("dora", tenant="B", role="tenant-admin")
        self.bob = svc.add_user("bob", tenant="B")
        self.admin = svc.admin


def test_roles(svc):
    """The role is stored, shown in whoami and lists, and changed by an admin only."""
    r = Roles(svc)
    st, me = svc.http("GET", "/v1/whoami", token=r.carol)
    assert ok(st, me)["role"] == "tenant-admin" and me["tenant"] == "A", me
    st, users = svc.http("GET", "/v1/admin/users", token=r.admin)
    roles = {u["name"]: u["role"] for u in ok(st, users)["users"]}
    assert roles["carol"] == "tenant-admin" and roles["alice"] == "user", roles
    err(*svc.http("POST", "/v1/admin/users", {"name": "x", "tenant": "A", "role": "boss"},
                  r.admin), 400, "invalid", "role")
    st, u = svc.http("POST", "/v1/admin/users/alice", {"role": "tenant-admin"}, r.admin)
    assert ok(st, u)["role"] == "tenant-admin", u
    ok(*svc.http("POST", "/v1/admin/users/alice", {"role": "user"}, r.admin))
    err(*svc.http("POST", "/v1/admin/users/alice", {"role": "admin"}, r.carol), 403)
    err(*svc.http("POST", "/v1/admin/users/admin", {"role": "user"}, r.admin), 409,
        field="role")  # the last admin
    # The role survives a restart.
    svc.stop()
    svc.start()
    st, me = svc.http("GET", "/v1/whoami", token=r.carol)
    assert ok(st, me)["role"] == "tenant-admin", me


def test_tenant_matrix(svc):
    """Every tenant route for every role: 200 for admins and the tenant's tenant-admin, 403 for
    the tenant's plain users, and for everyone else the 404 of a tenant that does not exist."""
    r = Roles(svc)
    S = svc.http
    # /v1/admin/tenants: admins only.
    for tok in (r.alice, r.carol, r.dora):
        err(*S("GET", "/v1/admin/tenants", token=tok), 403, "forbidden")
        err(*S("POST", "/v1/admin/tenants", {"name": "C", "class": "public"}, tok), 403)
        err(*S("GET", "/v1/admin/tenants/A", token=tok), 403)
        err(*S("POST", "/v1/admin/tenants/A", {"weight": 2}, tok), 403)
        err(*S("DELETE", "/v1/admin/tenants/A", token=tok), 403)
    names = [t["name"] for t in ok(*S("GET", "/v1/admin/tenants", token=r.admin))["tenants"]]
    assert names == ["A", "B"], names
    # /v1/tenants/{name}: who sees what.
    missing = S("GET", "/v1/tenants/Z", token=r.admin)
    err(*missing, 404, "not_found", "name")
    for path in ("/v1/tenants/%s", "/v1/tenants/%s/members"):
        for tok, tenant in ((r.carol, "A"), (r.dora, "B"), (r.admin, "A"), (r.admin, "B")):
            j = ok(*S("GET", path % tenant, token=tok))
            assert [m["name"] for m in j["members"]] in (["alice", "carol"], ["bob", "dora"]), j
        for tok, tenant in ((r.alice, "A"), (r.bob, "B")):
            err(*S("GET", path % tenant, token=tok), 403, "forbidden")
        for tok, tenant in ((r.carol, "B"), (r.dora, "A"), (r.alice, "B"), (r.bob, "A")):
            st, j = S("GET", path % tenant, token=tok)
            # Byte for byte the answer for a tenant that does not exist.
            st_none, j_none = S("GET", path % "Z", token=r.admin)
            assert st == st_none == 404 and \
                json.dumps(j).replace('\'%s\'' % tenant, "'Z'") == json.dumps(j_none), (j, j_none)
    j = ok(*S("GET", "/v1/tenants/A", token=r.carol))
    assert j["class"] == "university" and j["name"] == "A", j
    # Members: a tenant-admin adds users and tenant-admins to its own tenant only.
    err(*S("POST", "/v1/tenants/A/members", {"name": "erin", "unix_user": "erin"}, r.carol), 403,
        "forbidden", "unix_user")  # an admin's to give: jobs run as that account
    st, erin = S("POST", "/v1/tenants/A/members", {"name": "erin"}, r.carol)
    assert ok(st, erin, 201)["tenant"] == "A" and erin["role"] == "user", erin
    ok(*S("GET", "/v1/whoami", token=erin["token"]))
    st, fay = S("POST", "/v1/tenants/A/members", {"name": "fay", "role": "tenant-admin"}, r.carol)
    assert ok(st, fay, 201)["role"] == "tenant-admin", fay
    err(*S("POST", "/v1/tenants/A/members", {"name": "gus", "role": "admin"}, r.carol), 403,
        "forbidden", "role")
    err(*S("POST", "/v1/tenants/A/members", {"name": "gus", "role": "root"}, r.carol), 400,
        "invalid", "role")
    err(*S("POST", "/v1/tenants/A/members", {"name": "gus", "tenant": "B"}, r.carol), 400,
        "invalid", "tenant")
    err(*S("POST", "/v1/tenants/A/members", {"name": "../x"}, r.carol), 400, "invalid", "name")
    err(*S("POST", "/v1/tenants/A/members", {"name": "g" * 129}, r.carol), 400, "invalid",
        "name")
    err(*S("POST", "/v1/tenants/B/members", {"name": "gus"}, r.carol), 404, "not_found", "name")
    err(*S("POST", "/v1/tenants/A/members", {"name": "gus"}, r.alice), 403, "forbidden")
    err(*S("POST", "/v1/tenants/A/members", {"name": "bob"}, r.carol), 409, "exists")
    # A member's new token replaces its others.
    st, t = S("POST", "/v1/tenants/A/members/erin/token", {}, r.carol)
    assert ok(st, t)["revoked"] == 1, t
    err(*S("GET", "/v1/whoami", token=erin["token"]), 401)
    ok(*S("GET", "/v1/whoami", token=t["token"]))
    for tok in (r.carol, r.dora):  # another tenant's user: as a missing member, or tenant
        st, j = S("POST", "/v1/tenants/A/members/bob/token", {}, tok)
        assert st == 404, (st, j)
    err(*S("POST", "/v1/tenants/A/members/erin/token", {}, r.alice), 403)
    err(*S("DELETE", "/v1/tenants/A/members/bob", token=r.carol), 404, "not_found", "user")
    err(*S("DELETE", "/v1/tenants/A/members/erin", token=r.dora), 404, "not_found", "name")
    err(*S("DELETE", "/v1/tenants/A/members/erin", token=r.alice), 403, "forbidden")
    ok(*S("DELETE", "/v1/tenants/A/members/erin", token=r.carol))
    err(*S("GET", "/v1/whoami", token=t["token"]), 401)
    err(*S("DELETE", "/v1/tenants/A/members/erin", token=r.carol), 404, "not_found", "user")
    # An admin in a tenant is out of a tenant-admin's reach.
    svc.add_user("root2", tenant="A", role="admin")
    err(*S("DELETE", "/v1/tenants/A/members/root2", token=r.carol), 403, "forbidden", "user")
    err(*S("POST", "/v1/tenants/A/members/root2/token", {}, r.carol), 403, "forbidden", "user")
    ok(*S("DELETE", "/v1/admin/users/root2", token=r.admin))
    # The audit log names the tenant-admin.
    st, audit = S("GET", "/v1/admin/audit", token=r.admin)
    acts = [(e["who"], e["action"], e.get("target")) for e in ok(st, audit)["entries"]]
    assert ("carol", "member.add", "erin") in acts and ("carol", "member.rm", "erin") in acts, \
        acts
    # Removing a tenant object: not while it has members or jobs.
    err(*S("DELETE", "/v1/admin/tenants/B", token=r.admin), 409, "conflict", "name")
    ok(*S("DELETE", "/v1/admin/users/bob", token=r.admin))
    ok(*S("DELETE", "/v1/admin/users/dora", token=r.admin))
    ok(*S("DELETE", "/v1/admin/tenants/B", token=r.admin))
    err(*S("DELETE", "/v1/admin/tenants/B", token=r.admin), 404, "not_found", "name")


def test_unix_user(svc):
    """Only an admin maps a user to a Unix account: a tenant-admin's new member runs as the
    tenant's account, never one it names (another tenant's, say)."""
    A = svc.admin
    st, j = svc.http("POST", "/v1/admin/tenants", {"name": "physics", "class": "university"}, A)
    assert st == 201, (st, j)
    tam = svc.add_user("tam", tenant="physics", role="tenant-admin")
    st, e = svc.http("POST", "/v1/tenants/physics/members",
                     {"name": "mallory", "unix_user": "chemlab"}, tam)
    assert st == 403 and e["error"]["field"] == "unix_user", (st, e)
    st, j = svc.http("POST", "/v1/tenants/physics/members", {"name": "mallory"}, tam)
    assert st == 201, (st, j)


def test_validation(svc):
    """Every field is checked and bounded; errors are 400 naming the field."""
    A = svc.admin
    bad = [
        ({"class": "university"}, "name"),
        ({"name": "x/y", "class": "university"}, "name"),
        ({"name": "n" * 64, "class": "university"}, "name"),
        ({"name": "t"}, "class"),
        ({"name": "t", "class": "royalty"}, "class"),
        ({"name": "t", "class": "public", "weight": 0}, "weight"),
        ({"name": "t", "class": "public", "weight": 1e7}, "weight"),
        ({"name": "t", "class": "public", "weight": "2"}, "weight"),
        ({"name": "t", "class": "public", "max_gpus": -1}, "max_gpus"),
        ({"name": "t", "class": "public", "max_gpus": 1.5}, "max_gpus"),
        ({"name": "t", "class": "public", "site_quotas": [1]}, "site_quotas"),
        ({"name": "t", "class": "public", "site_quotas": {"a b": 1}}, "site_quotas"),
        ({"name": "t", "class": "public",
          "site_quotas": {"s%d" % i: 1 for i in range(257)}}, "site_quotas"),
        ({"name": "t", "class": "public", "model_quotas": {"": 1}}, "model_quotas"),
        ({"name": "t", "class": "public", "model_quotas": {"A100": "8"}}, "model_quotas"),
        ({"name": "t", "class": "public",
          "model_quotas": {"m%d" % i: 1 for i in range(257)}}, "model_quotas"),
        ({"name": "t", "class": "public", "home_site": ""}, "home_site"),
        ({"name": "t", "class": "public", "priority_class": "nope"}, "priority_class"),
        ({"name": "t", "class": "public", "colour": "red"}, "colour"),
    ]
    for body, field in bad:
        st, j = svc.http("POST", "/v1/admin/tenants", body, A)
        err(st, j, 400, None, field)
    st, t = svc.http("POST", "/v1/admin/tenants", {
        "name": "t", "class": "public", "home_site": "rabat", "weight": 2.5, "max_gpus": 4,
        "site_quotas": {"rabat": 4}, "model_quotas": {"T4": 2}, "priority_class": "normal"}, A)
    t = ok(st, t, 201)
    assert t["weight"] == 2.5 and t["site_quotas"] == {"rabat": 4} and \
        t["created_by"] == "admin", t
    err(*svc.http("POST", "/v1/admin/tenants/t", {"weight": -1}, A), 400, field="weight")
    st, t = svc.http("POST", "/v1/admin/tenants/t", {"max_gpus": None, "weight": 3}, A)
    assert "max_gpus" not in ok(st, t) and t["weight"] == 3, t
    err(*svc.http("POST", "/v1/admin/tenants", {"name": "t", "class": "public"}, A), 409,
        "exists", "name")


def test_quota(svc):
    """A tenant with max_gpus 2 and a T4 quota of 1: its second GPU waits for the model quota,
    its third for the overall one; changing the object applies at once; survives a restart."""
    A = svc.admin
    ok(*svc.http("POST", "/v1/admin/tenants", {"name": "q", "class": "startup", "max_gpus": 2,
                                               "model_quotas": {"t4": 1}}, A), want=201)
    u = svc.add_user("quinn", tenant="q")
    j1 = svc.submit(u, batch(["sleep", "60"], gpus=1))
    svc.wait_running(u, j1)
    j2 = svc.submit(u, batch(["sleep", "60"], gpus=1))
    j = svc.wait_reason(u, j2, "quota")
    assert "model t4" in j["reason"], j
    # Another tenant is not held back.
    other = svc.add_user("otto", tenant="other")
    o1 = svc.submit(other, batch(["true"], gpus=4))
    assert svc.wait(other, o1)["state"] == "SUCCEEDED"
    # The object survives a restart (the running job is recovered or requeued: either way
    # the model quota still holds the second one back).
    ok(*svc.http("POST", "/v1/admin/tenants/q", {"model_quotas": {"t4": 2}}, A))
    svc.wait_running(u, j2)
    j3 = svc.submit(u, batch(["sleep", "60"], gpus=1))
    j = svc.wait_reason(u, j3, "quota")
    assert "quota of 2 GPUs" in j["reason"] and "model" not in j["reason"], j
    svc.stop()
    svc.start()
    st, t = svc.http("GET", "/v1/admin/tenants/q", token=A)
    assert ok(st, t)["max_gpus"] == 2 and t["model_quotas"] == {"t4": 2}, t
    assert [m["name"] for m in t["members"]] == ["quinn"], t
    for jid in (j1, j2, j3):
        svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=u)


def test_reload(svc):
    """A reload replaces the scheduler's tenants from the file: the objects go over them again
    (the file says max_gpus 8, the object 1)."""
    config = os.path.join(svc.state, "config.json")
    with open(config, "w") as f:
        json.dump({"scheduler": {"tenants": [{"name": "r", "max_gpus": 8}]}}, f)
    svc.stop()
    svc.extra += ["--config", config]
    svc.start()
    A = svc.admin
    ok(*svc.http("POST", "/v1/admin/tenants", {"name": "r", "class": "public", "max_gpus": 1},
                 A), want=201)
    u = svc.add_user("rita", tenant="r")
    j1 = svc.submit(u, batch(["sleep", "60"], gpus=1))
    svc.wait_running(u, j1)
    with open(config, "w") as f:
        json.dump({"scheduler": {"half_life": "2d",
                                 "tenants": [{"name": "r", "max_gpus": 8, "weight": 2}]}}, f)
    st, rep = svc.http("POST", "/v1/admin/reload", token=A)
    assert ok(st, rep)["scheduler"] is True, rep
    j2 = svc.submit(u, batch(["sleep", "60"], gpus=1))
    svc.wait_reason(u, j2, "quota")
    time.sleep(0.5)
    assert svc.job(u, j2)["state"] == "PENDING", svc.job(u, j2)
    # Cleared, the file's value applies.
    ok(*svc.http("POST", "/v1/admin/tenants/r", {"max_gpus": None}, A))
    svc.wait_running(u, j2)
    for jid in (j1, j2):
        svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=u)


def job_routes(svc, jid, arr):
    """(method, path, body) of every job route on job jid (arr: an array's id)."""
    return [("GET", "/v1/jobs/%d" % jid, None),
            ("GET", "/v1/jobs/%d/log" % jid, None),
            ("GET", "/v1/jobs/%d/events" % jid, None),
            ("GET", "/v1/jobs/%d/artifacts" % jid, None),
            ("PATCH", "/v1/jobs/%d" % jid, {"nice": 5}),
            ("POST", "/v1/jobs/%d/hold" % jid, {}),
            ("POST", "/v1/jobs/%d/release" % jid, {}),
            ("POST", "/v1/arrays/%d/cancel" % arr, {}),
            ("POST", "/v1/jobs/%d/cancel" % jid, {})]


def read_events(svc, token, out, stop):
    """Collects the jobs of the events of GET /v1/events into out until stop is set."""
    c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=1)
    c.request("GET", "/v1/events", headers={"Authorization": "Bearer " + token})
    r = c.getresponse()
    assert r.status == 200, r.status
    while not stop.is_set():
        try:
            line = r.fp.readline()
        except OSError:
            continue
        if not line:
            break
        if line.startswith(b"data: "):
            out.append(json.loads(line[6:])["job"])
    c.close()


def test_job_matrix(svc):
    """Every job route: its owner, its tenant's tenant-admin and admins act (200); the other
    tenant's tenant-admin and users get the 404 of a missing job; lists and the event stream
    hold the tenant's jobs for its tenant-admin and never another tenant's."""
    r = Roles(svc)
    S = svc.http
    streams = {}
    stop = threading.Event()
    threads = []
    for who, tok in (("carol", r.carol), ("dora", r.dora), ("alice", r.alice)):
        streams[who] = []
        t = threading.Thread(target=read_events, args=(svc, tok, streams[who], stop),
                             daemon=True)
        t.start()
        threads.append(t)
    time.sleep(0.3)
    done = svc.submit(r.alice, batch(["sh", "-c", 'echo hi; echo 42 > "$JAZARI_OUTPUT_DIR/r"']))
    assert svc.wait(r.alice, done)["state"] == "SUCCEEDED"
    b_job = svc.submit(r.bob, batch(["true"]))
    assert svc.wait(r.bob, b_job)["state"] == "SUCCEEDED"
    # Lists: carol sees alice's jobs in full, dora does not see them.
    ids = [j["id"] for j in ok(*S("GET", "/v1/jobs", token=r.carol))["jobs"]]
    assert done in ids and b_job not in ids, ids
    ids = [j["id"] for j in ok(*S("GET", "/v1/jobs?user=alice", token=r.carol))["jobs"]]
    assert ids == [done], ids
    ids = [j["id"] for j in ok(*S("GET", "/v1/jobs?user=alice", token=r.dora))["jobs"]]
    assert ids == [], ids
    ids = [j["id"] for j in ok(*S("GET", "/v1/jobs", token=r.alice))["jobs"]]
    assert ids == [done], ids
    # Every job route, on a held array element of alice's.
    for actor in ("admin", "carol", "alice"):
        # Released, it starts: a job that outlives the routes, so that the cancels end it.
        st, arr = S("POST", "/v1/jobs", dict(batch(["sleep", "60"]), array="0-1", hold=True),
                    r.alice)
        first = ok(st, arr, 201)["id"]
        for m, path, body in job_routes(svc, first, first):
            for tok in (r.dora, r.bob):
                st, j = S(m, path, body, tok)
                assert st == 404 and j["error"]["code"] == "not_found", (m, path, st, j)
            tok = {"admin": r.admin, "carol": r.carol, "alice": r.alice}[actor]
            st, j = S(m, path, body, tok)
            if m == "POST" and path.endswith("/cancel") and "/jobs/" in path:
                assert st in (200, 409), (actor, m, path, st, j)  # the array cancel ended it
            else:
                assert st == 200, (actor, m, path, st, j)
        assert svc.wait(r.alice, first)["state"] == "CANCELLED"
        assert svc.wait(r.alice, first + 1)["state"] == "CANCELLED"
    # The log and artifacts of the finished job.
    for tok in (r.carol, r.admin):
        assert "hi" in S("GET", "/v1/jobs/%d/log" % done, token=tok)[1]
        ok(*S("GET", "/v1/jobs/%d/artifacts/r" % done, token=tok))
    for tok in (r.dora, r.bob):
        err(*S("GET", "/v1/jobs/%d/artifacts/r" % done, token=tok), 404, "not_found")
    # A cancel by the tenant-admin is recorded as its.
    running = svc.submit(r.alice, batch(["sleep", "60"]))
    svc.wait_running(r.alice, running)
    err(*S("POST", "/v1/jobs/%d/cancel" % running, {}, r.dora), 404, "not_found")
    ok(*S("POST", "/v1/jobs/%d/cancel" % running, {}, r.carol))
    assert svc.wait(r.alice, running)["cancelled_by"] == "carol"
    # Events: carol's stream has alice's jobs, dora's only bob's, alice's only her own.
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    assert done in streams["carol"] and b_job not in streams["carol"], streams
    assert b_job in streams["dora"] and done not in streams["dora"], streams
    assert done in streams["alice"] and b_job not in streams["alice"], streams


def test_cli(svc):
    """jazari admin tenant add|set|show|list|rm and jazari tenant show|members|add-member|
    rm-member|new-token."""
    rc, out, e = svc.cli("admin", "tenant", "add", "lab", "--class", "institute", "--site",
                         "rabat", "--weight", "2", "--max-gpus", "4", "--site-quota", "rabat=4",
                         "--model-quota", "A100=2", "--model-quota", "T4=1", "--priority-class",
                         "normal")
    assert rc == 0 and "institute" in out and "A100=2" in out, (rc, out, e)
    rc, out, e = svc.cli("admin", "tenant", "add", "lab2")
    assert rc == 2 and "--class" in e, (rc, out, e)
    rc, out, e = svc.cli("admin", "tenant", "add", "lab2", "--class", "public", "--weight", "0")
    assert rc == 2 and "--weight" in e, (rc, out, e)
    rc, out, e = svc.cli("admin", "tenant", "add", "lab2", "--class", "public",
                         "--site-quota", "rabat")
    assert rc == 2 and "NAME=GPUS" in e, (rc, out, e)
    rc, out, e = svc.cli("admin", "tenant", "set", "lab", "--max-gpus", "8")
    assert rc == 0 and "8" in out, (rc, out, e)
    rc, out, e = svc.cli("admin", "tenant", "list")
    assert rc == 0 and out.split("\n")[1].split()[:2] == ["lab", "institute"], (rc, out, e)
    rc, out, e = svc.cli("--json", "admin", "tenant", "show", "lab")
    assert rc == 0 and json.loads(out)["model_quotas"] == {"A100": 2, "T4": 1}, (rc, out, e)
    svc.add_user("lead", tenant="lab", role="tenant-admin")
    lead = svc.http("POST", "/v1/admin/tokens", {"user": "lead"}, svc.admin)[1]["token"]
    rc, out, e = svc.cli("tenant", "add-member", "stu", "--role", "user", token=lead)
    assert rc == 0 and out.strip().startswith("jz_"), (rc, out, e)
    rc, out, e = svc.cli("whoami", token=out.strip())
    assert rc == 0 and "stu" in out, (rc, out, e)
    rc, out, e = svc.cli("tenant", "add-member", "boss", "--role", "admin", token=lead)
    assert rc == 2, (rc, out, e)
    rc, out, e = svc.cli("tenant", "members", token=lead)
    assert rc == 0 and "stu" in out and "lead" in out, (rc, out, e)
    rc, out, e = svc.cli("tenant", "show", token=lead)
    assert rc == 0 and "institute" in out, (rc, out, e)
    rc, out, e = svc.cli("tenant", "new-token", "stu", token=lead)
    assert rc == 0 and out.strip().startswith("jz_"), (rc, out, e)
    rc, out, e = svc.cli("tenant", "show", "physics", token=lead)
    assert rc == 1 and "no tenant" in e, (rc, out, e)
    rc, out, e = svc.cli("tenant", "rm-member", "stu", token=lead)
    assert rc == 0, (rc, out, e)
    rc, out, e = svc.cli("admin", "tenant", "rm", "lab")
    assert rc == 1 and "member" in e, (rc, out, e)
    svc.cli("admin", "user", "rm", "lead")
    rc, out, e = svc.cli("admin", "tenant", "rm", "lab")
    assert rc == 0, (rc, out, e)
    rc, out, e = svc.cli("admin", "user", "set", "admin", "--role", "tenant-admin")
    assert rc == 1 and "last admin" in e, (rc, out, e)


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
