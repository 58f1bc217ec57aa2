#!/usr/bin/env python3
"""A seeded fault campaign against a real Jazari cluster on loopback (docs/testing.md): one
jazarid (no local node) and jazari-node agents under sustained submissions, with kill -9 of
jazarid, kill -9 of an agent and store batches that fail (JAZARI_FAULT_STORE_FAIL_BATCH) at
seeded random times. Prints one JSON object; with --check, exits 1 unless acknowledged jobs
lost, jobs run twice and crashes are all 0.

Definitions:
  acknowledged lost  a job id answered 201 that GET /v1/jobs/ID does not find after the last
                     restart.
  run twice          a job whose command started more times than it was requeued plus one
                     (each run appends a line to marks/ID; the record's "requeues" counts the
                     requeues), i.e. it started again without being requeued.
  crash              a daemon exit we did not cause (jazarid exiting 1 after an injected store
                     failure, with the documented line, is the expected outcome of that fault),
                     a non-zero exit at the final SIGTERM, or a sanitizer report in any log.

Builds nothing: uses BUILD/bin and BUILD/plugins. Agents run with --no-confine (jobs as the
agent's user), and as root jazarid gets --user root, like the integration tests. CAMPAIGN_DEBUG=1
prints the drain's progress on stderr."""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

STOP_LINE = "could not be made durable after retries; stopping"
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error:")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(url, method, path, token, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode() or "null")
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


