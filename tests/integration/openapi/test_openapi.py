#!/usr/bin/env python3
"""Live answers of a real jazarid (127.0.0.1, ephemeral port, temporary state folder) checked
against docs/openapi.json: every route of server/http.c's routes[] is driven to a success and to
at least one error (400 / 401 / 403 / 404 / 405 / 409 as they apply), as a user, an admin and
without a token; each answer's status must be documented for the operation, its media type
listed, and a JSON body must match the schema of that status (objects closed: a field the
document does not describe fails, openapi_schema.py). Request bodies sent for a success are
checked against the operation's requestBody too. A documented operation this jazarid does not
route, and a documented submit field it refuses as unknown, fail the test.

Usage: test_openapi.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]
Each TEST is one of the functions named test_* below, without the prefix."""

import argparse
import http.client
import json
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(SOURCE, "tests", "unit", "openapi"))
import check_openapi  # noqa: E402  (the route table reader)
import test_service  # noqa: E402
from openapi_schema import Validator  # noqa: E402

ARGS = None


class Spec:
    """docs/openapi.json with what the live checks need: operations by path, and a record of
    which (method, path template, status) answers were seen."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        self.v = Validator(self.doc, strict=True)
        self.ops = []  # (regex, template, item)
        for tpl, item in self.doc["paths"].items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(tpl)) + "$"
            self.ops.append((re.compile(rx), tpl, item))
        # Literal paths before templated ones (/v1/admin/tokens/rotate before .../{id}).
        self.ops.sort(key=lambda o: o[1].count("{"))
        self.seen = {}  # (method, template) -> set of statuses
        self.problems = []
        self.events = 0  # Server-Sent Events checked

    def find(self, method, path):
        """(template, operation or None, path item) for path, or (None, None, None)."""
        for rx, tpl, item in self.ops:
            if rx.match(path):
                return tpl, item.get(method), item
        return None, None, None

    def schema(self, name):
        return {"$ref": "#/components/schemas/" + name}

    def problem(self, what):
        self.problems.append(what)
        print("MISMATCH " + what)

    def check_answer(self, method, url_path, status, headers, body):
        """Checks one live answer; returns the JSON body (or text) for the test to use."""
        m = method.lower()
        path = url_path.split("?", 1)[0]
        tpl, op, item = self.find(m if m != "head" else "get", path)
        ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
        shown = "%s %s -> %d" % (method, url_path, status)
        parsed = None
        if ctype == "application/json" and body:
            try:
                parsed = json.loads(body)
            except ValueError as e:
                self.problem("%s: the JSON body does not parse: %s" % (shown, e))
        if op is None:
            # An unknown path (404) or a known one with another method (405 and Allow): the
            # document's general rule, with the Error body.
            want = 405 if tpl else 404
            if status != want:
                self.problem("%s: expected %d for an undocumented %s" % (
                    shown, want, "method" if tpl else "path"))
            if tpl and not headers.get("allow"):
                self.problem("%s: a 405 needs an Allow header" % shown)
            self._body(shown, self.schema("Error"), parsed, ctype, ["application/json"])
            return parsed
        if status in (404, 405) and isinstance(parsed, dict) and \
                parsed.get("error", {}).get("message") in ("no such route",
                                                           "method not allowed here"):
            # Documented but not routed by this jazarid: Client.pending fails it, and the
            # routes[] coverage below fails an operation never answered.
            return parsed
        self.seen.setdefault((m, tpl), set()).add(status)
        responses = op.get("responses", {})
        resp = responses.get(str(status)) or responses.get("%dXX" % (status // 100)) or \
            responses.get("default")
        if resp is None:
            self.problem("%s: status %d is not documented for %s %s (documented: %s)" % (
                shown, status, m.upper(), tpl, ", ".join(sorted(responses))))
            return parsed if parsed is not None else body
        resp = self.v.resolve(resp)
        content = resp.get("content")
        if not content:
            return parsed if parsed is not None else body
        if method == "HEAD":
            return None
        media = {k.lower(): v for k, v in content.items()}
        if ctype not in media:
            self.problem("%s: Content-Type %r is not among the documented %s" % (
                shown, ctype, sorted(media)))
            return parsed if parsed is not None else body
        if ctype == "application/json":
            self._body(shown, media[ctype].get("schema", {}), parsed, ctype, [ctype])
        elif ctype == "text/event-stream":
            self._events(shown, body)
        return parsed if parsed is not None else body

    def _body(self, shown, schema, parsed, ctype, allowed):
        if ctype not in allowed:
            self.problem("%s: Content-Type %r, expected %s" % (shown, ctype, allowed))
            return
        if parsed is None:
            self.problem("%s: no JSON body" % shown)
            return
        for e in self.v.errors(schema, parsed)[:20]:
            self.problem("%s: %s" % (shown, e))

    def _events(self, shown, text):
        """Server-Sent Events: each event's data against JobStateEvent or EventReset."""
        for block in text.replace("\r\n", "\n").split("\n\n"):
            event, data = "message", []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
            if not data:
                continue
            name = {"job": "JobStateEvent", "reset": "EventReset"}.get(event)
            if not name:
                self.problem("%s: undocumented event type %r" % (shown, event))
                continue
            try:
                value = json.loads("\n".join(data))
            except ValueError as e:
                self.problem("%s: event data does not parse: %s" % (shown, e))
                continue
            self.events += 1
            for e in self.v.errors(self.schema(name), value)[:10]:
                self.problem("%s: event %s: %s" % (shown, event, e))

    def check_request(self, method, path, body):
        """A body sent for a success must be valid for the operation's requestBody."""
        tpl, op, _ = self.find(method.lower(), path.split("?", 1)[0])
        rb = op and op.get("requestBody")
        if not rb or body is None:
            return
        schema = self.v.resolve(rb)["content"]["application/json"]["schema"]
        for e in self.v.errors(schema, body)[:10]:
            self.problem("%s %s: the request body sent for a success is not valid for the "
                         "document: %s" % (method, path, e))


