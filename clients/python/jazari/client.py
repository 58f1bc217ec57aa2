"""The Jazari REST API client (standard library only)."""

from __future__ import annotations

import base64
import builtins
import datetime as _dt
import http.client
import json
import os
import socket
import ssl
import tempfile
import time
import urllib.parse
import urllib.request
from typing import (IO, Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, Union,
                    cast, overload)

from . import __version__
from .errors import (ConnectionFailed, JazariError, MethodNotAllowed, NotFound, WaitTimeout,
                     error_for)
from .records import (FINAL_STATES, ArrayCancel, Artifact, Dependency, Event, Job, JobEvent,
                      JobPage, LogChunk, Node, Notify, PendingReason, Version, Whoami)

DEFAULT_URL = "http://127.0.0.1:8600"
DEFAULT_TIMEOUT = 30.0

# What submit() takes for a dependency: Dependency("afterok", 12), ("afterok", 12), "afterok:12"
# or {"type": "afterok", "job": 12}.
DependencySpec = Union[Dependency, "tuple[str, int]", str, Mapping[str, Any]]
# A time for list(since=, until=): a datetime (naive = UTC), epoch seconds, or an ISO-8601 text.
TimeSpec = Union[_dt.datetime, int, float, str]
# A duration: seconds, a timedelta, or a text such as "1h30m" (the server parses it).
Duration = Union[int, float, _dt.timedelta, str]


# ---- configuration -----------------------------------------------------------------------------

