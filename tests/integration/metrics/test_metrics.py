#!/usr/bin/env python3
"""GET /metrics and GET /healthz of a real jazarid (127.0.0.1, ephemeral port, temporary state
directory), and the Grafana dashboard in packaging/grafana/ that reads them. Every scrape must
pass `promtool check metrics` (its lint included) and the values must follow what the test did.

Usage: test_metrics.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
import test_service  # noqa: E402
from test_service import Service, batch, run_tests  # noqa: E402

DASHBOARD = os.path.join(SOURCE, "packaging", "grafana", "jazari-dashboard.json")


# --- the text format --------------------------------------------------------------------------
def parse_labels(text, i):
    """Parses {a="x",b="y"} from text[i] == '{'; returns (dict, index after '}'). Escapes as the
    format has them: \\\\, \\" and \\n."""
    labels = {}
    i += 1
    while text[i] != "}":
        j = text.index("=", i)
        name = text[i:j]
        assert text[j + 1] == '"', text
        k, value = j + 2, []
        while text[k] != '"':
            if text[k] == "\\":
                value.append({"\\": "\\", '"': '"', "n": "\n"}[text[k + 1]])
                k += 2
            else:
                value.append(text[k])
                k += 1
        labels[name] = "".join(value)
        i = k + 1
        if text[i] == ",":
            i += 1
    return labels, i + 1


def parse(text):
    """{"types": {family: type}, "samples": [(name, labels, value)]}."""
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        name, i = m.group(0), m.end()
        labels = {}
        if line[i] == "{":
            labels, i = parse_labels(line, i)
        samples.append((name, labels, float(line[i:].strip())))
    return {"types": types, "samples": samples}


class Scrape:
    def __init__(self, text):
        self.text = text
        p = parse(text)
        self.types, self.samples = p["types"], p["samples"]

    def series(self, name, **match):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == w for k, w in match.items())]

    def value(self, name, **match):
        """The value of the one series of name matching match (AssertionError otherwise)."""
        found = self.series(name, **match)
        assert len(found) == 1, (name, match, found)
        return found[0][1]

    def total(self, name, **match):
        return sum(v for _, v in self.series(name, **match))


def promtool_check(text):
    """promtool check metrics: no parse error and no lint problem."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        "promtool check metrics (exit %d):\n%s%s" % (r.returncode, r.stdout, r.stderr)


def monitor_token(svc):
    with open(os.path.join(svc.state, "monitor.token")) as f:
        return f.read().strip()


def scrape(svc):
    """GET /metrics with the monitoring token (STATE/monitor.token), checked by promtool."""
    st, text = svc.http("GET", "/metrics", token=monitor_token(svc))
    assert st == 200, (st, text)
    assert isinstance(text, str)
    promtool_check(text)
    return Scrape(text)


def require_promtool():
    if not shutil.which("promtool"):
        print("SKIP: promtool not installed (Debian: the prometheus package; "
              "scripts/install-deps.sh installs it)")
        sys.exit(77)


def dcgm_pci(hw):
    """hwloc's 0000:3b:00.0 as DCGM/NVML write it: 00000000:3B:00.0."""
    dom, bus, rest = hw.split(":")
    dev, fn = rest.split(".")
    return "%08X:%02X:%02X.%X" % (int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16))


def project_version():
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        return re.search(r"project\(jazari VERSION ([0-9.]+)", f.read()).group(1)


def wait_for(fn, what, timeout=30):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


