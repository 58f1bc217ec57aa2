#!/usr/bin/env python3
"""Plugin lifecycle tests: a real jazarid with an extra plugin folder (a temporary one), the
test plugins 'lifecycle' (built as 1.0.0 and 1.1.0, the latter with one more parameter), 'abi10'
(a plugin as ABI 1.0 built it) and 'cxx' (written in C++), and the `jazari plugin check` command.

Usage: test_plugins.py --build BUILD_DIR --fixtures FIXTURES_DIR TEST [TEST...]"""

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "nodes"))
import test_service  # noqa: E402
from test_service import Service  # noqa: E402
import test_nodes  # noqa: E402

ARGS = None


def test_plugin(name):
    return os.path.join(ARGS.build, "test-plugins", name + ".so")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def install(src, folder, name):
    """Installs src as folder/name the way a package manager upgrades a file: written beside it,
    then renamed over it (the old inode lives on for whoever has it open)."""
    tmp = os.path.join(folder, "." + name + ".new")
    shutil.copyfile(src, tmp)
    os.rename(tmp, os.path.join(folder, name))


def plugin_folder():
    d = tempfile.mkdtemp(prefix="jazari-plugins-")
    test_service.FOLDERS.append(d)
    return d


def versions(svc, name):
    st, j = svc.http("GET", "/v1/plugins", token=svc.admin)
    assert st == 200, (st, j)
    return [p for p in j["plugins"] if p["name"] == name]


RELOADED = re.compile(r"plugins: reload: (\d+) files, (\d+) new versions, (\d+) gone")


def reload(svc):
    """POST /v1/admin/reload, then waits for the plugin rescan to end (it may run after the
    answer, off jazarid's event loop) and returns (added, removed) as its log line says."""
    before = len(RELOADED.findall(svc.read_log()))
    st, j = svc.http("POST", "/v1/admin/reload", token=svc.admin)
    assert st == 200, (st, j)
    deadline = time.time() + 60
    while True:
        found = RELOADED.findall(svc.read_log())
        if len(found) > before:
            return int(found[before][1]), int(found[before][2])
        assert time.time() < deadline, "no plugin rescan ended after the reload"
        time.sleep(0.1)


def job_log(svc, job_id):
    st, text = svc.http("GET", "/v1/jobs/%d/log" % job_id, token=svc.admin)
    assert st == 200, (st, text)
    return text if isinstance(text, str) else json.dumps(text)


def submit_error(svc, body):
    st, e = svc.http("POST", "/v1/jobs", body, svc.admin)
    assert st == 400, (st, e)
    return e["error"]


