#!/usr/bin/env python3
"""Job events end to end (server/events.c, server/webhooks.c): GET /v1/events as server-sent
events (the events of a quick job, filters, who may see what, resuming with Last-Event-ID, a
reset for an id the server no longer has, ids that keep increasing across a restart, the stream
limit, keep-alives), and job-end webhooks POSTed, signed, to a receiver on 127.0.0.1 (allowed
with --webhook-allow) and retried until it answers 2xx, or refused where the destination policy
forbids. A real jazarid on 127.0.0.1 with an ephemeral port and a temporary state directory
(tests/integration/service's harness).

Usage: test_events.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]
Each TEST is one of the functions named test_* below, without the prefix."""

import argparse
import hashlib
import hmac
import http.server
import json
import os
import queue
import socket
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
sys.path.insert(0, os.path.join(HERE, "..", "front"))
import test_service  # noqa: E402
import test_front  # noqa: E402  (make_ca: TLS material)
from test_service import batch  # noqa: E402

FINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT")
SECRET = "s3cret-0123456789abcdef"
TLS = {}  # webhook_https: {"trusted": (cert, key, ca), "other": (...)}; see main()


class Stream:
    """One GET /v1/events over a raw socket: the status and headers, then every SSE block read by
    a thread into a queue, as dicts {"id", "event", "data" (parsed JSON), "comment"}."""

    def __init__(self, svc, token, query="", headers=None, method="GET"):
        self.sock = socket.create_connection(("127.0.0.1", svc.port), timeout=30)
        head = "%s /v1/events%s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, query)
        if token:
            head += "Authorization: Bearer %s\r\n" % token
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        self.sock.sendall((head + "\r\n").encode())
        self.buf = b""
        self.status, self.headers = self._read_head()
        self.blocks = queue.Queue()
        self.closed = threading.Event()
        self.body = b""
        if self.status == 200 and method == "GET":
            threading.Thread(target=self._read_chunks, daemon=True).start()
        else:
            n = int(self.headers.get("content-length", "0"))
            if method != "HEAD":
                while len(self.buf) < n:
                    self.buf += self.sock.recv(65536)
                self.body = self.buf[:n]

    def _recv(self):
        part = self.sock.recv(65536)
        if not part:
            raise EOFError
        self.buf += part

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers

    def _read_chunks(self):
        text = ""
        try:
            while True:
                while b"\r\n" not in self.buf:
                    self._recv()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._recv()
                data, self.buf = self.buf[:size], self.buf[size + 2:]
                if size == 0:
                    break
                text += data.decode()
                while "\n\n" in text:
                    block, text = text.split("\n\n", 1)
                    self.blocks.put(parse_block(block))
        except (EOFError, OSError):
            pass
        self.closed.set()

    def json(self):
        return json.loads(self.body)

    def next(self, timeout=30, comments=False):
        """The next block (comments skipped unless asked for)."""
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            assert left > 0, "no event within %d s" % timeout
            try:
                b = self.blocks.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no event within %d s" % timeout)
            if comments or b.get("event"):
                return b

    def job_events(self, job, until_final=True, timeout=60):
        """The job events of job, in order, until its final state."""
        got = []
        deadline = time.time() + timeout
        while True:
            b = self.next(max(1, deadline - time.time()))
            assert b["event"] == "job", b
            if b["data"]["job"] != job:
                continue
            got.append(b)
            if not until_final or b["data"]["state"] in FINAL:
                return got

    def quiet(self, seconds):
        """No job event arrives for seconds."""
        try:
            b = self.next(seconds)
        except AssertionError:
            return
        raise AssertionError("unexpected event: %s" % b)

    def close(self):
        # shutdown first: a close() alone, while the reader thread is in recv(), sends nothing.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def parse_block(block):
    out = {"comment": None, "event": None, "id": None, "data": None}
    data = []
    for line in block.split("\n"):
        if line.startswith(":"):
            out["comment"] = line[1:].strip()
            continue
        k, _, v = line.partition(":")
        v = v[1:] if v.startswith(" ") else v
        if k == "data":
            data.append(v)
        elif k in ("id", "event"):
            out[k] = v
    if data:
        out["data"] = json.loads("\n".join(data))
    return out