# --- tests --------------------------------------------------------------------------------------
def test_promtool(svc):
    """Jobs through their life: every family moves as it should and every scrape is clean."""
    t = svc.admin
    # It names tenants, users and jobs, so it is not public: 401 without a token, 403 with a
    # user's, 200 with the monitoring token (scrape) or an admin's.
    st, text = svc.http("GET", "/metrics")
    assert st == 401, (st, text)
    st, j = svc.http("POST", "/v1/admin/users", {"name": "peeker", "tenant": "x"}, t)
    assert st == 201, (st, j)
    st, text = svc.http("GET", "/metrics", token=j["token"])
    assert st == 403, (st, text)
    st, text = svc.http("GET", "/metrics", token=t)
    assert st == 200, (st, text)
    first = scrape(svc)
    assert first.value("jazari_build_info", version=project_version()) == 1
    assert first.value("jazari_node_up", node="local") == 1
    assert first.total("jazari_jobs_submitted_total") == 0
    for state in ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "TIMEOUT"):
        assert first.value("jazari_jobs", state=state) == 0

    alice = svc.add_user("alice", tenant="physics")
    ok = [svc.submit(alice, batch(["true"])) for _ in range(2)]
    bad = svc.submit(alice, batch(["false"]))
    for jid in ok + [bad]:
        svc.wait(alice, jid)
    holder = svc.submit(alice, batch(["sleep", "60"], gpus=2))
    svc.wait_running(alice, holder)
    waiting = svc.submit(alice, batch(["true"], gpus=8))  # waits for the holder's GPUs
    st, j = svc.http("POST", "/v1/jobs", {"plugin": "nope"}, alice)
    assert st == 400, (st, j)
    st, j = svc.http("GET", "/no/such/route")
    assert st == 404, (st, j)

    # The pending job's reason as GET /v1/jobs/ID says it (the scheduler's code).
    def reason():
        return svc.job(alice, waiting).get("reason_code")
    code = wait_for(lambda: reason() not in (None, "new") and reason(), "a reason code")
    s = scrape(svc)
    assert s.value("jazari_jobs_submitted_total", tenant="physics") == 5
    assert s.value("jazari_jobs_finished_total", state="SUCCEEDED") == 2
    assert s.value("jazari_jobs_finished_total", state="FAILED") == 1
    assert s.value("jazari_job_run_seconds_count", plugin="batch", outcome="SUCCEEDED") == 2
    assert s.value("jazari_job_run_seconds_count", plugin="batch", outcome="FAILED") == 1
    # Four jobs started (three ended, one runs), each observed once, in the default class.
    assert s.value("jazari_job_wait_seconds_count", tenant="physics", **{"class": "default"}) == 4
    assert s.value("jazari_job_wait_seconds_bucket", tenant="physics", le="+Inf",
                   **{"class": "default"}) == 4
    assert s.value("jazari_jobs", state="RUNNING") == 1
    assert s.value("jazari_jobs", state="PENDING") == 1
    assert s.value("jazari_jobs", state="SUCCEEDED") == 2
    assert s.value("jazari_queue_jobs", tenant="physics", reason=code) == 1
    assert s.total("jazari_queue_jobs") == 1
    # GPUs: two of the eight T4s held, by the holder, joinable with DCGM by PCI address.
    st, nodes = svc.http("GET", "/v1/nodes", token=t)
    node = nodes["nodes"][0]
    model, site = node["gpus"][0]["model"], node["site"]
    assert s.value("jazari_node_gpus", node="local", site=site, model=model,
                   state="allocated") == 2
    assert s.value("jazari_node_gpus", node="local", site=site, model=model, state="free") == 6
    assert s.value("jazari_node_cores", node="local") == node["cores"]
    held = svc.job(alice, holder)["gpus"]
    info = s.series("jazari_gpu_job_info")
    assert sorted((l["pci_bus_id"], l["gpu"]) for l, _ in info) == \
        sorted((dcgm_pci(g["pci_bus_id"]), str(g["index"])) for g in held), (info, held)
    for l, v in info:
        assert v == 1 and l["job_id"] == str(holder) and l["tenant"] == "physics" and \
            l["user"] == "alice" and l["node"] == "local", l
        assert re.fullmatch(r"[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-9A-F]", l["pci_bus_id"]), l
    # Requests by route pattern, method and code; the duration histogram counts the same.
    assert s.value("jazari_http_requests_total", route="/v1/jobs", method="POST", code="201") == 5
    assert s.value("jazari_http_requests_total", route="/v1/jobs", method="POST", code="400") == 1
    assert s.value("jazari_http_requests_total", route="unmatched", method="GET", code="404") == 1
    assert s.value("jazari_http_requests_total", route="/v1/jobs/*", method="GET",
                   code="200") >= 6
    routes = {l["route"] for l, _ in s.series("jazari_http_requests_total")}
    for route in routes:
        assert s.value("jazari_http_request_duration_seconds_count", route=route) == \
            s.total("jazari_http_requests_total", route=route), route
    # Submissions waited for their store batch; nothing waits now.
    assert s.value("jazari_store_commit_wait_seconds_count") >= 5
    assert s.value("jazari_store_replies_waiting") == 0
    assert s.value("jazari_scheduler_pass_duration_seconds_count", kind="incremental") > 0
    assert s.value("jazari_agents_connected") == 1

    # Counters only move up; the scrapes themselves are counted.
    before = s.value("jazari_http_requests_total", route="/metrics", method="GET", code="200")
    s2 = scrape(svc)
    assert s2.value("jazari_http_requests_total", route="/metrics", method="GET",
                    code="200") == before + 1
    for (name, labels, v) in s.samples:
        if s.types.get(name) == "counter" or name.endswith(("_bucket", "_count", "_sum")):
            later = [v2 for n2, l2, v2 in s2.samples if n2 == name and l2 == labels]
            assert later and later[0] >= v, (name, labels, v, later)

    # The holder cancelled: its GPUs go to the waiting job, the queue empties.
    st, j = svc.http("POST", "/v1/jobs/%d/cancel" % holder, token=alice)
    assert st == 200, (st, j)
    svc.wait(alice, holder)
    svc.wait(alice, waiting)
    s3 = scrape(svc)
    assert s3.value("jazari_jobs_finished_total", state="CANCELLED") == 1
    assert s3.value("jazari_job_run_seconds_count", plugin="batch", outcome="CANCELLED") == 1
    assert s3.value("jazari_jobs_finished_total", state="SUCCEEDED") == 3
    assert s3.value("jazari_job_wait_seconds_count", tenant="physics",
                    **{"class": "default"}) == 5
    assert s3.series("jazari_queue_jobs") == []
    assert s3.series("jazari_gpu_job_info") == []
    assert s3.value("jazari_node_gpus", node="local", site=site, model=model, state="free") == 8
    assert s3.value("jazari_jobs_submitted_total", tenant="physics") == 5


