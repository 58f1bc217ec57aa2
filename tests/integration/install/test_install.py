#!/usr/bin/env python3
"""The installed Jazari, as its Debian packages lay it out (docs/install.md).

packages: cpack builds the .deb files from the build tree; each is checked with dpkg-deb -I
(names, versions, depends, conffiles) and -c (no file in two packages), and all are unpacked
with dpkg-deb -x into a scratch root (nothing is installed on this machine). Then: the man
pages format without warnings, the units name the installed paths, no RUNPATH leads into the
build or source tree and every library resolves, jazari-dev's CMake package and pkg-config files
build a small out-of-tree plugin, and the installed jazarid (packaged configuration, command-
line overrides for a temporary state folder and a free port; its built-in plugin folder) runs a
train, a simulate and the out-of-tree plugin's job submitted with the installed jazari CLI.

completion: the bash completion of the jazari CLI suggests commands, options and subcommands.

buildtree: no program, plugin or library of the build tree has an empty RUNPATH entry (the
dynamic loader reads one as the current folder), and the worker started from a job-like folder
opens no library there.

Usage: test_install.py --build BUILD --source SOURCE --cmake-command CMAKE --cpack-command CPACK
                       TEST [TEST...]"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workloads"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
from test_service import check_sanitizers, stop_process  # noqa: E402
import test_workloads  # noqa: E402

ARGS = None
PACKAGES = ("jazari-runtime", "jazari-node", "jazari-server", "jazari-client", "jazari-dev")


def run(cmd, timeout=120, check=True, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s\n%s" % (" ".join(cmd), p.returncode, p.stdout[-3000:],
                                                      p.stderr[-3000:]))
    return p


def clean_env():
    """The environment of installed programs: nothing pointing at the build tree."""
    env = dict(os.environ)
    for k in ("LD_LIBRARY_PATH", "JZ_KERNELS_CUDA_MODULE", "PKG_CONFIG_PATH", "CMAKE_PREFIX_PATH"):
        env.pop(k, None)
    return env


# ------------------------------------------------------------------------------------------
# Packages

def build_packages(out):
    t0 = time.time()
    run([ARGS.cpack_command, "-G", "DEB", "-B", out, "--config",
         os.path.join(ARGS.build, "CPackConfig.cmake")], timeout=240)
    debs = {}
    for path in glob.glob(os.path.join(out, "*.deb")):
        name = run(["dpkg-deb", "-f", path, "Package"]).stdout.strip()
        debs[name] = path
    print("cpack: %d packages in %.1fs" % (len(debs), time.time() - t0))
    for p in PACKAGES:
        assert p in debs, ("package missing", p, sorted(debs))
    return debs


def depends_of(path):
    field = run(["dpkg-deb", "-f", path, "Depends"]).stdout.strip()
    return [d.strip() for d in field.split(",") if d.strip()]


def check_metadata(debs, version):
    for name, path in debs.items():
        assert run(["dpkg-deb", "-f", path, "Version"]).stdout.strip() == version, name
        assert run(["dpkg-deb", "-f", path, "Architecture"]).stdout.strip() != "", name
        assert run(["dpkg-deb", "-I", path]).stdout.find("Description:") >= 0, name
    dep = {n: depends_of(p) for n, p in debs.items()}
    exact = "(= %s)" % version
    assert "jazari-node %s" % exact in dep["jazari-server"], dep["jazari-server"]
    assert "adduser" in dep["jazari-server"], dep["jazari-server"]
    assert "jazari-runtime %s" % exact in dep["jazari-node"], dep["jazari-node"]
    assert "jazari-runtime %s" % exact in dep["jazari-dev"], dep["jazari-dev"]
    if "jazari-cuda" in debs:  # a build with the CUDA backend
        assert "jazari-runtime %s" % exact in dep["jazari-cuda"], dep["jazari-cuda"]
        files = run(["dpkg-deb", "-c", debs["jazari-cuda"]]).stdout
        assert "/libjz_kernels_cuda.so" in files, files
    # From dpkg-shlibdeps: the C library and the libraries the binaries link.
    names = lambda n: [d.split()[0] for d in dep[n]]  # noqa: E731
    for n in ("jazari-runtime", "jazari-server", "jazari-client", "jazari-node"):
        assert "libc6" in names(n), (n, dep[n])
    assert any(d.startswith("libopenblas") for d in names("jazari-runtime")), dep["jazari-runtime"]
    assert any(d.startswith("libsqlite3") for d in names("jazari-server")), dep["jazari-server"]
    assert any(d.startswith("libjansson") for d in names("jazari-client")), dep["jazari-client"]
    # The configuration is a conffile; maintainer scripts where a service needs them.
    ctl = tempfile.mkdtemp(prefix="jazari-ctl-", dir=ARGS.scratch)
    run(["dpkg-deb", "-e", debs["jazari-server"], ctl])
    with open(os.path.join(ctl, "conffiles")) as f:
        assert f.read().split() == ["/etc/jazari/jazarid.json"]
    for script in ("postinst", "prerm", "postrm"):
        st = os.stat(os.path.join(ctl, script))
        assert st.st_mode & 0o111, script
        run(["sh", "-n", os.path.join(ctl, script)])
    with open(os.path.join(ctl, "postinst")) as f:
        assert "adduser --system" in f.read()
    # The runtime package provides libjz_kernels under its SONAME (shlibs for packages that
    # link it: the -dev package's users).
    ctl2 = tempfile.mkdtemp(prefix="jazari-ctl-", dir=ARGS.scratch)
    run(["dpkg-deb", "-e", debs["jazari-runtime"], ctl2])
    with open(os.path.join(ctl2, "shlibs")) as f:
        assert re.search(r"^libjz_kernels \d+ jazari-runtime", f.read(), re.M)


def check_no_shared_files(debs):
    """Packages that may be installed together never ship the same file."""
    owner = {}
    for name, path in debs.items():
        for line in run(["dpkg-deb", "-c", path]).stdout.splitlines():
            f = line.split()[5]
            if f.endswith("/"):
                continue
            assert f not in owner, ("%s is in %s and %s" % (f, owner[f], name))
            owner[f] = name
    return owner


def unpack(debs, root):
    for path in debs.values():
        run(["dpkg-deb", "-x", path, root])


def elf_files(root):
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            with open(p, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    out.append(p)
    return out


def check_layout(root, owner):
    usr = os.path.join(root, "usr")
    for exe in ("jazarid", "jazari", "jazari-node", "jazari-worker", "jazari-sim", "jazari-place"):
        assert os.access(os.path.join(usr, "bin", exe), os.X_OK), exe
    # `jazari place` runs jazari-place from the CLI's own folder; the CLI itself links no hwloc.
    topo = os.path.join(ARGS.source, "tests", "fixtures", "topologies", "aws-g4dn-metal-8xT4.xml")
    p = run([os.path.join(usr, "bin", "jazari"), "place", "--topology", topo, "--gpus", "2"],
            env=clean_env())
    assert "why" in p.stdout, p.stdout
    assert "hwloc" not in run(["readelf", "-d", os.path.join(usr, "bin", "jazari")]).stdout
    plugdirs = glob.glob(os.path.join(usr, "lib*", "**", "jazari", "plugins"), recursive=True)
    assert len(plugdirs) == 1, plugdirs
    plugdir = plugdirs[0]
    libdir = os.path.dirname(os.path.dirname(plugdir))
    for p in ("train", "infer", "simulate", "batch", "example"):
        assert os.path.isfile(os.path.join(plugdir, p + ".so")), p
    # A versioned SONAME (the kernels API version); the link name only in the -dev package.
    with open(os.path.join(ARGS.source, "include", "jazari", "kernels.h")) as f:
        api = re.search(r"^#define JZ_KERNELS_API_VERSION (\d+)$", f.read(), re.M).group(1)
    soname = "libjz_kernels.so.%s" % api
    dyn = run(["readelf", "-d", os.path.join(libdir, soname)]).stdout
    assert "Library soname: [%s]" % soname in dyn, dyn
    link = os.path.join(libdir, "libjz_kernels.so")
    assert os.path.islink(link) and owner["./" + os.path.relpath(link, root)] == "jazari-dev"
    assert owner["./" + os.path.relpath(os.path.join(libdir, soname), root)] == "jazari-runtime"
    # Units name what the packages install; the configuration is under /etc.
    units = os.path.join(usr, "lib", "systemd", "system")
    with open(os.path.join(units, "jazarid.service")) as f:
        unit = f.read()
    assert "ExecStart=/usr/bin/jazarid --config /etc/jazari/jazarid.json" in unit, unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    with open(os.path.join(units, "jazari-node.service")) as f:
        assert "ExecStart=/usr/bin/jazari-node " in f.read()
    # systemd parses every directive (the scratch root has no sysinit.target, /bin/kill or man
    # pages: those complaints are the scratch root's, not the units').
    p = run(["systemd-analyze", "verify", "--root=" + root,
             "/usr/lib/systemd/system/jazarid.service",
             "/usr/lib/systemd/system/jazari-node.service"], check=False)
    bad = [ln for ln in (p.stdout + p.stderr).splitlines()
           if re.search(r"Unknown|[Ii]nvalid|Failed to parse|ignoring", ln)]
    assert not bad, bad
    with open(os.path.join(root, "etc", "jazari", "jazarid.json")) as f:
        conf = json.load(f)
    assert conf["state_dir"] == "/var/lib/jazari" and conf["listen"] == "127.0.0.1:8600", conf
    # Man pages and completion.
    mandir = os.path.join(usr, "share", "man")
    for page in ("man1/jazari.1", "man8/jazarid.8", "man8/jazari-node.8"):
        p = run(["groff", "-man", "-Tutf8", "-ww", "-z", os.path.join(mandir, page)])
        assert p.stderr.strip() == "", (page, p.stderr)
    # Every option a daemon's --help lists is in its man page.
    for prog, page in (("jazarid", "man8/jazarid.8"), ("jazari-node", "man8/jazari-node.8")):
        helptext = run([os.path.join(usr, "bin", prog), "--help"], env=clean_env()).stdout
        with open(os.path.join(mandir, page)) as f:
            roff = f.read().replace("\\-", "-")
        opts = set(re.findall(r"^  (--[a-z-]+)", helptext, re.M))
        assert len(opts) > 5, helptext
        missing = sorted(o for o in opts if o not in roff)
        assert not missing, ("%s options missing from %s" % (prog, page), missing)
    assert os.path.isfile(os.path.join(usr, "share", "bash-completion", "completions", "jazari"))
    assert os.path.isfile(os.path.join(usr, "share", "zsh", "vendor-completions", "_jazari"))
    return libdir, plugdir


def check_runpaths(root, libdir):
    """Every ELF file: RUNPATH only $ORIGIN-relative, nothing in the build or source tree, and
    every needed library found (ldd, with a clean environment)."""
    forbidden = [os.path.realpath(ARGS.build), os.path.realpath(ARGS.source)]
    files = elf_files(root)
    assert len(files) >= 10, files
    env = clean_env()
    for path in files:
        dyn = run(["readelf", "-d", path]).stdout
        for m in re.finditer(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dyn):
            for entry in m.group(1).split(":"):
                # The CUDA backend also names NVIDIA's library folder (outside both trees).
                cuda_dir = "libjz_kernels_cuda" in path and os.path.isabs(entry) and not any(
                    os.path.realpath(entry).startswith(f) for f in forbidden)
                assert entry.startswith("$ORIGIN") or cuda_dir, (path, entry)
        if "(NEEDED)" not in dyn:
            continue
        out = run(["ldd", path], env=env).stdout
        # The CUDA backend may need the driver's libcuda, absent from a machine without a GPU.
        missing = [ln for ln in out.splitlines() if "not found" in ln and not (
            "libjz_kernels_cuda" in path and "libcuda.so" in ln)]
        assert not missing, (path, out)
        for f in forbidden:
            assert f not in out, (path, out)
        if "libjz_kernels" in out:
            m = re.search(r"libjz_kernels\.so\.\d+ => (\S+)", out)
            assert m and os.path.realpath(m.group(1)).startswith(os.path.realpath(libdir)), (
                path, out)
    return len(files)


# ------------------------------------------------------------------------------------------
# An out-of-tree plugin built against jazari-dev

PLUGIN_C = r"""
/* A plugin built outside the Jazari tree: fills a buffer on the cpu device and sums it. */
#include <jazari/kernels.h>
#include <jazari/plugin.h>

