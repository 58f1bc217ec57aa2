#!/usr/bin/env python3
"""A tiny HTTP proxy for the CLI's tests: absolute-form requests are forwarded (one request per
connection, the answer relayed until the server closes), CONNECT opens a tunnel. Listens on
127.0.0.1, port 0, and prints its port on its first output line. Each request is appended to
--log as one line: "METHOD TARGET auth=VALUE" (VALUE: the Proxy-Authorization header, or -).
With --auth user:password, requests without that Basic credential get 407.

Usage: proxy.py --log FILE [--auth USER:PASSWORD]"""

import argparse
import base64
import http.server
import select
import socket
import sys
import urllib.parse

ARGS = None


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the log file is the record
        pass

    def record(self):
        auth = self.headers.get("Proxy-Authorization", "-")
        with open(ARGS.log, "a") as f:
            f.write("%s %s auth=%s\n" % (self.command, self.path, auth))

    def authorized(self):
        if not ARGS.auth:
            return True
        want = "Basic " + base64.b64encode(ARGS.auth.encode()).decode()
        if self.headers.get("Proxy-Authorization") == want:
            return True
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        return False

    def do_CONNECT(self):
        self.record()
        if not self.authorized():
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.relay(self.connection, upstream)
        self.close_connection = True

    def forward(self):
        self.record()
        if not self.authorized():
            return
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or not url.hostname:
            self.send_error(400, "absolute-form http:// target expected")
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        target = (url.path or "/") + ("?" + url.query if url.query else "")
        head = ["%s %s HTTP/1.1" % (self.command, target)]
        for k, v in self.headers.items():
            if k.lower() not in ("proxy-authorization", "connection", "proxy-connection"):
                head.append("%s: %s" % (k, v))
        head.append("Connection: close")
        upstream = socket.create_connection((url.hostname, url.port or 80), timeout=10)
        upstream.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        self.relay(self.connection, upstream)
        self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = forward

    @staticmethod
    def relay(a, b):
        """Copies both ways until either side closes."""
        socks = [a, b]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 30)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        finally:
            b.close()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--auth")
    ARGS = p.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
