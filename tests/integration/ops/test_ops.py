#!/usr/bin/env python3
"""End-to-end tests of what operators do to a running jazarid: a configuration file that carries
every option and is validated strictly, SIGHUP and POST /v1/admin/reload (re-read the file and
the plugin folders without touching running jobs; a bad file changes nothing), SIGUSR1 (reopen
the log file after logrotate), logging to the journal's native socket, --version everywhere and
GET /v1/version, and a backup of the database restored into a new state folder. Each test starts
its own jazarid on 127.0.0.1 with an ephemeral port and a temporary state directory.

Usage: test_ops.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "service"))
sys.path.insert(0, os.path.join(HERE, "..", "front"))
import test_service  # noqa: E402
import test_front  # noqa: E402

ARGS = None


def write_json(path, obj):
    with open(path + ".new", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".new", path)


def base_config(state):
    """A configuration file holding what the tests' command lines usually say."""
    cfg = {
        "listen": "127.0.0.1:0",
        "state_dir": state,
        "topology": os.path.join(ARGS.fixtures, "topologies", test_front.TOPOLOGY),
        "plugin_dir": os.path.join(ARGS.build, "plugins"),
        "kill_grace": 1,
        "port_file": os.path.join(state, "port"),
    }
    if os.geteuid() == 0:
        cfg["user"] = "root"  # the test machine may have no 'jazari' account
    return cfg