def test_preemption(svc):
    """Under a policy (POLICY_CONFIG of the service tests): a quota reason in the queue gauge,
    a preemption counted, the wait histogram by class, and a requeued job's second start not
    observed again."""
    alice = svc.add_user("alice", tenant="physics")
    bob = svc.add_user("bob", tenant="startup-a")
    carol = svc.add_user("carol", tenant="hospital")
    a1 = svc.submit(alice, batch(["sleep", "30"], gpus=2))
    a2 = svc.submit(alice, batch(["true"], gpus=2))  # physics may hold 2 GPUs: waits (quota)
    svc.wait_running(alice, a1)
    assert svc.job(alice, a2)["reason_code"] == "quota"
    s = scrape(svc)
    assert s.value("jazari_queue_jobs", tenant="physics", reason="quota") == 1
    b1 = svc.submit(bob, dict(batch(["sleep", "60"], gpus=6), preemptible=True))
    svc.wait_running(bob, b1)
    c1 = svc.submit(carol, dict(batch(["true"], gpus=4), **{"class": "guaranteed"}))
    assert svc.wait(carol, c1, timeout=30)["state"] == "SUCCEEDED"
    svc.wait_running(bob, b1, timeout=30)  # back after its requeue
    s = scrape(svc)
    assert s.value("jazari_preemptions_total") == 1
    assert s.value("jazari_job_wait_seconds_count", tenant="hospital",
                   **{"class": "guaranteed"}) == 1
    # b1 started twice; only its first start is a wait since submission.
    assert s.value("jazari_job_wait_seconds_count", tenant="startup-a",
                   **{"class": "default"}) == 1
    for jid, tok in ((a1, alice), (b1, bob)):
        svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=tok)
    for jid, tok in ((a1, alice), (a2, alice), (b1, bob)):
        svc.wait(tok, jid, timeout=30)
    s = scrape(svc)
    assert s.total("jazari_jobs_finished_total") == 4
    assert s.series("jazari_queue_jobs") == [] and s.series("jazari_gpu_job_info") == []


def test_escaping(svc):
    """Label values from a topology (a GPU model with a quote, a backslash and a newline) come
    out escaped, read back unchanged, and promtool accepts them."""
    # svc runs on the hostile topology (see main); a job holds one of its GPUs.
    st, nodes = svc.http("GET", "/v1/nodes", token=svc.admin)
    model = nodes["nodes"][0]["gpus"][0]["model"]
    assert model == HOSTILE_MODEL, repr(model)
    jid = svc.submit(svc.admin, batch(["sleep", "30"], gpus=1))
    svc.wait_running(svc.admin, jid)
    s = scrape(svc)
    assert 'model="Tesla \\"T4\\" \\\\ \\nnext"' in s.text, s.text
    assert s.value("jazari_node_gpus", node="local", model=HOSTILE_MODEL, state="allocated") == 1
    assert s.value("jazari_node_gpus", node="local", model=HOSTILE_MODEL, state="free") == 7
    svc.http("POST", "/v1/jobs/%d/cancel" % jid, token=svc.admin)
    svc.wait(svc.admin, jid)