def test_lifecycle(svc):
    t = svc.admin
    folder = svc.plugin_dir
    v100, v110 = test_plugin("lifecycle_v100"), test_plugin("lifecycle_v110")
    sha100, sha110 = sha256(v100), sha256(v110)

    # The extra folder adds to the built-in one: both are scanned, and the log says which.
    log = svc.read_log()
    assert "scanning plugin folders" in log and folder in log, log[-2000:]
    assert [p for p in versions(svc, "batch") if p["status"] == "ok"], "built-in folder lost"
    only = versions(svc, "lifecycle")
    assert len(only) == 1 and only[0]["version"] == "1.0.0" and only[0]["sha256"] == sha100, only
    assert only[0]["default"] is True and only[0]["path"] == os.path.join(folder, "lifecycle.so")
    # The registry's private copy, named by content, private like the whole state folder.
    copy = os.path.join(svc.state, "plugins", sha100 + ".so")
    assert sha256(copy) == sha100 and os.stat(copy).st_mode & 0o777 == 0o600

    # A long-ish job on 1.0.0, then 1.1.0 renamed over the file and a reload.
    a = svc.submit(t, {"plugin": "lifecycle", "params": {"seconds": 3}})
    svc.wait_running(t, a)
    ja = svc.job(t, a)
    assert ja["plugin"] == "lifecycle" and ja["plugin_version"] == "1.0.0", ja
    assert ja["plugin_sha256"] == sha100, ja
    install(v110, folder, "lifecycle.so")
    assert reload(svc) == (1, 1)
    now = versions(svc, "lifecycle")
    assert [(p["version"], p["sha256"]) for p in now] == [("1.1.0", sha110)], now
    assert "mode" in [p["name"] for p in now[0]["params"]], now

    # The running job ends on the version it was submitted with.
    ja = svc.wait(t, a)
    assert ja["state"] == "SUCCEEDED" and ja["plugin_version"] == "1.0.0", ja
    assert ja["plugin_sha256"] == sha100, ja
    assert "run version=1.0.0" in job_log(svc, a)
    rc, out, err = svc.cli("show", str(a))
    assert rc == 0 and "lifecycle 1.0.0 (sha256 %s)" % sha100[:12] in out, (out, err)

    # New jobs get 1.1.0 and its schema; the removed 1.0.0 is gone for new submissions.
    b = svc.submit(t, {"plugin": "lifecycle", "params": {"mode": "slow"}})
    jb = svc.wait(t, b)
    assert jb["state"] == "SUCCEEDED" and jb["plugin_version"] == "1.1.0", jb
    assert jb["plugin_sha256"] == sha110 and jb["params"]["mode"] == "slow", jb
    assert "run version=1.1.0" in job_log(svc, b)
    e = submit_error(svc, {"plugin": "lifecycle", "params": {"mode": "bogus"}})
    assert e["field"] == "params.mode", e
    e = submit_error(svc, {"plugin": "lifecycle@1.0.0"})
    assert e["field"] == "plugin" and "unknown plugin" in e["message"], e

    # 1.0.0 installed again beside 1.1.0: both listed, the newest is the default, @ selects.
    install(v100, folder, "lifecycle-old.so")
    assert reload(svc) == (1, 0)
    both = versions(svc, "lifecycle")
    assert [(p["version"], p["default"]) for p in both] == [("1.1.0", True), ("1.0.0", False)]
    rc, out, err = svc.cli("plugins")
    assert rc == 0 and "ok*" in out and sha100[:12] in out and sha110[:12] in out, out
    rc, out, err = svc.cli("plugins", "lifecycle@1.0.0")
    assert rc == 0 and "lifecycle 1.0.0 (ok)" in out and "mode" not in out, out
    e = submit_error(svc, {"plugin": "lifecycle@1.0.0", "params": {"mode": "slow"}})
    assert e["field"] == "params.mode", e  # 1.0.0's schema has no mode
    for spec, want in (("lifecycle@1.0.0", "1.0.0"), ("lifecycle@1.0", "1.0.0"),
                       ("lifecycle@1", "1.1.0"), ("lifecycle@1.1", "1.1.0"),
                       ("lifecycle", "1.1.0")):
        j = svc.job(t, svc.submit(t, {"plugin": spec}))
        assert j["plugin_version"] == want, (spec, j)
    rc, out, err = svc.cli("submit", "--plugin", "lifecycle@1.0.0")
    assert rc == 0, (rc, out, err)
    assert svc.job(t, int(out))["plugin_version"] == "1.0.0"

    # A job queued on 1.0.0 whose file is removed before it starts, across a restart: it runs
    # 1.0.0 from the private copy.
    blocker = svc.submit(t, {"plugin": "lifecycle", "params": {"seconds": 30},
                             "resources": {"gpus": 8}})
    svc.wait_running(t, blocker)
    d = svc.submit(t, {"plugin": "lifecycle@1.0.0", "resources": {"gpus": 1}})
    assert svc.job(t, d)["state"] == "PENDING"
    os.unlink(os.path.join(folder, "lifecycle-old.so"))
    svc.kill9()
    svc.start()
    assert [p["version"] for p in versions(svc, "lifecycle")] == ["1.1.0"]
    st, _ = svc.http("POST", "/v1/jobs/%d/cancel" % blocker, token=t)
    jd = svc.wait(t, d)
    assert jd["state"] == "SUCCEEDED" and jd["plugin_version"] == "1.0.0", jd
    assert jd["plugin_sha256"] == sha100, jd
    assert "run version=1.0.0" in job_log(svc, d)

    # The private copy is checked where the worker opens it: other bytes fail the job, with a
    # reason that names both hashes.
    blocker = svc.submit(t, {"plugin": "lifecycle", "params": {"seconds": 30},
                             "resources": {"gpus": 8}})
    svc.wait_running(t, blocker)
    f = svc.submit(t, {"plugin": "lifecycle", "resources": {"gpus": 1}})
    assert svc.job(t, f)["state"] == "PENDING"
    # Replaced by a rename, as anything but jazarid would: writing over the file in place
    # would change the pages the running blocker has mapped (its fini then ran v100's bytes
    # and crashed under ASan, once in CI).
    install(v100, os.path.join(svc.state, "plugins"), sha110 + ".so")
    svc.http("POST", "/v1/jobs/%d/cancel" % blocker, token=t)
    jf = svc.wait(t, f)
    assert jf["state"] == "FAILED", jf
    assert "has sha256 %s" % sha100[:12] in jf["reason"], jf
    assert "not the %s" % sha110[:12] in jf["reason"], jf