def quick(svc, token, **extra):
    body = batch(["true"])
    body.update(extra)
    return svc.submit(token, body)


def states(events):
    return [(e["data"]["previous"], e["data"]["state"]) for e in events]


def check_lifecycle(events, job):
    assert states(events) == [(None, "PENDING"), ("PENDING", "RUNNING"),
                              ("RUNNING", "SUCCEEDED")], states(events)
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 3, ids
    for e in events:
        d = e["data"]
        assert d["id"] == int(e["id"]) and d["job"] == job, e
        for k in ("time", "user", "tenant", "name", "reason", "reason_code", "exit_code",
                  "array"):
            assert k in d, (k, d)
    assert events[-1]["data"]["exit_code"] == 0, events[-1]


# --- streams ----------------------------------------------------------------------------------

def test_stream(svc):
    """A quick job's PENDING, RUNNING and SUCCEEDED, in order, with increasing ids."""
    s = Stream(svc, svc.admin)
    assert s.status == 200, s.status
    assert s.headers["content-type"].startswith("text/event-stream"), s.headers
    jid = quick(svc, svc.admin)
    check_lifecycle(s.job_events(jid), jid)
    s.close()


def test_filters(svc):
    """Users see their own jobs only; admins everyone's; job=, user= and tenant= filter."""
    alice = svc.add_user("alice", tenant="physics")
    bob = svc.add_user("bob", tenant="chemistry")
    mine = Stream(svc, alice)
    all_ = Stream(svc, svc.admin)
    by_user = Stream(svc, svc.admin, "?user=bob")
    by_tenant = Stream(svc, svc.admin, "?tenant=physics")
    own = Stream(svc, alice, "?user=alice")
    b = quick(svc, bob)
    a = quick(svc, alice)
    by_job = Stream(svc, svc.admin, "?job=%d" % a)
    svc.wait(svc.admin, a)
    svc.wait(svc.admin, b)
    c = quick(svc, alice)  # after by_job opened: its filter must hold it back
    svc.wait(svc.admin, c)
    for s in (mine, own, by_tenant):
        got = [e["data"]["job"] for e in s.job_events(c)]
        assert b not in got, got
    seen = set()
    while len(seen) < 3:
        e = all_.next()
        if e["data"]["state"] in FINAL:
            seen.add(e["data"]["job"])
    assert seen == {a, b, c}, seen
    check_lifecycle(by_user.job_events(b), b)
    by_user.quiet(1)
    e = by_job.next()  # opened after a's submission: what came next, and nothing of c
    assert e["data"]["job"] == a, e
    while e["data"]["state"] not in FINAL:
        e = by_job.next()
        assert e["data"]["job"] == a, e
    by_job.quiet(1)
    for s in (mine, all_, by_user, by_tenant, own, by_job):
        s.close()


def test_refusals(svc):
    """403 for another user's filter, 400 naming a bad or unknown parameter, 401 without a
    token; HEAD answers at once."""
    alice = svc.add_user("alice", tenant="physics")
    svc.add_user("bob", tenant="physics")
    s = Stream(svc, alice, "?user=bob")
    assert s.status == 403 and s.json()["error"]["field"] == "user", (s.status, s.body)
    for query, field in (("?job=abc", "job"), ("?job=0", "job"), ("?jobs=1", "jobs"),
                         ("?last_event_id=-3", "last_event_id"), ("?tenant=", "tenant")):
        s = Stream(svc, alice, query)
        assert s.status == 400 and s.json()["error"]["field"] == field, (query, s.status, s.body)
    s = Stream(svc, alice, headers={"Last-Event-ID": "soon"})
    assert s.status == 400 and s.json()["error"]["field"] == "Last-Event-ID", s.body
    s = Stream(svc, None)
    assert s.status == 401, s.status
    t0 = time.time()
    s = Stream(svc, alice, method="HEAD")
    assert s.status == 200 and time.time() - t0 < 5, s.status
    assert s.headers["content-type"].startswith("text/event-stream"), s.headers


