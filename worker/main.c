/* jazari-worker: describes a plugin (--describe), or runs one job as a small supervisor
 * (--spec): binding, environment, the job process, time limit, cancel and the exit event. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/mempolicy.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cpulist.h"
#include "common/strutil.h"
#include "common/version.h"
#include "common/time.h"
#include "worker/worker.h"

#define EXIT_DESCRIBE_REFUSED 2

static void usage(FILE *f)
{
    fprintf(f, "usage: jazari-worker --describe PLUGIN.so [--sha256 HEX]\n"
               "       jazari-worker --spec SPEC.json [--events-fd N]\n");
}

/* Prints the plugin's description, with the SHA-256 of the bytes described (also on a refusal,
 * when the file could be read), as one JSON line. With expected_sha256, a file with other bytes
 * is refused: jazarid describes its private copy and checks it is the copy it made. */
static int describe(const char *path, const char *expected_sha256)
{
    void *handle;
    struct jz_plugin desc;
    struct jz_plugin_ops ops;
    struct jz_error err;
    char sha[JZ_WORKER_SHA256_HEX + 1];
    json_t *out;
    int code = 0;
    if (jz_worker_plugin_load(path, -1, expected_sha256, &handle, &desc, &ops, sha, &err) != 0) {
        char text[JZ_WORKER_MSG_MAX + 1];
        jz_worker_text(err.msg, JZ_WORKER_MSG_MAX, text);
        out = json_pack("{s:s}", "error", text);
        if (out && sha[0])
            json_object_set_new(out, "sha256", json_string(sha));
        code = EXIT_DESCRIBE_REFUSED;
    } else {
        out = jz_worker_plugin_describe(&desc);
        if (out)
            json_object_set_new(out, "sha256", json_string(sha));
        if (!out) {
            out = json_pack("{s:s}", "error", "out of memory describing the plugin");
            code = EXIT_DESCRIBE_REFUSED;
        }
    }
    char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (!text)
        return EXIT_DESCRIBE_REFUSED;
    printf("%s\n", text);
    free(text);
    return fflush(stdout) == 0 ? code : EXIT_DESCRIBE_REFUSED;
}

/* Where the exit event goes: the events fd, else the original stderr (by hand). */
struct sink {
    int events_fd;
    int hand_fd;
};

static void emit_exit(const struct sink *s, const char *status, int exit_code, int sig,
                      const char *message)
{
    char text[JZ_WORKER_MSG_MAX + 1];
    jz_worker_text(message, JZ_WORKER_MSG_MAX, text);
    json_t *ev = json_pack("{s:s, s:s, s:o, s:o, s:s}", "type", "exit", "status", status,
                           "exit_code", exit_code >= 0 ? json_integer(exit_code) : json_null(),
                           "signal", sig > 0 ? json_integer(sig) : json_null(), "message", text);
    jz_worker_emit(s->events_fd >= 0 ? s->events_fd : s->hand_fd, ev);
}

static void supervisor_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void supervisor_log(const char *level, const char *fmt, ...)
{
    char raw[1024], line[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    int n = snprintf(line, sizeof line, "[%s] worker: %s\n", level, raw);
    if (n <= 0)
        return;
    if ((size_t)n >= sizeof line) { /* cut: keep the newline */
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    jz_worker_log_write(line, (size_t)n); /* a failure has nowhere to go: it is the log's */
}

#define LOG_WATCH_MS 50 /* how often the log size is checked when it has a limit */

static int setup_log(const struct jz_worker_spec *spec, struct jz_error *err)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        close(fd);
    }
    if (!spec->log_path)
        return 0;
    /* Readable too: a log line of ours checks the last byte (jz_worker_log_write). */
    fd = open(spec->log_path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return jz_error_set(err, JZ_EIO, "cannot open log %s: %s", spec->log_path, strerror(errno));
    fflush(stdout);
    fflush(stderr);
    if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0) {
        close(fd);
        return jz_error_set(err, JZ_EIO, "cannot redirect output to %s", spec->log_path);
    }
    close(fd);
    return 0;
}

/* Binds the job to its processors and its memory to its NUMA nodes with the system calls
 * themselves: the worker is still single-threaded here, and what it starts inherits both.
 * (Linking hwloc for this made every worker load libhwloc and libudev, a third of a short
 * job's worker time; jazarid and the agents keep hwloc for the topology.) */
