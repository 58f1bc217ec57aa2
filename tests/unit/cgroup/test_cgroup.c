/* The cgroup module on this machine's real cgroups: limits that bite (pids, cpuset, memory and
 * its OOM kill, GPU device access), a kill that reaches a double-forked new session, the reap
 * of an earlier run's leftovers, every directory removed; the same on the cgroup2 of a hybrid
 * machine, where what needs a controller is refused; the cost of create+destroy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the four above first: a blank line keeps clang-format from sorting it up. */

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/time.h"
#include "node/cgroup.h"

#ifndef CGROUP_SUPER_MAGIC
#define CGROUP_SUPER_MAGIC 0x27e0eb
#endif
#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define ROOT JZ_CGROUP_ROOT_DEFAULT
#define UNIFIED ROOT "/unified"
#define MIB (1024 * 1024)
#define PLEN 512

static char g_top[64];  /* jazari-test-PID: made and removed by each test's system */
static char g_name[96]; /* jazari-test-PID/agent */
static const char *const v1_ctrls[] = {"memory", "pids", "cpuset", "freezer", "devices"};

struct fx {
    const char *root;
    struct jz_cgroup_system *s;
    struct jz_cgroup *cg[4];
    pid_t pids[8];
    size_t npids;
    char tmp[64];
    char links[64]; /* a v1 root of symlinks to some of the real hierarchies */
};

static bool is_fs(const char *path, long magic)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && sf.f_type == magic;
}

/* ---- fixtures: each test has a system of its own, and everything is undone after ---- */

static int setup(void **state, const char *root)
{
    struct fx *f = calloc(1, sizeof *f);
    f->root = root;
    *state = f;
    if (!root)
        return 0; /* not on this machine: the test skips */
    struct jz_error err = {0};
    if (jz_cgroup_system_open(root, g_name, &f->s, &err) != 0) {
        print_error("open %s: %s\n", root, err.msg);
        return -1;
    }
    return 0;
}

static int setup_default(void **state)
{
    return setup(state, ROOT);
}

/* The cgroup2 of a hybrid machine (a pure v2 one is the default root already). */
static int setup_unified(void **state)
{
    bool hybrid = !is_fs(ROOT, CGROUP2_SUPER_MAGIC) && is_fs(UNIFIED, CGROUP2_SUPER_MAGIC);
    return setup(state, hybrid ? UNIFIED : NULL);
}

/* v1 without a freezer: a root holding only memory and pids (symlinks to the real ones). */
static int setup_v1_no_freezer(void **state)
{
    char top[PLEN], links[64] = "/tmp/jzcg-root-XXXXXX";
    snprintf(top, sizeof top, "%s/memory", ROOT);
    if (!is_fs(top, CGROUP_SUPER_MAGIC) || !mkdtemp(links))
        return setup(state, NULL);
    for (size_t i = 0; i < 2; i++) {
        char from[PLEN], to[PLEN];
        snprintf(from, sizeof from, "%s/%s", ROOT, i ? "pids" : "memory");
        snprintf(to, sizeof to, "%s/%s", links, i ? "pids" : "memory");
        if (symlink(from, to) != 0)
            return -1;
    }
    static char root[64];
    strcpy(root, links);
    int rc = setup(state, root);
    struct fx *f = *state;
    strcpy(f->links, links);
    return rc;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < f->npids; i++)
        if (f->pids[i] > 0) {
            kill(f->pids[i], SIGKILL);
            waitpid(f->pids[i], NULL, 0);
        }
    for (size_t i = 0; i < 4; i++)
        jz_cgroup_destroy(f->cg[i]);
    jz_cgroup_system_close(f->s);
    /* Orphans of the jobs (this process is their subreaper) were killed with their cgroups. */
    for (int i = 0; i < 100; i++) {
        pid_t r;
        while ((r = waitpid(-1, NULL, WNOHANG)) > 0) {
        }
        if (r < 0)
            break;
        usleep(10000);
    }
    if (*f->links) {
        char p[PLEN];
        for (size_t i = 0; i < 2; i++) {
            snprintf(p, sizeof p, "%s/%s", f->links, i ? "pids" : "memory");
            unlink(p);
        }
        rmdir(f->links);
    }
    if (*f->tmp) {
        static const char *const nodes[] = {"gpu0", "gpu1", "ctl"};
        char p[PLEN];
        for (size_t i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%s", f->tmp, nodes[i]);
            unlink(p);
        }
        rmdir(f->tmp);
    }
    free(f);
    return 0;
}