def test_hooks(svc):
    t = svc.admin
    folder = svc.plugin_dir
    # ABI 1.0 and C++ plugins load and run.
    j = svc.wait(t, svc.submit(t, {"plugin": "abi10"}))
    assert j["state"] == "SUCCEEDED", j
    assert "abi10: host 1.1 table_ok=1 n=2" in job_log(svc, j["id"])
    j = svc.wait(t, svc.submit(t, {"plugin": "cxx", "params": {"values": [4, 5]}}))
    assert j["state"] == "SUCCEEDED" and "cxx: sum=9" in job_log(svc, j["id"]), j
    j = svc.wait(t, svc.submit(t, {"plugin": "cxx", "params": {"throw_inside": True}}))
    assert j["state"] == "FAILED" and j["reason"].endswith(": cxx: asked to throw"), j
    # init gets the site configuration of the server's "plugins" section; fini runs.
    j = svc.wait(t, svc.submit(t, {"plugin": "lifecycle", "params": {"lo": 1, "hi": 3}}))
    assert j["state"] == "SUCCEEDED", j
    text = job_log(svc, j["id"])
    assert 'init site={"greeting":"hello"}' in text and "lifecycle: fini" in text, text
    # validate runs when the job starts: accepted at submit, failed with the plugin's reason.
    j = svc.wait(t, svc.submit(t, {"plugin": "lifecycle", "params": {"lo": 5, "hi": 2}}))
    assert j["state"] == "FAILED", j
    assert j["reason"].endswith("invalid parameters: lo (5) must be less than hi (2)"), j
    assert os.path.isdir(folder)


def run_check(*args, mood=""):
    """`jazari plugin check ARGS`; mood is $JAZARI_TEST_MOODY for the 'moody' test plugin."""
    r = subprocess.run([os.path.join(ARGS.build, "bin", "jazari"), "plugin", "check", *args],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, JAZARI_CONFIG="/nonexistent",
                                JAZARI_TEST_MOODY=mood))
    assert not any(m in r.stderr for m in test_service.SANITIZER_MARKS), r.stderr
    return r.returncode, r.stdout, r.stderr


