/* A private jazarid per benchmark phase: fork/exec with a temporary state directory, wait for
 * its port file, and always stop it and remove the directory again. */
#include "daemon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 30000
#define POLL_MS 5
#define MAX_ORPHANS 256 /* worker groups we clean up after a jazarid that had to be killed */

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void path_in(const struct jz_benchd *d, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", d->dir, name);
}

/* Reads a small file into buf (NUL-terminated, trailing whitespace removed). */
static bool read_small(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return n > 0;
}

static void describe_status(int st, char *buf, size_t len)
{
    if (WIFEXITED(st))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "signal %d", WTERMSIG(st));
    else
        snprintf(buf, len, "wait status %d", st);
}

int jz_bench_spawn(const char *exe, char *const *argv, const char *log_path, pid_t *pid_out,
                   struct jz_error *err)
{
    if (access(exe, X_OK) != 0)
        return jz_error_set(err, JZ_ENOENT, "cannot run %s: %s", exe, strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return jz_error_set(err, JZ_EIO, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Own process group: a Ctrl-C reaches only the benchmark, which stops its daemons in
         * order. If the benchmark dies, they are told to stop (and stop their workers). */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execv(exe, argv);
        dprintf(2, "exec %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    *pid_out = pid;
    return 0;
}

int jz_benchd_start(struct jz_benchd *d, const char *jazarid, const char *const *extra,
                    const char *tmp_parent, struct jz_error *err)
{
    char state[4200], port_file[4200], log_path[4200];
    if (!tmp_parent)
        tmp_parent = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int n = snprintf(d->dir, sizeof d->dir, "%s/jazari-bench-XXXXXX", tmp_parent);
    if (n < 0 || (size_t)n >= sizeof d->dir - 64) {
        d->dir[0] = '\0';
        return jz_error_set(err, JZ_ELIMIT, "temporary folder path too long");
    }
    if (!mkdtemp(d->dir)) {
        int e = errno;
        d->dir[0] = '\0';
        return jz_error_set(err, JZ_EIO, "mkdtemp in %s: %s", tmp_parent, strerror(e));
    }
    path_in(d, "state", state, sizeof state);
    path_in(d, "jazarid.log", log_path, sizeof log_path);
    path_in(d, "state/port", port_file, sizeof port_file); /* writable by jazarid's account */
    unlink(port_file); /* a restart's must not be read as this run's */
    char *argv[48] = {"jazarid", "--listen", "127.0.0.1:0", "--state-dir", state,
                      "--port-file", port_file};
    size_t argc = 7;
    /* As root, jazarid runs as an account of its own with a confined local node; benchmarks
     * say --user ACCOUNT for that (and chmod the folder for it), else stay in one process. */
    bool user_given = false;
    for (size_t i = 0; extra && extra[i]; i++)
        user_given |= strcmp(extra[i], "--user") == 0;
    if (geteuid() == 0 && !user_given) {
        argv[argc++] = "--user";
        argv[argc++] = "root";
    }
    if (user_given)
        chmod(d->dir, 0711);
    for (size_t i = 0; extra && extra[i]; i++) {
        if (argc + 1 >= sizeof argv / sizeof argv[0]) {
            jz_error_set(err, JZ_ELIMIT, "too many jazarid arguments");
            goto fail;
        }
        argv[argc++] = (char *)extra[i];
    }
    argv[argc] = NULL;
    pid_t pid;
    if (jz_bench_spawn(jazarid, argv, log_path, &pid, err))
        goto fail;
    d->pid = pid;

    for (int waited = 0;; waited += POLL_MS) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char how[64];
            describe_status(st, how, sizeof how);
            d->pid = 0;
            jz_error_set(err, JZ_EIO, "jazarid stopped before it listened (%s); its log is above",
                         how);
            jz_benchd_dump_log(d, 2000);
            goto fail;
        }
        char text[32];
        if (read_small(port_file, text, sizeof text)) {
            char *end;
            long port = strtol(text, &end, 10);
            if (*end || port <= 0 || port > 65535) {
                jz_error_set(err, JZ_ECORRUPT, "bad port file %s: '%s'", port_file, text);
                goto fail;
            }
            d->port = (int)port;
            break;
        }
        if (waited >= START_TIMEOUT_MS) {
            jz_error_set(err, JZ_ETIMEDOUT, "jazarid did not listen within %d ms",
                         START_TIMEOUT_MS);
            goto fail;
        }
        sleep_ms(POLL_MS);
    }
    char token_path[4300];
    snprintf(token_path, sizeof token_path, "%s/admin.token", state);
    if (!read_small(token_path, d->token, sizeof d->token) || strncmp(d->token, "jz_", 3) != 0) {
        jz_error_set(err, JZ_ENOENT, "no admin token in %s", token_path);
        goto fail;
    }
    return 0;
fail:
    jz_benchd_cleanup(d);
    return err ? err->code : JZ_EIO;
}

/* The pids whose parent is ppid (from /proc), so that their process groups can be killed
 * after their parent had to be killed. */
static size_t children_of(pid_t ppid, pid_t *out, size_t max)
{
    DIR *dir = opendir("/proc");
    if (!dir)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while (n < max && (de = readdir(dir))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64], stat[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        if (!read_small(path, stat, sizeof stat))
            continue;
        const char *rp = strrchr(stat, ')');
        char state;
        int parent;
        if (rp && sscanf(rp + 1, " %c %d", &state, &parent) == 2 && parent == ppid)
            out[n++] = (pid_t)pid;
    }
    closedir(dir);
    return n;
}

int jz_benchd_stop(struct jz_benchd *d, int grace_ms, struct jz_error *err)
{
    if (d->pid <= 0)
        return 0;
    pid_t pid = d->pid;
    kill(pid, SIGTERM);
    int st = 0;
    for (int waited = 0; waited <= grace_ms; waited += POLL_MS) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            d->pid = 0;
            if (r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
                return 0;
            char how[64];
            describe_status(st, how, sizeof how);
            return jz_error_set(err, JZ_EIO, "jazarid ended with %s", how);
        }
        sleep_ms(POLL_MS);
    }
    pid_t kids[MAX_ORPHANS];
    size_t nkids = children_of(pid, kids, MAX_ORPHANS);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    for (size_t i = 0; i < nkids; i++) {
        kill(-kids[i], SIGKILL); /* workers lead their own process groups */
        kill(kids[i], SIGKILL);
    }
    d->pid = 0;
    return jz_error_set(err, JZ_ETIMEDOUT,
                        "jazarid did not stop within %d ms of SIGTERM; killed it and %zu workers",
                        grace_ms, nkids);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

void jz_benchd_cleanup(struct jz_benchd *d)
{
    jz_benchd_stop(d, 30000, NULL);
    if (d->dir[0])
        nftw(d->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    d->dir[0] = '\0';
}

double jz_benchd_cpu_s(const struct jz_benchd *d)
{
    if (d->pid <= 0)
        return -1;
    char path[64], stat[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)d->pid);
    if (!read_small(path, stat, sizeof stat))
        return -1;
    const char *p = strrchr(stat, ')');
    unsigned long long ut = 0, stt = 0;
    /* Fields after the command: state is field 3, utime 14, stime 15. */
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
        return -1;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

void jz_bench_dump_file(const char *path, size_t max_bytes)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > (long)max_bytes)
            fseek(f, size - (long)max_bytes, SEEK_SET);
        else
            rewind(f);
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fclose(f);
}

void jz_benchd_dump_log(const struct jz_benchd *d, size_t max_bytes)
{
    char path[4200];
    path_in(d, "jazarid.log", path, sizeof path);
    jz_bench_dump_file(path, max_bytes);
}