#define FX_OR_SKIP(f)                                                                              \
    struct fx *f = *state;                                                                         \
    if (!f->s)                                                                                     \
        skip();

/* ---- helpers ---- */

/* The directories rel (relative to a hierarchy's root) has in every hierarchy of f. */
static size_t dirs(const struct fx *f, const char *rel, char out[][PLEN])
{
    size_t n = 0;
    if (!strcmp(jz_cgroup_system_version(f->s), "v2")) {
        snprintf(out[n++], PLEN, "%s/%s", is_fs(f->root, CGROUP2_SUPER_MAGIC) ? f->root : UNIFIED,
                 rel);
        return n;
    }
    for (size_t i = 0; i < 5; i++) {
        char top[PLEN];
        snprintf(top, sizeof top, "%s/%s", f->root, v1_ctrls[i]);
        if (is_fs(top, CGROUP_SUPER_MAGIC))
            snprintf(out[n++], PLEN, "%s/%s", top, rel);
    }
    return n;
}

/* One hierarchy's directory of a job (the one holding ctrl on v1). */
static void job_dir(const struct fx *f, const char *ctrl, const char *job, char *out)
{
    if (!strcmp(jz_cgroup_system_version(f->s), "v2"))
        snprintf(out, PLEN, "%s/%s/%s", is_fs(f->root, CGROUP2_SUPER_MAGIC) ? f->root : UNIFIED,
                 g_name, job);
    else
        snprintf(out, PLEN, "%s/%s/%s/%s", f->root, ctrl, g_name, job);
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static ssize_t slurp(const char *dir, const char *file, char *buf, size_t size)
{
    char p[PLEN];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

static size_t count_lines(const char *dir, const char *file)
{
    char buf[8192];
    size_t n = 0;
    if (slurp(dir, file, buf, sizeof buf) > 0)
        for (char *p = buf; *p; p++)
            n += *p == '\n';
    return n;
}

static int64_t keyed(const char *dir, const char *file, const char *key)
{
    char buf[4096];
    if (slurp(dir, file, buf, sizeof buf) <= 0)
        return -1;
    size_t klen = strlen(key);
    for (char *line = buf; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, key, klen) && line[klen] == ' ')
            return strtoll(line + klen + 1, NULL, 10);
    return -1;
}

struct spawn {
    const char *script; /* sh -c this, or else: */
    long alloc_mib;     /* allocate and touch this much, 1 MiB at a time, then exit 0 */
    int out_fd;         /* the child's stdout when > 0 */
    bool outside;       /* do not join (for attach) */
};

static char *volatile g_sink; /* keeps the allocations from being optimised away */

static pid_t spawn(struct fx *f, struct jz_cgroup *cg, struct spawn o)
{
    int fds[JZ_CGROUP_MAX_FDS];
    size_t n = o.outside ? 0 : jz_cgroup_join_fds(cg, fds, JZ_CGROUP_MAX_FDS);
    assert_true(o.outside || n > 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (jz_cgroup_join_self(fds, n) != 0)
            _exit(120);
        if (o.out_fd > 0)
            dup2(o.out_fd, 1);
        if (o.script) {
            execl("/bin/sh", "sh", "-c", o.script, (char *)NULL);
            _exit(127);
        }
        for (long i = 0; i < o.alloc_mib; i++) {
            char *p = malloc(MIB);
            if (!p)
                _exit(121);
            memset(p, (int)i | 1, MIB);
            g_sink = p;
        }
        _exit(0);
    }
    f->pids[f->npids++] = pid;
    return pid;
}

/* Waits for pid (bounded) and forgets it; its wait status, or -1 on timeout. */
static int reap_child(struct fx *f, pid_t pid, int timeout_ms)
{
    int status;
    for (int ms = 0; ms < timeout_ms; ms += 5) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            for (size_t i = 0; i < f->npids; i++)
                if (f->pids[i] == pid)
                    f->pids[i] = 0;
            return status;
        }
        usleep(5000);
    }
    return -1;
}