def test_check(_svc):
    good = test_plugin("lifecycle_v110")
    rc, out, err = run_check(good)
    assert rc == 0, (rc, out, err)
    for want in ("lifecycle 1.1.0 (ok)", "sha256: " + sha256(good), "abi:    1.1",
                 "hooks:  init validate fini", "mode"):
        assert want in out, (want, out)
    rc, out, err = run_check(good, "--json")
    j = json.loads(out)
    assert rc == 0 and j["status"] == "ok" and j["sha256"] == sha256(good), j
    assert j["abi"] == {"major": 1, "minor": 1} and j["hooks"]["validate"] is True, j
    rc, out, err = run_check(test_plugin("abi10"))
    assert rc == 0 and "built against ABI 1.0" in out, (rc, out, err)
    rc, out, err = run_check(test_plugin("cxx"))
    assert rc == 0 and "cxx 0.1.0 (ok)" in out, (rc, out, err)
    # Bad files: exit 1, one line saying why.
    notes = tempfile.NamedTemporaryFile(suffix=".so", delete=False)
    notes.write(b"not an ELF file\n")
    notes.close()
    try:
        for path, why in ((test_plugin("badabi"), "ABI 99.0 is not supported"),
                          (test_plugin("nodesc"), "exports no 'jazari_plugin' symbol"),
                          (os.path.join(ARGS.build, "bin", "jazari"), "cannot load plugin"),
                          (notes.name, "cannot load plugin"),
                          ("/nonexistent.so", "No such file")):
            rc, out, err = run_check(path)
            assert rc == 1 and why in err and err.count("\n") == 1, (path, rc, out, err)
    finally:
        os.unlink(notes.name)
    rc, out, err = run_check(good, "--worker", "/nonexistent/jazari-worker")
    assert rc == 2 and "cannot run" in err, (rc, err)
    # A worker that describes the plugin but then ends badly: refused, as jazarid refuses it.
    moody = test_plugin("moody")
    rc, out, err = run_check(moody)
    assert rc == 0 and "moody 0.1.0 (ok)" in out, (rc, out, err)
    for mood, why in (("exit", "the worker exited with status 3 after describing it"),
                      ("signal", "the worker was killed by signal 6 after describing it")):
        rc, out, err = run_check(moody, mood=mood)
        assert rc == 1 and why in err and "(ok)" not in out, (mood, rc, out, err)
        rc, out, err = run_check(moody, "--json", mood=mood)
        j = json.loads(out)
        assert rc == 1 and j["status"] == "refused" and why in j["error"], (mood, rc, j)


def test_copies(svc):
    """The local agent runs jazarid's private copy only when it is a regular file, not a link,
    owned by jazarid's account; and the plugin's descriptor never reaches a job's commands."""
    t = svc.admin
    sha = sha256(test_plugin("lifecycle_v110"))
    copy = os.path.join(svc.state, "plugins", sha + ".so")
    assert svc.wait(t, svc.submit(t, {"plugin": "lifecycle"}))["state"] == "SUCCEEDED"
    # The worker loads the plugin from fd 5; a command a plugin runs does not inherit it.
    script = ('if [ -e /proc/$$/fd/5 ]; then echo "fd5-open $(readlink /proc/$$/fd/5)"; '
              'else echo fd5-closed; fi')
    j = svc.wait(t, svc.submit(t, test_service.batch(["sh", "-c", script])))
    assert j["state"] == "SUCCEEDED", j
    text = job_log(svc, j["id"])
    assert "fd5-closed" in text and "fd5-open" not in text, text
    # A link in place of the copy, even to the very bytes: refused, not followed.
    aside = copy + ".aside"
    os.rename(copy, aside)
    os.symlink(aside, copy)
    j = svc.wait(t, svc.submit(t, {"plugin": "lifecycle"}))
    assert j["state"] == "FAILED" and "symbolic link" in j["reason"], j
    os.unlink(copy)
    os.rename(aside, copy)
    # A copy owned by another account than jazarid's (the folder's owner): refused.
    if os.geteuid() == 0:
        own = os.stat(copy)
        os.chown(copy, 65534, own.st_gid)
        j = svc.wait(t, svc.submit(t, {"plugin": "lifecycle"}))
        assert j["state"] == "FAILED" and "owned by uid 65534" in j["reason"], j
        os.chown(copy, own.st_uid, own.st_gid)
    # A damaged copy is replaced when the plugin is described again (here: reinstalled).
    with open(copy, "r+b") as f:
        f.truncate(1000)
    install(test_plugin("lifecycle_v110"), svc.plugin_dir, "lifecycle.so")
    assert reload(svc) == (0, 0)
    assert sha256(copy) == sha
    j = svc.wait(t, svc.submit(t, {"plugin": "lifecycle"}))
    assert j["state"] == "SUCCEEDED", j


