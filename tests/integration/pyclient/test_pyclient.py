#!/usr/bin/env python3
"""The Python client library (clients/python, package `jazari`) against a real jazarid on
127.0.0.1 (ephemeral port, temporary state directory: tests/integration/service's harness), and
its offline install into a virtual environment.

Usage: test_pyclient.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]
Each TEST is one of the functions named test_* below, without the prefix. The type check is
skipped (exit status 77, which ctest reports as skipped, with the reason printed) where mypy is
not installed."""

import argparse
import shutil
import datetime
import hashlib
import hmac
import http.server
import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
CLIENT = os.path.join(SOURCE, "clients", "python")
sys.path.insert(0, os.path.join(HERE, "..", "service"))
sys.path.insert(0, CLIENT)
import test_service  # noqa: E402
import jazari  # noqa: E402

SKIPPED = 77

# The library talks to 127.0.0.1 directly: a proxy from the environment must not get in the way.
for _v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    os.environ.pop(_v, None)


class Skip(Exception):
    """What the test needs is not on this machine (mypy)."""


def client(svc, token=None, **kw):
    return jazari.Client(svc.url, token or svc.admin, **kw)


def until(cond, timeout=15, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def block_gpus(c):
    """A job holding all 8 GPUs for a while, so that GPU jobs submitted after it wait."""
    big = c.submit(command=["sleep", "60"], gpus=8, name="blocker")
    until(lambda: c.get(big["id"])["state"] == "RUNNING", what="the blocker to run")
    return big


# ---- needs no server ---------------------------------------------------------------------------
def test_install(tmp):
    """pip install of clients/python into a fresh venv, offline (--no-index): the in-tree build
    backend needs nothing downloaded. The installed package is importable outside the source
    tree and carries py.typed."""
    venv = os.path.join(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    py = os.path.join(venv, "bin", "python")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_CACHE_DIR="1")
    r = subprocess.run([py, "-m", "pip", "install", "--no-index", CLIENT], env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([py, "-c", "import jazari, os; print(jazari.__version__); "
                        "print(os.path.dirname(jazari.__file__))"],
                       capture_output=True, text=True, cwd=tmp, timeout=60)
    assert r.returncode == 0, r.stderr
    version, where = r.stdout.split()
    assert version == jazari.__version__ and where.startswith(venv), r.stdout
    for f in ("py.typed", "client.py", "errors.py", "records.py"):
        assert os.path.exists(os.path.join(where, f)), f
    # The wheel's own build, as a packager would run it (pip wheel, offline).
    r = subprocess.run([py, "-m", "pip", "wheel", "--no-index", "--no-deps", "-w",
                        os.path.join(tmp, "wheels"), CLIENT], env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.listdir(os.path.join(tmp, "wheels")) == ["jazari-%s-py3-none-any.whl" %
                                                       jazari.__version__]


def test_config(tmp):
    """URL and token found as the CLI finds them: arguments, JAZARI_URL / JAZARI_TOKEN,
    JAZARI_TOKEN_FILE, the config file, the default."""
    conf = os.path.join(tmp, "config")
    with open(conf, "w") as f:
        f.write("# comment\nurl = 'http://conf.example:8600/'\ntoken = \"jz_conf\"\nca = ca.pem\n")
    tokf = os.path.join(tmp, "token")
    with open(tokf, "w") as f:
        f.write("jz_file\nsecond line\n")
    rc = jazari.resolve_config
    assert rc(environ={"JAZARI_CONFIG": conf}) == (
        "http://conf.example:8600", "jz_conf", os.path.join(tmp, "ca.pem"))
    assert rc(environ={"JAZARI_URL": "http://e:1", "JAZARI_TOKEN": "jz_env",
                       "JAZARI_CONFIG": conf})[:2] == ("http://e:1", "jz_env")
    assert rc(environ={"JAZARI_TOKEN_FILE": tokf, "JAZARI_CONFIG": conf})[1] == "jz_file"
    assert rc("http://arg:2", "jz_arg", environ={"JAZARI_URL": "http://e:1",
                                                  "JAZARI_TOKEN": "x"})[:2] == (
        "http://arg:2", "jz_arg")
    assert rc(environ={"HOME": tmp}) == (jazari.DEFAULT_URL, None, None)
    for bad in ({"JAZARI_URL": "ftp://x"}, {"JAZARI_TOKEN": "a b"},
                {"JAZARI_CONFIG": os.path.join(tmp, "nope")}):
        try:
            rc(environ=bad)
            raise AssertionError("accepted %r" % bad)
        except ValueError:
            pass
    # An unreachable server is a ConnectionFailed (status 0), a JazariError.
    try:
        jazari.Client("http://127.0.0.1:1", "jz_x", timeout=5).whoami()
        raise AssertionError("no error")
    except jazari.ConnectionFailed as e:
        assert e.status == 0 and e.code == "connection", e


def test_mypy(tmp):
    """The package type-checks strictly (Debian's mypy, from scripts/install-deps.sh; skipped
    where it is not installed)."""
    if importlib.util.find_spec("mypy") is not None:
        cmd = [sys.executable, "-m", "mypy"]
    elif shutil.which("mypy"):
        cmd = [shutil.which("mypy")]
    else:
        raise Skip("mypy is not installed")
    r = subprocess.run(cmd + ["--strict", "--no-incremental", "--cache-dir",
                              os.path.join(tmp, "cache"), os.path.join(CLIENT, "jazari")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


# ---- jobs, logs, artifacts ------------------------------------------------------------------------
def test_basics(svc):
    c = client(svc)
    v = c.version()
    assert v["version"] and v["plugin_abi"], v
    assert c.whoami()["role"] == "admin"
    nodes = c.nodes()
    assert nodes[0]["gpus_total"] == 8, nodes
    assert any(p["name"] == "batch" for p in c.plugins())
    assert c.health()["status"] == "ok"
    alice = client(svc, svc.add_user("alice"))
    me = alice.whoami()
    assert me["name"] == "alice" and me["tenant"] == "physics", me
    j = alice.submit(command=["sh", "-c", "echo hi"], name="first", cpus=1, time_limit="5m")
    assert j["state"] in ("PENDING", "RUNNING") and j["name"] == "first", j
    assert j["resources"]["time_limit_s"] == 300, j
    done = alice.wait(j["id"], timeout=30)
    assert done["state"] == "SUCCEEDED" and done["exit_code"] == 0, done
    assert "hi\n" in alice.logs(j["id"])
    # A plugin job with string parameters converted by the server, env and timedelta.
    j = alice.submit("sleeper", {"seconds": "0.1"})
    assert alice.wait(j["id"], timeout=30)["params"]["seconds"] == 0.1
    j = alice.submit(command="test \"$GREETING\" = hello", env={"GREETING": "hello"},
                     time_limit=datetime.timedelta(minutes=2))
    assert alice.wait(j["id"], timeout=30)["state"] == "SUCCEEDED"
    # why: a GPU job behind a blocker waits for resources, with an estimated start.
    big = block_gpus(c)
    w = c.submit(command=["true"], gpus=8)
    why = c.why(w["id"])
    assert why.state == "PENDING" and why.reason_code == "resources", why
    assert why.reason and why.estimated_start is not None, why
    assert "waiting" in str(why)
    assert c.cancel(w["id"])["state"] == "CANCELLED"
    c.cancel(big["id"])
    assert c.wait(big["id"], timeout=30)["state"] == "CANCELLED"


def test_errors(svc):
    c = client(svc)
    bob = client(svc, svc.add_user("bob", tenant="startup-a"))
    cases = [
        (lambda: c.submit("nope"), jazari.InvalidRequest, 400, "plugin"),
        (lambda: c.submit("batch"), jazari.InvalidRequest, 400, "params.argv"),
        (lambda: c.submit("sleeper", {"seconds": "abc"}), jazari.InvalidRequest, 400,
         "params.seconds"),
        (lambda: c.submit(command=["true"], gpus=9), jazari.InvalidRequest, 400,
         "resources.gpus"),
        (lambda: c.submit(command=["true"], extra={"colour": 1}), jazari.InvalidRequest, 400,
         "colour"),
        (lambda: c.get(999999), jazari.NotFound, 404, "id"),
        (lambda: c.list_page(limit=0), jazari.InvalidRequest, 400, "limit"),
        (lambda: list(bob.list(user="admin")), jazari.Forbidden, 403, "user"),
        (lambda: jazari.Client(svc.url, "jz_" + "0" * 48).whoami(), jazari.Unauthorized, 401,
         None),
        (lambda: c.fetch(999999, "model"), jazari.NotFound, 404, "id"),
    ]
    for fn, cls, status, field in cases:
        try:
            fn()
            raise AssertionError("no error for %s" % cls.__name__)
        except jazari.JazariError as e:
            assert type(e) is cls and e.status == status, (cls, e)
            assert e.code and e.message and isinstance(e.body, dict), e
            if field is not None:
                assert e.field == field, (field, e)
            assert str(e).startswith(str(status)), str(e)
    j = c.submit(command=["true"])
    c.wait(j["id"], timeout=30)
    try:
        c.cancel(j["id"])
        raise AssertionError("cancelled an ended job")
    except jazari.Conflict as e:
        assert e.status == 409 and e.code == "already_ended" and e.field == "id", e
    # Another user's job is answered as a missing one.
    try:
        bob.get(j["id"])
        raise AssertionError("bob saw admin's job")
    except jazari.NotFound as e:
        assert e.message == "no job %d" % j["id"], e


def test_paging(svc):
    """list() walks every page (next_after) with a small page size; filters and order."""
    c = client(svc)
    ids = [c.submit(command=["true"], name="p%d" % i)["id"] for i in range(7)]
    for i in ids:
        c.wait(i, timeout=30)
    failed = c.submit(command=["false"])["id"]
    c.wait(failed, timeout=30)
    page = c.list_page(limit=3)
    assert [j["id"] for j in page.jobs] == ids[:3] and page.next_after == ids[2], page
    requests = []
    real = c._json

    def counting(method, path, **kw):
        requests.append(path)
        return real(method, path, **kw)
    c._json = counting
    got = [j["id"] for j in c.list(page_size=3)]
    assert got == ids + [failed], got
    assert len(requests) == 3, requests
    c._json = real
    assert [j["id"] for j in c.list(page_size=2, order="desc")] == [failed] + ids[::-1]
    assert [j["id"] for j in c.list(state="FAILED")] == [failed]
    assert [j["id"] for j in c.list(state=["SUCCEEDED"], page_size=1000)] == ids
    assert [j["id"] for j in c.list(after=ids[4])] == ids[5:] + [failed]
    # The iterator is lazy: the first job costs one request.
    it = c.list(page_size=1)
    assert next(it)["id"] == ids[0]


def test_logs(svc):
    """Plain reads with offsets, and follow=True streaming lines as they are written."""
    c = client(svc)
    j = c.submit(command=["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done; "
                          "printf 'no newline \\303\\251'"])
    started = time.time()
    lines, seen_at = [], []
    for line in c.logs(j["id"], follow=True):
        lines.append(line)
        seen_at.append(time.time() - started)
    body = [x for x in lines if not x.startswith("[")]
    # The last output has no newline: the worker's next log line still starts a line.
    assert body == ["line-1", "line-2", "line-3", "line-4", "line-5", "no newline \u00e9"], lines
    # Streamed: the first line came well before the job ended.
    first = lines.index("line-1")
    assert seen_at[first] < seen_at[-1] - 0.5, seen_at
    assert c.get(j["id"])["state"] == "SUCCEEDED"
    text = c.logs(j["id"])
    assert "line-3\n" in text and "no newline \u00e9" in text, text
    chunk = c.log_chunk(j["id"])
    assert chunk.next_offset == len(chunk.data) and chunk.text == text
    at = text.encode().index(b"line-4")
    assert c.logs(j["id"], offset=at).startswith("line-4\n")
    assert c.log_chunk(j["id"], chunk.next_offset).data == b""
    # Following from an offset, an ended job: what is left, then the end.
    tail = list(c.logs(j["id"], offset=at, follow=True))
    assert tail[0] == "line-4", tail


def test_artifacts(svc):
    """artifacts() and fetch(): bytes, into a folder, into a file; the example plugin's
    artifact and per-step metrics."""
    c = client(svc)
    j = c.submit(command='echo result-42 > "$JAZARI_OUTPUT_DIR/result.txt"; '
                         'head -c 300000 /dev/urandom > "$JAZARI_OUTPUT_DIR/blob.bin"')
    assert c.wait(j["id"], timeout=30)["state"] == "SUCCEEDED"
    arts = {a.name: a.size for a in c.artifacts(j["id"])}
    assert arts.get("result.txt") == 10 and arts.get("blob.bin") == 300000, arts
    assert c.fetch(j["id"], "result.txt") == b"result-42\n"
    tmp = tempfile.mkdtemp(dir=svc.state)
    path = c.fetch(j["id"], "blob.bin", tmp)
    assert path == os.path.join(tmp, "blob.bin") and os.path.getsize(path) == 300000
    other = c.fetch(j["id"], "result.txt", dest=os.path.join(tmp, "r.txt"))
    assert open(other).read() == "result-42\n"
    try:
        c.fetch(j["id"], "missing.bin", dest=os.path.join(tmp, "m"))
        raise AssertionError("fetched a missing artifact")
    except jazari.NotFound as e:
        assert e.field == "name", e
    assert sorted(os.listdir(tmp)) == ["blob.bin", "r.txt"], os.listdir(tmp)
    with c.open_artifact(j["id"], "result.txt") as f:
        assert f.read() == b"result-42\n"
    # A plugin's artifact and the metric values it reported step by step.
    e = c.submit("example", {"count": 5, "delay_ms": 1, "label": "sum"})
    assert c.wait(e["id"], timeout=30)["state"] == "SUCCEEDED"
    assert c.fetch(e["id"], "sum").strip() == b"15", c.fetch(e["id"], "sum")
    sums = c.metrics(e["id"]).get("sum")
    assert sums and sums[-1][1] == 15.0, c.metrics(e["id"])


def test_wait(svc):
    c = client(svc)
    j = c.submit(command=["sleep", "30"])
    t0 = time.time()
    try:
        c.wait(j["id"], timeout=1)
        raise AssertionError("wait did not time out")
    except jazari.WaitTimeout as e:
        assert isinstance(e, TimeoutError) and e.job_id == j["id"], e
        assert e.job is not None and e.job["state"] in ("PENDING", "RUNNING"), e.job
    assert time.time() - t0 < 5, time.time() - t0
    threading.Timer(0.5, lambda: c.cancel(j["id"])).start()
    assert c.wait(j["id"], timeout=30)["state"] == "CANCELLED"
    try:
        c.wait(999999, timeout=5)
        raise AssertionError("waited for a missing job")
    except jazari.NotFound as e:
        assert e.field == "id", e
    f = c.submit(command=["sh", "-c", "exit 3"])
    done = c.wait(f["id"], timeout=30, poll_interval=0.1)
    assert done["state"] == "FAILED" and done["exit_code"] == 3, done


# ---- arrays, dependencies, hold, modify, events, webhooks ------------------------------------------
def test_array(svc):
    c = client(svc)
    first = c.submit(command='echo "$JAZARI_ARRAY_ID $JAZARI_ARRAY_INDEX"',
                     array=range(0, 10, 2), array_throttle=2)
    a = first["array"]
    assert a and a["id"] == first["id"] and a["index"] == 0 and a["count"] == 5, first
    assert a["throttle"] == 2, first
    elements = list(c.list(array=first["id"], page_size=2))
    assert [j["id"] for j in elements] == [first["id"] + k for k in range(5)], elements
    assert [j["array"]["index"] for j in elements] == [0, 2, 4, 6, 8], elements
    for j in elements:
        c.wait(j["id"], timeout=30)
    assert c.logs(first["id"] + 2).count("%d 4" % first["id"]) == 1
    # cancel_array: pending elements cancelled, ended ones reported.
    second = c.submit(command=["sleep", "30"], array="0-3%1")
    until(lambda: c.get(second["id"])["state"] == "RUNNING", what="the first element")
    r = c.cancel_array(second["id"])
    assert r.array_id == second["id"], r
    assert sorted(r.cancelled) == [second["id"] + k for k in range(4)], r
    try:
        c.submit(command=["true"], array="0-20000")
        raise AssertionError("a 20001-element array was accepted")
    except jazari.InvalidRequest as e:
        assert e.field == "array", e


def test_dependencies(svc):
    c = client(svc)
    a = c.submit(command=["sleep", "1"])
    b = c.submit(command=["true"], dependencies=[jazari.Dependency("afterok", a["id"])])
    assert b["dependencies"][0]["job"] == a["id"], b
    assert c.why(b["id"]).reason_code == "dependency", c.get(b["id"])
    bad = c.submit(command=["false"])
    never = c.submit(command=["true"], dependencies=["afterok:%d" % bad["id"]])
    ok_after_fail = c.submit(command=["true"], dependencies=[("afternotok", bad["id"])])
    assert c.wait(b["id"], timeout=30)["state"] == "SUCCEEDED"
    assert c.get(b["id"])["start_time"] >= c.get(a["id"])["end_time"]
    n = c.wait(never["id"], timeout=30)
    assert n["state"] == "FAILED" and "dependency never satisfied" in n["reason"], n
    assert c.wait(ok_after_fail["id"], timeout=30)["state"] == "SUCCEEDED"
    try:
        c.submit(command=["true"], dependencies=[{"type": "afterok", "job": 999999}])
        raise AssertionError("a dependency on a missing job was accepted")
    except jazari.InvalidRequest as e:
        assert e.field == "dependencies[0].job", e


def test_hold_release(svc):
    c = client(svc)
    j = c.submit(command=["true"], hold=True)
    assert j["held"] and j["state"] == "PENDING", j
    time.sleep(0.5)
    w = c.why(j["id"])
    assert w.state == "PENDING" and w.reason_code == "held", w
    r = c.release(j["id"])
    assert not r["held"], r
    assert c.wait(j["id"], timeout=30)["state"] == "SUCCEEDED"
    big = block_gpus(c)
    k = c.submit(command=["true"], gpus=1)
    h = c.hold(k["id"])
    assert h["held"], h
    c.release(k["id"])
    try:
        c.hold(big["id"])
        raise AssertionError("held a running job")
    except jazari.Conflict:
        pass
    c.cancel(big["id"])
    assert c.wait(k["id"], timeout=30)["state"] == "SUCCEEDED"


def test_modify(svc):
    c = client(svc)
    big = block_gpus(c)
    j = c.submit(command=["true"], gpus=1, time_limit=600, name="before")
    m = c.modify(j["id"], name="after", nice=100, time_limit=300)
    assert m["name"] == "after" and m["nice"] == 100, m
    assert m["resources"]["time_limit_s"] == 300, m
    alice = client(svc, svc.add_user("alice"))
    aj = alice.submit(command=["true"], gpus=1, time_limit=600)
    for kw, field in ((dict(time_limit=1200), "time_limit"), (dict(nice=-5), "nice")):
        try:
            alice.modify(aj["id"], **kw)
            raise AssertionError("a user could %r" % kw)
        except (jazari.InvalidRequest, jazari.Forbidden) as e:
            assert e.field == field, e
    try:
        c.modify(big["id"], name="x")
        raise AssertionError("modified a running job")
    except jazari.Conflict as e:
        assert e.code == "not_pending", e
    c.cancel(big["id"])


def test_nice(svc):
    c = client(svc)
    j = c.submit(command=["true"], nice=500)
    assert j["nice"] == 500, j
    alice = client(svc, svc.add_user("alice"))
    try:
        alice.submit(command=["true"], nice=-1)
        raise AssertionError("a user got a negative nice")
    except jazari.JazariError as e:
        assert e.field == "nice", e
    c.wait(j["id"], timeout=30)


def test_events(svc):
    """The event stream: a job's transitions in order, resumable with Last-Event-ID; wait()
    over it."""
    c = client(svc)
    q = queue.Queue()

    def reader():
        try:
            for ev in c.events(reconnect=False, read_timeout=20):
                q.put(ev)
                if ev.final and ev.data.get("name") == "watched":
                    return
        except Exception as e:  # noqa: BLE001 (handed to the test's thread)
            q.put(e)
    threading.Thread(target=reader, daemon=True).start()
    time.sleep(0.5)  # the stream is open
    j = c.submit(command=["sleep", "0.3"], name="watched")
    mine, seen = [], 0
    while not (mine and mine[-1].final):
        try:
            ev = q.get(timeout=10)
        except queue.Empty:
            raise AssertionError("the job's last events never came: %r" % mine) from None
        seen += 1
        assert isinstance(ev, jazari.Event), ev
        if ev.job == j["id"]:
            mine.append(ev)
    assert [e.state for e in mine][-2:] == ["RUNNING", "SUCCEEDED"], mine
    assert all(e.type == "job" and e.id is not None for e in mine), mine
    assert [e.id for e in mine] == sorted(e.id for e in mine), mine
    assert mine[-1].data["previous"] == "RUNNING" and mine[-1].data["exit_code"] == 0, mine[-1]
    # Resuming after the first of them replays the rest.
    replay = c.events(job=j["id"], last_event_id=mine[0].id, reconnect=False)
    again = [next(replay) for _ in range(len(mine) - 1)]
    replay.close()
    assert [e.id for e in again] == [e.id for e in mine[1:]], (again, mine)
    # wait() over the stream.
    k = c.submit(command=["sleep", "0.5"])
    assert c.wait(k["id"], timeout=30)["state"] == "SUCCEEDED"
    assert c._events_route is True


def test_list_filters(svc):
    """scope=all, tenant, since/until; an unknown query parameter is a 400 naming it."""
    c = client(svc)
    try:
        c.request("GET", "/v1/jobs", query={"bogus": 1})
        raise AssertionError("an unknown query parameter was accepted")
    except jazari.InvalidRequest as e:
        assert e.field == "bogus", e
    alice = client(svc, svc.add_user("alice"))
    bob = client(svc, svc.add_user("bob", tenant="startup-a"))
    big = block_gpus(c)
    aj = alice.submit(command=["true"], gpus=1)
    done = bob.submit(command=["true"])
    bob.wait(done["id"], timeout=30)
    seen = {j["id"]: j for j in bob.list(scope="all", page_size=1)}
    assert aj["id"] in seen and big["id"] in seen, seen
    # Others' jobs come as reduced records.
    assert "params" not in seen[aj["id"]] and "params" not in seen[big["id"]], seen
    got = [j["id"] for j in c.list(tenant="startup-a")]
    assert got == [done["id"]], got
    now = time.time()
    assert [j["id"] for j in bob.list(since=now + 60)] == []
    assert [j["id"] for j in bob.list(since=now - 60, until=now + 60)] == [done["id"]]
    assert list(bob.list(since=now - 3600, until=now - 60)) == []
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    assert [j["id"] for j in bob.list(since=since)] == [done["id"]]
    c.cancel(big["id"])


def test_notify(svc):
    """The webhook when a job ends: its record, signed with the secret."""
    secret = "s3cret-s3cret-s3cret"
    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        c = client(svc)
        url = "http://127.0.0.1:%d/hook" % server.server_address[1]
        j = c.submit(command=["true"], notify=jazari.Notify(url, secret))
        assert j["notify_url"] == url and secret not in json.dumps(j), j
        c.wait(j["id"], timeout=30)
        until(lambda: got, timeout=10, what="the webhook")
        headers, body = got[0]
        headers = {k.lower(): v for k, v in headers.items()}
        want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-jazari-signature-256"] == want, headers
        assert headers["x-jazari-event"] == "job.ended", headers
        assert json.loads(body)["id"] == j["id"], body
    finally:
        server.shutdown()


# ------------------------------------------------------------------------------------------------
NO_SERVER = {"install", "config", "mypy"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    failed = skipped = 0
    for name in args.tests:
        fn = globals()["test_" + name]
        t0 = time.time()
        ok, skip, svc = False, None, None
        try:
            if name in NO_SERVER:
                tmp = tempfile.mkdtemp(prefix="jazari-pyclient-")
                test_service.FOLDERS.append(tmp)
                fn(tmp)
            else:
                # test_notify's receiver is on 127.0.0.1, which webhooks may not reach
                # unless allowed.
                svc = test_service.Service(
                    extra=["--webhook-allow", "127.0.0.1/32"] if name == "notify" else [])
                fn(svc)
            ok = True
        except Skip as e:
            ok, skip = True, str(e)
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
        test_service.keep_folders(name, not ok)
        if skip:
            skipped += 1
            print("SKIP %s: %s" % (name, skip))
        elif ok:
            print("PASS %s (%.1fs)" % (name, time.time() - t0))
        else:
            failed += 1
            print("FAIL %s" % name)
    sys.exit(1 if failed else SKIPPED if skipped == len(args.tests) else 0)


if __name__ == "__main__":
    main()