static bool killed_by(int status, int sig)
{
    return status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == sig;
}

static bool in_cgroup(pid_t pid, const char *job)
{
    char p[64], buf[4096], want[PLEN];
    snprintf(p, sizeof p, "/proc/%d", (int)pid);
    snprintf(want, sizeof want, "/%s/%s\n", g_name, job);
    return slurp(p, "cgroup", buf, sizeof buf) > 0 && strstr(buf, want);
}

static bool wait_empty(struct jz_cgroup *cg, int timeout_ms)
{
    for (int ms = 0; ms < timeout_ms; ms += 5) {
        if (jz_cgroup_empty(cg))
            return true;
        usleep(5000);
    }
    return jz_cgroup_empty(cg);
}

static int create(struct fx *f, size_t slot, const char *job, const struct jz_cgroup_limits *lim)
{
    struct jz_error err = {0};
    int rc = jz_cgroup_create(f->s, job, lim, &f->cg[slot], &err);
    if (rc)
        print_message("create %s: %s\n", job, err.msg);
    return rc;
}

/* ---- tests ---- */

static void test_describe(void **state)
{
    FX_OR_SKIP(f);
    print_message("%s\n", jz_cgroup_system_describe(f->s));
    char d[8][PLEN];
    size_t n = dirs(f, g_name, d);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++)
        assert_true(exists(d[i]));
}

static void test_names_and_failures(void **state)
{
    FX_OR_SKIP(f);
    static const char *const bad_agent[] = {"",       "/a",  "a/",      "a//b", "../x",
                                            "a/../b", "a b", ".hidden", "x/.y"};
    for (size_t i = 0; i < sizeof bad_agent / sizeof *bad_agent; i++) {
        struct jz_cgroup_system *s = NULL;
        assert_int_equal(jz_cgroup_system_open(f->root, bad_agent[i], &s, NULL), JZ_EINVAL);
        assert_null(s);
    }
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    const char *bad_job[] = {"", "..", ".x", "a/b", "x y", "a\nb", longname};
    struct jz_cgroup *cg = NULL;
    for (size_t i = 0; i < sizeof bad_job / sizeof *bad_job; i++)
        assert_int_equal(jz_cgroup_create(f->s, bad_job[i], NULL, &cg, NULL), JZ_EINVAL);
    struct jz_cgroup_limits lim = {.cpus = "x"};
    assert_int_equal(jz_cgroup_create(f->s, "bad", &lim, &cg, NULL), JZ_EINVAL);
    int minor = 300;
    lim = (struct jz_cgroup_limits){.limit_devices = true, .gpu_minors = &minor, .n_gpu_minors = 1};
    assert_int_equal(jz_cgroup_create(f->s, "bad", &lim, &cg, NULL), JZ_EINVAL);
    assert_null(cg);

    /* The kernel refuses a CPU that does not exist: nothing is left behind. */
    if (jz_cgroup_system_features(f->s) & JZ_CGROUP_CPUSET) {
        lim = (struct jz_cgroup_limits){.cpus = "4095"};
        struct jz_error err = {0};
        assert_int_equal(jz_cgroup_create(f->s, "nocpu", &lim, &cg, &err), JZ_EINVAL);
        print_message("refused: %s\n", err.msg);
        char d[8][PLEN], rel[PLEN];
        snprintf(rel, sizeof rel, "%s/nocpu", g_name);
        size_t n = dirs(f, rel, d);
        for (size_t i = 0; i < n; i++)
            assert_false(exists(d[i]));
    }

    assert_int_equal(create(f, 0, "twice", NULL), 0);
    assert_int_equal(jz_cgroup_create(f->s, "twice", NULL, &cg, NULL), JZ_EEXIST);
    assert_null(cg);
    assert_true(jz_cgroup_empty(f->cg[0]));
    assert_int_equal(jz_cgroup_kill(f->cg[0], 0), 0);
}