def test_remote(svc):
    """Remote agents load plugins from their own folders: the file of the job's version is run
    only when its SHA-256 is the one the job was submitted with."""
    good = svc.add_agent("good", "aws-g4dn-metal-8xT4.xml",
                         extra=["--plugin-dir", svc.agent_dirs["good"]])
    bad = svc.add_agent("bad", "ibm-ac922-lassen-4xV100.xml",
                        extra=["--plugin-dir", svc.agent_dirs["bad"]])
    svc.wait_nodes(["good", "bad"])
    t = svc.admin
    sha110 = sha256(test_plugin("lifecycle_v110"))
    j = svc.wait(t, svc.submit(t, {"plugin": "lifecycle",
                                   "resources": {"gpus": 1, "gpu_model": "T4"}}))
    assert j["state"] == "SUCCEEDED" and j["node"] == "good", j
    assert j["plugin_sha256"] == sha110 and "run version=1.1.0" in job_log(svc, j["id"]), j
    j = svc.wait(t, svc.submit(t, {"plugin": "lifecycle",
                                   "resources": {"gpus": 1, "gpu_model": "V100"}}))
    assert j["state"] == "FAILED" and j["node"] == "bad", j
    assert "not the %s" % sha110[:12] in j["reason"], j
    assert "the job was submitted with" in j["reason"], j
    assert good and bad


def test_reload_async(svc):
    """A reload that describes a slow plugin ('moody', whose constructor sleeps 3 s in this
    jazarid) does not stall the API: the rescan runs beside the event loop."""
    install(test_plugin("moody"), svc.plugin_dir, "moody-slow.so")
    before = len(RELOADED.findall(svc.read_log()))
    t0 = time.time()
    st, j = svc.http("POST", "/v1/admin/reload", token=svc.admin)
    assert st == 200 and time.time() - t0 < 1.5, (st, j, time.time() - t0)
    worst = 0.0
    while len(RELOADED.findall(svc.read_log())) == before:
        t = time.time()
        st, _ = svc.http("GET", "/healthz")
        worst = max(worst, time.time() - t)
        assert st == 200, st
        assert time.time() - t0 < 60, "the rescan did not end"
        time.sleep(0.05)
    assert time.time() - t0 >= 3, "the rescan was not slow: the test proves nothing"
    assert worst < 1.0, "/healthz took %.1f s during the rescan" % worst
    assert [p for p in versions(svc, "moody") if p["path"].endswith("moody-slow.so")]


class PluginService(Service):
    """jazarid whose extra plugin folder is a temporary folder of the test's own (the built-in
    one is scanned besides it)."""

    def __init__(self, plugin_dir, config=None):
        self.plugin_dir = plugin_dir
        super().__init__(extra=["--plugin-dir", plugin_dir], config=config)


class RemoteCluster(test_nodes.Cluster):
    """jazarid without a local node and with an extra plugin folder; agents added by the test,
    each with its own plugin folder."""

    def __init__(self, plugin_dir, agent_dirs):
        self.agents = []
        self.keep_port = True
        self.plugin_dir, self.agent_dirs = plugin_dir, agent_dirs
        Service.__init__(self, extra=["--no-local-node", "--node-timeout", "3",
                                      "--plugin-dir", plugin_dir])


def make_service(name):
    if name == "check":
        return None
    folder = plugin_folder()
    if name == "remote":
        # The service and the good node have 1.1.0; the bad node has a file of that name with
        # other bytes (1.0.0's).
        install(test_plugin("lifecycle_v110"), folder, "lifecycle.so")
        dirs = {"good": plugin_folder(), "bad": plugin_folder()}
        install(test_plugin("lifecycle_v110"), dirs["good"], "lifecycle.so")
        install(test_plugin("lifecycle_v100"), dirs["bad"], "lifecycle.so")
        return RemoteCluster(folder, dirs)
    if name == "reload_async":
        os.environ["JAZARI_TEST_MOODY"] = "sleep:3"  # jazarid's describing workers inherit it
        return PluginService(folder)
    if name == "copies":
        install(test_plugin("lifecycle_v110"), folder, "lifecycle.so")
        return PluginService(folder)
    if name == "lifecycle":
        install(test_plugin("lifecycle_v100"), folder, "lifecycle.so")
        return PluginService(folder)
    for p in ("lifecycle_v110", "abi10", "cxx"):
        install(test_plugin(p), folder, p + ".so")
    return PluginService(folder, config={"plugins": {"lifecycle": {"greeting": "hello"}}})


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
    failed = test_service.run_tests(ARGS.tests, globals(), make_service)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