class ConfigService(test_front.Service):
    """A jazarid started with --config FILE and nothing else but extra."""

    def __init__(self, config, extra=()):
        self.config_path = os.path.join(new_state("jazari-ops-config-"), "jazarid.json")
        self.config = config
        write_json(self.config_path, config)
        super().__init__(extra=extra, start=False)
        # The state folder is the one the file names; the class made another, unused.
        shutil.rmtree(self.state, ignore_errors=True)
        self.state = config["state_dir"]
        self.start()
        with open(os.path.join(self.state, "admin.token")) as f:
            self.admin = f.read().strip()

    def command(self):
        return [os.path.join(ARGS.build, "bin", "jazarid"), "--config", self.config_path] + \
            self.extra

    def rewrite(self, config):
        self.config = config
        write_json(self.config_path, config)

    def wait_log(self, text, after=0, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            log = self.read_log()
            if text in log[after:]:
                return log
            time.sleep(0.05)
        raise AssertionError("no %r in the log:\n%s" % (text, self.read_log()[after:]))


def new_state(prefix="jazari-ops-state-"):
    d = tempfile.mkdtemp(prefix=prefix)
    test_service.FOLDERS.append(d)
    return d


def start_fails(config_obj, *extra):
    """jazarid with this configuration must refuse to start: returns its message."""
    path = os.path.join(new_state("jazari-ops-bad-"), "jazarid.json")
    with open(path, "w") as f:
        f.write(config_obj if isinstance(config_obj, str) else json.dumps(config_obj))
    r = subprocess.run([os.path.join(ARGS.build, "bin", "jazarid"), "--config", path, *extra],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert not any(m in r.stderr for m in test_service.SANITIZER_MARKS), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr  # one line
    return r.stderr


def batch(argv, **kw):
    body = {"plugin": "batch", "params": {"argv": argv}, "resources": {"gpus": 0, "cpus": 1}}
    body.update(kw)
    return body


# --- the configuration file -------------------------------------------------------------------
def test_config_strict(tmp):
    state = new_state()
    good = base_config(state)
    msg = start_fails(dict(good, schedular={}))
    assert '"schedular"' in msg and 'did you mean "scheduler"' in msg, msg
    msg = start_fails(dict(good, kill_grace="10"))
    assert '"kill_grace" must be an integer (or null), not a string' in msg, msg
    msg = start_fails(dict(good, kill_grace=99999))
    assert 'bad value for "kill_grace": 99999' in msg, msg
    msg = start_fails(dict(good, no_local_node="yes"))
    assert '"no_local_node" must be true or false' in msg, msg
    msg = start_fails(dict(good, limits={"log_bytez": 1}))
    assert "limits.log_bytez" in msg, msg
    msg = start_fails(dict(good, scheduler=[]))
    assert '"scheduler" must be an object, not an array' in msg, msg
    msg = start_fails(dict(good, scheduler={"weight_fairshar": 1}))
    assert "weight_fairshar" in msg, msg
    msg = start_fails(dict(good, config="/etc/x.json"))
    assert "command-line option only" in msg, msg
    msg = start_fails('{"listen": ')
    assert "config" in msg, msg
    # A bad command-line value is named as the option.
    r = subprocess.run([os.path.join(ARGS.build, "bin", "jazarid"), "--rate-limit", "fast"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--rate-limit" in r.stderr, r.stderr

    # Every option of --help is a key of the file (and nothing else is).
    help_text = subprocess.run([os.path.join(ARGS.build, "bin", "jazarid"), "--help"],
                               capture_output=True, text=True).stdout
    options = sorted({w[2:].split()[0] for w in help_text.split() if w.startswith("--")} -
                     {"help", "version", "config"})
    assert len(options) >= 25, options
    for opt in options:
        key = opt.replace("-", "_")
        bogus = {"no_local_node": 7, "allow_plain_http": 7}.get(key, [])
        msg = start_fails(dict(good, **{key: bogus}))
        assert '"%s" must be' % key in msg, (key, msg)

    # The packaged default file lists every option (null: the default) and nothing else.
    packaged = os.path.join(HERE, "..", "..", "..", "packaging", "jazarid.json")
    with open(packaged) as f:
        keys = set(json.load(f)) - {"scheduler", "limits", "tenants", "plugins"}
    assert keys == {o.replace("-", "_") for o in options}, \
        sorted(keys ^ {o.replace("-", "_") for o in options})
    # null is the default: a file may list every option.
    nulls = dict(base_config(new_state()), tls_cert=None, tls_key=None, agent_listen=None,
                 default_unix_user=None, log_file=None, max_connections=None, worker=None)
    svc = ConfigService(nulls)
    svc.close()

    # The file alone starts the service, with the command line winning where both speak.
    good.update(rate_limit="1/s", rate_burst=2, max_log_streams=3, idle_timeout=30,
                max_pending=1000, node_timeout=20, fallback_backend="cpu", site="rabat",
                log_level="info", default_unix_user="nobody", max_connections=500)
    svc = ConfigService(good, extra=["--rate-limit", "0"])
    try:
        user = svc.add_user("ana")
        codes = [svc.http("GET", "/v1/jobs", token=user)[0] for _ in range(8)]
        assert codes == [200] * 8, codes  # the command line's 0: no limit
        st, nodes, _ = svc.http("GET", "/v1/nodes", token=user)
        assert st == 200 and nodes["nodes"][0]["site"] == "rabat", nodes
    finally:
        svc.close()


# --- reloading --------------------------------------------------------------------------------
def test_reload(tmp):
    state = new_state()
    cfg = base_config(state)
    svc = ConfigService(cfg)
    try:
        user = svc.add_user("ana")
        running = svc.submit(user, batch(["sleep", "60"], resources={"gpus": 1, "cpus_per_gpu": 1}))
        deadline = time.time() + 30
        while svc.http("GET", "/v1/jobs/%d" % running, token=user)[1]["state"] != "RUNNING":
            assert time.time() < deadline
            time.sleep(0.05)
        before = svc.http("GET", "/v1/jobs/%d" % running, token=user)[1]
        st, j, _ = svc.http("POST", "/v1/jobs", batch(["true"], **{"class": "urgent"}), user)
        assert st >= 400 and "urgent" in json.dumps(j), (st, j)

        # A new class, a rate limit, a shorter retention: SIGHUP applies them in place.
        cfg2 = dict(cfg, rate_limit=0.5, rate_burst=2,
                    scheduler={"classes": [{"name": "urgent", "rank": 90},
                                           {"name": "normal", "rank": 50}]},
                    limits={"retention_days": 30})
        svc.rewrite(cfg2)
        mark = len(svc.read_log())
        os.kill(svc.proc.pid, signal.SIGHUP)
        svc.wait_log("configuration reloaded", mark)
        st, j, _ = svc.http("POST", "/v1/jobs", batch(["true"], **{"class": "urgent"}), user)
        assert st == 201, (st, j)
        codes = [svc.http("GET", "/v1/jobs", token=user)[0] for _ in range(10)]
        assert 429 in codes, codes

        # The running job was not touched.
        now = svc.http("GET", "/v1/jobs/%d" % running, token=svc.admin)[1]
        assert now["state"] == "RUNNING" and now.get("started") == before.get("started"), now

        # A file with an error changes nothing, and says why in the log.
        svc.rewrite(dict(cfg2, rate_limti=5))
        mark = len(svc.read_log())
        os.kill(svc.proc.pid, signal.SIGHUP)
        log = svc.wait_log("configuration not reloaded", mark)
        assert '"rate_limti"' in log[mark:], log[mark:]
        st, j, _ = svc.http("POST", "/v1/admin/reload", token=svc.admin)
        assert st == 400 and j["error"]["field"] == "config" and "rate_limti" in \
            j["error"]["message"], (st, j)
        # A class with waiting or running jobs cannot go: refused whole, rate limit kept too.
        held = svc.submit(svc.admin, batch(["true"], **{"class": "urgent"},
                                           resources={"gpus": 8, "cpus_per_gpu": 1}))  # waits
        svc.rewrite(dict(cfg, rate_limit=0))
        st, j, _ = svc.http("POST", "/v1/admin/reload", token=svc.admin)
        assert st == 400 and "urgent" in j["error"]["message"], (st, j)
        codes = [svc.http("GET", "/v1/jobs", token=user)[0] for _ in range(10)]
        assert 429 in codes, codes
        svc.http("POST", "/v1/jobs/%d/cancel" % held, token=svc.admin)

        # Settings only a restart changes are kept and reported; the CLI prints the outcome.
        cfg3 = dict(cfg2, site="casa", kill_grace=2)
        svc.rewrite(cfg3)
        rc, out, err = svc.cli("admin", "reload")
        assert rc == 0, (rc, out, err)
        assert "kill_grace" in out and "site" in out and "next start" in out, out
        rc, out, err = svc.cli("admin", "reload", "--json")
        j = json.loads(out)
        assert "site" in j["restart_needed"] and j["changed"] == [], j
        st, nodes, _ = svc.http("GET", "/v1/nodes", token=svc.admin)
        assert nodes["nodes"][0]["site"] != "casa", nodes
        # Only admins reload.
        other = svc.add_user("bo")
        st, j, _ = svc.http("POST", "/v1/admin/reload", token=other)
        assert st == 403, (st, j)
        st, audit, _ = svc.http("GET", "/v1/admin/audit", token=svc.admin)
        assert any(e["action"] == "service.reload" for e in audit["entries"]), audit
        svc.http("POST", "/v1/jobs/%d/cancel" % running, token=svc.admin)
    finally:
        svc.close()


# --- logs -------------------------------------------------------------------------------------
def test_log_reopen(tmp):
    # Never through a symbolic link (jazarid opens it as root, in a folder its account owns).
    victim = os.path.join(tmp, "victim")
    open(victim, "w").close()
    os.symlink(victim, os.path.join(tmp, "link.log"))
    msg = start_fails(dict(base_config(new_state()), log_file=os.path.join(tmp, "link.log")))
    assert "symbolic link" in msg, msg
    assert os.path.getsize(victim) == 0
    state = new_state()
    log_path = os.path.join(tmp, "jazarid.log")
    cfg = dict(base_config(state), log_file=log_path)
    svc = ConfigService(cfg)
    try:
        deadline = time.time() + 10
        while "listening on" not in open(log_path).read():
            assert time.time() < deadline
            time.sleep(0.05)
        os.rename(log_path, log_path + ".1")  # what logrotate does
        svc.http("GET", "/healthz")
        os.kill(svc.proc.pid, signal.SIGUSR1)
        deadline = time.time() + 10
        while not os.path.exists(log_path) or "log reopened" not in open(log_path).read():
            assert time.time() < deadline, "no new log file"
            time.sleep(0.05)
        assert "log reopened" not in open(log_path + ".1").read()
        # A SIGHUP after the rotation logs into the new file.
        os.kill(svc.proc.pid, signal.SIGHUP)
        deadline = time.time() + 10
        while "configuration reloaded" not in open(log_path).read():
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        svc.close()


def test_log_journal(tmp):
    """--log-file journal:SOCKET speaks journald's native protocol: one datagram per line with
    PRIORITY, SYSLOG_IDENTIFIER, JAZARI_COMPONENT and MESSAGE."""
    sock_path = os.path.join(tmp, "journal.socket")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(sock_path)
    rx.settimeout(15)
    state = new_state()
    svc = ConfigService(dict(base_config(state), log_file="journal:" + sock_path))
    try:
        entries = []
        deadline = time.time() + 15
        while not any("listening on" in e.get("MESSAGE", "") for e in entries):
            assert time.time() < deadline, entries
            data = rx.recv(65536).decode()
            entries.append(dict(line.split("=", 1) for line in data.strip("\n").split("\n")))
        e = [e for e in entries if "listening on" in e["MESSAGE"]][0]
        assert e["PRIORITY"] == "6" and e["SYSLOG_IDENTIFIER"] == "jazarid", e
        assert e["JAZARI_COMPONENT"] == "jazarid", e
        # A refused reload is an error (priority 3).
        svc.rewrite(dict(svc.config, bogus=1))
        os.kill(svc.proc.pid, signal.SIGHUP)
        deadline = time.time() + 15
        while True:
            assert time.time() < deadline
            data = rx.recv(65536).decode()
            fields = dict(line.split("=", 1) for line in data.strip("\n").split("\n"))
            if "not reloaded" in fields["MESSAGE"]:
                assert fields["PRIORITY"] == "3", fields
                break
    finally:
        svc.close()
        rx.close()
    msg = start_fails(dict(base_config(new_state()), log_file="journal:" + sock_path + ".none"))
    assert "cannot reach the journal" in msg, msg


# --- version ----------------------------------------------------------------------------------
def test_version(tmp):
    versions = {}
    for prog in ("jazarid", "jazari", "jazari-node", "jazari-worker", "jazari-sim"):
        path = os.path.join(ARGS.build, "bin", prog)
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (prog, r.stdout, r.stderr)
        first = r.stdout.splitlines()[0]
        assert first.startswith(prog + " (Jazari) "), (prog, r.stdout)
        versions[prog] = first.split()[-1]
    assert len(set(versions.values())) == 1, versions
    svc = test_front.Service()
    try:
        st, j, _ = svc.http("GET", "/v1/version")  # no token needed
        assert st == 200 and j["version"] == versions["jazarid"], (st, j)
        assert j["plugin_abi"].startswith("1.") and j["kernels_api"] >= 1, j
    finally:
        svc.close()


# --- backup and restore -----------------------------------------------------------------------
def test_backup(tmp):
    svc = test_front.Service()
    restored = None
    try:
        user = svc.add_user("ana")
        done = svc.submit(user, batch(["echo", "kept"]))
        assert svc.wait(user, done)["state"] == "SUCCEEDED"
        out = os.path.join(tmp, "jazari-backup.db")
        rc, o, e = svc.cli("admin", "backup", out)
        assert rc == 0, (rc, o, e)
        assert "consistent copy" in e, e
        db = sqlite3.connect(out)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        # FILE is not overwritten without --force; a user may not take a backup.
        rc, o, e = svc.cli("admin", "backup", out)
        assert rc != 0 and "--force" in e, (rc, e)
        rc, o, e = svc.cli("admin", "backup", out, "--force")
        assert rc == 0, e
        rc, o, e = svc.cli("admin", "backup", os.path.join(tmp, "x.db"), token=user)
        assert rc != 0 and ("403" in e or "admin" in e), (rc, e)
        assert not os.path.exists(os.path.join(tmp, "x.db"))
        assert [f for f in os.listdir(tmp) if f.startswith("x.db")] == [], os.listdir(tmp)
        # The copy is never written through a link left where it goes.
        victim = os.path.join(tmp, "victim")
        open(victim, "w").close()
        for i in range(3):
            os.symlink(victim, os.path.join(tmp, "y.db.tmp%d" % i))
        rc, o, e = svc.cli("admin", "backup", os.path.join(tmp, "y.db"))
        assert rc == 0 and os.path.getsize(victim) == 0, (rc, e)
        assert oct(os.stat(os.path.join(tmp, "y.db")).st_mode & 0o777) == "0o600"
        leftovers = [f for f in os.listdir(svc.state) if f.startswith("backup-")]
        assert leftovers == [], leftovers
        # Work done after the backup is not in it.
        later = svc.submit(user, batch(["true"]))
        svc.wait(user, later)
    finally:
        svc.close()
    # Restore, as docs/ops-guide.md says: the copy becomes STATE/jazari.db of a new folder.
    restored = test_front.Service(start=False)
    shutil.copy(out, os.path.join(restored.state, "jazari.db"))
    # The admin token file is not in the database: the restored service must not mint a new
    # admin (users, tokens and jobs come back from the copy).
    restored.start()
    try:
        st, j, _ = restored.http("GET", "/v1/jobs/%d" % done, token=user)
        assert st == 200 and j["state"] == "SUCCEEDED", (st, j)
        st, j, _ = restored.http("GET", "/v1/jobs/%d" % later, token=user)
        assert st == 404, (st, j)
    finally:
        restored.close()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--fixtures", required=True)
    p.add_argument("tests", nargs="+")
    ARGS = p.parse_args()
    ARGS.build = os.path.abspath(ARGS.build)
    ARGS.fixtures = os.path.abspath(ARGS.fixtures)
    test_service.ARGS = ARGS
    test_front.ARGS = ARGS
    failed = test_service.run_in_folders(ARGS.tests, globals(), "jazari-ops-tmp-")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