static const struct jz_param_spec params[] = {
    {.name = "n", .type = JZ_PARAM_INT, .default_json = "1000", .min = 1, .max = 1000000,
     .help = "elements to sum"},
};

static int run(jz_ctx_t *ctx, const struct jz_host *host)
{
    struct jz_error err = {0};
    jz_kdev_t *dev = NULL;
    jz_kbuf_t *x = NULL, *s = NULL;
    size_t n = (size_t)host->param_int(ctx, "n");
    float sum = 0;
    int rc = jz_kernels_check_version(&err);
    if (!rc)
        rc = jz_kdev_open(JZ_KBACKEND_CPU, 0, &dev, &err);
    if (!rc)
        rc = jz_kbuf_alloc(dev, n * sizeof(float), &x, &err);
    if (!rc)
        rc = jz_kbuf_alloc(dev, sizeof(float), &s, &err);
    if (!rc)
        rc = jz_k_fill(dev, n, 0.5f, x, &err);
    if (!rc)
        rc = jz_k_sum(dev, n, x, s, &err);
    if (!rc)
        rc = jz_kbuf_read(s, 0, &sum, sizeof sum, &err);
    jz_kbuf_free(x);
    jz_kbuf_free(s);
    jz_kdev_close(dev);
    if (rc) {
        host->set_error(ctx, "outoftree: %s", err.msg);
        return 1;
    }
    host->metric(ctx, "sum", (double)sum, 1);
    host->log(ctx, JZ_LOG_INFO, "outoftree: sum %g", (double)sum);
    return 0;
}