def test_resume(svc):
    """Last-Event-ID (header or query) replays what came after it, and only that."""
    s = Stream(svc, svc.admin)
    jid = quick(svc, svc.admin)
    first = s.job_events(jid)
    s.close()
    for how in ("header", "query"):
        if how == "header":
            r = Stream(svc, svc.admin, headers={"Last-Event-ID": first[0]["id"]})
        else:
            r = Stream(svc, svc.admin, "?last_event_id=" + first[0]["id"])
        got = r.job_events(jid)
        assert [e["id"] for e in got] == [e["id"] for e in first[1:]], (got, first)
        r.close()
    # Resuming from the newest id replays nothing, and goes on live.
    r = Stream(svc, svc.admin, headers={"Last-Event-ID": first[-1]["id"]})
    r.quiet(1)
    j2 = quick(svc, svc.admin)
    check_lifecycle(r.job_events(j2), j2)
    r.close()


def test_reset(svc):
    """An id older than what the server still has, or one it never gave out: one reset first,
    with the newest id, then live events."""
    s = Stream(svc, svc.admin)
    jid = quick(svc, svc.admin)
    last = s.job_events(jid)[-1]
    s.close()
    for stale in ("1", "future"):
        if stale == "future":
            stale = str(int(last["id"]) + 10 ** 9)
        r = Stream(svc, svc.admin, headers={"Last-Event-ID": stale})
        e = r.next()
        assert e["event"] == "reset" and e["data"]["reason"], e
        assert e["id"] == last["id"], (e, last)
        j2 = quick(svc, svc.admin)
        got = r.job_events(j2)
        check_lifecycle(got, j2)
        last = got[-1]
        r.close()


def test_restart(svc):
    """Ids keep increasing across a restart; after a clean stop a client that had every event
    resumes without a reset, and one with an older id gets one."""
    s = Stream(svc, svc.admin)
    jid = quick(svc, svc.admin)
    before = s.job_events(jid)
    svc.stop()  # with the stream open: it ends with jazarid, which still exits 0
    assert s.closed.wait(5), "the stream outlived jazarid"
    s.close()
    svc.start()
    r = Stream(svc, svc.admin, headers={"Last-Event-ID": before[-1]["id"]})
    old = Stream(svc, svc.admin, headers={"Last-Event-ID": before[0]["id"]})
    e = old.next()
    assert e["event"] == "reset", e
    j2 = quick(svc, svc.admin)
    after = r.job_events(j2)
    check_lifecycle(after, j2)
    assert int(after[0]["id"]) > int(before[-1]["id"]), (before, after)
    r.close()
    old.close()


def test_limits(svc):
    """Streams per user are bounded (with log follows, --max-log-streams); another user is not
    held back; a closed stream frees its place."""
    alice = svc.add_user("alice", tenant="physics")
    bob = svc.add_user("bob", tenant="physics")
    streams = [Stream(svc, alice) for _ in range(3)]
    assert all(s.status == 200 for s in streams)
    s = Stream(svc, alice)
    assert s.status == 429 and s.json()["error"]["code"] == "too_many_streams", s.body
    other = Stream(svc, bob)
    assert other.status == 200
    assert metrics(svc)["jazari_event_streams"] == 4
    streams[0].close()
    deadline = time.time() + 10
    while True:
        s = Stream(svc, alice)
        if s.status == 200 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert s.status == 200, s.status
    for x in streams[1:] + [s, other]:
        x.close()


def test_keepalive(svc):
    """A quiet stream gets a keep-alive comment every 15 s."""
    s = Stream(svc, svc.admin)
    t0 = time.time()
    while True:
        b = s.next(30, comments=True)
        if b["comment"] == "keep-alive":
            break
    assert 10 < time.time() - t0 < 25, time.time() - t0
    s.close()


