/* Starts and stops a private jazarid for a benchmark: temporary state directory, port 0,
 * admin token, and a clean-up that also works after a failure. */
#ifndef JZ_BENCH_SUBMIT_DAEMON_H
#define JZ_BENCH_SUBMIT_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>

#include <jazari/error.h>

struct jz_benchd {
    pid_t pid; /* 0 when not running */
    int port;
    char dir[4096];  /* the mkdtemp folder; "" when none */
    char token[128]; /* the admin bearer token */
};

/* Creates DIR under tmp_parent (NULL: $TMPDIR, else /tmp), starts `jazarid --listen
 * 127.0.0.1:0 --state-dir DIR/state --port-file DIR/port EXTRA...` (extra: a NULL-terminated
 * list, or NULL) with its log in DIR/jazarid.log, and waits (at most 30 s) until it listens.
 * d is caller-owned and zeroed; on failure everything started is stopped and removed again. */
int jz_benchd_start(struct jz_benchd *d, const char *jazarid, const char *const *extra,
                    const char *tmp_parent, struct jz_error *err);

/* Starts argv[0] (exe) as a child in its own process group that gets SIGTERM when this process
 * dies, with stdin from /dev/null and stdout/stderr to log_path. */
int jz_bench_spawn(const char *exe, char *const *argv, const char *log_path, pid_t *pid,
                   struct jz_error *err);

/* Copies the last max_bytes of a file to stderr (a daemon's log, after a failure). */
void jz_bench_dump_file(const char *path, size_t max_bytes);

/* Sends SIGTERM and waits up to grace_ms; then SIGKILLs it and the worker process groups it
 * left. Returns 0 when it exited by itself with status 0. Safe to call when not running. */
int jz_benchd_stop(struct jz_benchd *d, int grace_ms, struct jz_error *err);

/* Stops the daemon if needed and removes its folder. Safe to call twice. */
void jz_benchd_cleanup(struct jz_benchd *d);

/* CPU seconds (user + system) the daemon has used so far; -1 when unknown. */
double jz_benchd_cpu_s(const struct jz_benchd *d);

/* Copies the last lines of the daemon's log to stderr (for failures). */
void jz_benchd_dump_log(const struct jz_benchd *d, size_t max_bytes);

#endif