static void test_pids_and_cpuset(void **state)
{
    FX_OR_SKIP(f);
    unsigned feat = jz_cgroup_system_features(f->s);
    if ((feat & (JZ_CGROUP_PIDS | JZ_CGROUP_CPUSET)) != (JZ_CGROUP_PIDS | JZ_CGROUP_CPUSET))
        skip();
    struct jz_cgroup_limits lim = {.memory_bytes = 64 * MIB, .pids_max = 16, .cpus = "0"};
    if (!(feat & JZ_CGROUP_MEMORY))
        lim.memory_bytes = 0;
    assert_int_equal(create(f, 0, "pids", &lim), 0);
    pid_t sh =
        spawn(f, f->cg[0],
              (struct spawn){.script = "exec 2>/dev/null; i=0; while [ $i -lt 40 ]; do sleep 5 & "
                                       "i=$((i+1)); done; wait 2>/dev/null"});
    char dir[PLEN];
    job_dir(f, "pids", "pids", dir);
    size_t most = 0;
    int status = -1;
    for (int ms = 0; ms < 4000 && status == -1; ms += 2) {
        size_t n = count_lines(dir, "cgroup.procs");
        most = n > most ? n : most;
        char cur[32];
        if (slurp(dir, "pids.current", cur, sizeof cur) > 0)
            assert_true(atoi(cur) <= 16);
        if (waitpid(sh, &status, WNOHANG) != sh)
            status = -1;
        usleep(2000);
    }
    /* The shell gave up when a fork failed ("Cannot fork"), leaving its sleeps. */
    assert_int_not_equal(status, -1);
    f->pids[0] = 0;
    size_t left = count_lines(dir, "cgroup.procs");
    print_message("most processes seen %zu, sleeps left %zu, refused forks %lld\n", most, left,
                  (long long)keyed(dir, "pids.events", "max"));
    assert_true(most <= 16);
    assert_true(left >= 10 && left <= 15);
    assert_true(keyed(dir, "pids.events", "max") > 0);

    /* cpuset "0": every process is on CPU 0 only. */
    char procs[4096], pdir[64], st[4096];
    assert_true(slurp(dir, "cgroup.procs", procs, sizeof procs) > 0);
    snprintf(pdir, sizeof pdir, "/proc/%d", atoi(procs));
    assert_true(slurp(pdir, "status", st, sizeof st) > 0);
    assert_non_null(strstr(st, "Cpus_allowed_list:\t0\n"));

    assert_int_equal(jz_cgroup_kill(f->cg[0], 1000), 0);
    assert_true(jz_cgroup_empty(f->cg[0]));
    assert_int_equal(count_lines(dir, "cgroup.procs"), 0);
}

static void test_memory_oom(void **state)
{
    FX_OR_SKIP(f);
    if (!(jz_cgroup_system_features(f->s) & JZ_CGROUP_MEMORY))
        skip();
    struct jz_cgroup_limits lim = {.memory_bytes = 64 * MIB};
    assert_int_equal(create(f, 0, "oom", &lim), 0);
    assert_int_equal(create(f, 1, "fits", &lim), 0);
    char dir[PLEN], buf[64];
    job_dir(f, "memory", "oom", dir);
    bool v2 = !strcmp(jz_cgroup_system_version(f->s), "v2");
    /* Swap is no way around the limit. */
    if (!v2 && slurp(dir, "memory.memsw.limit_in_bytes", buf, sizeof buf) > 0)
        assert_int_equal(atoll(buf), 64 * MIB);
    if (v2 && slurp(dir, "memory.swap.max", buf, sizeof buf) > 0)
        assert_string_equal(buf, "0\n");
    assert_false(jz_cgroup_oom_killed(f->cg[0]));

    pid_t big = spawn(f, f->cg[0], (struct spawn){.alloc_mib = 200});
    int status = reap_child(f, big, 20000);
    assert_true(killed_by(status, SIGKILL));
    assert_true(jz_cgroup_oom_killed(f->cg[0]));
    int64_t peak = jz_cgroup_memory_peak(f->cg[0]);
    print_message("200 MiB in 64: killed, peak %lld KiB\n", (long long)peak / 1024);
    assert_true(peak == -1 || (peak > 48 * MIB && peak <= 65 * MIB));

    pid_t small = spawn(f, f->cg[1], (struct spawn){.alloc_mib = 16});
    status = reap_child(f, small, 20000);
    assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_false(jz_cgroup_oom_killed(f->cg[1]));
    peak = jz_cgroup_memory_peak(f->cg[1]);
    print_message("16 MiB in 64: exit 0, peak %lld KiB\n", (long long)peak / 1024);
    assert_true(peak == -1 || (peak >= 16 * MIB && peak < 64 * MIB));
}