HOSTILE_MODEL = 'Tesla "T4" \\ \nnext'


def hostile_topology():
    """The 8xT4 fixture with every GPUModel a hostile string (XML-escaped: &quot;, &#10;)."""
    src = os.path.join(test_service.ARGS.fixtures, "topologies", "aws-g4dn-metal-8xT4.xml")
    with open(src) as f:
        xml = f.read()
    xml = xml.replace('name="GPUModel" value="Tesla T4"',
                      'name="GPUModel" value="Tesla &quot;T4&quot; \\ &#10;next"')
    folder = tempfile.mkdtemp(prefix="jazari-metrics-topo-")
    test_service.FOLDERS.append(folder)
    path = os.path.join(folder, "hostile.xml")
    with open(path, "w") as f:
        f.write(xml)
    return path


def test_healthz(svc):
    """ok with the local node up, and a small public JSON body, HEAD included."""
    st, j = svc.http("GET", "/healthz")
    assert st == 200 and j == {"status": "ok", "store": "ok", "nodes_up": 1, "nodes_down": 0}, j
    st, _ = svc.http("HEAD", "/healthz")
    assert st == 200, st
    s = scrape(svc)
    assert s.value("jazari_http_requests_total", route="/healthz", method="GET", code="200") == 1
    assert s.value("jazari_http_requests_total", route="/healthz", method="HEAD", code="200") == 1


def test_healthz_store(svc):
    """The store's writer held up (another process holds the database's write lock): a write
    waits for its batch, and past 10 s /healthz says failing (503, store "stuck") while
    /metrics still answers; once the lock goes, the write is acknowledged and health is ok."""
    import sqlite3
    import threading
    db = sqlite3.connect(os.path.join(svc.state, "jazari.db"), timeout=30,
                         isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    result = {}

    def submit():
        result["reply"] = svc.http("POST", "/v1/jobs", batch(["true"]), svc.admin)
    th = threading.Thread(target=submit)
    try:
        th.start()
        t0 = time.time()

        def failing():
            st, j = svc.http("GET", "/healthz")
            return st == 503 and j
        j = wait_for(failing, "/healthz to fail", timeout=25)
        assert time.time() - t0 >= 9, time.time() - t0  # not before JZ_HEALTH_STORE_STUCK_S
        assert j == {"status": "failing", "store": "stuck", "nodes_up": 1, "nodes_down": 0}, j
        s = scrape(svc)
        assert s.value("jazari_store_replies_waiting") == 1
        assert "reply" not in result  # still waiting for its batch
    finally:
        db.execute("ROLLBACK")
        db.close()
        th.join(90)
    st, j = result["reply"]
    assert st == 201, (st, j)
    st, j = svc.http("GET", "/healthz")
    assert st == 200 and j["status"] == "ok" and j["store"] == "ok", j
    s = scrape(svc)
    assert s.value("jazari_store_replies_waiting") == 0
    assert s.value("jazari_http_requests_total", route="/healthz", method="GET",
                   code="503") >= 1


def test_healthz_nodes(svc):
    """A cluster of two agents: every node exported; one agent gone makes the service degraded
    (200, not 503: restarting jazarid would bring no node back), and none up too. svc is a
    test_nodes.Cluster (see main)."""
    svc.add_agent("n0", "aws-g4dn-metal-8xT4.xml")
    svc.add_agent("n1", "ibm-ac922-lassen-4xV100.xml", token=svc.token("west"), site="west")
    svc.wait_nodes(["n0", "n1"])
    st, j = svc.http("GET", "/healthz")
    assert st == 200 and j == {"status": "ok", "store": "ok", "nodes_up": 2, "nodes_down": 0}, j
    s = scrape(svc)
    assert s.value("jazari_node_up", node="n0") == 1
    assert s.value("jazari_node_up", node="n1", site="west") == 1
    assert s.total("jazari_node_gpus", node="n0") == 8
    assert s.total("jazari_node_gpus", node="n1") == 4
    assert s.value("jazari_agents_connected") == 2
    svc.agents[1].kill9()
    svc.wait_nodes(["n1"], state="down")
    st, j = svc.http("GET", "/healthz")
    assert st == 200 and j == {"status": "degraded", "store": "ok", "nodes_up": 1,
                               "nodes_down": 1}, j
    s = scrape(svc)
    assert s.value("jazari_node_up", node="n1", site="west") == 0
    assert s.value("jazari_agents_connected") == 1
    svc.agents[0].kill9()
    svc.wait_nodes(["n0"], state="down")
    st, j = svc.http("GET", "/healthz")
    assert st == 200 and j["status"] == "degraded" and j["nodes_up"] == 0, j


def promql_of(dashboard):
    """Every PromQL expression of the dashboard's panels (rows' nested panels included) and
    templating queries, with the panel's title."""
    out = []

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dashboard["panels"]):
        for t in p.get("targets", []):
            out.append((p.get("title", "?"), t["expr"]))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]
            q = q["query"] if isinstance(q, dict) else q
            # Grafana's label_values(SELECTOR, LABEL): the selector is PromQL.
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q.strip())
            out.append(("variable " + v["name"], m.group(1) if m else q))
    return out