static int bind_cpus(const char *list, struct jz_error *err)
{
    int *ids = NULL;
    size_t n = 0;
    if (jz_cpulist_parse(list, &ids, &n, NULL) != 0 || n == 0) {
        free(ids);
        return jz_error_set(err, JZ_EINVAL, "bad cpus '%s'", list);
    }
    size_t size = CPU_ALLOC_SIZE(JZ_CPULIST_MAX_CPU);
    cpu_set_t *want = CPU_ALLOC(JZ_CPULIST_MAX_CPU), *got = CPU_ALLOC(JZ_CPULIST_MAX_CPU);
    int rc = 0;
    if (!want || !got) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto out;
    }
    CPU_ZERO_S(size, want);
    CPU_ZERO_S(size, got);
    for (size_t i = 0; i < n; i++)
        CPU_SET_S((size_t)ids[i], size, want);
    /* The kernel decides what is available: it keeps a mask within the node's cpuset cgroup
     * and the processors that exist, and refuses one with none of them. Read back, a mask it
     * narrowed means some were not available. */
    if (sched_setaffinity(0, size, want) != 0) {
        rc = jz_error_set(err, JZ_EINVAL, "cpus '%s' are not available here: %s", list,
                          strerror(errno));
        goto out;
    }
    if (sched_getaffinity(0, size, got) != 0) {
        rc = jz_error_set(err, JZ_EIO, "cannot read back the binding to cpus %s: %s", list,
                          strerror(errno));
        goto out;
    }
    if (!CPU_EQUAL_S(size, got, want)) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (CPU_ISSET_S((size_t)ids[i], size, got))
                ids[k++] = ids[i];
        char have[256];
        if (jz_cpulist_format(ids, k, have, sizeof have) != 0)
            jz_strlcpy(have, "?", sizeof have);
        rc = jz_error_set(err, JZ_EINVAL,
                          "cpus '%s' are not all available here (only %s of them are)", list,
                          k ? have : "none");
    }
out:
    CPU_FREE(want);
    CPU_FREE(got);
    free(ids);
    return rc;
}

/* Memory binding is an optimisation; a kernel or container without it still runs. */
static void bind_memory(const char *list)
{
    enum { MAX_NODES = 1024, BITS = 8 * sizeof(unsigned long) };
    unsigned long mask[MAX_NODES / BITS] = {0};
    int *ids = NULL;
    size_t n = 0;
    bool ok = jz_cpulist_parse(list, &ids, &n, NULL) == 0 && n > 0;
    for (size_t i = 0; ok && i < n; i++) {
        ok = ids[i] < MAX_NODES;
        if (ok)
            mask[ids[i] / BITS] |= 1UL << (ids[i] % BITS);
    }
    free(ids);
    if (!ok)
        errno = EINVAL;
    /* The kernel reads maxnode - 1 bits (as numactl passes them). */
    if (!ok || syscall(SYS_set_mempolicy, MPOL_BIND, mask, (unsigned long)MAX_NODES + 1) != 0)
        supervisor_log("WARN", "cannot bind memory to NUMA nodes %s: %s", list, strerror(errno));
}

static int bind_resources(const struct jz_worker_spec *spec, struct jz_error *err)
{
    if (!spec->bind)
        return 0;
    if (spec->cpus[0] && bind_cpus(spec->cpus, err) != 0)
        return err->code;
    if (spec->numa_nodes[0])
        bind_memory(spec->numa_nodes);
    return 0;
}