class Client:
    """Raw HTTP to the service, every answer checked against the document."""

    def __init__(self, svc, spec):
        self.svc, self.spec = svc, spec
        self.tokens = {None: None, "admin": svc.admin}

    def request(self, who, method, path, body=None, raw=None, expect=None, headers=None,
                stream_s=None):
        """Sends it as who (None: no token); returns (status, JSON or text). expect: a status
        or a tuple of them the test needs (a different one fails the test)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.svc.port, timeout=30)
        h = dict(headers or {})
        if self.tokens.get(who):
            h["Authorization"] = "Bearer " + self.tokens[who]
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None
                                            else None)
        if data is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if stream_s:  # read what a stream sends in stream_s seconds, then leave
            conn.sock.settimeout(stream_s)
            chunks = []
            try:
                while True:
                    c = resp.read1(65536)
                    if not c:
                        break
                    chunks.append(c)
            except OSError:
                pass
            text = b"".join(chunks)
        else:
            text = resp.read() if method != "HEAD" else b""
        conn.close()
        status = resp.status
        try:
            text = text.decode()
        except UnicodeDecodeError:
            text = ""  # a binary file: only its media type is checked
        out = self.spec.check_answer(method, path, status, hdrs, text)
        want = expect if isinstance(expect, tuple) or expect is None else (expect,)
        if want is not None and status not in want:
            raise AssertionError("%s %s as %s: %d, expected %s: %s" % (
                method, path, who or "nobody", status, "/".join(map(str, want)), text[:400]))
        if status < 300 and body is not None:
            self.spec.check_request(method, path, body)
        return status, out

    def pending(self, method, path, status, out):
        """True, with a problem recorded (the test fails), when a documented operation is not
        routed: 404 "no such route", or 405 where the path has other methods."""
        if status in (404, 405) and isinstance(out, dict) and \
                out.get("error", {}).get("code") in ("not_found", "method_not_allowed") and \
                out["error"]["message"] in ("no such route", "method not allowed here"):
            self.spec.problem("%s %s: documented, not routed" % (method, path))
            return True
        return False


def wait_state(c, who, jid, states, timeout=30):
    deadline = time.time() + timeout
    while True:
        st, j = c.request(who, "GET", "/v1/jobs/%d" % jid, expect=200)
        if j["state"] in states:
            return j
        assert time.time() < deadline, "job %d stayed %s" % (jid, j["state"])
        time.sleep(0.05)


def submit(c, who, body, expect=201):
    return c.request(who, "POST", "/v1/jobs", body, expect=expect)[1]


def test_routes(svc):
    spec = Spec(ARGS.spec or os.path.join(SOURCE, "docs", "openapi.json"))
    c = Client(svc, spec)
    A, U, U2 = "admin", "alice", "bob"
    R = c.request
    t0 = time.time()

    # --- service, dashboard, whoami, version ---------------------------------------------
    R(None, "GET", "/healthz", expect=200)
    R(None, "GET", "/healthz?verbose=1", expect=400)
    R(A, "GET", "/metrics", expect=200)
    R(None, "GET", "/metrics", expect=401)
    R(None, "GET", "/v1/version", expect=200)
    R(None, "GET", "/v1/version?x=1", expect=400)
    R(None, "GET", "/", expect=200)
    R(None, "GET", "/?utm=1", expect=400)
    R(None, "GET", "/ui/app.js", expect=200)
    R(None, "GET", "/ui/nope.js", expect=404)
    R(None, "GET", "/v1/agent", expect=200)
    R(None, "GET", "/v1/agent?x=1", expect=400)
    R(None, "GET", "/v1/nope", expect=404)
    R(A, "PUT", "/v1/jobs", body={}, expect=405)
    R(None, "GET", "/v1/whoami", expect=401)

    # --- users and tokens -----------------------------------------------------------------
    for name, tenant in (("alice", "physics"), ("bob", "startup-a"), ("carol", "physics"),
                         ("dave", "physics")):
        body = {"name": name, "tenant": tenant, "role": "user"}
        c.tokens[name] = R(A, "POST", "/v1/admin/users", body, expect=201)[1]["token"]
    R(A, "POST", "/v1/admin/users", {"name": "alice", "tenant": "x"}, expect=409)
    R(A, "POST", "/v1/admin/users", {"name": "eve", "tenant": "x", "colour": 1}, expect=400)
    R(U, "POST", "/v1/admin/users", {"name": "eve", "tenant": "x"}, expect=403)
    R(None, "POST", "/v1/admin/users", {"name": "eve", "tenant": "x"}, expect=401)
    R(A, "POST", "/v1/admin/users", raw=b"x" * (1024 * 1024 + 16), expect=413)
    R(A, "GET", "/v1/admin/users", expect=200)
    R(U, "GET", "/v1/admin/users", expect=403)
    R(A, "POST", "/v1/admin/users/alice", {"unix_user": "alice"}, expect=200)
    R(A, "POST", "/v1/admin/users/nobody-here", {"unix_user": "x"}, expect=404)
    R(A, "POST", "/v1/admin/users/alice", {"unix_user": "Bad User"}, expect=400)
    R(U, "POST", "/v1/admin/users/alice", {"unix_user": "alice"}, expect=403)
    R(U, "GET", "/v1/whoami", expect=200)
    R(A, "GET", "/v1/whoami", expect=200)
    R(U, "GET", "/v1/whoami?x=1", expect=400)
    R("carol", "POST", "/v1/whoami/token", {}, expect=201)
    R(U, "POST", "/v1/whoami/token", {"colour": 1}, expect=400)
    R(None, "POST", "/v1/whoami/token", {}, expect=401)
    R(A, "GET", "/v1/admin/tokens", expect=200)
    R(A, "GET", "/v1/admin/tokens?user=alice", expect=200)
    R(A, "GET", "/v1/admin/tokens?user=nobody-here", expect=404)
    R(U, "GET", "/v1/admin/tokens", expect=403)
    st, tok = R(A, "POST", "/v1/admin/tokens", {"user": "alice", "expires": "90d"}, expect=201)
    R(A, "POST", "/v1/admin/tokens", {"user": "nobody-here"}, expect=404)
    R(A, "POST", "/v1/admin/tokens", {"user": "alice", "colour": 1}, expect=400)
    R(U, "POST", "/v1/admin/tokens", {"user": "alice"}, expect=403)
    R(A, "DELETE", "/v1/admin/tokens/%s" % tok["id"], expect=200)
    R(A, "DELETE", "/v1/admin/tokens/tk_00000000", expect=404)
    R(U, "DELETE", "/v1/admin/tokens/tk_00000000", expect=403)
    R(A, "POST", "/v1/admin/tokens/rotate", {"user": "dave"}, expect=201)
    R(A, "POST", "/v1/admin/tokens/rotate", {"user": "nobody-here"}, expect=404)
    R(A, "POST", "/v1/admin/tokens/rotate", {}, expect=400)
    R(U, "POST", "/v1/admin/tokens/rotate", {"user": "dave"}, expect=403)
    R(A, "DELETE", "/v1/admin/users/dave", expect=200)
    R(A, "DELETE", "/v1/admin/users/dave", expect=404)
    R(U, "DELETE", "/v1/admin/users/carol", expect=403)
    R(A, "GET", "/v1/admin/audit?limit=5", expect=200)
    R(A, "GET", "/v1/admin/audit?limit=0", expect=400)
    R(U, "GET", "/v1/admin/audit", expect=403)

    # --- tenants and their members (docs/tenants.md) --------------------------------------
    R(A, "POST", "/v1/admin/tenants", {"name": "physics", "class": "university", "weight": 2,
                                       "max_gpus": 8, "site_quotas": {"default": 8},
                                       "model_quotas": {"A100": 4}}, expect=201)
    R(A, "POST", "/v1/admin/tenants", {"name": "physics", "class": "university"}, expect=409)
    R(A, "POST", "/v1/admin/tenants", {"name": "chem", "class": "nope"}, expect=400)
    R(U, "POST", "/v1/admin/tenants", {"name": "chem", "class": "public"}, expect=403)
    R(A, "POST", "/v1/admin/tenants", {"name": "chem", "class": "public"}, expect=201)
    R(A, "GET", "/v1/admin/tenants", expect=200)
    R(U, "GET", "/v1/admin/tenants", expect=403)
    R(A, "GET", "/v1/admin/tenants/physics", expect=200)
    R(A, "GET", "/v1/admin/tenants/nowhere", expect=404)
    R(A, "POST", "/v1/admin/tenants/physics", {"weight": 3, "max_gpus": None}, expect=200)
    R(A, "POST", "/v1/admin/tenants/physics", {"weight": 0}, expect=400)
    R(A, "POST", "/v1/admin/tenants/nowhere", {"weight": 1}, expect=404)
    R(A, "POST", "/v1/admin/users/carol", {"role": "tenant-admin"}, expect=200)
    R(A, "POST", "/v1/admin/users/carol", {"role": "boss"}, expect=400)
    TA = "tina"
    c.tokens[TA] = R(A, "POST", "/v1/admin/users", {"name": TA, "tenant": "physics",
                                                    "role": "tenant-admin"}, expect=201)[1]["token"]
    R(TA, "GET", "/v1/whoami", expect=200)
    R(TA, "GET", "/v1/tenants/physics", expect=200)
    R(U, "GET", "/v1/tenants/physics", expect=403)
    R(TA, "GET", "/v1/tenants/startup-a", expect=404)
    R(TA, "GET", "/v1/tenants/physics/members", expect=200)
    R(U2, "GET", "/v1/tenants/physics/members", expect=404)
    c.tokens["erin"] = R(TA, "POST", "/v1/tenants/physics/members",
                         {"name": "erin", "role": "user"}, expect=201)[1]["token"]
    R(TA, "POST", "/v1/tenants/physics/members", {"name": "root2", "role": "admin"}, expect=403)
    R(TA, "POST", "/v1/tenants/physics/members", {"name": "x", "colour": 1}, expect=400)
    R(TA, "POST", "/v1/tenants/physics/members/erin/token", {}, expect=200)
    R(TA, "POST", "/v1/tenants/physics/members/bob/token", {}, expect=404)
    R(TA, "DELETE", "/v1/tenants/physics/members/erin", expect=200)
    R(TA, "DELETE", "/v1/tenants/physics/members/erin", expect=404)
    R(A, "DELETE", "/v1/admin/tenants/physics", expect=409)
    R(A, "DELETE", "/v1/admin/tenants/chem", expect=200)
    R(A, "DELETE", "/v1/admin/tenants/chem", expect=404)

    # --- credits, usage, plugins, reload, backup -----------------------------------------
    R(A, "POST", "/v1/admin/credits", {"tenant": "startup-a", "gpu_hours": 100, "note": "trial"},
      expect=201)
    R(A, "POST", "/v1/admin/credits", {"tenant": "startup-a"}, expect=400)
    R(U, "POST", "/v1/admin/credits", {"tenant": "physics", "gpu_hours": 1}, expect=403)
    R(U, "GET", "/v1/usage", expect=200)
    R(A, "GET", "/v1/usage?tenant=startup-a", expect=200)
    R(U, "GET", "/v1/usage?tenant=startup-a", expect=(403, 200))
    R(U, "GET", "/v1/usage?tenant=a&tenant=b", expect=400)
    R(A, "POST", "/v1/admin/credits", {"tenant": "startup-a", "credits": 5, "kind": "refund"},
      expect=201)
    R(A, "POST", "/v1/admin/credits", {"tenant": "startup-a", "credits": -1e6,
                                       "kind": "adjustment"}, expect=400)
    R(U, "GET", "/v1/prices", expect=200)
    R(None, "GET", "/v1/prices", expect=401)
    R(TA, "GET", "/v1/tenants/physics/statement", expect=200)
    R(A, "GET", "/v1/tenants/startup-a/statement?month=2026-11", expect=200)
    R(A, "GET", "/v1/tenants/startup-a/statement?format=csv", expect=200)
    R(A, "GET", "/v1/tenants/startup-a/statement?format=html", expect=200)
    R(A, "GET", "/v1/tenants/startup-a/statement?month=13", expect=400)
    R(U, "GET", "/v1/tenants/physics/statement", expect=403)
    R(TA, "GET", "/v1/tenants/startup-a/statement", expect=404)
    R(U, "GET", "/v1/reports/usage", expect=200)
    R(A, "GET", "/v1/reports/usage?by=model&since=2026-01-01", expect=200)
    R(A, "GET", "/v1/reports/usage?by=colour", expect=400)
    R(U, "GET", "/v1/reports/usage?tenant=startup-a", expect=403)
    # --- booked GPU slots ---------------------------------------------------------------------
    end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    slot = {"gpus": 1, "start": "now", "end": end, "tenant": "physics"}
    rid = R(A, "POST", "/v1/reservations", slot, expect=201)[1]["id"]
    R(U, "POST", "/v1/reservations", slot, expect=403)  # a plain member books nothing
    R(A, "POST", "/v1/reservations", dict(slot, gpus=4096), expect=409)
    R(A, "POST", "/v1/reservations", dict(slot, gpus=0), expect=400)
    R(U, "GET", "/v1/reservations", expect=200)
    R(A, "GET", "/v1/reservations?tenant=physics", expect=200)
    R(U, "GET", "/v1/reservations?colour=1", expect=400)
    R(U, "GET", "/v1/reservations/%d" % rid, expect=200)
    R(U2, "GET", "/v1/reservations/%d" % rid, expect=404)  # another tenant's
    R(U, "DELETE", "/v1/reservations/%d" % rid, expect=403)
    R(A, "DELETE", "/v1/reservations/%d" % rid, expect=200)
    R(A, "DELETE", "/v1/reservations/%d" % rid, expect=409)
    R(U, "GET", "/v1/plugins", expect=200)
    R(None, "GET", "/v1/plugins", expect=401)
    R(A, "POST", "/v1/admin/reload", expect=200)
    R(U, "POST", "/v1/admin/reload", expect=403)
    R(A, "GET", "/v1/admin/backup", expect=200)
    R(U, "GET", "/v1/admin/backup", expect=403)
    R(U, "GET", "/metrics", expect=403)

    # --- jobs --------------------------------------------------------------------------------
    out = "echo hi; echo result-42 > \"$JAZARI_OUTPUT_DIR/result.txt\""
    done = submit(c, U, {"plugin": "batch", "name": "done", "params": {"argv": ["sh", "-c", out]},
                         "resources": {"cpus": 1, "time_limit": "10m"}})["id"]
    gpu = submit(c, U, {"plugin": "batch", "params": {"argv": ["true"]},
                        "resources": {"gpus": 1, "gpu_model": "Tesla T4"}})["id"]
    wait_state(c, U, done, ("SUCCEEDED",))
    wait_state(c, U, gpu, ("SUCCEEDED", "FAILED"))
    # All the local node's cores, then a job that must wait for them.
    big = submit(c, U, {"plugin": "batch", "params": {"argv": ["sleep", "60"]},
                        "resources": {"cpus": 48}})["id"]
    wait_state(c, U, big, ("RUNNING",))
    wait = submit(c, U, {"plugin": "batch", "params": {"argv": ["true"]},
                         "resources": {"cpus": 48}})["id"]
    # PENDING: its reason_code and priority are checked too.
    assert R(U, "GET", "/v1/jobs/%d" % wait, expect=200)[1]["state"] == "PENDING"
    other = submit(c, U2, {"plugin": "batch", "params": {"argv": ["true"]},
                           "resources": {"cpus": 48}})["id"]
    submit(c, U, {"plugin": "nope"}, expect=400)
    submit(c, U, {"plugin": "batch", "params": {"argv": ["true"]}, "colour": 1}, expect=400)
    submit(c, U, {"plugin": "batch", "params": {"argv": ["true"]},
                  "resources": {"gpus": 9}}, expect=400)
    R(U, "POST", "/v1/jobs", raw=b"{not json", expect=400)
    R(U, "POST", "/v1/jobs?x=1", {"plugin": "batch"}, expect=400)
    R(None, "POST", "/v1/jobs", {"plugin": "batch"}, expect=401)
    R(U, "POST", "/v1/jobs", raw=b"x" * (1024 * 1024 + 16), expect=413)
    # The workflow fields of the submission.
    new_fields = [("hold", {"hold": True}), ("nice", {"nice": 10}),
                  ("dependencies", {"dependencies": [{"type": "afterok", "job": done}]}),
                  ("notify", {"notify": {"url": "http://127.0.0.1:9/hook",
                                         "secret": "s" * 32}}),
                  ("array", {"array": "0-2%1"})]
    later = []
    for field, extra in new_fields:
        body = {"plugin": "batch", "params": {"argv": ["true"]}, "resources": {"cpus": 48}}
        body.update(extra)
        st, j = R(U, "POST", "/v1/jobs", body, expect=201)
        later.append(j["id"])
    R(U, "POST", "/v1/jobs", {"plugin": "batch", "params": {"argv": ["true"]},
                              "dependencies": [{"type": "sometime", "job": 1}]}, expect=400)

    R(U, "GET", "/v1/jobs", expect=200)
    R(U, "GET", "/v1/jobs?state=PENDING,RUNNING&limit=2&order=desc", expect=200)
    R(A, "GET", "/v1/jobs?user=alice&after=1", expect=200)
    R(A, "GET", "/v1/jobs?tenant=physics", expect=200)
    R(A, "GET", "/v1/jobs?array=1", expect=(200, 404))
    R(U, "GET", "/v1/jobs?scope=all", expect=200)
    R(U, "GET", "/v1/jobs?since=2020-01-01T00:00:00Z&until=4102444800", expect=200)
    R(U, "GET", "/v1/jobs?user=admin", expect=403)
    R(U, "GET", "/v1/jobs?state=BOGUS", expect=400)
    st, e = R(U, "GET", "/v1/jobs?stat=RUNNING", expect=400)
    assert e["error"]["field"] == "stat" and "unknown query parameter" in e["error"]["message"], e
    st, e = R(U, "GET", "/v1/jobs?limit=1&limit=2", expect=400)
    assert e["error"]["field"] == "limit", e
    R(None, "GET", "/v1/jobs", expect=401)
    for jid in (done, gpu, big, wait):
        R(U, "GET", "/v1/jobs/%d" % jid, expect=200)
    R(A, "GET", "/v1/jobs/%d" % other, expect=200)
    R(U2, "GET", "/v1/jobs/%d" % done, expect=404)
    R(U, "GET", "/v1/jobs/abc", expect=404)
    R(U, "GET", "/v1/jobs/%d?x=1" % done, expect=400)
    R(None, "GET", "/v1/jobs/%d" % done, expect=401)
    R(U, "GET", "/v1/jobs/%d/log" % done, expect=200)
    R(U, "GET", "/v1/jobs/%d/log?offset=1&follow=0" % done, expect=200)
    R(U, "GET", "/v1/jobs/%d/log?offset=x" % done, expect=400)
    R(U2, "GET", "/v1/jobs/%d/log" % done, expect=404)
    R(None, "GET", "/v1/jobs/%d/log" % done, expect=401)
    R(U, "GET", "/v1/jobs/%d/events" % done, expect=200)
    R(U2, "GET", "/v1/jobs/%d/events" % done, expect=404)
    R(None, "GET", "/v1/jobs/%d/events" % done, expect=401)
    R(U, "GET", "/v1/jobs/%d/artifacts" % done, expect=200)
    R(U2, "GET", "/v1/jobs/%d/artifacts" % done, expect=404)
    R(None, "GET", "/v1/jobs/%d/artifacts" % done, expect=401)
    R(U, "GET", "/v1/jobs/%d/artifacts/result.txt" % done, expect=200)
    R(U, "GET", "/v1/jobs/%d/artifacts/missing.bin" % done, expect=404)
    R(U, "GET", "/v1/jobs/%d/artifacts/.hidden" % done, expect=(400, 404))
    R(None, "GET", "/v1/jobs/%d/artifacts/result.txt" % done, expect=401)

    # --- hold, release, modify, arrays, events -----------------------------------------------
    st, j = R(U, "PATCH", "/v1/jobs/%d" % wait, {"nice": 100, "time_limit": "10m"})
    if not c.pending("PATCH", "/v1/jobs/{id}", st, j):
        assert st == 200, (st, j)
        R(U, "PATCH", "/v1/jobs/%d" % wait, {"colour": 1}, expect=400)
        R(U, "PATCH", "/v1/jobs/%d" % wait, {"nice": -5}, expect=(400, 403))
        R(U, "PATCH", "/v1/jobs/%d" % done, {"nice": 100}, expect=409)
        R(U2, "PATCH", "/v1/jobs/%d" % wait, {"nice": 100}, expect=404)
        R(None, "PATCH", "/v1/jobs/%d" % wait, {"nice": 100}, expect=401)
    st, j = R(U, "POST", "/v1/jobs/%d/hold" % wait)
    if not c.pending("POST", "/v1/jobs/{id}/hold", st, j):
        assert st == 200, (st, j)
        R(U, "POST", "/v1/jobs/%d/hold" % done, expect=409)
        R(U2, "POST", "/v1/jobs/%d/hold" % wait, expect=404)
        R(None, "POST", "/v1/jobs/%d/hold" % wait, expect=401)
    st, j = R(U, "POST", "/v1/jobs/%d/release" % wait)
    if not c.pending("POST", "/v1/jobs/{id}/release", st, j):
        assert st == 200, (st, j)
        R(U, "POST", "/v1/jobs/%d/release" % done, expect=409)
        R(U2, "POST", "/v1/jobs/%d/release" % wait, expect=404)
        R(None, "POST", "/v1/jobs/%d/release" % wait, expect=401)
    arr = later[-1]
    st, j = R(U, "POST", "/v1/arrays/%d/cancel" % arr)
    if not c.pending("POST", "/v1/arrays/{id}/cancel", st, j):
        assert st in (200, 404), (st, j)
        R(U2, "POST", "/v1/arrays/%d/cancel" % arr, expect=404)
        R(None, "POST", "/v1/arrays/%d/cancel" % arr, expect=401)
    # The stream from the start, while a job of the caller's changes state.
    got = []
    reader = threading.Thread(target=lambda: got.append(
        R(U, "GET", "/v1/events?last_event_id=0", stream_s=1.5)))
    reader.start()
    time.sleep(0.3)
    submit(c, U, {"plugin": "batch", "params": {"argv": ["true"]}})
    reader.join()
    st, j = got[0]
    if not c.pending("GET", "/v1/events", st, j):
        assert st == 200, (st, j)
        if not spec.events:
            spec.problem("GET /v1/events: no event arrived in 1.5 s (got %r)" % j[:200])
        R(A, "GET", "/v1/events?job=%d" % done, headers={"Last-Event-ID": "0"}, stream_s=0.5,
          expect=200)
        R(U, "GET", "/v1/events?user=admin", expect=403)
        R(U, "GET", "/v1/events?colour=1", expect=400)
        R(None, "GET", "/v1/events", expect=401)

    # --- cancel ------------------------------------------------------------------------------
    R(U2, "POST", "/v1/jobs/%d/cancel" % wait, expect=404)
    R(None, "POST", "/v1/jobs/%d/cancel" % wait, expect=401)
    for jid in [wait, big] + later:
        R(U, "POST", "/v1/jobs/%d/cancel" % jid, expect=(200, 409))
    R(A, "POST", "/v1/jobs/%d/cancel" % other, expect=(200, 409))
    R(U, "POST", "/v1/jobs/%d/cancel" % done, expect=409)

    # --- nodes ---------------------------------------------------------------------------------
    R(U, "GET", "/v1/nodes", expect=200)
    R(U, "GET", "/v1/nodes?site=default", expect=200)
    R(U, "GET", "/v1/nodes?zone=a", expect=400)
    R(None, "GET", "/v1/nodes", expect=401)
    R(A, "POST", "/v1/nodes/local/drain", {"reason": "maintenance"}, expect=200)
    R(A, "POST", "/v1/nodes/local/drain", {}, expect=400)
    R(A, "POST", "/v1/nodes/nope/drain", {"reason": "x"}, expect=404)
    R(U, "POST", "/v1/nodes/local/drain", {"reason": "x"}, expect=403)
    R(None, "POST", "/v1/nodes/local/drain", {"reason": "x"}, expect=401)
    R(A, "POST", "/v1/nodes/local/resume", {}, expect=200)
    R(A, "POST", "/v1/nodes/nope/resume", {}, expect=404)
    R(U, "POST", "/v1/nodes/local/resume", {}, expect=403)
    R(A, "POST", "/v1/nodes/local/revoke", {}, expect=403)
    R(A, "DELETE", "/v1/nodes/local", expect=403)
    R(A, "DELETE", "/v1/nodes/nope", expect=404)
    R(U, "DELETE", "/v1/nodes/nope", expect=403)
    R(A, "POST", "/v1/nodes/nope/revoke", {}, expect=404)
    R(U, "POST", "/v1/nodes/nope/revoke", {}, expect=403)
    R(A, "POST", "/v1/admin/node-tokens", {"site": "default", "ttl_s": 600}, expect=201)
    R(A, "POST", "/v1/admin/node-tokens", {"ttl_s": 0}, expect=400)
    R(U, "POST", "/v1/admin/node-tokens", {}, expect=403)
    # A joined agent, to revoke and remove (the embedded local node can be neither).
    import test_nodes
    token = R(A, "POST", "/v1/admin/node-tokens", {}, expect=201)[1]["token"]
    agent = test_nodes.Agent(svc, "gpu-a1", "llnl-pascal-2xP100-pcie.xml", token)
    agent.stop_status = None  # revoked: it may leave with any status
    try:
        deadline = time.time() + 20
        while True:
            st, j = R(A, "GET", "/v1/nodes", expect=200)
            if any(n["name"] == "gpu-a1" and n["state"] == "up" for n in j["nodes"]):
                break
            assert time.time() < deadline, ("the agent did not join", agent.read_log()[-2000:])
            time.sleep(0.1)
        R(A, "POST", "/v1/nodes/gpu-a1/revoke", {}, expect=200)
        R(A, "DELETE", "/v1/nodes/gpu-a1", expect=(200, 409))
        deadline = time.time() + 10
        while R(A, "DELETE", "/v1/nodes/gpu-a1", expect=(200, 404, 409))[0] == 409:
            assert time.time() < deadline, "the revoked node could not be removed"
            time.sleep(0.1)
    finally:
        agent.close()

    # --- coverage ------------------------------------------------------------------------------
    chk = check_openapi.Checker()
    routes = check_openapi.read_routes(os.path.join(SOURCE, "server", "http.c"), chk)
    assert not chk.errors, chk.errors
    for rt in routes:
        tpl = next((t for t in spec.doc["paths"] if check_openapi.path_key(t) == rt["key"]),
                   None)
        statuses = spec.seen.get((rt["method"], tpl), set())
        shown = "%s /%s" % (rt["method"].upper(), rt["pattern"])
        if not any(200 <= s < 300 for s in statuses):
            spec.problem("%s: no success was exercised (seen: %s)" % (shown, sorted(statuses)))
        if not any(400 <= s < 500 for s in statuses):
            spec.problem("%s: no error was exercised (seen: %s)" % (shown, sorted(statuses)))
    print("%d answers of %d operations checked in %.1fs" % (
        sum(len(s) for s in spec.seen.values()), len(spec.seen), time.time() - t0))
    assert not spec.problems, "%d mismatches with docs/openapi.json:\n  %s" % (
        len(spec.problems), "\n  ".join(spec.problems))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("--spec", help="the document to check against (default: docs/openapi.json)")
    p.add_argument("tests", nargs="+")
    global ARGS
    ARGS = args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    # The notify URL below is on 127.0.0.1, which webhooks may not reach unless allowed.
    failed = test_service.run_tests(
        args.tests, globals(),
        lambda name: test_service.Service(extra=["--webhook-allow", "127.0.0.1/32"]))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