def _parse_config(text: str) -> dict[str, str]:
    """`key = value` lines (# comments, optional quotes), as the jazari CLI reads them."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#") or "=" not in s:
            continue
        key, val = (x.strip() for x in s.split("=", 1))
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
            val = val[1:-1]
        out[key] = val
    return out


def resolve_config(url: str | None = None, token: str | None = None, ca: str | None = None,
                   environ: Mapping[str, str] | None = None) -> tuple[str, str | None, str | None]:
    """(url, token, ca) as the jazari CLI finds them: the arguments, else JAZARI_URL,
    JAZARI_TOKEN (else the file named by JAZARI_TOKEN_FILE: its first line), JAZARI_CA, else the
    config file ($JAZARI_CONFIG, else ~/.config/jazari/config: `url = ...`, `token = ...`,
    `ca = FILE` lines), else http://127.0.0.1:8600 and no token."""
    env = os.environ if environ is None else environ
    url = url or env.get("JAZARI_URL") or None
    ca = ca or env.get("JAZARI_CA") or None
    if not token:
        token = env.get("JAZARI_TOKEN") or None
    if not token and env.get("JAZARI_TOKEN_FILE"):
        path = env["JAZARI_TOKEN_FILE"]
        try:
            with open(path, encoding="utf-8") as f:
                token = (f.readline().strip()) or None
        except FileNotFoundError:
            raise ValueError("JAZARI_TOKEN_FILE: %s does not exist" % path) from None
    if not url or not token or (ca is None and (url or "https://").startswith("https://")):
        path = env.get("JAZARI_CONFIG") or ""
        explicit = bool(path)
        if not path and env.get("HOME"):
            path = os.path.join(env["HOME"], ".config", "jazari", "config")
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    conf = _parse_config(f.read())
            except FileNotFoundError:
                if explicit and not (url and token):
                    raise ValueError("JAZARI_CONFIG: %s does not exist" % path) from None
                conf = {}
            url = url or conf.get("url") or None
            token = token or conf.get("token") or None
            if ca is None and conf.get("ca"):
                ca = conf["ca"]
                if not os.path.isabs(ca):  # relative: the config file's neighbour
                    ca = os.path.join(os.path.dirname(path), ca)
    url = (url or DEFAULT_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("the Jazari URL must start with http:// or https:// (got %r)" % url)
    if token is not None and any(not (0x21 <= ord(c) <= 0x7e) for c in token):
        raise ValueError("malformed token (it goes into an HTTP header)")
    return url, token, ca


# ---- small helpers ------------------------------------------------------------------------------

def _seconds(d: Duration) -> int | str:
    if isinstance(d, _dt.timedelta):
        return int(d.total_seconds())
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return int(d)
    if isinstance(d, str):
        return d
    raise TypeError("a duration is seconds, a timedelta or a text such as '1h30m'")


def _time_param(t: TimeSpec) -> str:
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return str(int(t))
    if isinstance(t, str):
        return t
    raise TypeError("a time is a datetime, epoch seconds or an ISO-8601 text")


def parse_time(s: str | None) -> _dt.datetime | None:
    """An API time ("2026-11-25T19:00:00.123Z") as an aware datetime (None stays None)."""
    if not s:
        return None
    return _dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def _array_spec(array: str | range | Iterable[int], throttle: int | None) -> str:
    if isinstance(array, str):
        spec = array
    elif isinstance(array, range):
        if len(array) == 0 or array.step <= 0:
            raise ValueError("array: an empty or descending range")
        spec = "%d-%d" % (array.start, array[-1])
        if array.step != 1:
            spec += ":%d" % array.step
    else:
        spec = ",".join(str(int(i)) for i in array)
        if not spec:
            raise ValueError("array: no index")
    if throttle is not None:
        if "%" in spec:
            raise ValueError("array: give the throttle in the text or as array_throttle, not both")
        spec += "%%%d" % throttle
    return spec


def _dependency(d: DependencySpec) -> dict[str, Any]:
    if isinstance(d, Dependency):
        return d.to_json()
    if isinstance(d, str):
        kind, sep, job = d.partition(":")
        if not sep:
            raise ValueError("dependency %r: expected TYPE:JOB, e.g. 'afterok:12'" % d)
        return {"type": kind, "job": int(job)}
    if isinstance(d, tuple):
        return {"type": str(d[0]), "job": int(d[1])}
    if isinstance(d, Mapping):
        return dict(d)
    raise TypeError("a dependency is Dependency(type, job), (type, job), 'type:job' or a dict")


def _set_read_timeout(sock: socket.socket | None, seconds: float | None) -> None:
    """Sets how long a read of an open response may wait (None: for ever)."""
    if sock is not None:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass


def _sse(readline: Callable[[], bytes]) -> Iterator[Event]:
    """Server-sent events from a stream, until it ends. Comments (": keep-alive") are skipped."""
    etype, eid, data = "", None, []  # type: str, int | None, builtins.list[str]
    while True:
        raw = readline()
        if not raw:
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line == "":
            if data or etype:
                text = "\n".join(data)
                try:
                    parsed = json.loads(text) if text else {}
                except ValueError:
                    parsed = {"text": text}
                if not isinstance(parsed, dict):
                    parsed = {"value": parsed}
                yield Event(etype or "message", eid, parsed)
            etype, eid, data = "", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            etype = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            try:
                eid = int(value)
            except ValueError:
                eid = None


class Client:
    """A client of one Jazari service.

    url and token default as for the jazari CLI: JAZARI_URL / JAZARI_TOKEN (or the file named by
    JAZARI_TOKEN_FILE), then the config file ($JAZARI_CONFIG or ~/.config/jazari/config), then
    http://127.0.0.1:8600. ca: a CA bundle for https:// (else JAZARI_CA, the config file's
    `ca`, or the system's). timeout: seconds for each request (streams use their own).
    HTTP(S) proxies come from the usual environment variables (http_proxy, no_proxy...)."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, ca: str | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.url, self.token, self.ca = resolve_config(url, token, ca)
        self.timeout = timeout
        if ssl_context is None:
            ssl_context = ssl.create_default_context(cafile=self.ca) if self.ca else \
                ssl.create_default_context()
        self._ssl = ssl_context
        self._split = urllib.parse.urlsplit(self.url)
        self._proxy_headers: dict[str, str] = {}
        self._events_route: bool | None = None  # GET /v1/events known to exist?

    def __repr__(self) -> str:
        return "Client(url=%r)" % self.url

    # ---- transport ------------------------------------------------------------------------
    def _connection(self, timeout: float | None) -> tuple[http.client.HTTPConnection, str]:
        """A new connection to the server (through the environment's proxy, if one applies)
        and the prefix of request paths on it. Every request has its own connection: a Client
        may be used from several threads, and streams hold theirs for long."""
        u = self._split
        host = u.hostname or "127.0.0.1"
        port = u.port or (443 if u.scheme == "https" else 80)
        proxy = None
        proxies = urllib.request.getproxies()
        if proxies.get(u.scheme) and not urllib.request.proxy_bypass(host):
            proxy = urllib.parse.urlsplit(proxies[u.scheme])
        prefix = u.path.rstrip("/")
        hdrs: dict[str, str] = {}
        if proxy is not None and proxy.username:
            cred = "%s:%s" % (urllib.parse.unquote(proxy.username),
                              urllib.parse.unquote(proxy.password or ""))
            hdrs["Proxy-Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            if proxy is not None:
                conn = http.client.HTTPSConnection(proxy.hostname or "", proxy.port or 80,
                                                   timeout=timeout, context=self._ssl)
                conn.set_tunnel(host, port, headers=hdrs)
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                                   context=self._ssl)
        elif proxy is not None:
            conn = http.client.HTTPConnection(proxy.hostname or "", proxy.port or 80,
                                              timeout=timeout)
            prefix = "http://%s:%d%s" % (host, port, prefix)  # absolute form for the proxy
            self._proxy_headers = hdrs
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        return conn, prefix

    def _send(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
              body: Any = None, headers: Mapping[str, str] | None = None,
              timeout: float | None = None,
              auth: bool = True) -> tuple[http.client.HTTPResponse, socket.socket | None]:
        """Sends a request; returns the (successful) response and its socket (for read
        timeouts), or raises the JazariError of an error answer."""
        if query:
            q = {k: v for k, v in query.items() if v is not None}
            if q:
                path += "?" + urllib.parse.urlencode(q)
        data = None if body is None else json.dumps(body).encode()
        h = {"User-Agent": "jazari-python/%s" % __version__, "Accept": "application/json"}
        if data is not None:
            h["Content-Type"] = "application/json"
        if auth and self.token:
            h["Authorization"] = "Bearer " + self.token
        h.update(headers or {})
        try:
            conn, prefix = self._connection(self.timeout if timeout is None else timeout)
            if prefix.startswith("http://"):
                h.update(self._proxy_headers)
            conn.request(method, prefix + path, body=data, headers=h)
            resp = conn.getresponse()
            sock = conn.sock
            # The response keeps the socket open until it is closed itself.
            conn.sock = None
            if sock is not None:
                sock.close()
        except (OSError, http.client.HTTPException) as e:
            raise ConnectionFailed(0, "connection", "cannot reach %s (%s %s): %s" % (
                self.url, method, path.split("?")[0], e)) from e
        if resp.status >= 400:
            try:
                raw = resp.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                resp.close()
            text = raw.decode("utf-8", errors="replace")
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            raise error_for(resp.status, parsed, hdrs)
        return resp, sock

    def _open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
              body: Any = None, headers: Mapping[str, str] | None = None,
              timeout: float | None = None, auth: bool = True) -> http.client.HTTPResponse:
        return self._send(method, path, query=query, body=body, headers=headers,
                          timeout=timeout, auth=auth)[0]

    def _json(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
              body: Any = None, auth: bool = True) -> Any:
        with self._open(method, path, query=query, body=body, auth=auth) as resp:
            try:
                raw = resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise ConnectionFailed(0, "connection", "%s %s: %s" % (method, path, e)) from e
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise JazariError(resp.status, "bad_reply", "the server's answer is not JSON: %r"
                              % raw[:200]) from None

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None) -> Any:
        """Any API call: method, path ("/v1/..."), query parameters and a JSON body; returns
        the parsed JSON answer, raises JazariError for an error answer."""
        return self._json(method, path, query=query, body=body)

    # ---- jobs -----------------------------------------------------------------------------
    def submit(self, plugin: str | None = None, params: Mapping[str, Any] | None = None, *,
               command: Sequence[str] | str | None = None,
               env: Mapping[str, str] | None = None,
               cwd: str | os.PathLike[str] | None = None,
               name: str | None = None,
               gpus: int | None = None,
               cpus: int | None = None,
               cpus_per_gpu: int | None = None,
               memory_mb: int | None = None,
               time_limit: Duration | None = None,
               gpu_model: str | None = None,
               gpu_memory_min_mb: int | None = None,
               nodes: int | None = None,
               gpus_per_node: int | None = None,
               resources: Mapping[str, Any] | None = None,
               preemptible: bool | None = None,
               requeue: bool | None = None,
               job_class: str | None = None,
               resume_from: int | None = None,
               submit_dir: str | os.PathLike[str] | None = None,
               array: str | range | Iterable[int] | None = None,
               array_throttle: int | None = None,
               dependencies: Iterable[DependencySpec] | None = None,
               hold: bool | None = None,
               nice: int | None = None,
               notify: Notify | Mapping[str, str] | None = None,
               extra: Mapping[str, Any] | None = None) -> Job:
        """Submits a job; returns its record (for an array, its first element's).

        A plugin job: submit("train", {"dataset": ..., "epochs": 5}, cpus=2). A command job
        (the batch plugin, like `jazari submit -- CMD`): submit(command=["python3", "x.py"]),
        with env ({"K": "V"}) and cwd; a str command runs with `sh -c`. Parameter values may be
        strings: the server converts them to the plugin schema's types.

        Resources: gpus, cpus, cpus_per_gpu, memory_mb, time_limit (seconds, a timedelta or a
        text like "1h30m"), gpu_model, gpu_memory_min_mb, nodes, gpus_per_node; `resources`
        gives any other key (explicit arguments win). array: "0-99", "0-99:2", "1,3,7-9",
        "0-99%10", a range or a list of indexes (array_throttle adds "%N"). dependencies:
        Dependency("afterok", 12), ("afterok", 12), "afterok:12" or dicts. hold: submit held.
        nice: start as if submitted that many seconds later. notify: Notify(url, secret).
        extra: more top-level body fields, sent as given."""
        body: dict[str, Any] = {}
        p: dict[str, Any] = dict(params or {})
        if command is not None:
            argv = ["sh", "-c", command] if isinstance(command, str) else [str(a) for a in command]
            if not argv:
                raise ValueError("command: empty")
            p["argv"] = argv
            plugin = plugin or "batch"
        if env is not None:
            p["env"] = ["%s=%s" % (k, v) for k, v in env.items()]
        if cwd is not None:
            p["cwd"] = os.fspath(cwd)
        if not plugin:
            raise ValueError("give a plugin name, or a command")
        body["plugin"] = plugin
        if name is not None:
            body["name"] = name
        if p:
            body["params"] = p
        res: dict[str, Any] = dict(resources or {})
        for key, val in (("gpus", gpus), ("cpus", cpus), ("cpus_per_gpu", cpus_per_gpu),
                         ("memory_mb", memory_mb), ("gpu_model", gpu_model),
                         ("gpu_memory_min_mb", gpu_memory_min_mb), ("nodes", nodes),
                         ("gpus_per_node", gpus_per_node)):
            if val is not None:
                res[key] = val
        if time_limit is not None:
            t = _seconds(time_limit)
            res.pop("time_limit" if isinstance(t, int) else "time_limit_s", None)
            res["time_limit_s" if isinstance(t, int) else "time_limit"] = t
        if res:
            body["resources"] = res
        for key, val in (("preemptible", preemptible), ("requeue", requeue),
                         ("class", job_class), ("resume_from", resume_from),
                         ("hold", hold), ("nice", nice)):
            if val is not None:
                body[key] = val
        if submit_dir is not None:
            body["submit_dir"] = os.fspath(submit_dir)
        if array is not None:
            body["array"] = _array_spec(array, array_throttle)
        elif array_throttle is not None:
            raise ValueError("array_throttle without array")
        if dependencies is not None:
            body["dependencies"] = [_dependency(d) for d in dependencies]
        if notify is not None:
            body["notify"] = notify.to_json() if isinstance(notify, Notify) else dict(notify)
        body.update(extra or {})
        return cast(Job, self._json("POST", "/v1/jobs", body=body))

    def get(self, job_id: int) -> Job:
        """The job's record (NotFound when it does not exist or is not the caller's)."""
        return cast(Job, self._json("GET", "/v1/jobs/%d" % job_id))

    def list_page(self, *, state: str | Iterable[str] | None = None, user: str | None = None,
                  tenant: str | None = None, array: int | None = None,
                  scope: Literal["mine", "all"] | None = None, since: TimeSpec | None = None,
                  until: TimeSpec | None = None, order: Literal["asc", "desc"] | None = None,
                  limit: int | None = None, after: int | None = None) -> JobPage:
        """One page of GET /v1/jobs (see list())."""
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        q = {"state": state, "user": user, "tenant": tenant, "array": array, "scope": scope,
             "since": None if since is None else _time_param(since),
             "until": None if until is None else _time_param(until),
             "order": order, "limit": limit, "after": after}
        j = self._json("GET", "/v1/jobs", query=q)
        return JobPage(jobs=cast("builtins.list[Job]", j.get("jobs") or []),
                       next_after=j.get("next_after"), truncated=bool(j.get("truncated")))

    def list(self, *, state: str | Iterable[str] | None = None, user: str | None = None,
             tenant: str | None = None, array: int | None = None,
             scope: Literal["mine", "all"] | None = None, since: TimeSpec | None = None,
             until: TimeSpec | None = None, order: Literal["asc", "desc"] | None = None,
             page_size: int | None = None, after: int | None = None) -> Iterator[Job]:
        """Every job that matches, page after page (the API's next_after), lazily.

        state: "PENDING,RUNNING" or a list of states; user (admins; others get Forbidden),
        tenant; array: an array's id (its elements); scope "all": everyone's pending and running
        jobs (reduced records for others'); since/until: jobs that ended in [since, until)
        (datetimes, epoch seconds or ISO-8601); order "asc" (by id, the default) or "desc";
        page_size: jobs per request (the API's limit, 1-1000)."""
        cursor = after
        if state is not None and not isinstance(state, str):
            state = ",".join(state)
        while True:
            page = self.list_page(state=state, user=user, tenant=tenant, array=array,
                                  scope=scope, since=since, until=until, order=order,
                                  limit=page_size, after=cursor)
            yield from page.jobs
            if page.next_after is None:
                return
            cursor = page.next_after

    def cancel(self, job_id: int) -> Job:
        """Cancels a job (Conflict when it had already ended). A running job stays RUNNING
        until its worker has stopped it."""
        return cast(Job, self._json("POST", "/v1/jobs/%d/cancel" % job_id))

    def cancel_array(self, array_id: int) -> ArrayCancel:
        """Cancels every element of an array that has not ended."""
        j = self._json("POST", "/v1/arrays/%d/cancel" % array_id)
        return ArrayCancel(array_id=int(j.get("array_id", array_id)),
                           cancelled=[int(x) for x in j.get("cancelled") or []],
                           already_ended=[int(x) for x in j.get("already_ended") or []])

    def hold(self, job_id: int) -> Job:
        """Holds a pending job: it waits (reason "held") until released. Conflict otherwise."""
        return cast(Job, self._json("POST", "/v1/jobs/%d/hold" % job_id))

    def release(self, job_id: int) -> Job:
        """Releases a held job."""
        return cast(Job, self._json("POST", "/v1/jobs/%d/release" % job_id))

    def modify(self, job_id: int, *, name: str | None = None,
               time_limit: Duration | None = None, nice: int | None = None,
               job_class: str | None = None) -> Job:
        """Changes a pending job (Conflict "not_pending" otherwise). Users may only lower the
        time limit and raise nice. time_limit: seconds, a timedelta or a text like "30m"."""
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if time_limit is not None:
            t = _seconds(time_limit)  # the API takes a duration text here
            body["time_limit"] = "%ds" % t if isinstance(t, int) else t
        if nice is not None:
            body["nice"] = nice
        if job_class is not None:
            body["class"] = job_class
        if not body:
            raise ValueError("modify: nothing to change")
        return cast(Job, self._json("PATCH", "/v1/jobs/%d" % job_id, body=body))

    def why(self, job_id: int) -> PendingReason:
        """Why the job waits (reason, reason_code, estimated start, priority)."""
        j = self.get(job_id)
        return PendingReason(
            id=int(j.get("id", job_id)), state=str(j.get("state")), reason=j.get("reason"),
            reason_code=j.get("reason_code"), estimated_start=parse_time(j.get("estimated_start")),
            priority=j.get("priority"), attained_gpu_seconds=j.get("attained_gpu_seconds"),
            preemptions=j.get("preemptions"))

    def job_events(self, job_id: int) -> builtins.list[JobEvent]:
        """The job's own history: state changes and (type "metric") reported metric values."""
        j = self._json("GET", "/v1/jobs/%d/events" % job_id)
        return [JobEvent(time=e.get("time", ""), type=e.get("type", ""), detail=e.get("detail"))
                for e in j.get("events") or []]

    def metrics(self, job_id: int) -> dict[str, builtins.list[tuple[int | None, float]]]:
        """Every metric value the job reported with a step, by name: [(step, value), ...]
        (e.g. the train plugin's train_loss per epoch). The record's `metrics` keeps only the
        latest values."""
        out: dict[str, builtins.list[tuple[int | None, float]]] = {}
        for e in self.job_events(job_id):
            m = e.metric
            if m:
                out.setdefault(m[0], []).append((m[2], m[1]))
        return out

    # ---- logs -----------------------------------------------------------------------------
    def log_chunk(self, job_id: int, offset: int = 0) -> LogChunk:
        """One plain read of the log from byte offset (at most 1 MiB)."""
        with self._open("GET", "/v1/jobs/%d/log" % job_id, query={"offset": offset}) as resp:
            data = resp.read()
            nxt = resp.headers.get("X-Jazari-Next-Offset")
        return LogChunk(data=data, next_offset=int(nxt) if nxt else offset + len(data))

    @overload
    def logs(self, job_id: int, offset: int = ..., follow: Literal[False] = ...) -> str: ...

    @overload
    def logs(self, job_id: int, offset: int = ..., *, follow: Literal[True]) -> Iterator[str]: ...

    @overload
    def logs(self, job_id: int, offset: int, follow: Literal[True]) -> Iterator[str]: ...

    def logs(self, job_id: int, offset: int = 0,
             follow: bool = False) -> str | Iterator[str]:
        """The job's log from byte offset, as text (every page of it); with follow=True, an
        iterator over its lines (without their newline) as they are written, until the job has
        ended and its log is read whole."""
        if follow:
            return self._follow(job_id, offset)
        parts = []
        while True:
            c = self.log_chunk(job_id, offset)
            parts.append(c.data)
            if not c.data or c.next_offset <= offset:
                break
            offset = c.next_offset
        return b"".join(parts).decode("utf-8", errors="replace")

    def _follow(self, job_id: int, offset: int) -> Iterator[str]:
        resp, sock = self._send("GET", "/v1/jobs/%d/log" % job_id,
                                query={"offset": offset, "follow": 1})
        try:
            _set_read_timeout(sock, None)  # a quiet log is normal
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as e:
                    raise ConnectionFailed(0, "connection", "log of job %d: %s" % (job_id, e))
                if not line:
                    return
                yield line.decode("utf-8", errors="replace").rstrip("\n")
        finally:
            resp.close()

    # ---- artifacts ------------------------------------------------------------------------
    def artifacts(self, job_id: int) -> builtins.list[Artifact]:
        """The files in the job's output folder."""
        j = self._json("GET", "/v1/jobs/%d/artifacts" % job_id)
        return [Artifact(name=a["name"], size=int(a.get("size", 0)))
                for a in j.get("artifacts") or []]

    def open_artifact(self, job_id: int, name: str) -> IO[bytes]:
        """A binary stream of one artifact (close it, or use `with`)."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError("artifact names are single path components: %r" % name)
        return cast(IO[bytes], self._open(
            "GET", "/v1/jobs/%d/artifacts/%s" % (job_id, urllib.parse.quote(name, safe="")),
            headers={"Accept": "application/octet-stream"}))

    @overload
    def fetch(self, job_id: int, name: str = ..., dest: None = ...) -> bytes: ...

    @overload
    def fetch(self, job_id: int, name: str, dest: str | os.PathLike[str]) -> str: ...

    @overload
    def fetch(self, job_id: int, name: str = ..., *, dest: str | os.PathLike[str]) -> str: ...

    def fetch(self, job_id: int, name: str = "model",
              dest: str | os.PathLike[str] | None = None) -> bytes | str:
        """Downloads an artifact (default "model"): its bytes, or, given dest (a file, or an
        existing folder to put NAME in), writes it there and returns the path. A partial
        download leaves nothing behind."""
        with self.open_artifact(job_id, name) as src:
            if dest is None:
                return src.read()
            path = os.fspath(dest)
            if os.path.isdir(path):
                path = os.path.join(path, name)
            fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path),
                                       dir=os.path.dirname(os.path.abspath(path)))
            try:
                with os.fdopen(fd, "wb") as out:
                    while True:
                        block = src.read(1 << 20)
                        if not block:
                            break
                        out.write(block)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
            return path

    # ---- events and waiting -----------------------------------------------------------------
    def _open_events(self, query: Mapping[str, Any], last_event_id: int | None,
                     timeout: float) -> tuple[http.client.HTTPResponse, socket.socket | None]:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        stream = self._send("GET", "/v1/events", query=query, headers=headers, timeout=timeout)
        self._events_route = True
        return stream

    def events(self, *, job: int | None = None, user: str | None = None,
               tenant: str | None = None, last_event_id: int | None = None,
               reconnect: bool = True, read_timeout: float = 60.0) -> Iterator[Event]:
        """Job state changes as they happen (GET /v1/events), an endless generator: break out
        of it (or close() it) to stop. job/user/tenant filter. With reconnect, a broken or
        silent stream (nothing, not even the 15 s keep-alive, for read_timeout seconds) is
        reopened from the last event seen (Last-Event-ID), with back-off; start from an
        earlier point with last_event_id. An Event of type "reset" means events were lost
        (the server no longer has them): re-read the jobs you follow (list() or get())."""
        query = {"job": job, "user": user, "tenant": tenant}
        last, delay = last_event_id, 0.5
        while True:
            try:
                resp, _ = self._open_events(query, last, read_timeout)
            except ConnectionFailed:
                if not reconnect:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            try:
                for ev in _sse(resp.readline):
                    if ev.id is not None:
                        last = ev.id
                    delay = 0.5
                    yield ev
            except (OSError, http.client.HTTPException):
                if not reconnect:
                    raise ConnectionFailed(0, "connection", "the event stream broke") from None
            finally:
                resp.close()
            if not reconnect:
                return
            time.sleep(delay)
            delay = min(delay * 2, 30.0)

    def wait(self, job_id: int, timeout: float | None = None, *,
             poll_interval: float = 2.0, use_events: bool = True) -> Job:
        """Waits until the job has ended (SUCCEEDED, FAILED, CANCELLED or TIMEOUT) and returns
        its final record. Follows the event stream when the server has one (else polls every
        poll_interval seconds). Past timeout seconds, raises WaitTimeout (a TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if use_events and self._events_route is not False:
            try:
                return self._wait_events(job_id, deadline, timeout, poll_interval)
            except (NotFound, MethodNotAllowed) as e:
                if self._events_route:  # the route exists: the job is missing
                    raise
                if e.field == "id" and e.code == "not_found":
                    raise
                self._events_route = False  # an older server: poll
        return self._wait_poll(job_id, deadline, timeout, poll_interval)

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    def _wait_poll(self, job_id: int, deadline: float | None, timeout: float | None,
                   poll_interval: float) -> Job:
        job: Job | None = None
        while True:
            job = self.get(job_id)
            if job.get("state") in FINAL_STATES:
                return job
            left = self._remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(job_id, timeout or 0.0, job)
            time.sleep(poll_interval if left is None else max(0.0, min(poll_interval, left)))

    def _wait_events(self, job_id: int, deadline: float | None, timeout: float | None,
                     poll_interval: float) -> Job:
        job = self.get(job_id)  # NotFound for a missing job, before anything else
        if job.get("state") in FINAL_STATES:
            return job
        last: int | None = None
        delay = 0.2
        # The stream is the fast path; the job is also re-read on a growing interval
        # (poll_interval doubling up to 60 s), so that a lost event costs little. A read that
        # times out ends the stream: it is reopened from the last event seen.
        check = [time.monotonic() + poll_interval, poll_interval]
        while True:
            left = self._remaining(deadline)
            if left is not None and left <= 0:
                raise WaitTimeout(job_id, timeout or 0.0, job)
            try:
                resp, sock = self._open_events(
                    {"job": job_id}, last, 30.0 if left is None else max(0.1, min(30.0, left)))
            except ConnectionFailed:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            try:
                # Subscribed: anything from here on is seen. Check once more for an end
                # between the first read and the subscription.
                job = self.get(job_id)
                if job.get("state") in FINAL_STATES:
                    return job


                def readline() -> bytes:
                    now = time.monotonic()
                    if now >= check[0]:
                        check[1] = min(check[1] * 2, 60.0)
                        check[0] = now + check[1]
                        raise socket.timeout("re-check")
                    left = self._remaining(deadline)
                    if left is not None and left <= 0:
                        raise socket.timeout("deadline")
                    wait_s = check[0] - now if left is None else min(check[0] - now, left)
                    _set_read_timeout(sock, max(0.05, wait_s))
                    return resp.readline()

                for ev in _sse(readline):
                    if ev.id is not None:
                        last = ev.id
                    if ev.type == "reset" or (ev.type == "job" and ev.job == job_id and ev.final):
                        job = self.get(job_id)
                        if job.get("state") in FINAL_STATES:
                            return job
                    delay = 0.2
            except (OSError, http.client.HTTPException):
                pass  # a timeout or a broken stream: check the job, then reconnect
            finally:
                resp.close()
            job = self.get(job_id)
            if job.get("state") in FINAL_STATES:
                return job
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    # ---- the service ------------------------------------------------------------------------
    def nodes(self, site: str | None = None) -> builtins.list[Node]:
        """The nodes, their GPUs and who holds them."""
        j = self._json("GET", "/v1/nodes", query={"site": site})
        return cast("builtins.list[Node]", j.get("nodes") or [])

    def plugins(self) -> builtins.list[dict[str, Any]]:
        """Every installed workload plugin version (refused ones with their reason)."""
        j = self._json("GET", "/v1/plugins")
        return cast("builtins.list[dict[str, Any]]", j.get("plugins") or [])

    def whoami(self) -> Whoami:
        """The caller: name, tenant, role (and the Unix account jobs run as)."""
        return cast(Whoami, self._json("GET", "/v1/whoami"))

    def version(self) -> Version:
        """The server's version (no token needed)."""
        return cast(Version, self._json("GET", "/v1/version", auth=False))

    def usage(self, tenant: str | None = None) -> builtins.list[dict[str, Any]]:
        """GPU-hours used, granted and left, per tenant."""
        j = self._json("GET", "/v1/usage", query={"tenant": tenant})
        return cast("builtins.list[dict[str, Any]]", j.get("tenants") or [])

    def health(self) -> dict[str, Any]:
        """GET /healthz (no token): {"status": "ok"|"degraded"|"failing", ...}."""
        try:
            return cast("dict[str, Any]", self._json("GET", "/healthz", auth=False))
        except JazariError as e:
            if e.status == 503 and isinstance(e.body, dict):
                return e.body
            raise