static int set_env(const struct jz_worker_spec *spec, struct jz_error *err)
{
    char gpus[JZ_WORKER_MAX_DEVICES * 12 + 1] = "";
    char pcis[JZ_WORKER_MAX_DEVICES * 33 + 1] = "";
    size_t g = 0, p = 0;
    for (size_t i = 0; i < spec->n_devices; i++) {
        const struct jz_device_info *d = &spec->devices[i];
        g += (size_t)snprintf(gpus + g, sizeof gpus - g, "%s%d", i ? "," : "", d->node_index);
        p += (size_t)snprintf(pcis + p, sizeof pcis - p, "%s%s", i ? "," : "", d->pci_bus_id);
    }
    char num[24];
    snprintf(num, sizeof num, "%zu", spec->n_devices);
    const char *backend = spec->n_devices ? spec->devices[0].backend : "cpu";
    if (setenv("CUDA_VISIBLE_DEVICES", gpus, 1) || setenv("JAZARI_JOB_ID", spec->job_id, 1) ||
        setenv("JAZARI_GPUS", gpus, 1) || setenv("JAZARI_GPU_PCI_IDS", pcis, 1) ||
        setenv("JAZARI_NUM_GPUS", num, 1) || setenv("JAZARI_CPUS", spec->cpus, 1) ||
        setenv("JAZARI_OUTPUT_DIR", spec->output_dir, 1) || setenv("JAZARI_BACKEND", backend, 1))
        return jz_error_set(err, JZ_ENOMEM, "cannot set the job environment");
    if (spec->checkpoint_dir && setenv("JAZARI_CHECKPOINT_DIR", spec->checkpoint_dir, 1))
        return jz_error_set(err, JZ_ENOMEM, "cannot set the job environment");
    /* What the node adds: the node's name, the part's rank in a gang, PyTorch's rendezvous. */
    const char *key;
    json_t *v;
    json_object_foreach(spec->env, key, v) {
        if (json_is_string(v) && strncmp(key, "LD_", 3) != 0 &&
            setenv(key, json_string_value(v), 1))
            return jz_error_set(err, JZ_ENOMEM, "cannot set the job environment");
    }
    /* Thread pools (OpenMP, OpenBLAS) size themselves to the machine unless told otherwise;
     * on a shared node that oversubscribes the job's cores, and spinning idle OpenMP threads
     * starve the others. Size them to the job's CPUs (no more than this machine has: a
     * declared topology may list more) and make idle threads sleep. Values already in the
     * environment win. */
    int *cpus = NULL;
    size_t ncpus = 0;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (jz_cpulist_parse(spec->cpus ? spec->cpus : "", &cpus, &ncpus, NULL) == 0)
        free(cpus);
    if (ncpus == 0 || (online > 0 && ncpus > (size_t)online))
        ncpus = online > 0 ? (size_t)online : 1;
    char threads[24];
    snprintf(threads, sizeof threads, "%zu", ncpus);
    if (setenv("OMP_NUM_THREADS", threads, 0) || setenv("OPENBLAS_NUM_THREADS", threads, 0) ||
        setenv("OMP_WAIT_POLICY", "PASSIVE", 0))
        return jz_error_set(err, JZ_ENOMEM, "cannot set the job environment");
    return 0;
}

static int events_fd_parse(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 0 || v > INT_MAX)
        return -1;
    int fd = (int)v;
    /* A bad fd is not fatal: the job still runs and the exit line goes to stderr. */
    if (fcntl(fd, F_GETFD) < 0)
        return -1;
    /* The job process inherits it by fork; commands it execs must not hold the pipe open.
     * A copy above 2 survives the redirection of stdout/stderr to the log. */
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd > 2 ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

/* Kills and reaps every remaining descendant (they are reparented to this subreaper as their
 * parents die). Bounded: about 2 s. */