static void test_kill_session(void **state)
{
    FX_OR_SKIP(f);
    assert_int_equal(create(f, 0, "kill", NULL), 0);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    /* A subshell starts sleep in a session of its own and exits: the sleep is an orphan in
     * another session and process group, out of reach of the worker's group kill. */
    pid_t sh = spawn(
        f, f->cg[0],
        (struct spawn){.script = "(setsid sleep 100 & echo $!); exec sleep 100", .out_fd = p[1]});
    close(p[1]);
    char line[32] = "";
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_true(read(p[0], line, sizeof line - 1) > 0);
    close(p[0]);
    pid_t orphan = atoi(line);
    assert_true(orphan > 1);
    f->pids[f->npids++] = orphan;
    assert_true(in_cgroup(orphan, "kill"));
    for (int i = 0; i < 200 && getsid(orphan) != orphan; i++)
        usleep(5000); /* setsid runs just after the fork */
    assert_int_equal(getsid(orphan), orphan);
    assert_false(jz_cgroup_empty(f->cg[0]));

    /* The event loop's way: signal, then poll. */
    int64_t t0 = jz_time_mono_us();
    int rc = jz_cgroup_kill(f->cg[0], 0);
    assert_true(rc == 0 || rc == JZ_EBUSY);
    assert_true(wait_empty(f->cg[0], 2000));
    print_message("kill with wait 0: %s, empty after %lld us\n", rc ? "busy" : "empty",
                  (long long)(jz_time_mono_us() - t0));
    assert_int_equal(jz_cgroup_kill(f->cg[0], 1000), 0);
    assert_true(killed_by(reap_child(f, sh, 2000), SIGKILL));
    /* This process is the subreaper: the orphan's status comes here. */
    assert_true(killed_by(reap_child(f, orphan, 2000), SIGKILL));
    assert_int_equal(kill(orphan, 0), -1);
    assert_int_equal(errno, ESRCH);
    assert_false(jz_cgroup_oom_killed(f->cg[0]));
}

/* A job that keeps forking (double forks, each leaving an orphan): with a freezer or
 * cgroup.kill one round takes them all; without, the rounds catch up with it. */
static void test_kill_forking(void **state)
{
    FX_OR_SKIP(f);
    struct jz_cgroup_limits lim = {0};
    if (jz_cgroup_system_features(f->s) & JZ_CGROUP_PIDS)
        lim.pids_max = 64;
    assert_int_equal(create(f, 0, "forks", &lim), 0);
    pid_t sh = spawn(f, f->cg[0],
                     (struct spawn){.script = "exec 2>/dev/null; i=0; while [ $i -lt 500 ]; do "
                                              "(sleep 100 &); i=$((i+1)); done; exec sleep 100"});
    char dir[PLEN];
    job_dir(f, "pids", "forks", dir);
    for (int i = 0; i < 400 && count_lines(dir, "cgroup.procs") < 8; i++)
        usleep(5000);
    size_t before = count_lines(dir, "cgroup.procs");
    assert_true(before >= 8);
    int64_t t0 = jz_time_mono_us();
    assert_int_equal(jz_cgroup_kill(f->cg[0], 2000), 0);
    print_message("%s: killed a forking job of %zu+ processes in %lld us\n",
                  jz_cgroup_system_describe(f->s), before, (long long)(jz_time_mono_us() - t0));
    assert_true(jz_cgroup_empty(f->cg[0]));
    assert_int_equal(count_lines(dir, "cgroup.procs"), 0);
    assert_true(killed_by(reap_child(f, sh, 2000), SIGKILL));
}

