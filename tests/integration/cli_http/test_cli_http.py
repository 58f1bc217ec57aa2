#!/usr/bin/env python3
"""The jazari CLI's own HTTP client (clients/cli_http.c, clients/cli_transport.c) end to end:
answers framed by chunks, Content-Length or the end of the connection from a scripted server on
127.0.0.1 (port 0); HTTP proxies from the environment (tests/integration/cli_http/proxy.py, a
tiny forward and CONNECT proxy) in front of a real jazarid, plain and over TLS, with no_proxy
bypassing them; IPv6 literals; and one clear line when the server refuses or never accepts.

Usage: test_cli_http.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]
Each TEST is one of the functions named test_* below, without the prefix."""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The harness of the other integration tests: daemons, TLS material, kept folders.
sys.path.insert(0, os.path.join(HERE, "..", "service"))
sys.path.insert(0, os.path.join(HERE, "..", "front"))
import test_service  # noqa: E402
import test_front  # noqa: E402

ARGS = None
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY", "no_proxy", "NO_PROXY")


def cli(url, *args, env=None, timeout=60):
    """Runs the CLI against url with a clean proxy environment plus env."""
    e = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    e.update(JAZARI_URL=url, JAZARI_TOKEN="jz_test_token", JAZARI_CONFIG="/nonexistent")
    e.pop("JAZARI_CA", None)
    e.update(env or {})
    t0 = time.time()
    r = subprocess.run([os.path.join(ARGS.build, "bin", "jazari"), *args], env=e,
                       capture_output=True, text=True, timeout=timeout)
    assert not any(m in r.stderr for m in test_service.SANITIZER_MARKS), r.stderr
    return r.returncode, r.stdout, r.stderr, time.time() - t0


def one_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


class Scripted:
    """A server that answers each connection with the next canned answer: a list of byte strings
    sent with short pauses between them (so that the client sees them in separate reads), then
    closes. Records each request's head."""

    def __init__(self, answers, family=socket.AF_INET, host="127.0.0.1"):
        self.answers = list(answers)
        self.requests = []
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    part = conn.recv(65536)
                    if not part:
                        break
                    data += part
                self.requests.append(data.decode(errors="replace"))
                for piece in self.answers.pop(0):
                    conn.sendall(piece)
                    time.sleep(0.01)

    def close(self):
        self.sock.close()
        self.thread.join(5)


WHOAMI = json.dumps({"name": "alice", "tenant": "t1", "role": "user"}).encode()


def chunked(body, sizes):
    """body in chunks of the given sizes (cycled), with an extension on one and a trailer."""
    out, i, k = [], 0, 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        ext = b";name=value" if k == 1 else b""
        out.append(b"%x%s\r\n" % (n if i + n <= len(body) else len(body) - i, ext) +
                   body[i:i + n] + b"\r\n")
        i += n
        k += 1
    out.append(b"0\r\nX-Trailer: yes\r\n\r\n")
    return out


HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


# ------------------------------------------------------------------------------------------------
def test_framing(tmp):
    """Chunked (odd sizes, an extension, a trailer, split across reads), Content-Length, and a
    body that ends with the connection, buffered (whoami) and streamed (logs); a 100 Continue
    before the answer; a broken chunk size and a cut-short body are one-line errors."""
    log = bytes(range(32, 127)) * 2000  # 190 KB
    answers = [
        [HEAD_CHUNKED] + chunked(WHOAMI, [1, 7, 3]),
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" %
         len(WHOAMI), WHOAMI[:10], WHOAMI[10:]],
        [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", WHOAMI],  # until close
        [HEAD_CHUNKED] + chunked(log, [4096, 1, 65536, 777]),  # logs: offset 0
        [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],  # logs: nothing more
        [HEAD_CHUNKED, b"zz\r\n{}\r\n0\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", WHOAMI],
    ]
    srv = Scripted(answers)
    url = "http://127.0.0.1:%d" % srv.port
    try:
        for _ in range(3):
            rc, out, err, _ = cli(url, "whoami")
            assert rc == 0 and "alice (tenant t1, role user)" in out, (rc, out, err)
        rc, out, err, _ = cli(url, "logs", "7")
        assert rc == 0 and out.encode() == log, (rc, len(out), err)
        rc, out, err, _ = cli(url, "whoami")
        assert rc == 1 and "chunk" in one_line(err), (rc, err)
        rc, out, err, _ = cli(url, "whoami")
        assert rc == 1 and "closed before the end" in one_line(err), (rc, err)
    finally:
        srv.close()
    req = srv.requests[0]
    assert req.startswith("GET /v1/whoami HTTP/1.1\r\n"), req
    assert "\r\nHost: 127.0.0.1:%d\r\n" % srv.port in req, req
    assert "\r\nAuthorization: Bearer jz_test_token\r\n" in req, req
    assert srv.requests[3].startswith("GET /v1/jobs/7/log?offset=0 HTTP/1.1"), srv.requests[3]
    assert srv.requests[4].startswith("GET /v1/jobs/7/log?offset=%d " % len(log)), srv.requests[4]


