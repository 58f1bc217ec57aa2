#!/usr/bin/env python3
"""Access control end to end: token expiry, revocation and rotation, user removal, the audit log,
Unix accounts, the move of first-schema users to tokens with ids, and the cross-tenant access
matrix over every route of server/http.c (a route without a row in ROUTES below fails it).

Each test starts its own jazarid on 127.0.0.1 (ephemeral port, temporary state directory, an
8-GPU topology fixture) and drives it through raw HTTP and the jazari CLI.

Usage: test_access.py --build BUILD_DIR --fixtures FIXTURES_DIR --source SOURCE_DIR TEST [TEST...]
Each TEST is one of the functions named test_* below, without the prefix."""

import argparse
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# The harness's checks of daemons (exit status, sanitizer reports, kept folders) are shared.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
import test_service  # noqa: E402

ARGS = None
BAD_TOKEN = "jz_" + "0" * 48
# As root, jazarid would run as the 'jazari' account with a confined local node; these tests
# are about the API and keep everything in one process.
AS_ROOT = ["--user", "root"] if os.geteuid() == 0 else []

# Every route of server/http.c's routes[] with what the matrix expects of it:
#   public  no token needed
#   user    any user (the check is only that a token is needed)
#   job     one job of its owner: others get the 404 of a missing job, admins and the owner 200
#   admin   admins only: other users get 403
#   tenant  a tenant's own routes (/v1/tenants/{name}/...): its tenant-admins and admins; its
#           other users 403, everyone else the 404 of a tenant that does not exist
# test_matrix parses the table in http.c and fails when a route has no row here.
ROUTES = [
    ("GET", "healthz", "public"),
    ("GET", "metrics", "monitor"),  # an admin, or the monitoring token
    ("GET", "v1/agent", "public"),
    ("GET", "", "public"),       # the dashboard's page (server/api_dashboard.c)
    ("GET", "ui/*", "public"),   # the dashboard's files
    ("POST", "v1/jobs", "user"),
    ("GET", "v1/jobs", "user"),
    ("GET", "v1/jobs/*", "job"),
    ("GET", "v1/jobs/*/log", "job"),
    ("GET", "v1/jobs/*/events", "job"),
    ("GET", "v1/jobs/*/artifacts", "job"),
    ("GET", "v1/jobs/*/artifacts/*", "job"),
    ("PATCH", "v1/jobs/*", "job"),          # on a pending job (held_job below)
    ("POST", "v1/jobs/*/hold", "job"),
    ("POST", "v1/jobs/*/release", "job"),
    ("POST", "v1/jobs/*/cancel", "job"),
    ("POST", "v1/arrays/*/cancel", "job"),
    ("GET", "v1/events", "user"),
    ("GET", "v1/nodes", "user"),
    ("POST", "v1/nodes/*/drain", "admin"),
    ("POST", "v1/nodes/*/resume", "admin"),
    ("POST", "v1/nodes/*/revoke", "admin"),
    ("DELETE", "v1/nodes/*", "admin"),
    ("POST", "v1/admin/node-tokens", "admin"),
    ("GET", "v1/plugins", "user"),
    ("GET", "v1/whoami", "user"),
    ("POST", "v1/whoami/token", "user"),
    ("GET", "v1/usage", "user"),
    ("POST", "v1/admin/users", "admin"),
    ("GET", "v1/admin/users", "admin"),
    ("POST", "v1/admin/users/*", "admin"),
    ("DELETE", "v1/admin/users/*", "admin"),
    ("GET", "v1/admin/tokens", "admin"),
    ("POST", "v1/admin/tokens", "admin"),
    ("POST", "v1/admin/tokens/rotate", "admin"),
    ("DELETE", "v1/admin/tokens/*", "admin"),
    ("GET", "v1/admin/audit", "admin"),
    ("POST", "v1/admin/credits", "admin"),
    ("GET", "v1/prices", "user"),
    ("GET", "v1/tenants/*/statement", "tenant"),  # tenant-admins of that tenant and admins
    ("GET", "v1/reports/usage", "user"),
    # Booked GPU slots: a user's own tenant's (others' are 404); booking and cancelling need a
    # tenant-admin or an admin, checked in the handlers (tests/integration/reservations).
    ("POST", "v1/reservations", "user"),
    ("GET", "v1/reservations", "user"),
    ("GET", "v1/reservations/*", "user"),
    ("DELETE", "v1/reservations/*", "user"),
    ("GET", "v1/version", "public"),
    ("POST", "v1/admin/reload", "admin"),
    ("GET", "v1/admin/backup", "admin"),
    ("GET", "v1/admin/tenants", "admin"),
    ("POST", "v1/admin/tenants", "admin"),
    ("GET", "v1/admin/tenants/*", "admin"),
    ("POST", "v1/admin/tenants/*", "admin"),
    ("DELETE", "v1/admin/tenants/*", "admin"),
    ("GET", "v1/tenants/*", "tenant"),
    ("GET", "v1/tenants/*/members", "tenant"),
    ("POST", "v1/tenants/*/members", "tenant"),
    ("DELETE", "v1/tenants/*/members/*", "tenant"),
    ("POST", "v1/tenants/*/members/*/token", "tenant"),
]

# Bodies for the "any user may" probe of user routes that change something: each is refused
# after the token check (400), so that the probe changes nothing.
PROBE_BODIES = {
    ("POST", "v1/jobs"): {},
    ("POST", "v1/whoami/token"): {"expires": "not a time"},
}