static void test_attach(void **state)
{
    FX_OR_SKIP(f);
    assert_int_equal(create(f, 0, "attach", NULL), 0);
    pid_t pid = spawn(f, NULL, (struct spawn){.script = "exec sleep 100", .outside = true});
    assert_false(in_cgroup(pid, "attach"));
    struct jz_error err = {0};
    assert_int_equal(jz_cgroup_attach(f->cg[0], pid, &err), 0);
    assert_true(in_cgroup(pid, "attach"));
    assert_false(jz_cgroup_empty(f->cg[0]));
    jz_cgroup_destroy(f->cg[0]);
    f->cg[0] = NULL;
    assert_true(killed_by(reap_child(f, pid, 2000), SIGKILL));
}

static void test_reap(void **state)
{
    FX_OR_SKIP(f);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    /* An earlier run of the agent: it makes a job cgroup, starts a job in it and dies without
     * cleaning up. The job lives on (an orphan, reparented to this process). */
    pid_t agent = fork();
    assert_true(agent >= 0);
    if (agent == 0) {
        struct jz_cgroup_system *s;
        struct jz_cgroup *cg;
        if (jz_cgroup_system_open(f->root, g_name, &s, NULL) ||
            jz_cgroup_create(s, "left", NULL, &cg, NULL))
            _exit(1);
        int fds[JZ_CGROUP_MAX_FDS];
        size_t n = jz_cgroup_join_fds(cg, fds, JZ_CGROUP_MAX_FDS);
        pid_t job = fork();
        if (job == 0) {
            jz_cgroup_join_self(fds, n);
            execl("/bin/sleep", "sleep", "100", (char *)NULL);
            _exit(127);
        }
        if (write(p[1], &job, sizeof job) != sizeof job)
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    pid_t job = 0;
    assert_int_equal(read(p[0], &job, sizeof job), sizeof job);
    close(p[0]);
    f->pids[f->npids++] = job;
    int status;
    assert_int_equal(waitpid(agent, &status, 0), agent);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 200 && !in_cgroup(job, "left"); i++)
        usleep(5000);
    assert_true(in_cgroup(job, "left"));
    char d[8][PLEN], rel[PLEN];
    snprintf(rel, sizeof rel, "%s/left", g_name);
    size_t n = dirs(f, rel, d);
    for (size_t i = 0; i < n; i++)
        assert_true(exists(d[i]));

    size_t cgroups = 0, procs = 0;
    struct jz_error err = {0};
    assert_int_equal(jz_cgroup_system_reap(f->s, &cgroups, &procs, &err), 0);
    assert_int_equal(cgroups, 1);
    assert_int_equal(procs, 1);
    assert_true(killed_by(reap_child(f, job, 2000), SIGKILL));
    for (size_t i = 0; i < n; i++)
        assert_false(exists(d[i]));
    /* Nothing left: a second reap finds nothing. */
    assert_int_equal(jz_cgroup_system_reap(f->s, &cgroups, &procs, &err), 0);
    assert_int_equal(cgroups, 0);
    assert_int_equal(procs, 0);
}

static void test_destroy_removes_all(void **state)
{
    FX_OR_SKIP(f);
    assert_int_equal(create(f, 0, "a", NULL), 0);
    assert_int_equal(create(f, 1, "b", NULL), 0);
    spawn(f, f->cg[0], (struct spawn){.script = "sleep 100 & exec sleep 100"});
    char da[8][PLEN], db[8][PLEN], base[8][PLEN], top[8][PLEN], rel[PLEN];
    snprintf(rel, sizeof rel, "%s/a", g_name);
    size_t n = dirs(f, rel, da);
    snprintf(rel, sizeof rel, "%s/b", g_name);
    dirs(f, rel, db);
    dirs(f, g_name, base);
    dirs(f, g_top, top);
    for (size_t i = 0; i < n; i++)
        assert_true(exists(da[i]) && exists(db[i]));
    for (int i = 0; i < 400 && jz_cgroup_empty(f->cg[0]); i++)
        usleep(5000); /* until the child has joined */
    assert_false(jz_cgroup_empty(f->cg[0]));
    jz_cgroup_destroy(f->cg[0]); /* with its processes in it */
    jz_cgroup_destroy(f->cg[1]);
    f->cg[0] = f->cg[1] = NULL;
    for (size_t i = 0; i < n; i++)
        assert_false(exists(da[i]) || exists(db[i]));
    jz_cgroup_system_close(f->s); /* it made both levels of jazari-test-PID/agent */
    f->s = NULL;
    for (size_t i = 0; i < n; i++)
        assert_false(exists(base[i]) || exists(top[i]));
}