static const struct jz_plugin_ops ops = {.struct_size = sizeof(struct jz_plugin_ops), .run = run};

JZ_PLUGIN_DEFINE(.name = "outoftree", .version = "0.1.0",
                 .description = "sums a buffer on the cpu device (install test)",
                 .params = params, .n_params = JZ_ARRAY_LEN(params), .ops = &ops);
"""

PLUGIN_CMAKE = """
cmake_minimum_required(VERSION 3.20)
project(outoftree LANGUAGES C)
find_package(Jazari 0.3 REQUIRED)
jazari_add_plugin(outoftree outoftree.c)
target_link_libraries(outoftree PRIVATE Jazari::kernels)
"""


def build_plugin_cmake(root, work):
    src = os.path.join(work, "src")
    os.makedirs(src)
    with open(os.path.join(src, "outoftree.c"), "w") as f:
        f.write(PLUGIN_C)
    with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
        f.write(PLUGIN_CMAKE)
    bld = os.path.join(work, "build")
    env = clean_env()
    run([ARGS.cmake_command, "-S", src, "-B", bld,
         "-DCMAKE_PREFIX_PATH=" + os.path.join(root, "usr"), "-DCMAKE_C_FLAGS=-Wall -Werror"],
        env=env)
    run([ARGS.cmake_command, "--build", bld], env=env)
    # Installed where the package's plugin folder is, with its RUNPATH to the library folder.
    stage = os.path.join(work, "stage")
    run([ARGS.cmake_command, "--install", bld, "--prefix", stage], env=env)
    so = glob.glob(os.path.join(stage, "**", "jazari", "plugins", "outoftree.so"), recursive=True)
    assert len(so) == 1, so
    return so[0]


def build_plugin_pkgconfig(root, libdir, work):
    env = clean_env()
    env["PKG_CONFIG_PATH"] = os.path.join(libdir, "pkgconfig")
    flags = run(["pkg-config", "--cflags", "--libs", "jazari-kernels"], env=env).stdout.split()
    plugdir = run(["pkg-config", "--variable=plugindir", "jazari-plugin"], env=env).stdout.strip()
    assert os.path.realpath(plugdir) == os.path.realpath(os.path.join(libdir, "jazari", "plugins"))
    src = os.path.join(work, "pc.c")
    with open(src, "w") as f:
        f.write(PLUGIN_C)
    out = os.path.join(work, "outoftree-pc.so")
    run(["cc", "-std=c17", "-Wall", "-Werror", "-shared", "-fPIC", "-o", out, src, *flags],
        env=env)
    return out


# ------------------------------------------------------------------------------------------
# The installed service

class Installed:
    def __init__(self, root, state):
        self.root, self.state = root, state
        self.bin = os.path.join(root, "usr", "bin")
        self.port_file = os.path.join(state, "port")
        self.log = open(os.path.join(state, "jazarid.log"), "w")
        sdir = os.path.join(state, "state")
        cmd = [os.path.join(self.bin, "jazarid"), "--config",
               os.path.join(root, "etc", "jazari", "jazarid.json"),
               "--listen", "127.0.0.1:0", "--state-dir", sdir, "--node-dir",
               os.path.join(state, "node"), "--port-file", self.port_file, "--kill-grace", "1"]
        if os.geteuid() == 0:
            cmd += ["--user", "root"]  # as the other integration tests: no jazari account here
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=clean_env(), cwd=state)
        deadline = time.time() + 30
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("installed jazarid did not start:\n" + self.read_log())
            time.sleep(0.05)
        with open(self.port_file) as f:
            self.url = "http://127.0.0.1:%d" % int(f.read())
        with open(os.path.join(sdir, "admin.token")) as f:
            self.token = f.read().strip()

    def read_log(self):
        with open(os.path.join(self.state, "jazarid.log"), errors="replace") as f:
            return f.read()

    def cli(self, *args, timeout=120):
        p = subprocess.run([os.path.join(self.bin, "jazari"), "--url", self.url, "--token",
                            self.token, *args], capture_output=True, text=True, timeout=timeout,
                           env=clean_env())
        return p.returncode, p.stdout, p.stderr

    def submit(self, plugin, params):
        args = ["submit", "--plugin", plugin]
        for k, v in params.items():
            args += ["--param", "%s=%s" % (k, v)]
        rc, out, err = self.cli(*args)
        assert rc == 0 and out.strip().isdigit(), (rc, out, err)
        return int(out)

    def finish(self, jid):
        self.cli("wait", "--timeout", "100s", str(jid), timeout=110)
        rc, out, err = self.cli("show", "--json", str(jid))
        assert rc == 0, (rc, out, err)
        job = json.loads(out)
        if job["state"] != "SUCCEEDED":
            raise AssertionError("job %d %s:\n%s" % (jid, job, self.cli("logs", str(jid))[1]))
        return job

    def stop(self):
        try:
            stop_process(self.proc, "installed jazarid", 0)
        finally:
            self.log.close()
        check_sanitizers(self.state)


def test_packages():
    if not all(shutil.which(t) for t in ("dpkg-deb", "dpkg-shlibdeps", "readelf", "groff",
                                         "systemd-analyze")):
        print("SKIP: dpkg-deb, dpkg-shlibdeps (dpkg-dev), readelf, groff or systemd-analyze "
              "(systemd) missing; scripts/install-deps.sh installs them")
        return 77
    t0 = time.time()
    with open(os.path.join(ARGS.build, "CMakeCache.txt")) as f:
        version = re.search(r"^CMAKE_PROJECT_VERSION:STATIC=(.*)$", f.read(), re.M).group(1)
    debs = build_packages(os.path.join(ARGS.scratch, "pkgs"))
    check_metadata(debs, version)
    owner = check_no_shared_files(debs)
    root = os.path.join(ARGS.scratch, "root")
    unpack(debs, root)
    libdir, plugdir = check_layout(root, owner)
    n = check_runpaths(root, libdir)
    print("layout, metadata, %d ELF files' RUNPATH: ok (%.1fs)" % (n, time.time() - t0))

    # jazari-dev: the CMake package and the pkg-config files build a plugin out of the tree.
    work = os.path.join(ARGS.scratch, "plugin")
    os.makedirs(work)
    so = build_plugin_cmake(root, work)
    build_plugin_pkgconfig(root, libdir, work)
    # The installed CLI checks it with the installed worker, as the service would.
    p = run([os.path.join(root, "usr", "bin", "jazari"), "plugin", "check", so], env=clean_env())
    assert "outoftree" in p.stdout and "0.1.0" in p.stdout, p.stdout
    shutil.copy(so, os.path.join(plugdir, "outoftree.so"))
    check_runpaths(root, libdir)  # the plugin resolves libjz_kernels in the scratch root
    print("out-of-tree plugin: ok (%.1fs)" % (time.time() - t0))

    data = os.path.join(ARGS.scratch, "fashion")
    test_workloads.make_subset(data, n_train=600, n_test=200)
    state = os.path.join(ARGS.scratch, "service")
    os.makedirs(state)
    svc = Installed(root, state)
    try:
        rc, out, err = svc.cli("plugins")
        for p in ("train", "simulate", "outoftree"):
            assert re.search(r"^%s\b" % p, out, re.M), (p, out, err, svc.read_log()[-3000:])
        train = svc.submit("train", {"dataset": data, "layers": "32", "epochs": 1,
                                     "batch_size": 64, "seed": 3})
        sim = svc.submit("simulate", {"model": "nbody", "bodies": 64, "dt": 0.004,
                                      "softening": 0.05, "steps": 20, "snapshots": 1})
        ext = svc.submit("outoftree", {"n": 1000})
        jt = svc.finish(train)
        assert jt["metrics"]["epoch"] == 1 and jt["metrics"]["test_accuracy"] > 0.3, jt
        js = svc.finish(sim)
        assert "energy_drift" in js["metrics"], js
        je = svc.finish(ext)
        assert je["metrics"]["sum"] == 500.0, je
    except Exception:
        print("--- installed jazarid log ---\n" + svc.read_log()[-4000:])
        svc.stop()
        raise
    svc.stop()
    print("jobs through the installed binaries: ok (%.1fs)" % (time.time() - t0))
    return 0


# ------------------------------------------------------------------------------------------
# Bash completion

def test_completion():
    script = os.path.join(ARGS.source, "packaging", "completion", "jazari.bash")
    cases = [
        (["jazari", "su"], ["submit"]),
        (["jazari", "--url", "http://h:1", "qu"], ["queue"]),
        (["jazari", "submit", "--gp"], ["--gpus", "--gpus-per-node"]),
        (["jazari", "queue", "--state", "RUNNING,SU"], ["RUNNING,SUCCEEDED"]),
        (["jazari", "admin", "t"], ["tenant", "token"]),
        (["jazari", "admin", "tenant", ""], ["add", "list", "rm", "set", "show"]),
        (["jazari", "admin", "tenant", "add", "x", "--model-q"], ["--model-quota"]),
        (["jazari", "tenant", "add"], ["add-member"]),
        (["jazari", "tenant", "add-member", "bob", "--role", "t"], ["tenant-admin"]),
        (["jazari", "admin", "user", ""], ["add", "list", "rm", "set"]),
        (["jazari", "admin", "--limit", "5", "node", "r"], ["revoke"]),
        (["jazari", "node", "d"], ["drain"]),
        (["jazari", "logs", "--f"], ["--follow"]),
        (["jazari", "submit", "--plugin", "x"], []),
        (["jazari", "plugin", ""], ["check"]),
        (["jazari", "queue", "--format", "id,na"], ["id,name"]),
        (["jazari", "queue", "--sort", "-gp"], ["-gpus"]),
        (["jazari", "queue", "--state", "a"], ["all"]),
        (["jazari", "queue", "--no"], ["--noheader"]),
    ]
    # The commands and options offered are the ones the CLI documents (`jazari --help`).
    helptext = run([os.path.join(ARGS.build, "bin", "jazari"), "--help"], check=False).stdout
    commands = re.findall(r"^  ([a-z]+) ", helptext, re.M)
    assert len(commands) >= 10, helptext
    cases.append((["jazari", ""], sorted(commands)))
    for words, want in cases:
        quoted = " ".join("'%s'" % w for w in words)
        sh = ("source '%s'; COMP_WORDS=(%s); COMP_CWORD=%d; COMPREPLY=(); _jazari; "
              "printf '%%s\\n' \"${COMPREPLY[@]}\"" % (script, quoted, len(words) - 1))
        got = sorted(x for x in run(["bash", "--norc", "-c", sh]).stdout.split("\n") if x)
        assert got == sorted(want), (words, got, want)
    print("completion: %d cases ok" % len(cases))
    # zsh's completion (new with the Slurm-style options): it must at least parse, and offer
    # the same commands. Without zsh on the machine only the commands are compared.
    zfile = os.path.join(ARGS.source, "packaging", "completion", "_jazari")
    with open(zfile) as f:
        ztext = f.read()
    for c in commands:
        assert re.search(r"^\s+'?%s:" % c, ztext, re.M), ("zsh completion lacks", c)
    if shutil.which("zsh"):
        run(["zsh", "-n", zfile])
        # Loaded as zsh loads it, the function defines itself without errors.
        run(["zsh", "-f", "-c", "autoload -Uz compinit; compinit -u; fpath=(%s $fpath); "
             "autoload -Uz _jazari; whence -w _jazari" % os.path.dirname(zfile)])
        print("completion: zsh file parses")
    else:
        print("completion: zsh not installed, its syntax check skipped")
    return 0


# ------------------------------------------------------------------------------------------
# The build tree's own RUNPATHs

def test_buildtree():
    if not shutil.which("readelf"):
        print("SKIP: readelf (binutils) missing")
        return 77
    files = [f for d in ("bin", "lib", "plugins") for f in elf_files(os.path.join(ARGS.build, d))]
    assert any(f.endswith("/jazari-worker") for f in files), files
    for path in files:
        dyn = run(["readelf", "-d", path]).stdout
        for m in re.finditer(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dyn):
            assert "" not in m.group(1).split(":"), ("empty RUNPATH entry", path, m.group(1))
    # What the entries are for: a worker started in a folder must not look there for its
    # libraries (strace shows every open; scripts/install-deps.sh installs it).
    if not shutil.which("strace"):
        print("build tree: strace missing, the worker's opens not checked")
    else:
        here = os.path.join(ARGS.scratch, "job")
        os.makedirs(here)
        p = subprocess.run(["strace", "-f", "-e", "trace=openat", os.path.join(
            ARGS.build, "bin", "jazari-worker"), "--version"], cwd=here, capture_output=True,
            text=True, env=clean_env(), timeout=60)
        relative = [ln for ln in p.stderr.splitlines()
                    if re.search(r'openat\(AT_FDCWD, "[^/]', ln)]
        assert not relative, ("the worker searched its working folder", relative[:5])
    print("build tree: %d ELF files, no empty RUNPATH entry" % len(files))
    return 0


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--cmake-command", default="cmake")
    p.add_argument("--cpack-command", default="cpack")
    p.add_argument("tests", nargs="+")
    ARGS = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    ARGS.scratch = tempfile.mkdtemp(prefix="jazari-install-")
    status = 0
    try:
        for t in ARGS.tests:
            rc = globals()["test_" + t]()
            status = status or rc
            print("%s %s" % ("PASS" if rc == 0 else "SKIP" if rc == 77 else "FAIL", t))
    except Exception:
        import traceback
        traceback.print_exc()
        print("FAIL (scratch kept: %s)" % ARGS.scratch)
        return 1
    shutil.rmtree(ARGS.scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