def metrics(svc):
    """GET /metrics with the monitoring token: {"name{labels}": value}."""
    with open(os.path.join(svc.state, "monitor.token")) as f:
        token = f.read().strip()
    st, text = svc.http("GET", "/metrics", token=token)
    assert st == 200, (st, text)
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


# --- webhooks ---------------------------------------------------------------------------------

class Receiver:
    """An HTTP server on 127.0.0.1 that answers POSTs with the statuses in script (then 200) and
    records each request (headers and body)."""

    def __init__(self, script=(), tls=None):
        self.script = list(script)
        self.got = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.got.append((self.path, dict(self.headers.items()), body, time.time()))
                status = outer.script.pop(0) if outer.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:  # (cert, key): serve HTTPS with that certificate
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d/hooks/jazari?src=test" % (scheme,
                                                              self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n, timeout=30):
        deadline = time.time() + timeout
        while len(self.got) < n:
            assert time.time() < deadline, "%d of %d deliveries arrived" % (len(self.got), n)
            time.sleep(0.05)
        return self.got

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def check_signed(path, headers, body, job):
    h = {k.lower(): v for k, v in headers.items()}
    assert path == "/hooks/jazari?src=test", path
    want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert h["x-jazari-signature-256"] == want, (h, want)
    assert h["x-jazari-event"] == "job.ended", h
    assert h["content-type"] == "application/json", h
    assert h["user-agent"].startswith("jazarid/"), h
    assert h["x-jazari-delivery"], h
    rec = json.loads(body)
    assert rec["id"] == job and rec["state"] == "SUCCEEDED", rec
    assert "secret" not in body.decode(), body
    return h["x-jazari-delivery"]


def test_webhook(svc):
    """When a job ends, its record is POSTed to its notify URL, signed with its secret, once."""
    rc = Receiver()
    try:
        alice = svc.add_user("alice", tenant="physics")
        jid = quick(svc, alice, notify={"url": rc.url, "secret": SECRET})
        svc.wait(alice, jid)
        path, headers, body, _ = rc.wait(1)[0]
        check_signed(path, headers, body, jid)
        time.sleep(1.5)
        assert len(rc.got) == 1, rc.got
        plain = quick(svc, alice)  # no notify: nothing sent
        svc.wait(alice, plain)
        time.sleep(0.5)
        assert len(rc.got) == 1, rc.got
        m = metrics(svc)
        assert m['jazari_webhook_deliveries_total{outcome="delivered"}'] == 1, m
        assert m['jazari_webhook_deliveries_total{outcome="failed"}'] == 0, m
        assert m["jazari_webhook_attempts_total"] == 1, m
        assert m["jazari_webhook_deliveries_pending"] == 0, m
        assert m["jazari_job_events_total"] == 6, m  # 2 jobs x PENDING, RUNNING, SUCCEEDED
    finally:
        rc.close()


def test_webhook_retry(svc):
    """500 twice, then 200: three tries, backing off (1 s, then 2 s), the same delivery id."""
    rc = Receiver([500, 500])
    try:
        jid = quick(svc, svc.admin, notify={"url": rc.url, "secret": SECRET})
        got = rc.wait(3, timeout=30)
        ids = {check_signed(p, h, b, jid) for p, h, b, _ in got}
        assert len(ids) == 1, ids
        gaps = [got[i + 1][3] - got[i][3] for i in range(2)]
        assert 0.8 < gaps[0] < 1.8 and 1.8 < gaps[1] < 3.5, gaps
        time.sleep(2.5)
        assert len(rc.got) == 3, rc.got
        assert "answered 200 (try 3)" in svc.read_log(), svc.read_log()[-2000:]
    finally:
        rc.close()