static void test_devices(void **state)
{
    FX_OR_SKIP(f);
    if (!(jz_cgroup_system_features(f->s) & JZ_CGROUP_DEVICES))
        skip();
    /* Device nodes for GPU 0, GPU 1 and nvidiactl, with no driver behind them: opening one
     * the cgroup allows fails in the driver lookup (ENXIO), one it denies with EPERM. */
    strcpy(f->tmp, "/tmp/jzcg-XXXXXX");
    assert_non_null(mkdtemp(f->tmp));
    static const char *const nodes[] = {"gpu0", "gpu1", "ctl"};
    const int minors[] = {0, 1, 255};
    for (size_t i = 0; i < 3; i++) {
        char p[PLEN];
        snprintf(p, sizeof p, "%s/%s", f->tmp, nodes[i]);
        assert_int_equal(mknod(p, S_IFCHR | 0600, makedev(195, minors[i])), 0);
    }
    char script[PLEN];
    snprintf(script, sizeof script,
             "r=0; for n in gpu0 gpu1 ctl; do r=$((r*2)); cat %s/$n 2>&1 | "
             "grep -q 'not permitted' && r=$((r+1)); done; exit $r",
             f->tmp);
    int gpu0 = 0;
    struct jz_cgroup_limits lim = {.limit_devices = true, .gpu_minors = &gpu0, .n_gpu_minors = 1};
    int64_t t0 = jz_time_mono_us();
    assert_int_equal(create(f, 0, "gpu0only", &lim), 0);
    print_message("create with GPU device rules: %lld us\n", (long long)(jz_time_mono_us() - t0));
    assert_int_equal(create(f, 1, "nolimit", NULL), 0);
    int status = reap_child(f, spawn(f, f->cg[0], (struct spawn){.script = script}), 5000);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2); /* only gpu1 denied */
    status = reap_child(f, spawn(f, f->cg[1], (struct spawn){.script = script}), 5000);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* On v2 the limits that need an absent controller, and device limits always, are refused:
 * nothing is made and nothing is pretended. */
static void test_unsupported_refused(void **state)
{
    FX_OR_SKIP(f);
    unsigned feat = jz_cgroup_system_features(f->s);
    int gpu0 = 0;
    struct {
        unsigned need;
        struct jz_cgroup_limits lim;
    } cases[] = {
        {JZ_CGROUP_MEMORY, {.memory_bytes = 64 * MIB}},
        {JZ_CGROUP_PIDS, {.pids_max = 16}},
        {JZ_CGROUP_CPUSET, {.cpus = "0"}},
        {JZ_CGROUP_DEVICES, {.limit_devices = true, .gpu_minors = &gpu0, .n_gpu_minors = 1}},
    };
    size_t refused = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (feat & cases[i].need)
            continue;
        struct jz_cgroup *cg = NULL;
        struct jz_error err = {0};
        assert_int_equal(jz_cgroup_create(f->s, "unsup", &cases[i].lim, &cg, &err), JZ_ENOTSUP);
        assert_null(cg);
        print_message("refused: %s\n", err.msg);
        char d[8][PLEN], rel[PLEN];
        snprintf(rel, sizeof rel, "%s/unsup", g_name);
        size_t n = dirs(f, rel, d);
        for (size_t k = 0; k < n; k++)
            assert_false(exists(d[k]));
        refused++;
    }
    if (!strcmp(jz_cgroup_system_version(f->s), "v2"))
        assert_true(refused >= 1); /* devices at least */
    /* Without a memory controller there is no peak and no OOM to report. */
    if (!(feat & JZ_CGROUP_MEMORY)) {
        assert_int_equal(create(f, 0, "plain", NULL), 0);
        assert_int_equal(jz_cgroup_memory_peak(f->cg[0]), -1);
        assert_false(jz_cgroup_oom_killed(f->cg[0]));
    }
}