class Service:
    """One jazarid process with its own state directory. prepare(state_dir), when given, runs
    before the first start (to lay down an older database, say)."""

    def __init__(self, config=None, prepare=None, topology="aws-g4dn-metal-8xT4.xml",
                 extra=()):
        self.state = tempfile.mkdtemp(prefix="jazari-access-")
        test_service.FOLDERS.append(self.state)
        self.extra = list(extra)
        if config is not None:
            path = os.path.join(self.state, "config.json")
            with open(path, "w") as f:
                json.dump(config, f)
            self.extra += ["--config", path]
        if prepare:
            prepare(self.state)
        self.topology = os.path.join(ARGS.fixtures, "topologies", topology)
        self.proc = None
        self.log = None
        self.start()
        with open(os.path.join(self.state, "admin.token")) as f:
            self.admin = f.read().strip()

    def command(self, port_file):
        plugins = ":".join([os.path.join(ARGS.build, "plugins"),
                            os.path.join(ARGS.build, "test-plugins")])
        return [os.path.join(ARGS.build, "bin", "jazarid"), "--listen", "127.0.0.1:0",
                "--state-dir", self.state, "--topology", self.topology, "--plugin-dir", plugins,
                "--kill-grace", "1", "--port-file", port_file, *AS_ROOT, *self.extra]

    def start(self):
        port_file = os.path.join(self.state, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log = open(os.path.join(self.state, "jazarid.log"), "a")
        self.proc = subprocess.Popen(self.command(port_file), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("jazarid did not start:\n" + self.read_log())
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read())
        self.url = "http://127.0.0.1:%d" % self.port

    def read_log(self):
        try:
            with open(os.path.join(self.state, "jazarid.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """SIGTERM: jazarid must exit 0, and leave no sanitizer report in its log."""
        try:
            if self.proc:
                test_service.stop_process(self.proc, "jazarid")
        finally:
            self.proc = None
            if self.log:
                self.log.close()
                self.log = None
        test_service.check_sanitizers(self.state)

    def close(self):
        """stop(); the state folder is removed or kept by run_tests once the test is over."""
        self.stop()

    # --- raw HTTP ---------------------------------------------------------------------------
    def http(self, method, path, body=None, token=None, authorization=None):
        """Returns (status, parsed JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        elif authorization:
            req.add_header("Authorization", authorization)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, text = r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def add_user(self, name, tenant="A", role="user", **extra):
        status, j = self.http("POST", "/v1/admin/users",
                              dict(name=name, tenant=tenant, role=role, **extra), self.admin)
        assert status == 201, (status, j)
        return j["token"]

    def whoami(self, token):
        return self.http("GET", "/v1/whoami", token=token)

    def submit(self, token, argv):
        st, j = self.http("POST", "/v1/jobs", {"plugin": "batch", "params": {"argv": argv},
                                               "resources": {"gpus": 0}}, token)
        assert st == 201, (st, j)
        return j["id"]

    def wait(self, token, job_id, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st, j = self.http("GET", "/v1/jobs/%d" % job_id, token=token)
            assert st == 200, (st, j)
            if j["state"] not in ("PENDING", "RUNNING"):
                return j
            time.sleep(0.05)
        raise AssertionError("job %d did not end" % job_id)

    def wait_running(self, token, job_id, timeout=20):
        deadline = time.time() + timeout
        while True:
            st, j = self.http("GET", "/v1/jobs/%d" % job_id, token=token)
            if j["state"] == "RUNNING":
                return
            assert j["state"] == "PENDING" and time.time() < deadline, j
            time.sleep(0.02)

    # --- the CLI ----------------------------------------------------------------------------
    def cli(self, *args, token=None, timeout=60):
        env = dict(os.environ, JAZARI_URL=self.url, JAZARI_TOKEN=token or self.admin,
                   JAZARI_CONFIG="/nonexistent")
        r = subprocess.run([os.path.join(ARGS.build, "bin", "jazari"), *args], env=env,
                           capture_output=True, text=True, timeout=timeout)
        assert not any(m in r.stderr for m in test_service.SANITIZER_MARKS), r.stderr
        return r.returncode, r.stdout, r.stderr


def is_error(body, code=None, field=None):
    """True when body is the JSON error object (of code and field when given)."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    e = body["error"]
    if not isinstance(e.get("message"), str) or "code" not in e or "field" not in e:
        return False
    return (code is None or e["code"] == code) and (field is None or e["field"] == field)


def tokens_of(svc, user):
    st, j = svc.http("GET", "/v1/admin/tokens?user=" + user, token=svc.admin)
    assert st == 200, (st, j)
    return j["tokens"]


# ------------------------------------------------------------------------------------------
def test_expiry(svc):
    """A token made with --expires 2s works, then is refused with a message that says it
    expired; past and unreadable expiries are refused naming the field."""
    rc, out, err = svc.cli("admin", "user", "add", "dave", "--tenant", "A", "--expires", "2s")
    assert rc == 0 and "expires" in err, (rc, out, err)
    dave = out.strip()
    made = time.time()
    st, j = svc.whoami(dave)
    assert st == 200 and j["name"] == "dave", (st, j)
    [tok] = tokens_of(svc, "dave")
    assert tok["expires"] and not tok["expired"] and tok["last_used"], tok
    time.sleep(max(0.0, made + 2.3 - time.time()))
    st, j = svc.whoami(dave)
    assert st == 401 and is_error(j, "unauthorized", "Authorization"), (st, j)
    assert "expired" in j["error"]["message"] and tok["id"] in j["error"]["message"], j
    rc, out, err = svc.cli("whoami", token=dave)
    assert rc == 1 and "expired" in err and "(401)" in err, (rc, out, err)
    [tok] = tokens_of(svc, "dave")
    assert tok["expired"], tok
    rc, out, err = svc.cli("admin", "token", "list", "--user", "dave")
    assert rc == 0 and "expired" in out and tok["id"] in out, (rc, out, err)
    # An admin gives the user a new token, with an ISO date this time.
    day = "%d-01-01" % (time.gmtime().tm_year + 2)
    rc, out, err = svc.cli("admin", "token", "add", "--user", "dave", "--expires", day)
    assert rc == 0, (rc, out, err)
    st, j = svc.whoami(out.strip())
    assert st == 200, (st, j)
    assert any(t["expires"] == day + "T00:00:00.000Z" for t in tokens_of(svc, "dave"))
    for bad in ("2001-01-01", "yesterday", "-5m", 7):
        st, j = svc.http("POST", "/v1/admin/users",
                         {"name": "eve", "tenant": "A", "expires": bad}, svc.admin)
        assert st == 400 and is_error(j, "invalid", "expires"), (bad, st, j)
    st, j = svc.http("POST", "/v1/admin/tokens", {"user": "dave", "expires": "99999d"}, svc.admin)
    assert st == 400 and is_error(j, field="expires"), (st, j)
    rc, out, err = svc.cli("admin", "user", "add", "eve", "--tenant", "A", "--expires", "later")
    assert rc == 1 and "expires" in err and "(400)" in err, (rc, out, err)
    st, j = svc.http("GET", "/v1/admin/users", token=svc.admin)
    assert "eve" not in [u["name"] for u in j["users"]], j


def test_revoke(svc):
    """A revoked token is refused at once; the user's other token still works."""
    rc, out, err = svc.cli("--json", "admin", "user", "add", "erin", "--tenant", "A")
    assert rc == 0, (rc, out, err)
    first = json.loads(out)
    assert first["token_id"].startswith("tk_") and first["expires"] is None, first
    rc, out, err = svc.cli("admin", "token", "add", "--user", "erin")
    assert rc == 0 and "does not expire" in err, (rc, out, err)
    second = out.strip()
    assert re.match(r"^jz_[0-9a-f]{48}$", second), out
    ids = [t["id"] for t in tokens_of(svc, "erin")]
    assert len(ids) == 2 and first["token_id"] in ids, ids
    assert svc.whoami(first["token"])[0] == 200
    rc, out, err = svc.cli("admin", "token", "revoke", first["token_id"])
    assert rc == 0 and "revoked " + first["token_id"] in out and "erin" in out, (rc, out, err)
    st, j = svc.whoami(first["token"])
    assert st == 401 and is_error(j, "unauthorized"), (st, j)
    st, j = svc.whoami(second)
    assert st == 200 and j["name"] == "erin", (st, j)
    st, j = svc.http("DELETE", "/v1/admin/tokens/" + first["token_id"], token=svc.admin)
    assert st == 404 and is_error(j, "not_found", "id"), (st, j)
    rc, out, err = svc.cli("admin", "token", "revoke", second)
    assert rc == 2, (rc, out, err)  # a token, not an id: refused before anything is sent
    st, j = svc.http("GET", "/v1/admin/tokens?user=nobody", token=svc.admin)
    assert st == 404 and is_error(j, field="user"), (st, j)
    # At most 32 tokens a user.
    for _ in range(31):
        st, j = svc.http("POST", "/v1/admin/tokens", {"user": "erin"}, svc.admin)
        assert st == 201, (st, j)
    st, j = svc.http("POST", "/v1/admin/tokens", {"user": "erin"}, svc.admin)
    assert st == 409 and is_error(j, "limit", "user") and "32" in j["error"]["message"], (st, j)
    st, j = svc.http("POST", "/v1/admin/tokens", {"user": "erin", "colour": "red"}, svc.admin)
    assert st == 400 and is_error(j, "invalid", "colour"), (st, j)
    # Revocation survives a restart, and so does the time a token was last used (stored at
    # shutdown, not at every request).
    used = {t["id"]: t["last_used"] for t in tokens_of(svc, "erin")}
    second_id = [i for i in ids if i != first["token_id"]][0]
    assert used[second_id], used
    svc.stop()
    svc.start()
    assert {t["id"]: t["last_used"] for t in tokens_of(svc, "erin")} == used
    assert svc.whoami(first["token"])[0] == 401
    assert svc.whoami(second)[0] == 200


def test_rotate(svc):
    """Rotation: the old tokens are refused and the new one works, for a user, for the admin
    (whose admin.token is rewritten) and for a user rotating their own token."""
    frank1 = svc.add_user("frank")
    st, j = svc.http("POST", "/v1/admin/tokens", {"user": "frank"}, svc.admin)
    frank2 = j["token"]
    rc, out, err = svc.cli("admin", "token", "rotate", "--user", "frank")
    assert rc == 0 and "2 other tokens revoked" in err, (rc, out, err)
    frank3 = out.strip()
    assert svc.whoami(frank1)[0] == 401 and svc.whoami(frank2)[0] == 401
    assert svc.whoami(frank3)[0] == 200
    assert len(tokens_of(svc, "frank")) == 1

    # The admin rotates its own token: admin.token holds the new one, the old one is refused.
    old = svc.admin
    rc, out, err = svc.cli("admin", "token", "rotate", "--user", "admin", token=old)
    assert rc == 0, (rc, out, err)
    new = out.strip()
    path = os.path.join(svc.state, "admin.token")
    with open(path) as f:
        assert f.read().strip() == new
    assert os.stat(path).st_mode & 0o777 == 0o600
    st, j = svc.whoami(old)
    assert st == 401 and is_error(j, "unauthorized"), (st, j)
    st, j = svc.whoami(new)
    assert st == 200 and j["role"] == "admin", (st, j)
    svc.admin = new
    # The last valid token of the last admin cannot be revoked (nobody could administer).
    [tok] = tokens_of(svc, "admin")
    st, j = svc.http("DELETE", "/v1/admin/tokens/" + tok["id"], token=new)
    assert st == 409 and is_error(j, "conflict", "id"), (st, j)

    # A user rotates their own token.
    rc, out, err = svc.cli("token", "rotate", token=frank3)
    assert rc == 0 and "no longer works" in err, (rc, out, err)
    frank4 = out.strip()
    assert svc.whoami(frank3)[0] == 401 and svc.whoami(frank4)[0] == 200
    # Rotating cannot outlive the expiry an admin gave.
    st, j = svc.http("POST", "/v1/admin/tokens/rotate", {"user": "frank", "expires": "1h"},
                     svc.admin)
    assert st == 201 and j["revoked"] == 1, (st, j)
    frank5, limit = j["token"], j["expires"]
    st, j = svc.http("POST", "/v1/whoami/token", {"expires": "2h"}, frank5)
    assert st == 400 and is_error(j, "invalid", "expires"), (st, j)
    st, j = svc.http("POST", "/v1/whoami/token", {}, frank5)
    assert st == 201 and j["expires"] == limit and j["user"] == "frank", (st, j, limit)
    st, j = svc.http("POST", "/v1/whoami/token", {"expires": "10m"}, j["token"])
    assert st == 201 and j["expires"] < limit, (st, j)
    # A rotated admin token survives a restart, and admin.token is not replaced by a new one.
    svc.stop()
    svc.start()
    with open(path) as f:
        assert f.read().strip() == new
    assert svc.whoami(new)[0] == 200 and svc.whoami(old)[0] == 401


def test_user_rm(svc):
    """A removed user's tokens are refused at once, its jobs stay; the last admin stays."""
    gina = svc.add_user("gina")
    st, j = svc.http("POST", "/v1/admin/tokens", {"user": "gina"}, svc.admin)
    gina2 = j["token"]
    job = svc.submit(gina, ["true"])
    assert svc.wait(gina, job)["state"] == "SUCCEEDED"
    rc, out, err = svc.cli("admin", "user", "rm", "gina")
    assert rc == 0 and "removed gina (2 tokens revoked)" in out, (rc, out, err)
    for t in (gina, gina2):
        st, j = svc.whoami(t)
        assert st == 401 and is_error(j, "unauthorized"), (st, j)
    st, j = svc.http("GET", "/v1/jobs/%d" % job, token=svc.admin)
    assert st == 200 and j["user"] == "gina" and j["state"] == "SUCCEEDED", (st, j)
    st, j = svc.http("GET", "/v1/admin/users", token=svc.admin)
    assert "gina" not in [u["name"] for u in j["users"]], j
    assert tokens_of(svc, "admin") and all(t["user"] != "gina" for t in
                                            svc.http("GET", "/v1/admin/tokens",
                                                     token=svc.admin)[1]["tokens"])
    st, j = svc.http("DELETE", "/v1/admin/users/gina", token=svc.admin)
    assert st == 404 and is_error(j, "not_found", "name"), (st, j)
    # The last admin cannot be removed.
    st, j = svc.http("DELETE", "/v1/admin/users/admin", token=svc.admin)
    assert st == 409 and is_error(j, "conflict", "name"), (st, j)
    assert "last admin" in j["error"]["message"], j
    rc, out, err = svc.cli("admin", "user", "rm", "admin")
    assert rc == 1 and "(409)" in err, (rc, out, err)
    # With a second admin, the first can go; then the second is the last one.
    root = svc.add_user("root2", tenant="ops", role="admin")
    st, j = svc.http("DELETE", "/v1/admin/users/admin", token=root)
    assert st == 200 and j["removed"] == "admin", (st, j)
    assert svc.whoami(svc.admin)[0] == 401
    st, j = svc.http("DELETE", "/v1/admin/users/root2", token=root)
    assert st == 409, (st, j)
    # Removal survives a restart; no new bootstrap admin appears (an admin exists).
    svc.stop()
    svc.start()
    assert svc.whoami(gina2)[0] == 401 and svc.whoami(root)[0] == 200
    st, j = svc.http("GET", "/v1/admin/users", token=root)
    assert sorted(u["name"] for u in j["users"]) == ["root2"], j


def test_audit(svc):
    """Admin actions are in the audit log with who, what, target, when and from where; only
    admins may read it."""
    t0 = time.time()
    hal = svc.add_user("hal", tenant="B", unix_user="hal_b")
    ivy = svc.add_user("ivy", tenant="B")
    assert svc.cli("admin", "user", "set", "hal", "--unix-user", "hal_c")[0] == 0
    st, j = svc.http("POST", "/v1/admin/tokens", {"user": "hal", "expires": "1d"}, svc.admin)
    assert st == 201, (st, j)
    extra_id = j["id"]
    assert svc.cli("admin", "token", "revoke", extra_id)[0] == 0
    assert svc.cli("admin", "token", "rotate", "--user", "hal")[0] == 0
    assert svc.cli("admin", "credit", "add", "B", "2.5", "--note", "invoice 9")[0] == 0
    assert svc.cli("admin", "user", "rm", "hal")[0] == 0
    st, j = svc.http("POST", "/v1/whoami/token", {}, ivy)
    assert st == 201, (st, j)
    ivy = j["token"]

    st, j = svc.http("GET", "/v1/admin/audit", token=svc.admin)
    assert st == 200 and j["truncated"] is False, (st, j)
    seen = [(e["who"], e["action"], e.get("target")) for e in j["entries"]]
    assert seen == [("admin", "user.add", "hal"), ("admin", "user.add", "ivy"),
                    ("admin", "user.set", "hal"), ("admin", "token.add", "hal"),
                    ("admin", "token.revoke", extra_id), ("admin", "token.rotate", "hal"),
                    ("admin", "credits.add", "B"), ("admin", "user.rm", "hal"),
                    ("ivy", "token.rotate", "ivy")], seen
    for e in j["entries"]:
        assert e["address"] == "127.0.0.1", e
        assert e["id"] > 0 and e["time"].endswith("Z"), e
    by_action = {}
    for e in j["entries"]:
        by_action.setdefault(e["action"], e)  # the first of each
    assert by_action["user.set"]["detail"] == {"unix_user": "hal_c"}, by_action["user.set"]
    assert by_action["credits.add"]["detail"]["note"] == "invoice 9", by_action["credits.add"]
    assert by_action["user.add"]["detail"]["unix_user"] == "hal_b", by_action["user.add"]
    assert "token" not in json.dumps(by_action["user.add"]["detail"]).replace("token_id", "")
    assert by_action["user.rm"]["detail"] == {"tokens_revoked": 1}, by_action["user.rm"]
    # No token's secret is ever in the log.
    assert "jz_" not in json.dumps(j)

    rc, out, err = svc.cli("admin", "audit")
    assert rc == 0, (rc, out, err)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "WHO", "ACTION"], out
    for action in ("user.add", "user.set", "user.rm", "token.add", "token.revoke",
                   "token.rotate", "credits.add"):
        assert action in out, (action, out)
    assert "127.0.0.1" in out and "invoice 9" in out, out
    rc, out, err = svc.cli("admin", "audit", "--limit", "2")
    assert rc == 0 and len(out.splitlines()) == 3 and "left out" in err, (rc, out, err)
    assert "ivy" in out.splitlines()[-1], out
    st, j = svc.http("GET", "/v1/admin/audit?limit=3", token=svc.admin)
    assert len(j["entries"]) == 3 and j["truncated"] is True, j
    assert j["entries"][-1]["action"] == "token.rotate" and j["entries"][-1]["who"] == "ivy", j
    st, j = svc.http("GET", "/v1/admin/audit?since=2099-01-01", token=svc.admin)
    assert st == 200 and j["entries"] == [], (st, j)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 - 60))
    st, j = svc.http("GET", "/v1/admin/audit?since=" + since, token=svc.admin)
    assert st == 200 and len(j["entries"]) == 9, (st, j)
    rc, out, err = svc.cli("--json", "admin", "audit", "--since", "1h")
    assert rc == 0 and len(json.loads(out)["entries"]) == 9, (rc, out, err)
    for q, field in (("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"),
                     ("since=soon", "since")):
        st, j = svc.http("GET", "/v1/admin/audit?" + q, token=svc.admin)
        assert st == 400 and is_error(j, "invalid", field), (q, st, j)
    # Not for users.
    st, j = svc.http("GET", "/v1/admin/audit", token=ivy)
    assert st == 403 and is_error(j, "forbidden"), (st, j)
    rc, out, err = svc.cli("admin", "audit", token=ivy)
    assert rc == 1 and "(403)" in err, (rc, out, err)
    # A refused action leaves no entry; the log survives a restart.
    st, j = svc.http("DELETE", "/v1/admin/users/admin", token=svc.admin)
    assert st == 409
    svc.stop()
    svc.start()
    st, j = svc.http("GET", "/v1/admin/audit", token=svc.admin)
    assert len(j["entries"]) == 9, j


def concrete(pattern, job_id):
    """The path for a route pattern: job routes get the job id (and the artifact result.txt),
    other '*' segments a name that does not exist."""
    segs = pattern.split("/")
    out = []
    for i, s in enumerate(segs):
        if s != "*":
            out.append(s)
        elif segs[:2] in (["v1", "jobs"], ["v1", "arrays"]) and i == 2:
            out.append(str(job_id))
        elif segs[:2] == ["v1", "jobs"]:
            out.append("result.txt")
        elif segs[0] == "ui":
            out.append("app.js")  # a dashboard file that exists (public routes must answer 200)
        else:
            out.append("nosuch")
    return "/" + "/".join(out)


def http_c_routes():
    """(method, pattern, access) of every row of server/http.c's routes[] table."""
    with open(os.path.join(ARGS.source, "server", "http.c")) as f:
        text = f.read()
    m = re.search(r"\broutes\s*\[\s*\]\s*=\s*\{(.*?)\n\s*\}\s*;", text, re.S)
    assert m, "cannot find the routes[] table in server/http.c"
    table = re.sub(r"/\*.*?\*/|//[^\n]*", " ",
                   re.sub(r'"(?:\\.|[^"\\\n])*"', lambda s: s.group(0).replace("/*", "/\0"),
                          m.group(1)), flags=re.S).replace("\0", "*")
    rows = re.findall(r"\{\s*EVHTTP_REQ_([A-Z]+)\s*,\s*\"([^\"]*)\"\s*,\s*ROUTE_([A-Z]+)\s*,",
                      table)
    assert len(rows) == len(re.findall(r"\{\s*EVHTTP_REQ_", table)), \
        "a row of routes[] in server/http.c was not understood"
    return [(meth, pat, acc.lower()) for meth, pat, acc in rows]


def test_matrix(svc):
    """Every route: no token and bad tokens 401; other users on a job's routes the same 404 as
    for a missing job; users on admin routes 403; the admin and the owner on a job's routes
    200."""
    table = http_c_routes()
    listed = {(m, p): kind for m, p, kind in ROUTES}
    assert len(listed) == len(ROUTES), "ROUTES has a route twice"
    missing = [(m, p) for m, p, _ in table if (m, p) not in listed]
    assert not missing, ("routes of server/http.c with no row in ROUTES (say who may use them): "
                         "%s" % missing)
    stale = [k for k in listed if k not in {(m, p) for m, p, _ in table}]
    assert not stale, "rows of ROUTES that server/http.c no longer has: %s" % stale
    for m, p, access in table:
        kind = listed[(m, p)]
        expect = {"public": "public", "user": "user", "job": "user", "admin": "admin",
                  "monitor": "monitor", "tenant": "user"}[kind]
        assert access == expect, ("%s %s is ROUTE_%s in http.c, %s in ROUTES"
                                  % (m, p, access.upper(), kind))

    alice = svc.add_user("alice", tenant="A")
    bob = svc.add_user("bob", tenant="B")
    carol = svc.add_user("carol", tenant="A")
    done = svc.submit(alice, ["sh", "-c", 'echo hello; echo result-42 > '
                                          '"$JAZARI_OUTPUT_DIR/result.txt"'])
    assert svc.wait(alice, done)["state"] == "SUCCEEDED"
    running = svc.submit(alice, ["sleep", "120"])
    svc.wait_running(alice, running)

    # Held, and waiting for the running job besides: released, it still waits (a pending job's
    # routes answer 200 to its owner and the admin every time).
    st, held = svc.http("POST", "/v1/jobs", {
        "plugin": "batch", "params": {"argv": ["true"]}, "resources": {"gpus": 0},
        "array": "0-1", "hold": True, "dependencies": [{"type": "afterany", "job": running}]},
        alice)
    assert st == 201, (st, held)
    pending_routes = ("v1/jobs/*/hold", "v1/jobs/*/release", "v1/arrays/*/cancel")

    def job_for(m, p):
        if p in pending_routes or (m, p) == ("PATCH", "v1/jobs/*"):
            return held["id"]
        return running if p.endswith("/cancel") else done

    # The cancel route goes last: the admin's 200 there ends the running job.
    order = sorted(ROUTES, key=lambda r: r[1].endswith("/cancel"))
    for m, p, kind in order:
        path = concrete(p, job_for(m, p))
        where = "%s %s" % (m, path)
        body = {} if m == "POST" else {"nice": 5} if m == "PATCH" else None
        if kind == "tenant":
            # Tenant A's routes, its member "nobody" (none): the tenant's plain users 403, the
            # other tenant's user the same 404 as for a tenant that does not exist.
            path = "/" + p.replace("*", "A", 1).replace("*", "nobody")
            none = "/" + p.replace("*", "Z", 1).replace("*", "nobody")
            st_none, j_none = svc.http(m, none, body, svc.admin)
            assert st_none == 404 and is_error(j_none, "not_found", "name"), (none, st_none)
            st, j = svc.http(m, path, body, bob)
            assert st == 404 and j == json.loads(json.dumps(j_none).replace('Z', 'A')), \
                (path, st, j, j_none)
            for who, tok in (("alice", alice), ("carol", carol)):
                st, j = svc.http(m, path, body, tok)
                assert st == 403 and is_error(j, "forbidden"), (path, who, st, j)
            st, j = svc.http(m, path, body, svc.admin)
            assert st in (200, 400, 404) and st < 500, (path, "admin", st, j)
            if st == 404:
                assert is_error(j, "not_found", "user"), (path, j)
            continue
        if kind == "public":
            st, j = svc.http(m, path)
            assert st == 200, (where, st, j)
            continue
        st, j = svc.http(m, path, body)
        assert st == 401 and is_error(j, "unauthorized", "Authorization"), (where, st, j)
        for authz in ("Bearer " + BAD_TOKEN, "Bearer nonsense", "Basic YWxpY2U6eA==",
                      "Bearer " + alice[:-1] + ("0" if alice[-1] != "0" else "1")):
            st, j = svc.http(m, path, body, authorization=authz)
            assert st == 401 and is_error(j, "unauthorized"), (where, authz, st, j)
        if kind == "monitor":
            # The monitoring token reads it; it is nobody's user token.
            with open(os.path.join(svc.state, "monitor.token")) as f:
                monitor = f.read().strip()
            st, j = svc.http(m, path, body, monitor)
            assert st == 200, (where, st, j)
            st, j = svc.http("GET", "/v1/jobs", None, monitor)
            assert st == 401 and is_error(j, "unauthorized"), ("monitor token on /v1/jobs", st, j)
        if kind in ("admin", "monitor"):
            for who, tok in (("bob", bob), ("alice", alice), ("carol", carol)):
                st, j = svc.http(m, path, body, tok)
                assert st == 403 and is_error(j, "forbidden"), (where, who, st, j)
        elif kind == "job":
            # Another user's job is answered exactly as a missing one (an id of as many
            # digits), so that ids cannot be probed.
            jid = job_for(m, p)
            missing = int("9" * len(str(jid)))
            st_none, j_none = svc.http(m, concrete(p, missing), body, bob)
            assert st_none == 404 and is_error(j_none, "not_found", "id"), (where, st_none, j_none)
            for who, tok in (("bob", bob), ("carol", carol)):
                st, j = svc.http(m, path, body, tok)
                assert st == 404 and is_error(j, "not_found", "id"), (where, who, st, j)
                assert json.dumps(j).replace(str(jid), "ID") == \
                    json.dumps(j_none).replace(str(missing), "ID"), (where, who, j, j_none)
            for who, tok in (("admin", svc.admin), ("alice", alice)):
                if p.endswith("/cancel") and who == "alice":
                    continue  # one cancel is enough: the admin's
                st, j = svc.http(m, path, body, tok)
                assert st == 200, (where, who, st, j)
                if p == "v1/jobs/*":
                    assert j["user"] == "alice", j
                if p == "v1/jobs/*/artifacts/*":
                    assert j.strip() == "result-42", j
        else:
            # The event stream never ends: a bad parameter, refused after the token check.
            probe = path + "?no_such_parameter=1" if p == "v1/events" else path
            st, j = svc.http(m, probe, PROBE_BODIES.get((m, p), body), bob)
            assert st not in (401, 403) and st < 500, (where, st, j)
    # Bob and carol changed nothing of alice's: the running job was cancelled by the admin.
    st, j = svc.http("GET", "/v1/jobs/%d" % running, token=alice)
    assert j["cancelled_by"] == "admin", j
    st, j = svc.http("GET", "/v1/jobs", token=bob)
    assert st == 200 and j["jobs"] == [], j
    st, j = svc.http("GET", "/v1/jobs?user=alice", token=carol)
    assert st == 403 and is_error(j, "forbidden"), (st, j)
    st, j = svc.http("GET", "/v1/usage?tenant=A", token=bob)
    assert st == 403 and is_error(j, "forbidden", "tenant"), (st, j)
    assert svc.whoami(bob)[0] == 200  # the probe did not rotate bob's token


def test_unix_user(svc):
    """Unix accounts: a user's own, else its tenant's default from the configuration file;
    shown by whoami and the user list; bad names refused naming unix_user."""
    alice = svc.add_user("alice", tenant="A")
    bob = svc.add_user("bob", tenant="B", unix_user="bob_b")
    dave = svc.add_user("dave", tenant="B")
    st, j = svc.whoami(alice)
    assert j == {"name": "alice", "tenant": "A", "role": "user", "unix_user": "tenant_a",
                 "unix_user_from": "tenant"}, j
    st, j = svc.whoami(bob)
    assert j["unix_user"] == "bob_b" and j["unix_user_from"] == "user", j
    st, j = svc.whoami(dave)
    assert j == {"name": "dave", "tenant": "B", "role": "user"}, j  # no account at all
    rc, out, err = svc.cli("whoami", token=alice)
    assert rc == 0 and "unix user tenant_a (tenant)" in out, (rc, out, err)
    for bad in ("Bad", "9lives", "a" * 33, "a b", "x/y", "", 5):
        st, j = svc.http("POST", "/v1/admin/users",
                         {"name": "eve", "tenant": "A", "unix_user": bad}, svc.admin)
        if bad == "":
            assert st == 201, (bad, st, j)  # "" is no account
            svc.http("DELETE", "/v1/admin/users/eve", token=svc.admin)
            continue
        assert st == 400 and is_error(j, "invalid", "unix_user"), (bad, st, j)
    st, j = svc.http("POST", "/v1/admin/users",
                     {"name": "eve", "tenant": "A", "unix_user": "_e-v_e9" + "x" * 25},
                     svc.admin)
    assert st == 201 and j["unix_user"] == "_e-v_e9" + "x" * 25, (st, j)
    rc, out, err = svc.cli("admin", "user", "add", "fay", "--tenant", "A", "--unix-user", "Fay")
    assert rc == 1 and "unix_user" in err and "(400)" in err, (rc, out, err)
    # Set and clear through the CLI.
    rc, out, err = svc.cli("admin", "user", "set", "alice", "--unix-user", "alice_x")
    assert rc == 0 and "alice: unix user alice_x" in out, (rc, out, err)
    assert svc.whoami(alice)[1]["unix_user"] == "alice_x"
    rc, out, err = svc.cli("admin", "user", "list")
    assert rc == 0, (rc, out, err)
    rows = {l.split()[0]: l for l in out.splitlines()[1:]}
    assert "UNIX USER" in out.splitlines()[0], out
    assert "alice_x" in rows["alice"] and "bob_b" in rows["bob"], out
    rc, out, err = svc.cli("admin", "user", "set", "alice", "--unix-user", "")
    assert rc == 0 and "tenant_a (tenant)" in out, (rc, out, err)
    st, j = svc.http("GET", "/v1/admin/users", token=svc.admin)
    users = {u["name"]: u for u in j["users"]}
    assert users["alice"]["unix_user"] == "tenant_a" and \
        users["alice"]["unix_user_from"] == "tenant", users
    assert "unix_user" not in users["dave"] and users["dave"]["tokens"] == 1, users
    st, j = svc.http("POST", "/v1/admin/users/bob", {"unix_user": "Nope"}, svc.admin)
    assert st == 400 and is_error(j, "invalid", "unix_user"), (st, j)
    st, j = svc.http("POST", "/v1/admin/users/bob", {}, svc.admin)
    assert st == 400 and is_error(j, "invalid", "unix_user"), (st, j)
    st, j = svc.http("POST", "/v1/admin/users/bob", {"tenant": "A"}, svc.admin)
    assert st == 400 and is_error(j, "invalid", "tenant"), (st, j)
    st, j = svc.http("POST", "/v1/admin/users/nobody", {"unix_user": "x"}, svc.admin)
    assert st == 404 and is_error(j, "not_found", "name"), (st, j)
    # Kept across a restart.
    svc.stop()
    svc.start()
    assert svc.whoami(bob)[1]["unix_user"] == "bob_b"
    assert svc.whoami(alice)[1]["unix_user_from"] == "tenant"

    # The "tenants" configuration is checked at start: an unknown key or a wrong type is an
    # error naming it.
    for tenants, named in (({"A": {"unix_usr": "x"}}, "tenants.A.unix_usr"),
                           ({"A": {"unix_user": 5}}, "tenants.A.unix_user"),
                           ({"A": {"unix_user": "Root"}}, "tenants.A.unix_user"),
                           ({"A": "acct"}, "tenants.A"),
                           ([], "tenants")):
        state = tempfile.mkdtemp(prefix="jazari-access-cfg-")
        try:
            cfg = os.path.join(state, "config.json")
            with open(cfg, "w") as f:
                json.dump({"tenants": tenants}, f)
            r = subprocess.run([os.path.join(ARGS.build, "bin", "jazarid"), "--listen",
                                "127.0.0.1:0", "--state-dir", state, "--topology", svc.topology,
                                "--config", cfg, *AS_ROOT], capture_output=True, text=True,
                               timeout=30)
            assert r.returncode != 0 and named in r.stderr, (tenants, r.returncode, r.stderr)
            assert not any(m in r.stderr for m in test_service.SANITIZER_MARKS), r.stderr
        finally:
            shutil.rmtree(state, ignore_errors=True)


LEGACY_ADMIN = "jz_" + "ab" * 24
LEGACY_USER = "jz_" + "cd" * 24


def legacy_database(state):
    """A database of the first schema: users with one token hash each, no token ids."""
    db = sqlite3.connect(os.path.join(state, "jazari.db"))
    db.executescript(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES('schema_version', '1');"
        "CREATE TABLE users(name TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL,"
        "  token_hash TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL);")
    for name, tenant, role, tok in (("admin", "admin", "admin", LEGACY_ADMIN),
                                    ("olga", "physics", "user", LEGACY_USER)):
        db.execute("INSERT INTO users VALUES(?,?,?,?,?)",
                   (name, tenant, role, hashlib.sha256(tok.encode()).hexdigest(), 1700000000000))
    db.commit()
    db.close()
    with open(os.path.join(state, "admin.token"), "w") as f:
        f.write(LEGACY_ADMIN + "\n")
    os.chmod(os.path.join(state, "admin.token"), 0o600)


def test_migration(svc):
    """Users of the first schema keep working: each token becomes one token with an id and no
    expiry, with no manual step, and the old rows are gone."""
    assert svc.admin == LEGACY_ADMIN
    st, j = svc.whoami(LEGACY_USER)
    assert st == 200 and j["name"] == "olga" and j["tenant"] == "physics", (st, j)
    st, j = svc.whoami(LEGACY_ADMIN)
    assert st == 200 and j["role"] == "admin", (st, j)
    [tok] = tokens_of(svc, "olga")
    assert tok["id"].startswith("tk_") and tok["expires"] is None, tok
    st, j = svc.http("GET", "/v1/admin/users", token=svc.admin)
    assert sorted(u["name"] for u in j["users"]) == ["admin", "olga"], j
    assert {u["name"]: u["created"] for u in j["users"]}["olga"].startswith("2023-11-14"), j
    svc.stop()
    db = sqlite3.connect(os.path.join(svc.state, "jazari.db"))
    assert db.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0
    db.close()
    svc.start()
    assert svc.whoami(LEGACY_USER)[0] == 200
    assert [(t["id"], t["expires"]) for t in tokens_of(svc, "olga")] == [(tok["id"], None)]
    rc, out, err = svc.cli("admin", "token", "revoke", tok["id"])
    assert rc == 0, (rc, out, err)
    assert svc.whoami(LEGACY_USER)[0] == 401


# ------------------------------------------------------------------------------------------
def make_service(name):
    if name == "unix_user":
        return Service(config={"tenants": {"A": {"unix_user": "tenant_a"}, "B": {}}})
    if name == "migration":
        return Service(prepare=legacy_database)
    if name == "matrix":
        # Five refused tokens per route, as fast as they go: more than the default burst of
        # failed attempts an address may make (which test_service's rate test covers).
        return Service(extra=["--rate-burst", "100000"])
    return Service()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("tests", nargs="+")
    ARGS = p.parse_args()
    for k in ("build", "fixtures", "source"):
        setattr(ARGS, k, os.path.abspath(getattr(ARGS, k)))
    test_service.ARGS = ARGS
    failed = test_service.run_tests(ARGS.tests, globals(), make_service)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