class Campaign:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.build = os.path.abspath(a.build)
        self.dir = tempfile.mkdtemp(prefix="jazari-campaign-")
        self.state = os.path.join(self.dir, "state")
        self.marks = os.path.join(self.dir, "marks")
        os.makedirs(self.marks)
        self.port, self.agent_port = free_port(), free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.topology = os.path.join(ROOT, "tests", "fixtures", "topologies",
                                     "aws-g4dn-metal-8xT4.xml")
        self.proc = None
        self.log_path = os.path.join(self.dir, "jazarid.log")
        self.log_mark = 0
        self.armed = False
        self.agents = []  # [name, proc, state dir]
        self.faults = {"kill9_jazarid": 0, "kill9_agent": 0, "store_batch_fail": 0}
        self.crashes = []
        self.accepted, self.submit_errors = [], 0
        self.lock = threading.Lock()
        self.stop_load = threading.Event()
        self.admin = None

    # --- jazarid ------------------------------------------------------------------------
    def start_jazarid(self, arm):
        env = dict(os.environ)
        env.pop("JAZARI_FAULT_STORE_FAIL_BATCH", None)
        self.armed = arm
        if arm:
            env["JAZARI_FAULT_STORE_FAIL_BATCH"] = str(self.rng.randint(20, 120))
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        self.log_mark = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "a")
        cmd = [os.path.join(self.build, "bin", "jazarid"), "--listen", "127.0.0.1:%d" % self.port,
               "--agent-listen", "127.0.0.1:%d" % self.agent_port, "--state-dir", self.state,
               "--topology", self.topology, "--no-local-node", "--node-timeout", "3",
               "--plugin-dir", os.path.join(self.build, "plugins"), "--kill-grace", "1",
               "--port-file", port_file]
        if os.geteuid() == 0:
            cmd += ["--user", "root"]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("jazarid did not start:\n" + self.log_since()[-3000:])
            time.sleep(0.02)
        if self.admin is None:
            with open(os.path.join(self.state, "admin.token")) as f:
                self.admin = f.read().strip()

    def log_since(self):
        with open(self.log_path, errors="replace") as f:
            f.seek(self.log_mark)
            return f.read()

    def check_jazarid(self):
        """jazarid exited on its own: an injected store failure (restart), else a crash."""
        rc = self.proc.poll()
        if rc is None:
            return
        text = self.log_since()
        if self.armed and rc == 1 and STOP_LINE in text and "fault injection: batch" in text:
            self.faults["store_batch_fail"] += 1
        else:
            self.crashes.append("jazarid exited with %s:\n%s" % (rc, text[-1500:]))
        self.start_jazarid(arm=False)

    def kill9_jazarid(self):
        self.check_jazarid()
        self.proc.kill()
        self.proc.wait()
        self.faults["kill9_jazarid"] += 1
        time.sleep(0.2)
        self.start_jazarid(arm=self.rng.random() < 0.4 and not self.stop_load.is_set())

    # --- agents -------------------------------------------------------------------------
    def start_agent(self, i, token=None):
        name = "n%d" % i
        state = os.path.join(self.dir, "agent-" + name)
        os.makedirs(state, exist_ok=True)
        cmd = [os.path.join(self.build, "bin", "jazari-node"), "--server", self.url,
               "--name", name, "--topology", self.topology, "--state-dir", state,
               "--plugin-dir", os.path.join(self.build, "plugins"), "--no-confine"]
        if token:
            cmd += ["--join-token", token]
        log = open(os.path.join(state, "agent.log"), "a")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if i < len(self.agents):
            self.agents[i] = [name, proc, state]
        else:
            self.agents.append([name, proc, state])

    def check_agents(self):
        for i, (name, proc, state) in enumerate(self.agents):
            rc = proc.poll()
            if rc is not None:
                self.crashes.append("agent %s exited with %s" % (name, rc))
                self.start_agent(i)

    def kill9_agent(self):
        self.check_agents()
        i = self.rng.randrange(len(self.agents))
        self.agents[i][1].kill()
        self.agents[i][1].wait()
        self.faults["kill9_agent"] += 1
        time.sleep(0.2)
        self.start_agent(i)  # with its stored credential

    def wait_nodes_up(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.admin is not None and self.proc.poll() is not None:
                self.check_jazarid()  # it stopped on an injected store failure: restart
            try:
                st, j = http(self.url, "GET", "/v1/nodes", self.admin)
                if st == 200 and sum(n["state"] == "up" for n in j["nodes"]) == len(self.agents):
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        if os.environ.get("CAMPAIGN_DEBUG"):
            print("nodes not up: %s" % (http(self.url, "GET", "/v1/nodes", self.admin),),
                  file=sys.stderr)
        return False

    # --- load ---------------------------------------------------------------------------
    def client(self, k):
        rng = random.Random(self.a.seed * 1000 + k)
        while not self.stop_load.is_set():
            sleep = rng.random() < 0.3
            cmd = "echo start >> %s/$JAZARI_JOB_ID" % self.marks
            if sleep:
                cmd += "; sleep 0.%d" % rng.randint(2, 9)
            body = {"plugin": "batch", "params": {"argv": ["sh", "-c", cmd]},
                    "resources": {"gpus": rng.choice((0, 0, 1, 2))}, "requeue": True}
            try:
                st, j = http(self.url, "POST", "/v1/jobs", self.admin, body)
            except OSError:
                st, j = 0, None  # jazarid down or killed mid-request: not acknowledged
            with self.lock:
                if st == 201:
                    self.accepted.append(j["id"])
                else:
                    self.submit_errors += 1
            if st != 201:
                time.sleep(0.05)
            elif self.a.rate > 0:  # paced, so that the agents can keep up and the queue drains
                pace = self.a.clients / self.a.rate
                time.sleep(rng.uniform(0.5 * pace, 1.5 * pace))

    # --- the run ------------------------------------------------------------------------
    def run(self):
        a = self.a
        self.start_jazarid(arm=False)
        st, j = http(self.url, "POST", "/v1/admin/node-tokens", self.admin, {})
        token = j["token"]
        for i in range(a.agents):
            self.start_agent(i, token)
        if not self.wait_nodes_up():
            raise RuntimeError("agents did not join")
        threads = [threading.Thread(target=self.client, args=(k,)) for k in range(a.clients)]
        t0 = time.time()
        for th in threads:
            th.start()
        next_fault = t0 + self.rng.uniform(1.5, 4)
        while time.time() - t0 < a.seconds:
            time.sleep(0.1)
            self.check_jazarid()
            self.check_agents()
            if time.time() >= next_fault:
                # An armed jazarid is left to fail its batch (the store fault) before it is
                # killed again; agents are killed meanwhile.
                if not self.armed and self.rng.random() < 0.55:
                    self.kill9_jazarid()
                else:
                    self.kill9_agent()
                next_fault = time.time() + self.rng.uniform(1.5, 4)
        load_s = time.time() - t0
        timings = {}
        mark = time.time()
        self.stop_load.set()
        while any(th.is_alive() for th in threads):  # a client may wait on a restart
            self.check_jazarid()
            self.check_agents()
            time.sleep(0.1)
        timings["clients_stop_s"] = round(time.time() - mark, 1)
        # Drain: no more faults; an armed jazarid may still fail its batch (then restarted).
        drain_deadline = time.time() + a.drain
        final = {}
        pending = set(self.accepted)
        self.wait_nodes_up()
        while time.time() < drain_deadline:
            self.check_jazarid()
            self.check_agents()
            try:
                final = self.all_jobs()
            except OSError:
                time.sleep(0.2)
                continue
            pending = {i for i, j in final.items() if j["state"] in ("PENDING", "RUNNING")}
            if os.environ.get("CAMPAIGN_DEBUG"):
                print("drain %.1f: %d waiting: %s" % (time.time() - mark, len(pending), [
                    (i, final[i]["state"], final[i].get("reason")) for i in sorted(pending)[:3]]),
                    file=sys.stderr)
            if not pending:
                break
            time.sleep(0.3)
        timings["drain_s"] = round(time.time() - mark, 1)
        mark = time.time()
        # The last restart: everything acknowledged must be there.
        self.check_jazarid()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.start_jazarid(arm=False)
        final = self.all_jobs()
        lost = [i for i in self.accepted if i not in final]
        twice = []
        for name in os.listdir(self.marks):
            with open(os.path.join(self.marks, name)) as f:
                starts = f.read().count("start")
            j = final.get(int(name))
            allowed = (j["requeues"] if j else 0) + 1
            if starts > allowed:
                twice.append({"id": int(name), "starts": starts, "requeues": allowed - 1})
        timings["last_restart_s"] = round(time.time() - mark, 1)
        mark = time.time()
        states = {}
        for j in final.values():
            states[j["state"]] = states.get(j["state"], 0) + 1
        self.shutdown()
        self.scan_sanitizers()
        timings["shutdown_s"] = round(time.time() - mark, 1)
        return {
            "seconds": round(load_s, 1), "seed": a.seed, "agents": a.agents,
            "clients": a.clients, "rate_aimed": a.rate,
            "submits_acknowledged": len(self.accepted),
            "submits_per_s": round(len(self.accepted) / load_s, 1),
            "submits_refused_or_failed": self.submit_errors,
            "faults": dict(self.faults, total=sum(self.faults.values())),
            "jobs_after_last_restart": len(final), "final_states": states,
            "still_pending_after_drain": len(pending),
            "requeued_jobs": sum(1 for j in final.values() if j.get("requeues", 0) > 0),
            "acknowledged_lost": len(lost), "lost_ids": lost[:20],
            "jobs_run_twice": len(twice), "run_twice": twice[:20],
            "crashes": len(self.crashes), "crash_details": [c[:800] for c in self.crashes[:5]],
            "timings": timings, "state_dir": self.dir if self.a.keep else None,
        }

    def all_jobs(self):
        jobs, after = {}, 0
        while True:
            st, page = http(self.url, "GET", "/v1/jobs?limit=1000&after=%d" % after, self.admin)
            if st != 200:
                raise OSError("list: %s %s" % (st, page))
            for j in page["jobs"]:
                jobs[j["id"]] = j
            if page["next_after"] is None:
                return jobs
            after = page["next_after"]

    def shutdown(self):
        for name, proc, state in self.agents:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc, state in self.agents:
            try:
                rc = proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = "timeout"
            if rc != 0:
                self.crashes.append("agent %s: exit %s at SIGTERM" % (name, rc))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "timeout"
        if rc != 0:
            self.crashes.append("jazarid: exit %s at SIGTERM:\n%s" % (rc, self.log_since()[-1500:]))

    def scan_sanitizers(self):
        for root, _, files in os.walk(self.dir):
            for f in files:
                if f.endswith(".log") or f == "log":
                    with open(os.path.join(root, f), errors="replace") as fh:
                        text = fh.read()
                    for s in SANITIZER:
                        if s in text:
                            self.crashes.append("%s in %s" % (s, os.path.join(root, f)))
                            break


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--rate", type=float, default=80,
                   help="submissions per second aimed at, all clients together (0: no pacing)")
    p.add_argument("--drain", type=float, default=60, help="seconds allowed for jobs to end")
    p.add_argument("--keep", action="store_true", help="keep the state folder")
    p.add_argument("--check", action="store_true", help="exit 1 unless the zeros hold")
    a = p.parse_args()
    if not os.path.exists(os.path.join(a.build, "bin", "jazarid")):
        sys.exit("campaign: %s/bin/jazarid not found (build first; this script builds nothing)"
                 % a.build)
    c = Campaign(a)
    try:
        out = c.run()
    except Exception as e:
        for _, proc, _ in c.agents:
            if proc.poll() is None:
                proc.kill()
        if c.proc and c.proc.poll() is None:
            c.proc.kill()
        print(json.dumps({"error": str(e)[:3000], "state_dir": c.dir}))
        sys.exit(2)
    if not a.keep and not (out["acknowledged_lost"] or out["jobs_run_twice"] or out["crashes"]):
        shutil.rmtree(c.dir, ignore_errors=True)
    else:
        out["state_dir"] = c.dir
    print(json.dumps(out, indent=1))
    if a.check and (out["acknowledged_lost"] or out["jobs_run_twice"] or out["crashes"] or
                    out["faults"]["total"] == 0):
        sys.exit(1)


if __name__ == "__main__":
    main()