def test_ipv6(tmp):
    """A URL with an IPv6 literal: http://[::1]:PORT, and the Host header keeps the brackets."""
    try:
        srv = Scripted([[b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(WHOAMI), WHOAMI]],
                       family=socket.AF_INET6, host="::1")
    except OSError as e:
        print("no IPv6 loopback here (%s): only the URL parsing is checked" % e)
        rc, out, err, _ = cli("http://[::1", "whoami")
        assert rc != 0 and "[" in err, (rc, err)
        return
    try:
        rc, out, err, _ = cli("http://[::1]:%d/" % srv.port, "whoami")
        assert rc == 0 and "alice" in out, (rc, out, err)
    finally:
        srv.close()
    assert "\r\nHost: [::1]:%d\r\n" % srv.port in srv.requests[0], srv.requests[0]


def test_unreachable(tmp):
    """Connection refused, and a server that never accepts (its backlog full): one line naming
    the URL, exit 1, and the second one gives up after the 10 s connect timeout."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    rc, out, err, _ = cli("http://127.0.0.1:%d" % port, "whoami")
    line = one_line(err)
    assert rc == 1 and "cannot reach http://127.0.0.1:%d" % port in line, (rc, err)
    assert "refused" in line.lower(), line
    # A listener with a full accept queue: Linux drops further SYNs, so connect() hangs.
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(0)
    port = lsn.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        rc, out, err, took = cli("http://127.0.0.1:%d" % port, "whoami", timeout=60)
        line = one_line(err)
        if rc == 1 and "refused" in line.lower():  # net.ipv4.tcp_abort_on_overflow=1
            print("this kernel refuses instead of dropping SYNs: the timeout is not checked")
            return
        assert rc == 1 and "within 10 s" in line, (rc, err)
        assert 9 <= took <= 30, took
    finally:
        for f in fillers:
            f.close()
        lsn.close()


def start_proxy(tmp, auth=None):
    log = os.path.join(tmp, "proxy-%d.log" % time.time_ns())
    cmd = [sys.executable, os.path.join(HERE, "proxy.py"), "--log", log]
    if auth:
        cmd += ["--auth", auth]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port, log


def proxy_lines(log):
    try:
        with open(log) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def stop_proxy(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_proxy(tmp):
    """http_proxy (lowercase only, as libcurl) forwards plain http:// in absolute form with
    Proxy-Authorization from the proxy URL; no_proxy lists (a name or an address, '*') go
    direct; loopback is not bypassed unless listed; a proxy that refuses is one line."""
    svc = test_front.Service(extra=["--no-local-node"])
    proxy, pport, plog = start_proxy(tmp, auth="us er:p@ss")
    try:
        purl = "http://us%20er:p%40ss@127.0.0.1:" + str(pport)
        rc, out, err, _ = cli(svc.url, "whoami", env={"http_proxy": purl,
                                                      "JAZARI_TOKEN": svc.admin})
        assert rc == 0 and "admin" in out, (rc, out, err)
        lines = proxy_lines(plog)
        want = "Basic " + base64.b64encode(b"us er:p@ss").decode()
        assert lines == ["GET %s/v1/whoami auth=%s" % (svc.url, want)], lines
        # A submission (a POST with a body) goes through too.
        rc, out, err, _ = cli(svc.url, "submit", "--gpus", "0", "--", "true",
                              env={"http_proxy": purl, "JAZARI_TOKEN": svc.admin})
        assert rc == 0 and out.strip().isdigit(), (rc, out, err)
        assert proxy_lines(plog)[-1].startswith("POST %s/v1/jobs " % svc.url), proxy_lines(plog)
        n = len(proxy_lines(plog))
        # no_proxy: the address itself, a CIDR range, '*', and NO_PROXY when no_proxy is unset.
        for np in ({"no_proxy": "127.0.0.1"}, {"no_proxy": "example.com, 127.0.0.0/8"},
                   {"no_proxy": "*"}, {"NO_PROXY": "127.0.0.1"}):
            rc, out, err, _ = cli(svc.url, "whoami",
                                  env=dict(np, http_proxy=purl, JAZARI_TOKEN=svc.admin))
            assert rc == 0 and "admin" in out, (np, rc, out, err)
        # Names are matched as domains, not as addresses: "localhost" does not cover 127.0.0.1.
        rc, out, err, _ = cli(svc.url, "whoami", env={"http_proxy": purl, "no_proxy": "localhost",
                                                      "JAZARI_TOKEN": svc.admin})
        assert rc == 0, (rc, err)
        assert len(proxy_lines(plog)) == n + 1, proxy_lines(plog)
        # The uppercase HTTP_PROXY is ignored (a CGI client could set it), ALL_PROXY is not.
        rc, out, err, _ = cli(svc.url, "whoami", env={"HTTP_PROXY": "http://127.0.0.1:1",
                                                      "JAZARI_TOKEN": svc.admin})
        assert rc == 0 and "admin" in out, (rc, out, err)
        rc, out, err, _ = cli(svc.url, "whoami", env={"ALL_PROXY": purl,
                                                      "JAZARI_TOKEN": svc.admin})
        assert rc == 0 and len(proxy_lines(plog)) == n + 2, (rc, err, proxy_lines(plog))
        # Wrong credentials: the proxy's 407 is the answer, one line.
        bad = "http://us%20er:nope@127.0.0.1:" + str(pport)
        rc, out, err, _ = cli(svc.url, "whoami", env={"http_proxy": bad,
                                                      "JAZARI_TOKEN": svc.admin})
        assert rc == 1 and "407" in one_line(err), (rc, err)
        # A proxy scheme the client does not speak is refused clearly.
        rc, out, err, _ = cli(svc.url, "whoami", env={"http_proxy": "socks5://127.0.0.1:1"})
        assert rc == 1 and "http_proxy" in one_line(err), (rc, err)
    finally:
        stop_proxy(proxy)
        svc.close()


def test_proxy_tls(tmp):
    """https_proxy: a CONNECT tunnel to a TLS jazarid, the certificate still checked against
    --ca (the proxy sees only the tunnel's target); HTTPS_PROXY works too; a wrong CA through
    the tunnel is the usual one-line certificate error."""
    if shutil.which("openssl") is None:
        print("SKIP: the openssl command is not installed")
        sys.exit(77)
    cert, key, ca = test_front.make_ca(tmp, "good")
    _, _, other_ca = test_front.make_ca(tmp, "other")
    svc = test_front.Service(tls=(cert, key, ca), extra=["--no-local-node"])
    proxy, pport, plog = start_proxy(tmp)
    try:
        purl = "http://127.0.0.1:%d" % pport
        for var in ("https_proxy", "HTTPS_PROXY"):
            rc, out, err, _ = cli(svc.url, "--ca", ca, "whoami",
                                  env={var: purl, "JAZARI_TOKEN": svc.admin})
            assert rc == 0 and "admin" in out, (var, rc, out, err)
        assert proxy_lines(plog) == ["CONNECT 127.0.0.1:%d auth=-" % svc.port] * 2, \
            proxy_lines(plog)
        rc, out, err, _ = cli(svc.url, "--ca", other_ca, "whoami",
                              env={"https_proxy": purl, "JAZARI_TOKEN": svc.admin})
        line = one_line(err)
        assert rc == 1 and "certificate" in line and "--ca" in line, (rc, err)
        # http_proxy is for http:// only.
        rc, out, err, _ = cli(svc.url, "--ca", ca, "whoami",
                              env={"http_proxy": "http://127.0.0.1:1", "JAZARI_TOKEN": svc.admin})
        assert rc == 0, (rc, err)
    finally:
        stop_proxy(proxy)
        svc.close()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    ARGS = p.parse_args()
    ARGS.build = os.path.abspath(ARGS.build)
    ARGS.fixtures = os.path.abspath(ARGS.fixtures)
    test_service.ARGS = test_front.ARGS = ARGS
    failed = test_service.run_in_folders(ARGS.tests, globals(), "jazari-cli-http-")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