static void test_cost(void **state)
{
    FX_OR_SKIP(f);
    unsigned feat = jz_cgroup_system_features(f->s);
    struct jz_cgroup_limits lim = {0};
    if (feat & JZ_CGROUP_MEMORY)
        lim.memory_bytes = 64 * MIB;
    if (feat & JZ_CGROUP_PIDS)
        lim.pids_max = 64;
    if (feat & JZ_CGROUP_CPUSET)
        lim.cpus = "0";
    enum { N = 200 };
    const struct jz_cgroup_limits *which[] = {NULL, &lim};
    for (size_t w = 0; w < 2; w++) {
        int64_t create_us = 0, destroy_us = 0;
        for (int i = 0; i < N; i++) {
            int64_t t0 = jz_time_mono_us();
            assert_int_equal(create(f, 0, "cost", which[w]), 0);
            int64_t t1 = jz_time_mono_us();
            jz_cgroup_destroy(f->cg[0]);
            f->cg[0] = NULL;
            destroy_us += jz_time_mono_us() - t1;
            create_us += t1 - t0;
        }
        print_message("cost %s %s: create %lld us, destroy %lld us (mean of %d)\n",
                      jz_cgroup_system_version(f->s), w ? "with limits" : "no limits",
                      (long long)(create_us / N), (long long)(destroy_us / N), N);
    }
    /* Join, then kill until empty, of one process. */
    int64_t kill_us = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(create(f, 0, "cost", NULL), 0);
        pid_t pid = spawn(f, f->cg[0], (struct spawn){.script = "exec sleep 100"});
        while (jz_cgroup_empty(f->cg[0]))
            usleep(100);
        int64_t t0 = jz_time_mono_us();
        assert_int_equal(jz_cgroup_kill(f->cg[0], 1000), 0);
        kill_us += jz_time_mono_us() - t0;
        assert_true(killed_by(reap_child(f, pid, 2000), SIGKILL));
        f->npids = 0;
        jz_cgroup_destroy(f->cg[0]);
        f->cg[0] = NULL;
    }
    print_message("cost %s: kill one process until empty %lld us (mean of 20)\n",
                  jz_cgroup_system_version(f->s), (long long)(kill_us / 20));
}

#define T(fn, setup_fn) cmocka_unit_test_setup_teardown(fn, setup_fn, teardown)

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: cgroups need root\n");
        return 77;
    }
    snprintf(g_top, sizeof g_top, "jazari-test-%d", (int)getpid());
    snprintf(g_name, sizeof g_name, "%s/agent", g_top);
    struct jz_cgroup_system *probe;
    struct jz_error err = {0};
    if (jz_cgroup_system_open(NULL, g_name, &probe, &err) != 0) {
        fprintf(stderr, "skipped: %s\n", err.msg);
        return 77;
    }
    jz_cgroup_system_close(probe);
    /* Orphaned job processes come back to this process, to be waited for. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const struct CMUnitTest tests[] = {
        T(test_describe, setup_default),
        T(test_names_and_failures, setup_default),
        T(test_pids_and_cpuset, setup_default),
        T(test_memory_oom, setup_default),
        T(test_kill_session, setup_default),
        T(test_kill_forking, setup_default),
        T(test_attach, setup_default),
        T(test_reap, setup_default),
        T(test_destroy_removes_all, setup_default),
        T(test_devices, setup_default),
        T(test_unsupported_refused, setup_default),
        T(test_cost, setup_default),
        T(test_describe, setup_unified),
        T(test_names_and_failures, setup_unified),
        T(test_kill_session, setup_unified),
        T(test_kill_forking, setup_unified),
        T(test_attach, setup_unified),
        T(test_reap, setup_unified),
        T(test_destroy_removes_all, setup_unified),
        T(test_unsupported_refused, setup_unified),
        T(test_cost, setup_unified),
        T(test_describe, setup_v1_no_freezer),
        T(test_memory_oom, setup_v1_no_freezer),
        T(test_kill_session, setup_v1_no_freezer),
        T(test_kill_forking, setup_v1_no_freezer),
        T(test_reap, setup_v1_no_freezer),
        T(test_destroy_removes_all, setup_v1_no_freezer),
        T(test_unsupported_refused, setup_v1_no_freezer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