def test_webhook_refused(svc):
    """A 4xx other than 408 and 429 ends the delivery at once."""
    rc = Receiver([410])
    try:
        jid = quick(svc, svc.admin, notify={"url": rc.url, "secret": SECRET})
        rc.wait(1)
        svc.wait(svc.admin, jid)
        time.sleep(2.5)
        assert len(rc.got) == 1, rc.got
        assert "answered 410; giving up after 1 try" in svc.read_log()
    finally:
        rc.close()


def test_webhook_https(svc):
    """https: delivered to a receiver whose certificate chains to a trusted CA (SSL_CERT_FILE,
    which OpenSSL's default store reads); one whose CA is not trusted gets nothing, and the log
    says why."""
    good = Receiver(tls=TLS["trusted"][:2])
    bad = Receiver(tls=TLS["other"][:2])
    try:
        jid = quick(svc, svc.admin, notify={"url": good.url, "secret": SECRET})
        path, headers, body, _ = good.wait(1)[0]
        check_signed(path, headers, body, jid)
        j2 = quick(svc, svc.admin, notify={"url": bad.url, "secret": SECRET})
        svc.wait(svc.admin, j2)
        deadline = time.time() + 10
        while "certificate verify failed" not in svc.read_log():
            assert time.time() < deadline, svc.read_log()[-3000:]
            time.sleep(0.1)
        assert not bad.got, bad.got
    finally:
        good.close()
        bad.close()


def test_webhook_blocked(svc):
    """Without --webhook-allow, a webhook may not reach loopback: a literal address is refused at
    submission (400, notify.url); a name that resolves there (localhost) is accepted, but refused
    at delivery, with no request sent, no retry, and the log and /metrics saying so."""
    rc = Receiver()
    try:
        st, j = svc.http("POST", "/v1/jobs", dict(batch(["true"]),
                                                   notify={"url": rc.url, "secret": SECRET}),
                         svc.admin)
        assert st == 400 and j["error"]["field"] == "notify.url", (st, j)
        assert "loopback" in j["error"]["message"], j
        for url in ("http://[::1]:9/", "http://169.254.169.254/latest/meta-data/",
                    "http://[::ffff:10.0.0.1]/", "http://192.168.1.1/"):
            st, j = svc.http("POST", "/v1/jobs", dict(batch(["true"]),
                                                       notify={"url": url, "secret": SECRET}),
                             svc.admin)
            assert st == 400 and j["error"]["field"] == "notify.url", (url, st, j)
        url = rc.url.replace("127.0.0.1", "localhost")
        jid = quick(svc, svc.admin, notify={"url": url, "secret": SECRET})
        svc.wait(svc.admin, jid)
        deadline = time.time() + 15
        while "blocked: localhost resolves to" not in svc.read_log():
            assert time.time() < deadline, svc.read_log()[-3000:]
            time.sleep(0.1)
        assert "not retried" in svc.read_log(), svc.read_log()[-3000:]
        time.sleep(1.5)  # a retry would come after 1 s
        assert not rc.got, rc.got
        m = metrics(svc)
        assert m['jazari_webhook_deliveries_total{outcome="blocked"}'] == 1, m
        assert m['jazari_webhook_deliveries_total{outcome="failed"}'] == 0, m
        assert m["jazari_webhook_attempts_total"] == 0, m
        assert m["jazari_webhook_deliveries_pending"] == 0, m
    finally:
        rc.close()


def make_service(name):
    if name == "webhook_https":
        folder = tempfile.mkdtemp(prefix="jazari-events-tls-")
        test_service.FOLDERS.append(folder)
        TLS["trusted"] = test_front.make_ca(folder, "trusted")
        TLS["other"] = test_front.make_ca(folder, "other")
        os.environ["SSL_CERT_FILE"] = TLS["trusted"][2]  # jazarid inherits it
    extra = ["--max-log-streams", "3"] if name == "limits" else []
    # The receivers listen on 127.0.0.1, which the webhook address policy refuses by default.
    if name != "webhook_blocked":
        extra += ["--webhook-allow", "127.0.0.1/32"]
    return test_service.Service(extra=extra)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    failed = test_service.run_tests(args.tests, globals(), make_service)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