def instantiate(expr):
    """A dashboard expression with its variables given values that PromQL parses."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    expr = expr.replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)(:\w+)?\}?", "x", expr)


def test_dashboard(svc):
    """The Grafana dashboard: Grafana 10's schema essentials, every expression parsed by promtool
    (as recording rules) and reading only families that /metrics exports (DCGM's excepted)."""
    with open(DASHBOARD) as f:
        d = json.load(f)
    assert d["schemaVersion"] >= 36 and d["title"] and d["uid"], d.get("schemaVersion")
    ids = set()
    for p in d["panels"]:
        assert p["id"] not in ids, p["id"]
        ids.add(p["id"])
        assert p["type"] in ("timeseries", "stat", "table", "bargauge", "heatmap", "row",
                             "gauge", "text"), p["type"]
        g = p["gridPos"]
        assert all(k in g for k in ("h", "w", "x", "y")) and g["x"] + g["w"] <= 24, p["title"]
        for t in p.get("targets", []):
            assert t["datasource"]["uid"] == "${datasource}" and t["refId"], (p["title"], t)
    exprs = promql_of(d)
    titles = " | ".join(t for t, _ in exprs)
    for needed in ("histogram_quantile", "jazari_queue_jobs", "jazari_gpu_job_info",
                   "DCGM_FI_DEV_GPU_UTIL", "jazari_http_request_duration_seconds_bucket",
                   "jazari_scheduler_pass_duration_seconds_bucket",
                   "jazari_jobs_finished_total", "jazari_node_gpus"):
        assert any(needed in e for _, e in exprs), (needed, titles)
    # Families /metrics exports: the TYPE lines (present even before a first observation).
    exported = set(scrape(svc).types)
    suffixes = ("_bucket", "_sum", "_count")
    for title, expr in exprs:
        for name in re.findall(r"\b(jazari_[a-zA-Z0-9_]+)", expr):
            family = name
            for suf in suffixes:
                if name.endswith(suf) and name[:-len(suf)] in exported:
                    family = name[:-len(suf)]
            assert family in exported, "%s: %s is not exported" % (title, name)
    # promtool parses each one.
    folder = tempfile.mkdtemp(prefix="jazari-dash-rules-")
    test_service.FOLDERS.append(folder)
    rules = os.path.join(folder, "rules.yml")
    with open(rules, "w") as f:
        f.write("groups:\n- name: dashboard\n  rules:\n")
        for i, (title, expr) in enumerate(exprs):
            f.write("  - record: dashboard:expr_%d\n    expr: %s\n" %
                    (i, json.dumps(instantiate(expr))))
    r = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, "promtool check rules:\n%s%s" % (r.stdout, r.stderr)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    args.fixtures = os.path.abspath(args.fixtures)
    test_service.ARGS = args
    require_promtool()

    def make(name):
        if name == "healthz_nodes":
            import test_nodes
            return test_nodes.Cluster()
        if name == "escaping":
            return Service(topology=hostile_topology())
        if name == "preemption":
            return Service(config=test_service.POLICY_CONFIG)
        return Service()
    failed = run_tests(args.tests, globals(), make)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