static void reap_descendants(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    for (int round = 0; round < 200; round++) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        FILE *f = fopen(path, "r");
        if (!f)
            return;
        int child, found = 0;
        while (fscanf(f, "%d", &child) == 1) {
            kill(child, SIGKILL);
            found++;
        }
        fclose(f);
        if (!found)
            return;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void signal_text(int sig, char *buf, size_t len)
{
    const char *name = sigabbrev_np(sig);
    snprintf(buf, len, "killed by signal %d (SIG%s: %s)", sig, name ? name : "?", strsignal(sig));
}

static int run_job(const char *spec_path, const char *events_arg)
{
    struct sink sink = {-1, -1};
    sink.hand_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
    if (events_arg)
        sink.events_fd = events_fd_parse(events_arg);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        perror("jazari-worker: prctl");

    struct jz_worker_spec spec = {0};
    struct jz_error err;
    char msg[JZ_WORKER_MSG_MAX + 64];
    if (jz_worker_spec_load(spec_path, &spec, &err) != 0) {
        emit_exit(&sink, "failed", -1, 0, err.msg);
        return 1;
    }
    int rc;
    if ((rc = setup_log(&spec, &err)) != 0)
        goto fail_early;
    if (jz_mkdir_p(spec.output_dir, 0750) != 0) {
        rc = jz_error_set(&err, JZ_EIO, "cannot create output_dir %s: %s", spec.output_dir,
                          strerror(errno));
        goto fail_early;
    }
    if ((rc = bind_resources(&spec, &err)) != 0 || (rc = set_env(&spec, &err)) != 0)
        goto fail_early;

    struct jz_worker_shared *shared =
        mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        rc = jz_error_set(&err, JZ_ENOMEM, "cannot map shared memory");
        goto fail_early;
    }
    /* Signals are taken synchronously with sigtimedwait; the job process unblocks them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The job process waits on `go` so that "started" is the first event it can follow. */
    int go[2];
    if (pipe2(go, O_CLOEXEC) != 0) {
        rc = jz_error_set(&err, JZ_EIO, "pipe: %s", strerror(errno));
        goto fail_early;
    }
    fflush(NULL);
    pid_t parent = getpid();
    /* Orphaned descendants of the job are reparented to us, so none can outlive the job. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_t pid = fork();
    if (pid < 0) {
        rc = jz_error_set(&err, JZ_EIO, "fork: %s", strerror(errno));
        goto fail_early;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        signal(SIGPIPE, SIG_DFL);
        if (sink.hand_fd >= 0)
            close(sink.hand_fd);
        close(go[1]);
        char c;
        while (read(go[0], &c, 1) < 0 && errno == EINTR) {
        }
        close(go[0]);
        exit(jz_worker_job_main(&spec, sink.events_fd, shared));
    }
    setpgid(pid, pid);
    close(go[0]);
    jz_worker_emit(sink.events_fd, json_pack("{s:s, s:i}", "type", "started", "pid", (int)pid));
    close(go[1]);

    const int64_t never = INT64_MAX;
    int64_t now = jz_time_mono_ms();
    int64_t limit_at = spec.time_limit_s > 0 ? now + spec.time_limit_s * 1000 : never;
    int64_t kill_at = never;
    bool terminating = false, timed_out = false, cancelled = false, killed = false;
    bool log_limited = false, disk_full = false;
    off_t log_seen = -1;
    bool watch_log = spec.log_max_bytes > 0 || spec.min_free_bytes > 0;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        now = jz_time_mono_ms();
        if (!terminating && now >= limit_at) {
            supervisor_log("WARN", "time limit of %llds reached: stopping the job",
                           (long long)spec.time_limit_s);
            timed_out = terminating = true;
            kill(-pid, SIGTERM);
            kill_at = now + spec.kill_grace_s * 1000;
        }
        if (terminating && now >= kill_at) {
            supervisor_log("WARN", "job still running %llds after SIGTERM: sending SIGKILL",
                           (long long)spec.kill_grace_s);
            kill(-pid, SIGKILL);
            killed = true;
            kill_at = never;
        }
        /* The log's size is watched here, next to the writer: a job printing at disk speed is
         * stopped within LOG_WATCH_MS of its limit, before it fills the disk. */
        struct stat lst;
        struct statvfs vfs;
        if (watch_log && !log_limited && !disk_full && fstat(STDOUT_FILENO, &lst) == 0) {
            if (spec.log_max_bytes > 0 && lst.st_size > spec.log_max_bytes) {
                log_limited = true;
                kill(-pid, SIGKILL);
                supervisor_log("ERROR", "log limit: the job wrote more than %lld bytes of log; "
                                        "stopped", (long long)spec.log_max_bytes);
            } else if (spec.min_free_bytes > 0 && log_seen >= 0 && lst.st_size > log_seen &&
                       fstatvfs(STDOUT_FILENO, &vfs) == 0 &&
                       (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize < spec.min_free_bytes) {
                /* The disk runs out while this job writes to it: this job stops, the others
                 * (and the service, where it shares the disk) go on. */
                disk_full = true;
                kill(-pid, SIGKILL);
            }
            log_seen = lst.st_size;
        }
        int64_t next = terminating ? kill_at : limit_at;
        int64_t wait_ms = next == never ? 1000 : next - now;
        if (wait_ms > 1000)
            wait_ms = 1000; /* also a safety net should a SIGCHLD ever be missed */
        if (watch_log && wait_ms > LOG_WATCH_MS)
            wait_ms = LOG_WATCH_MS;
        if (wait_ms < 0)
            wait_ms = 0;
        struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
        siginfo_t info;
        int sig = sigtimedwait(&set, &info, &ts);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
            if (!terminating) {
                supervisor_log("INFO", "cancelled (signal %d): stopping the job", sig);
                cancelled = terminating = true;
                kill(-pid, SIGTERM);
                kill_at = jz_time_mono_ms() + spec.kill_grace_s * 1000;
            }
        } else if (sig == SIGUSR1) {
            /* Only the job process: commands it runs keep the default action (exit). */
            kill(pid, SIGUSR1);
        }
    }
    /* Whatever the job left behind goes with it: its process group, and (as we are a child
     * subreaper) every descendant that left the group with setsid/setpgid. */
    kill(-pid, SIGKILL);
    reap_descendants();

    int exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    /* A job that failed while its disk is (nearly) full most likely failed for that: say so,
     * as a job writing at disk speed fills it between two checks of the loop above. */
    struct statvfs endvfs;
    if (!disk_full && !log_limited && !timed_out && !cancelled && status != 0 &&
        spec.min_free_bytes > 0 && fstatvfs(STDOUT_FILENO, &endvfs) == 0 &&
        (int64_t)endvfs.f_bavail * (int64_t)endvfs.f_frsize < spec.min_free_bytes)
        disk_full = true;
    const char *st;
    if (log_limited) {
        st = "log_limit";
        snprintf(msg, sizeof msg, "log limit: the job wrote more than %lld bytes of log",
                 (long long)spec.log_max_bytes);
    } else if (disk_full) {
        st = "disk_full";
        snprintf(msg, sizeof msg, "disk full: the job kept writing its log while its node's "
                                  "disk had less than %lld MiB free",
                 (long long)(spec.min_free_bytes >> 20));
    } else if (timed_out) {
        st = "timeout";
        snprintf(msg, sizeof msg, "time limit of %llds reached%s", (long long)spec.time_limit_s,
                 killed ? "; killed after the grace period" : "");
    } else if (cancelled) {
        st = "cancelled";
        snprintf(msg, sizeof msg, "cancelled%s", killed ? "; killed after the grace period" : "");
    } else if (exit_code == 0) {
        st = "succeeded";
        snprintf(msg, sizeof msg, "exited with code 0");
    } else {
        st = "failed";
        if (shared->error[0])
            snprintf(msg, sizeof msg, "%s", shared->error);
        else if (sig)
            signal_text(sig, msg, sizeof msg);
        else
            snprintf(msg, sizeof msg, "exited with code %d", exit_code);
    }
    supervisor_log("INFO", "job %s %s: %s", spec.job_id, st, msg);
    emit_exit(&sink, st, exit_code, sig, msg);
    jz_worker_spec_free(&spec);
    return strcmp(st, "succeeded") == 0 ? 0 : 1;

fail_early:
    (void)rc;
    supervisor_log("ERROR", "%s", err.msg);
    emit_exit(&sink, "failed", -1, 0, err.msg);
    jz_worker_spec_free(&spec);
    return 1;
}

int main(int argc, char **argv)
{
    const char *describe_path = NULL, *spec_path = NULL, *events = NULL, *sha = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--describe") == 0 && i + 1 < argc)
            describe_path = argv[++i];
        else if (strcmp(argv[i], "--sha256") == 0 && i + 1 < argc)
            sha = argv[++i];
        else if (strcmp(argv[i], "--spec") == 0 && i + 1 < argc)
            spec_path = argv[++i];
        else if (strcmp(argv[i], "--events-fd") == 0 && i + 1 < argc)
            events = argv[++i];
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            jz_version_print(stdout, "jazari-worker");
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (describe_path && !spec_path && !events)
        return describe(describe_path, sha);
    if (spec_path && !describe_path)
        return run_job(spec_path, events);
    usage(stderr);
    return 2;
}
