/* The node agent (see agent.h): job parts, their folders and specs, how they ended, and what a
 * remote node sends back to jazarid. */
#include "node/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/beneath.h"
#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "node/account.h"
#include "node/cgroup.h"
#include "node/node.h"

#define LOG_SHIP_MS 200       /* a remote node sends new log lines this often */
#define BACKSTOP_EXTRA_S 30   /* after limit + grace, the agent kills a worker that hangs */
#define MAX_ENV 64            /* variables jazarid may set for one part */
#define MAX_OUTPUTS 1000      /* files of out/ sent back at the end */
#define MAX_SPARE_DIRS 64     /* emptied job folders kept for reuse (remote nodes) */
#define WATCH_MS 500          /* logs, outputs and free disk are checked this often */
#define MAX_OUTPUT_FILES 100000 /* entries under out/ counted before the job is stopped */
#define MAX_PART_GPUS 64   /* GPUs of one part (the topology's limit) */

/* One part of a job on this node: running, or ended and not yet acknowledged by jazarid. */
struct part {
    struct part *next;
    struct jz_agent *agent;
    int64_t job;
    int part;
    int64_t run; /* jazarid's run number of the job (its requeue count): one per launch */
    char dir[1100];
    pid_t pid;
    pid_t pgid;
    bool running;
    bool cancel, preempt, limit_kill;
    int64_t time_limit_s;
    char backend[16];       /* of its first device */
    json_t *exit_ev;        /* the worker's last "exit" event */
    char error[1024];       /* the last "error" event's message */
    off_t log_sent;         /* bytes of the log sent to jazarid */
    off_t log_start;        /* where this run's lines begin in the log */
    json_t *outcome;        /* set when ended: {"state", "reason", "exit_code", "signal"} */
    bool reported;          /* the outcome was sent on the current connection */
    bool offline_end;       /* it ended while disconnected: its checkpoint goes with it */
    struct event *backstop;
    /* Confinement (see jz_agent_config.confine) and the limits the agent watches. */
    bool as_user;           /* runs as its user's account (uid below) */
    uid_t uid;
    struct jz_cgroup *cg;   /* NULL without cgroups */
    int64_t memory_mb;      /* the memory limit, for the reason of an out-of-memory kill */
    int64_t log_max, output_max; /* bytes; 0: no limit */
    int64_t last_written;   /* log + outputs at the last disk check */
    char limit_reason[256]; /* set when the agent stopped it for a limit */
    struct stat ckpt_sent;  /* the checkpoint last sent (size, time, inode): not sent twice */
};

struct jz_agent {
    struct event_base *base;
    struct jz_agent_config cfg;
    char name[64], site[64], state_dir[1024], plugin_dirs[4096], fallback[16], address[256];
    char copies_dir[1100]; /* jazarid's plugin copies (cfg.server_copies), else "" */
    json_t *labels;
    struct jz_node *node;
    char *xml;
    size_t xml_len;
    jz_agent_send_fn send;
    jz_agent_send_file_fn send_file;
    void *send_arg;
    bool connected;
    struct part *parts;
    struct event *log_timer;
    struct event *records_ev; /* rewrites running.list at the end of this loop iteration */
    int records_fd;           /* running.list, open for the agent's life (-1 before) */
    size_t records_len;       /* its length as last written */
    /* Emptied job folders (with an empty out/) under STATE/spare, handed to the next jobs: a
     * remote node makes and removes folders at the job rate, and ext4 hands out inodes slowly
     * among recently deleted ones; renaming a ready folder costs no inode. */
    int spare[MAX_SPARE_DIRS];
    size_t nspare;
    int spare_seq;
    struct jz_cgroup_system *cgs; /* NULL: no cgroups (not confining, or none usable) */
    uid_t min_uid;                /* confining: the lowest uid a job may run as */
    struct event *watch_timer;
    unsigned watch_ticks;
};

/* --- small helpers ----------------------------------------------------------------------- */

static void send_msg(struct jz_agent *a, json_t *hdr, const void *data, size_t len)
{
    if (a->connected)
        a->send(a->send_arg, hdr, data, len);
    json_decref(hdr);
}

static struct part *find_part(struct jz_agent *a, int64_t job, int part, int64_t run)
{
    for (struct part *p = a->parts; p; p = p->next)
        if (p->job == job && p->part == part && p->run == run)
            return p;
    return NULL;
}

/* The parts running here, in one small file (STATE/running.list: "job part run pid pgid" per
 * line), so that an agent that restarts can stop what is left. Rewritten in place once per loop
 * iteration that changed it: one file, not one per part (ext4 is slow to hand out inodes at
 * hundreds of jobs a second), kept open, and never cut to nothing (an empty list is one newline)
 * so that its block is not freed and allocated again at each job. A shorter list is written
 * padded with newlines to the old length, in one write, and cut after: an agent killed in
 * between leaves whole lines, never the tail of an old one. */
static void on_records_flush(evutil_socket_t fd, short what, void *arg)
{
    struct jz_agent *a = arg;
    char path[1100];
    snprintf(path, sizeof path, "%s/running.list", a->state_dir);
    if (a->records_fd < 0) {
        a->records_fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        struct stat st;
        if (a->records_fd < 0) {
            jz_log_warn("agent", "cannot open %s: %s", path, strerror(errno));
            return;
        }
        a->records_len = fstat(a->records_fd, &st) == 0 ? (size_t)st.st_size : 0;
    }
    char *text = NULL;
    size_t len = 0, size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f) {
        for (struct part *p = a->parts; p; p = p->next)
            if (p->running && p->pid > 0)
                fprintf(f, "%lld %d %lld %d %d\n", (long long)p->job, p->part,
                        (long long)p->run, (int)p->pid, (int)p->pgid);
        if (ftello(f) == 0)
            fputc('\n', f);
        len = (size_t)ftello(f);
        for (size_t k = len; k < a->records_len; k++)
            fputc('\n', f);
    }
    int e = 0;
    errno = 0;
    if (!f || fclose(f) != 0)
        e = errno ? errno : ENOMEM;
    else if (pwrite(a->records_fd, text, size, 0) != (ssize_t)size)
        e = errno ? errno : EIO;
    else if (ftruncate(a->records_fd, (off_t)len) != 0)
        e = errno;
    else
        a->records_len = len;
    if (e)
        jz_log_warn("agent", "cannot write %s: %s", path, strerror(e));
    free(text);
}

static void write_running_record(struct part *p)
{
    if (p->agent->records_ev)
        event_active(p->agent->records_ev, EV_TIMEOUT, 0);
}

static void part_free(struct part *p)
{
    if (!p)
        return;
    json_decref(p->exit_ev);
    json_decref(p->outcome);
    if (p->backstop)
        event_free(p->backstop);
    free(p);
}

static void part_unlink(struct jz_agent *a, struct part *p)
{
    for (struct part **pp = &a->parts; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            return;
        }
}

static json_t *part_hdr(const char *type, const struct part *p)
{
    return json_pack("{s:s, s:I, s:i, s:I}", "t", type, "job", (json_int_t)p->job, "part", p->part,
                     "run", (json_int_t)p->run);
}

/* --- what a remote node sends back --------------------------------------------------------- */

/* Opens a file of the part's folder beneath it, through no link, and never a hard link to a file
 * its account does not own: the job controls what is in its folder. */
static int part_open(const struct part *p, const char *rel, int flags)
{
    return jz_open_beneath(p->dir, rel, flags, p->as_user ? p->uid : (uid_t)-1);
}

/* Sends the log bytes written since the last call: whole lines only unless final, so that the
 * lines of a gang's parts never interleave mid-line in the job's log. */
static void ship_log(struct part *p, bool final)
{
    struct jz_agent *a = p->agent;
    if (!a->cfg.ship_files || !a->connected)
        return;
    int fd = part_open(p, "log", O_RDONLY);
    if (fd < 0)
        return;
    static unsigned char buf[JZ_PROTO_CHUNK];
    /* Past the limit (and the worker's line saying so) nothing more goes to jazarid. */
    off_t end = p->log_max > 0 ? p->log_start + (off_t)p->log_max + 65536 : -1;
    for (;;) {
        size_t want = sizeof buf;
        if (end >= 0 && p->log_sent >= end)
            break;
        if (end >= 0 && end - p->log_sent < (off_t)want)
            want = (size_t)(end - p->log_sent);
        ssize_t n = pread(fd, buf, want, p->log_sent);
        if (n <= 0)
            break;
        size_t len = (size_t)n;
        if (!final) {
            while (len > 0 && buf[len - 1] != '\n')
                len--;
            if (len == 0) {
                /* One line longer than a chunk: send it cut rather than never. */
                if ((size_t)n < sizeof buf)
                    break;
                len = (size_t)n;
            }
        }
        send_msg(a, part_hdr("log", p), buf, len);
        p->log_sent += (off_t)len;
        if ((size_t)n < sizeof buf && len == (size_t)n)
            break;
    }
    close(fd);
}

/* Sends one file of the part's folder (name relative to it) in chunks. */
static void ship_file(struct part *p, const char *name)
{
    struct jz_agent *a = p->agent;
    int fd = part_open(p, name, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return;
    struct stat st;
    /* Large files go from disk (no copy in memory); small ones are copied, so that a job's
     * thousand small outputs do not hold a thousand descriptors until they are sent. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { /* a FIFO would block the agent */
        close(fd);
        return;
    }
    if (a->send_file && st.st_size > (off_t)JZ_PROTO_CHUNK) {
        json_t *h = part_hdr("file", p);
        json_object_set_new(h, "name", json_string(name));
        if (a->connected)
            a->send_file(a->send_arg, h, fd);
        json_decref(h);
        close(fd);
        return;
    }
    static unsigned char buf[JZ_PROTO_CHUNK];
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0)
            break;
        json_t *h = part_hdr("file", p);
        json_object_set_new(h, "name", json_string(name));
        json_object_set_new(h, "off", json_integer((json_int_t)off));
        json_object_set_new(h, "last", json_boolean((size_t)n < sizeof buf));
        send_msg(a, h, buf, (size_t)n);
        off += n;
        if ((size_t)n < sizeof buf)
            break;
    }
    close(fd);
}

/* The checkpoint, unless this very one was sent already (the job says when it wrote one, and
 * could say so in a loop). */
static void ship_checkpoint(struct part *p)
{
    int fd = part_open(p, "checkpoint/checkpoint.bin", O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    if (st.st_ino == p->ckpt_sent.st_ino && st.st_size == p->ckpt_sent.st_size &&
        st.st_mtim.tv_sec == p->ckpt_sent.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == p->ckpt_sent.st_mtim.tv_nsec && p->agent->connected)
        return;
    ship_file(p, "checkpoint/checkpoint.bin");
    if (p->agent->connected)
        p->ckpt_sent = st;
}

static void ship_outputs(struct part *p)
{
    int dfd = part_open(p, "out", O_RDONLY | O_DIRECTORY);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return;
    }
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(d)) && n < MAX_OUTPUTS) {
        char name[300];
        struct stat st;
        if (!jz_name_is_safe(e->d_name, 255) ||
            fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        snprintf(name, sizeof name, "out/%s", e->d_name);
        ship_file(p, name);
        n++;
    }
    closedir(d);
}

/* Reports an ended part: its last log lines and outputs first, then the outcome. */
static void report_outcome(struct part *p)
{
    struct jz_agent *a = p->agent;
    if (!a->connected || p->reported)
        return;
    if (a->cfg.ship_files) {
        ship_log(p, true);
        if (p->part == 0) /* rank 0 speaks for a gang's outputs */
            ship_outputs(p);
    }
    json_t *h = part_hdr("exit", p);
    json_object_set(h, "outcome", p->outcome);
    send_msg(a, h, NULL, 0);
    p->reported = true;
}

static void on_log_timer(evutil_socket_t fd, short what, void *arg)
{
    struct jz_agent *a = arg;
    for (struct part *p = a->parts; p; p = p->next)
        if (p->running)
            ship_log(p, false);
}

/* --- how a part ended: classified once, here ----------------------------------------------- */

static const char *signal_name(int sig)
{
    const char *abbrev = sigabbrev_np(sig);
    return abbrev ? abbrev : "?";
}

static json_t *classify(const struct part *p, int wait_status, bool oom)
{
    json_t *ex = p->exit_ev;
    const char *status = jz_json_str(ex, "status", NULL);
    json_t *code = json_object_get(ex, "exit_code");
    json_t *sig = json_object_get(ex, "signal");
    const char *msg = p->error[0] ? p->error : jz_json_str(ex, "message", "");
    char reason[1300] = "";
    const char *state;
    bool succeeded = status && strcmp(status, "succeeded") == 0;
    if (p->limit_reason[0] && !succeeded && !p->cancel) {
        state = "FAILED"; /* the agent stopped it: its reason, not the signal's */
        snprintf(reason, sizeof reason, "%s", p->limit_reason);
    } else if (oom && !succeeded && !p->cancel) {
        state = "FAILED";
        snprintf(reason, sizeof reason,
                 "out of memory: the job used more than its memory limit of %lld MiB "
                 "(ask for more with --mem)", (long long)p->memory_mb);
    } else if (p->preempt && !p->cancel && !succeeded) {
        state = "PREEMPTED";
    } else if (succeeded) {
        state = "SUCCEEDED";
    } else if (p->cancel || (status && strcmp(status, "cancelled") == 0)) {
        /* Includes a worker that got the cancel before it could handle signals. */
        state = "CANCELLED";
    } else if (!status) {
        state = "FAILED";
        if (p->limit_kill)
            snprintf(reason, sizeof reason, "the worker did not stop after its time limit");
        else if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 126)
            snprintf(reason, sizeof reason, "the worker could not be confined on node %s "
                     "(cgroup or account switch failed; see the node's log)", p->agent->name);
        else if (WIFSIGNALED(wait_status))
            snprintf(reason, sizeof reason, "the worker was killed by signal %s (%d)",
                     signal_name(WTERMSIG(wait_status)), WTERMSIG(wait_status));
        else
            snprintf(reason, sizeof reason, "the worker exited (status %d) without a result",
                     WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
    } else if (strcmp(status, "log_limit") == 0) {
        state = "FAILED";
        snprintf(reason, sizeof reason, "%s (limits.log_bytes)", jz_json_str(ex, "message", ""));
    } else if (strcmp(status, "disk_full") == 0) {
        state = "FAILED";
        snprintf(reason, sizeof reason, "%s (node %s)", jz_json_str(ex, "message", ""),
                 p->agent->name);
    } else if (strcmp(status, "timeout") == 0) {
        state = "TIMEOUT";
        snprintf(reason, sizeof reason, "time limit of %llds reached",
                 (long long)p->time_limit_s);
    } else if (json_is_integer(sig)) {
        state = "FAILED";
        snprintf(reason, sizeof reason, "killed by signal %s (%d)%s%s",
                 signal_name((int)json_integer_value(sig)), (int)json_integer_value(sig),
                 *msg ? ": " : "", msg);
    } else {
        state = "FAILED";
        snprintf(reason, sizeof reason, "exit code %lld%s%s",
                 json_is_integer(code) ? (long long)json_integer_value(code) : -1LL,
                 *msg ? ": " : "", msg);
    }
    return json_pack("{s:s, s:s?, s:O?, s:O?}", "state", state, "reason",
                     reason[0] ? reason : NULL, "exit_code", json_is_integer(code) ? code : NULL,
                     "signal", json_is_integer(sig) ? sig : NULL);
}

static void part_ended(struct part *p, json_t *outcome)
{
    p->running = false;
    p->pid = 0;
    if (p->backstop) {
        event_free(p->backstop);
        p->backstop = NULL;
    }
    json_decref(p->outcome);
    p->outcome = outcome;
    p->reported = false;
    p->offline_end = !p->agent->connected;
    write_running_record(p);
    jz_log_info("agent", "job %lld part %d: %s%s%s", (long long)p->job, p->part,
                jz_json_str(outcome, "state", "?"), jz_json_str(outcome, "reason", NULL) ? ": " : "",
                jz_json_str(outcome, "reason", ""));
    report_outcome(p);
}

/* --- worker callbacks ---------------------------------------------------------------------- */

static void on_worker_event(void *arg, json_t *ev)
{
    struct part *p = arg;
    const char *type = jz_json_str(ev, "type", "");
    if (strcmp(type, "exit") == 0) {
        json_decref(p->exit_ev);
        p->exit_ev = json_incref(ev);
        return;
    }
    if (strcmp(type, "error") == 0)
        jz_strlcpy(p->error, jz_json_str(ev, "message", ""), sizeof p->error);
    if (strcmp(type, "started") == 0) {
        /* Only the first: the worker's own. The job (same account, and able to write to the
         * event pipe) could send more, naming another process group for a restart to kill. */
        json_int_t pgid = p->pgid ? 0 : jz_json_int(ev, "pid", 0);
        if (pgid > 1) {
            p->pgid = (pid_t)pgid;
            write_running_record(p);
        }
        return; /* the process group is this node's business */
    }
    /* A checkpoint must be with jazarid before the job can resume on another node; one that
     * happens while disconnected is sent on the next connection. */
    if (strcmp(type, "checkpoint") == 0 && p->agent->cfg.ship_files && p->part == 0)
        ship_checkpoint(p); /* while disconnected: at reconnection */
    json_t *h = part_hdr("ev", p);
    json_object_set(h, "ev", ev);
    send_msg(p->agent, h, NULL, 0);
}

/* Nothing a job started outlives it: its cgroup is killed whole (what left the process group
 * with setsid too), and removed. */
static bool part_cgroup_end(struct part *p)
{
    if (!p->cg)
        return false;
    jz_cgroup_kill(p->cg, 200);
    bool oom = jz_cgroup_oom_killed(p->cg);
    jz_cgroup_destroy(p->cg);
    p->cg = NULL;
    return oom;
}

static void on_worker_exit(void *arg, int wait_status)
{
    struct part *p = arg;
    bool oom = part_cgroup_end(p);
    part_ended(p, classify(p, wait_status, oom));
}

/* Stops a part at once: its worker, its process groups, and its whole cgroup. */
static void part_kill(struct part *p)
{
    jz_node_kill_group(p->agent->node, p->pid);
    if (p->cg)
        jz_cgroup_kill(p->cg, 0); /* the rest goes when the worker's exit is seen */
}

/* The agent stops a part for a limit; the reason is its outcome's. */
static void part_stop_for(struct part *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void part_stop_for(struct part *p, const char *fmt, ...)
{
    if (p->limit_reason[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->limit_reason, sizeof p->limit_reason, fmt, ap);
    va_end(ap);
    jz_log_warn("agent", "job %lld part %d: %s", (long long)p->job, p->part, p->limit_reason);
    part_kill(p);
}

/* --- limits on what a job writes --------------------------------------------------------- */

/* Bytes (and entries) under a part's out/, links not followed. nftw has no argument. */
static int64_t sum_bytes;
static size_t sum_entries;

static int sum_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)flag;
    if (ftw->level == 1 && strcmp(path + ftw->base, "log") == 0)
        return 0; /* the log has a limit of its own */
    sum_bytes += (int64_t)st->st_blocks * 512 > st->st_size ? (int64_t)st->st_blocks * 512
                                                              : (int64_t)st->st_size;
    return ++sum_entries > MAX_OUTPUT_FILES ? 1 : 0;
}

/* Everything the job wrote in its folder but its log (out/, checkpoint/, and whatever else
 * it made there): the job owns the whole folder. */
static int64_t output_bytes(const struct part *p, bool *too_many)
{
    sum_bytes = 0;
    sum_entries = 0;
    *too_many = nftw(p->dir, sum_entry, 16, FTW_PHYS) == 1;
    return sum_bytes;
}

static int64_t log_bytes(const struct part *p)
{
    char path[1200];
    struct stat st;
    snprintf(path, sizeof path, "%s/log", p->dir);
    return lstat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Every WATCH_MS: a part past its log or output limit is stopped, and when the state folder's
 * disk runs low, the part that wrote most since the last check is stopped before the disk
 * fills (a full disk would stop every other job's logs, and jazarid's store where it shares the
 * disk). */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    struct jz_agent *a = arg;
    bool outputs_now = (++a->watch_ticks % 2) == 0; /* walking out/ costs more: every second */
    struct part *top = NULL;
    int64_t top_growth = 0;
    for (struct part *p = a->parts; p; p = p->next) {
        if (!p->running || p->limit_reason[0])
            continue;
        int64_t lb = log_bytes(p), ob = 0;
        if (p->log_max > 0 && lb > p->log_max) {
            part_stop_for(p, "log limit: the job wrote more than %lld bytes of log (the limit "
                             "is set by the hub's configuration, limits.log_bytes)",
                          (long long)p->log_max);
            continue;
        }
        if (outputs_now) {
            bool too_many = false;
            ob = output_bytes(p, &too_many);
            if (too_many) {
                part_stop_for(p, "output limit: the job made more than %d files",
                              MAX_OUTPUT_FILES);
                continue;
            }
            if (p->output_max > 0 && ob > p->output_max) {
                part_stop_for(p, "output limit: the job wrote more than %lld bytes of output "
                                 "(limits.output_bytes)", (long long)p->output_max);
                continue;
            }
        }
        int64_t written = lb + ob;
        if (written - p->last_written > top_growth) {
            top_growth = written - p->last_written;
            top = p;
        }
        if (outputs_now || written > p->last_written)
            p->last_written = written;
    }
    struct statvfs vfs;
    if (a->cfg.min_free_bytes > 0 && top && statvfs(a->state_dir, &vfs) == 0) {
        int64_t free_bytes = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
        if (free_bytes < a->cfg.min_free_bytes)
            part_stop_for(top, "disk full: node %s's disk has %lld KiB free (it keeps %lld KiB "
                               "free); this job wrote most (%lld KiB in the last second)",
                          a->name, (long long)free_bytes / 1024,
                          (long long)a->cfg.min_free_bytes / 1024, (long long)top_growth / 1024);
    }
    (void)fd;
    (void)what;
}

static const struct jz_node_worker_cbs worker_cbs = {.on_event = on_worker_event,
                                                     .on_exit = on_worker_exit};

static void on_backstop(evutil_socket_t fd, short what, void *arg)
{
    struct part *p = arg;
    jz_log_warn("agent", "job %lld part %d: worker %d did not stop after its time limit; "
                         "killing it", (long long)p->job, p->part, (int)p->pid);
    p->limit_kill = true;
    part_kill(p);
}

/* --- job folders on remote nodes --------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

static char keep_dir[1300]; /* nftw has no argument for its callback: the folder to keep */

static int empty_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    /* Keep the folder and its out/ only as real directories (a job may have put a link or a
     * file there): anything else goes. */
    if (ftw->level == 0 || (flag == FTW_DP && strcmp(path, keep_dir) == 0))
        return 0;
    return remove_entry(path, st, flag, ftw);
}

/* True when dir holds exactly an empty out/ directory (what a spare folder must be). */
static bool folder_is_clean(const char *dir, const char *out)
{
    struct stat st;
    if (lstat(out, &st) != 0 || !S_ISDIR(st.st_mode))
        return false;
    size_t n = 0;
    const char *paths[] = {dir, out};
    for (int i = 0; i < 2; i++) {
        DIR *d = opendir(paths[i]);
        if (!d)
            return false;
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                n++;
        closedir(d);
    }
    return n == 1; /* out/ itself */
}

static void spare_path(const struct jz_agent *a, int k, char *buf, size_t len)
{
    snprintf(buf, len, "%s/spare/%d", a->state_dir, k);
}

/* A folder for a part: a spare one renamed into place, or a new one. */
static int take_folder(struct jz_agent *a, const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) /* files were staged into it already */
        return 0;
    /* A confining agent makes each folder anew: a reused one would carry what its last
     * account did to it (its mode, an ACL, a descriptor kept open on it). */
    while (a->nspare > 0 && !a->cfg.confine) {
        char spare[1200];
        spare_path(a, a->spare[--a->nspare], spare, sizeof spare);
        if (rename(spare, dir) == 0)
            return 0;
    }
    return jz_mkdir_p(dir, 0750);
}

/* A part's folder once jazarid has its files: emptied (but for an empty out/) and kept for the
 * next job, or removed when enough are kept. */
static void release_folder(struct jz_agent *a, const char *dir)
{
    if (a->cfg.confine) { /* the folder is a job account's: never walked as root */
        struct jz_error err = {0};
        if (jz_account_remove_folder(dir, &err))
            jz_log_warn("agent", "%s", err.msg);
        return;
    }
    if (a->nspare < MAX_SPARE_DIRS) {
        snprintf(keep_dir, sizeof keep_dir, "%s/out", dir);
        char spare[1200];
        int k = ++a->spare_seq;
        spare_path(a, k, spare, sizeof spare);
        if (nftw(dir, empty_entry, 16, FTW_DEPTH | FTW_PHYS) == 0) {
            /* out/ itself may be missing (the worker failed early): a mkdir is still cheaper
             * than the folder's. */
            mkdir(keep_dir, 0750);
            if (folder_is_clean(dir, keep_dir) && rename(dir, spare) == 0) {
                a->spare[a->nspare++] = k;
                return;
            }
        }
    }
    if (jz_remove_tree(dir) != 0)
        jz_log_warn("agent", "cannot remove %s: %s", dir, strerror(errno));
}

/* --- launching ------------------------------------------------------------------------------ */

/* The NVIDIA device minor (/dev/nvidiaN) of the GPU at PCI address bus_id, from the driver's
 * own table; -1 when the NVIDIA driver does not know it (no driver, another vendor). */
static int nvidia_minor(const char *bus_id)
{
    char path[256], line[256];
    snprintf(path, sizeof path, "/proc/driver/nvidia/gpus/%s/information", bus_id);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int minor = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Device Minor: %d", &minor) == 1)
            break;
    fclose(f);
    return minor >= 0 && minor <= JZ_CGROUP_GPU_MINOR_MAX ? minor : -1;
}

static int find_plugin(const struct jz_agent *a, const char *file, char *out, size_t len)
{
    if (!jz_name_is_safe(file, 255))
        return -1;
    const char *dirs = a->plugin_dirs;
    while (*dirs) {
        const char *end = strchr(dirs, ':');
        size_t dl = end ? (size_t)(end - dirs) : strlen(dirs);
        snprintf(out, len, "%.*s/%s", (int)dl, dirs, file);
        if (access(out, R_OK) == 0)
            return 0;
        dirs += dl + (end ? 1 : 0);
    }
    return -1;
}

/* A plugin file larger than this is refused (the worker's own limit, worker/worker.h): for a
 * job of another account the agent reads the whole file into memory. */
#define PLUGIN_MAX_BYTES (1ll << 31)

static bool sha256_hex_ok(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++, n++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return n == 64;
}

/* The plugin descriptor is handed to a process that may run another account's code: only a
 * regular file of sane size, never a device, FIFO or a huge file to read into memory. */
static int check_plugin_fd(int fd, const char *path, struct stat *st, struct jz_error *err)
{
    if (fstat(fd, st) != 0)
        return jz_error_set(err, JZ_EIO, "cannot read the plugin %s: %s", path, strerror(errno));
    if (!S_ISREG(st->st_mode))
        return jz_error_set(err, JZ_EPERM, "plugin refused: %s is not a regular file", path);
    if (st->st_size > PLUGIN_MAX_BYTES)
        return jz_error_set(err, JZ_ELIMIT, "plugin refused: %s is larger than %lld bytes", path,
                            PLUGIN_MAX_BYTES);
    return 0;
}

/* jazarid's private copy of the version a job was submitted with. The agent may be root and
 * jazarid is not: nothing of the launch message but the SHA-256 (64 lower-case hex digits) goes
 * into the path, which is the copies folder given at start; the folder and the file are opened
 * without following links, and the file must be a regular one owned by the folder's owner
 * (jazarid's account). Returns the descriptor; -1 with err when refused; -2 when there is no
 * such copy (the plugin folders are searched then). */
static int open_server_copy(const struct jz_agent *a, const char *sha, char *path, size_t len,
                            struct jz_error *err)
{
    if (!sha256_hex_ok(sha)) {
        jz_error_set(err, JZ_EINVAL, "the launch's plugin_sha256 is not 64 lower-case hex digits");
        return -1;
    }
    snprintf(path, len, "%s/%s.so", a->copies_dir, sha);
    int dfd = open(a->copies_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT)
        return -2;
    struct stat dst, st;
    if (dfd < 0 || fstat(dfd, &dst) != 0) {
        jz_error_set(err, JZ_EIO, "cannot open the plugin copies folder %s: %s", a->copies_dir,
                     strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    char name[72]; /* SHA256.so */
    snprintf(name, sizeof name, "%s.so", sha);
    /* O_NONBLOCK: a FIFO put there must not hang the agent (a regular file ignores it). */
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int saved = errno;
    close(dfd);
    if (fd < 0) {
        if (saved == ENOENT)
            return -2;
        jz_error_set(err, JZ_EPERM, "plugin refused: cannot open the private copy %s: %s", path,
                     saved == ELOOP ? "it is a symbolic link" : strerror(saved));
        return -1;
    }
    int rc = check_plugin_fd(fd, path, &st, err);
    if (rc == 0 && st.st_uid != dst.st_uid)
        rc = jz_error_set(err, JZ_EPERM,
                          "plugin refused: the private copy %s is owned by uid %d, not by the "
                          "owner of its folder (uid %d)",
                          path, (int)st.st_uid, (int)dst.st_uid);
    if (rc) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The plugin a launch runs: on the local node, jazarid's private copy of the version the job
 * was submitted with; else (or when the copy is gone) the file of that name in this node's
 * plugin folders. Either way the worker checks the bytes against plugin_sha256. Returns the
 * descriptor (path names the file, for messages), or -1 with why. */
static int pick_plugin(const struct jz_agent *a, const json_t *m, char *path, size_t len,
                       struct jz_error *err)
{
    const char *sha = jz_json_str(m, "plugin_sha256", NULL);
    if (a->cfg.server_copies && sha) { /* a job older than versions has no SHA-256 */
        int fd = open_server_copy(a, sha, path, len, err);
        if (fd != -2)
            return fd;
    }
    const char *file = jz_json_str(m, "plugin_file", "");
    if (find_plugin(a, file, path, len)) {
        jz_error_set(err, JZ_ENOENT, "plugin file '%s' (%s %s) is not installed here", file,
                     jz_json_str(m, "plugin", "the plugin"), jz_json_str(m, "plugin_version", ""));
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0) {
        jz_error_set(err, JZ_EIO, "cannot open the plugin %s: %s", path, strerror(errno));
        return -1;
    }
    if (check_plugin_fd(fd, path, &st, err)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The plugin file as the worker will read it (it hashes and loads the bytes behind the
 * descriptor, through /proc/self/fd). Opened here, as the agent: jazarid's private copy is in
 * its 0700 state folder. A worker that runs as the job's account could not reopen that file
 * through /proc/self/fd either (the inode's own permissions are checked again), so for it the
 * bytes go into a sealed memfd, which it may open and nobody can change. */
static int open_plugin(const struct jz_agent *a, const json_t *m, bool as_user, char *path,
                       size_t len, struct jz_error *err)
{
    int fd = pick_plugin(a, m, path, len, err);
    if (fd < 0 || !as_user)
        return fd;
    int mfd = memfd_create("jazari-plugin", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    static char buf[1 << 16];
    ssize_t n = 0;
    int64_t total = 0;
    bool ok = mfd >= 0;
    while (ok && (n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0 && (total += n) <= PLUGIN_MAX_BYTES && write(mfd, buf, (size_t)n) == n;
        if (total > PLUGIN_MAX_BYTES)
            errno = EFBIG; /* it grew since it was checked */
    }
    ok = ok && fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0;
    int saved = errno;
    close(fd);
    if (!ok) {
        if (mfd >= 0)
            close(mfd);
        jz_error_set(err, JZ_EIO, "cannot hand the plugin %s over: %s", path, strerror(saved));
        return -1;
    }
    return mfd;
}

static bool env_name_ok(const char *k)
{
    if (!*k || strlen(k) > 64 || (*k >= '0' && *k <= '9'))
        return false;
    for (const char *c = k; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return false;
    return true;
}

/* The worker's spec from a launch message: the node side decides backends and paths. */
static json_t *build_spec(struct jz_agent *a, struct part *p, const json_t *m, char *plugin_path,
                          struct jz_error *err)
{
    const struct jz_topo *topo = jz_node_topo(a->node);
    json_t *devices = json_array();
    json_t *gpus = json_object_get(m, "gpus");
    size_t i;
    json_t *g;
    json_array_foreach(gpus, i, g) {
        json_int_t idx = json_integer_value(g);
        const struct jz_topo_gpu *tg =
            json_is_integer(g) && idx >= 0 ? jz_topo_gpu_at(topo, (size_t)idx) : NULL;
        if (!tg) {
            json_decref(devices);
            jz_error_set(err, JZ_EINVAL, "GPU %lld is not on node %s", (long long)idx, a->name);
            return NULL;
        }
        /* The ordinal is the device within its backend: CUDA renumbers the visible GPUs from
         * 0; the cpu and OpenCL fallbacks have one device that every declared GPU maps to. */
        const char *backend = jz_node_gpu_backend(a->node, (size_t)idx, a->fallback);
        json_array_append_new(
            devices, json_pack("{s:s, s:i, s:i, s:s, s:s, s:I, s:i}", "backend", backend,
                               "ordinal", strcmp(backend, "cuda") == 0 ? (int)i : 0,
                               "node_index", (int)tg->index, "pci_bus_id", tg->pci_bus_id,
                               "model", tg->model, "memory_bytes", (json_int_t)tg->memory_bytes,
                               "numa_node", tg->numa_os));
    }
    json_t *params = json_deep_copy(json_object_get(m, "params"));
    if (!json_is_object(params)) {
        json_decref(params);
        params = json_object();
    }
    /* Inputs jazarid staged into this part's folder (other jobs' artifacts). */
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(m, "inputs"), k, v) {
        const char *rel = json_string_value(v);
        if (rel && strncmp(rel, "in/", 3) == 0 && jz_name_is_safe(rel + 3, 255)) {
            char path[1400];
            snprintf(path, sizeof path, "%s/%s", p->dir, rel);
            json_object_set_new(params, k, json_string(path));
        }
    }
    json_t *env = json_object();
    json_object_foreach(json_object_get(m, "env"), k, v) {
        if (json_object_size(env) < MAX_ENV && env_name_ok(k) && json_is_string(v) &&
            strlen(json_string_value(v)) < 4096)
            json_object_set(env, k, v);
    }
    json_object_set_new(env, "JAZARI_NODE_NAME", json_string(a->name));
    char out_dir[1200], log_path[1200], ckpt[1200], id[32];
    snprintf(out_dir, sizeof out_dir, "%s/out", p->dir);
    snprintf(log_path, sizeof log_path, "%s/log", p->dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint", p->dir);
    snprintf(id, sizeof id, "%lld", (long long)p->job);
    return json_pack("{s:s, s:s, s:o, s:o, s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:I, s:I, s:o,"
                     " s:I, s:I}",
                     "job_id", id, "plugin_path", plugin_path, "params", params, "devices",
                     devices, "cpus", jz_json_str(m, "cpus", ""), "numa_nodes",
                     jz_json_str(m, "numa_nodes", ""), "bind", !jz_node_declared(a->node),
                     "output_dir", out_dir, "log_path", log_path, "checkpoint_dir", ckpt,
                     "submit_dir", jz_json_str(m, "submit_dir", ""), "time_limit_s",
                     (json_int_t)p->time_limit_s, "kill_grace_s",
                     (json_int_t)jz_json_int(m, "kill_grace_s", 10), "env", env,
                     "log_max_bytes",
                     (json_int_t)jz_json_int(json_object_get(m, "limits"), "log_bytes", 0),
                     "min_free_bytes", (json_int_t)a->cfg.min_free_bytes);
}

static void fail_launch(struct part *p, const char *why)
{
    char reason[400];
    snprintf(reason, sizeof reason, "could not start on node %s: %s", p->agent->name, why);
    part_ended(p, json_pack("{s:s, s:s}", "state", "FAILED", "reason", reason));
}

static struct part *part_new(struct jz_agent *a, int64_t job, int part, int64_t run)
{
    struct part *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->agent = a;
    p->job = job;
    p->part = part;
    p->run = run;
    snprintf(p->dir, sizeof p->dir, "%s/jobs/%lld", a->state_dir, (long long)job);
    p->next = a->parts;
    a->parts = p;
    return p;
}

static void handle_launch(struct jz_agent *a, const json_t *m)
{
    int64_t job = jz_json_int(m, "job", 0);
    int partno = (int)jz_json_int(m, "part", 0);
    int64_t run = jz_json_int(m, "run", 0);
    if (job <= 0 || partno < 0)
        return;
    struct part *p = find_part(a, job, partno, run);
    if (p) {
        jz_log_warn("agent", "job %lld part %d run %lld was already launched here",
                    (long long)job, partno, (long long)run);
        return;
    }
    /* An older run of the same part still here: jazarid has given up on it. */
    for (struct part *q = a->parts; q; q = q->next)
        if (q->job == job && q->part == partno && q->running) {
            q->cancel = true;
            part_kill(q);
        }
    p = part_new(a, job, partno, run);
    if (!p)
        return;
    p->running = true;
    p->time_limit_s = jz_json_int(m, "time_limit_s", 3600);
    const json_t *limits = json_object_get(m, "limits");
    p->log_max = jz_json_int(limits, "log_bytes", 0);
    p->output_max = jz_json_int(limits, "output_bytes", 0);
    p->memory_mb = jz_json_int(m, "memory_mb", 0);
    struct jz_error err = {0};
    char sub[1300], plugin_path[4400];
    json_t *spec = NULL;
    int spec_fd = -1, plugin_fd = -1;
    struct jz_account acct;
    int cg_fds[JZ_CGROUP_MAX_FDS];
    size_t n_cg_fds = 0;
    if (a->cfg.confine) {
        const char *name = jz_json_str(m, "unix_user", NULL);
        if (!name) {
            jz_error_set(&err, JZ_EPERM, "the job's user has no Unix account to run as (an admin "
                                         "sets one: jazari admin user set NAME --unix-user ACCOUNT)");
            goto fail;
        }
        if (jz_account_resolve(name, a->min_uid, a->cfg.deny_uid, &acct, &err))
            goto fail;
        p->as_user = true;
        p->uid = acct.uid;
    }
    /* Only the part's folder: the worker makes out/, and checkpoint/ at the first checkpoint
     * (every directory costs an inode, and ext4 is slow to hand out many). */
    if ((a->cfg.ship_files ? take_folder(a, p->dir) : jz_mkdir_p(p->dir, 0750)) != 0) {
        jz_error_set(&err, JZ_EIO, "cannot create %s: %s", p->dir, strerror(errno));
        goto fail;
    }
    if (p->as_user && jz_account_own_folder(p->dir, &acct, &err))
        goto fail;
    if (a->cgs) {
        char cgname[96];
        snprintf(cgname, sizeof cgname, "job%lld.p%d.r%lld", (long long)job, partno,
                 (long long)run);
        /* What this machine's cgroups cannot limit is left out (the agent said so at start). */
        unsigned feat = jz_cgroup_system_features(a->cgs);
        struct jz_cgroup_limits cl = {
            .memory_bytes = (feat & JZ_CGROUP_MEMORY) && p->memory_mb > 0 ? p->memory_mb << 20 : 0,
            .pids_max = (feat & JZ_CGROUP_PIDS) ? jz_json_int(limits, "pids", 0) : 0,
            .cpus = (feat & JZ_CGROUP_CPUSET) && !jz_node_declared(a->node)
                        ? jz_json_str(m, "cpus", "") : "",
            .mems = (feat & JZ_CGROUP_CPUSET) && !jz_node_declared(a->node)
                        ? jz_json_str(m, "numa_nodes", "") : "",
        };
        /* The job sees its own GPUs only, where the devices controller can say so and the
         * GPUs are this machine's NVIDIA devices (declared ones are not). */
        int minors[MAX_PART_GPUS];
        size_t nminors = 0;
        bool all_known = (feat & JZ_CGROUP_DEVICES) && !jz_node_declared(a->node) &&
                         access("/proc/driver/nvidia/gpus", F_OK) == 0;
        size_t gi;
        json_t *gv;
        json_array_foreach(json_object_get(m, "gpus"), gi, gv) {
            const struct jz_topo_gpu *tg =
                jz_topo_gpu_at(jz_node_topo(a->node), (size_t)json_integer_value(gv));
            int minor = tg && nminors < MAX_PART_GPUS ? nvidia_minor(tg->pci_bus_id) : -1;
            if (minor < 0)
                all_known = false;
            else
                minors[nminors++] = minor;
        }
        cl.limit_devices = all_known;
        cl.gpu_minors = minors;
        cl.n_gpu_minors = nminors;
        if (jz_cgroup_create(a->cgs, cgname, &cl, &p->cg, &err))
            goto fail;
        n_cg_fds = jz_cgroup_join_fds(p->cg, cg_fds, JZ_CGROUP_MAX_FDS);
    }
    /* A log left by an earlier run of this job on this node was sent then. */
    struct stat st;
    snprintf(sub, sizeof sub, "%s/log", p->dir);
    p->log_sent = p->log_start = stat(sub, &st) == 0 ? st.st_size : 0;
    if ((plugin_fd = open_plugin(a, m, p->as_user, plugin_path, sizeof plugin_path, &err)) < 0)
        goto fail;
    spec = build_spec(a, p, m, plugin_path, &err);
    if (!spec)
        goto fail;
    /* What the worker checks and gives the plugin's init (docs/agent-protocol.md). */
    const char *psha = jz_json_str(m, "plugin_sha256", NULL);
    if (psha)
        json_object_set_new(spec, "plugin_sha256", json_string(psha));
    json_object_set_new(spec, "plugin_fd", json_integer(5));
    const json_t *pconf = json_object_get(m, "plugin_config");
    if (json_is_object(pconf))
        json_object_set(spec, "plugin_config", (json_t *)pconf);
    jz_strlcpy(p->backend,
               jz_json_str(json_array_get(json_object_get(spec, "devices"), 0), "backend", "cpu"),
               sizeof p->backend);
    /* The spec goes to the worker in memory: nothing to write to disk or clean up. */
    spec_fd = memfd_create("jazari-spec", MFD_CLOEXEC);
    if (spec_fd < 0 || jz_json_dump_fd(spec, spec_fd, JSON_COMPACT) != 0 ||
        lseek(spec_fd, 0, SEEK_SET) != 0) {
        jz_error_set(&err, JZ_EIO, "cannot hand the spec over: %s", strerror(errno));
        goto fail;
    }
    json_decref(spec);
    spec = NULL;
    /* The file-size limit stops a runaway writer between two checks of on_watch. */
    int64_t fsize = p->log_max > p->output_max ? p->log_max : p->output_max;
    struct jz_node_launch_opts opts = {
        .set_ids = p->as_user, .uid = p->as_user ? acct.uid : 0,
        .gid = p->as_user ? acct.gid : 0, .groups = p->as_user ? acct.groups : NULL,
        .ngroups = p->as_user ? acct.ngroups : 0, .cgroup_fds = cg_fds, .ncgroup_fds = n_cg_fds,
        .file_size_max = fsize > 0 && p->log_max > 0 && p->output_max > 0 ? fsize + (1 << 20) : 0,
    };
    opts.pass_plugin_fd = true;
    opts.plugin_fd = plugin_fd;
    int lrc = jz_node_launch(a->node, spec_fd, &opts, &worker_cbs, p, &p->pid, &err);
    close(spec_fd);
    spec_fd = -1;
    close(plugin_fd);
    plugin_fd = -1;
    if (lrc)
        goto fail;
    write_running_record(p);
    p->backstop = evtimer_new(a->base, on_backstop, p);
    struct timeval tv = {.tv_sec = p->time_limit_s + jz_json_int(m, "kill_grace_s", 10) +
                                   BACKSTOP_EXTRA_S};
    evtimer_add(p->backstop, &tv);
    json_t *h = part_hdr("started", p);
    json_object_set_new(h, "backend", json_string(p->backend));
    send_msg(a, h, NULL, 0);
    return;
fail:
    json_decref(spec);
    if (spec_fd >= 0)
        close(spec_fd);
    if (plugin_fd >= 0)
        close(plugin_fd);
    part_cgroup_end(p); /* closes the join descriptors: they are the cgroup's */
    jz_log_error("agent", "job %lld part %d: %s", (long long)job, partno, err.msg);
    fail_launch(p, err.msg);
}

/* "stop": how is "term" (cancel, a failed gang part, the end of a preemption's grace),
 * "checkpoint" (preemption starts) or "kill" (the part must not run here any more). */
static void handle_stop(struct jz_agent *a, const json_t *m)
{
    struct part *p = find_part(a, jz_json_int(m, "job", 0), (int)jz_json_int(m, "part", 0),
                               jz_json_int(m, "run", 0));
    if (!p || !p->running)
        return;
    const char *how = jz_json_str(m, "how", "term");
    const char *why = jz_json_str(m, "why", "cancel");
    if (strcmp(why, "cancel") == 0 || strcmp(why, "gang") == 0 || strcmp(why, "kill") == 0)
        p->cancel = true;
    if (strcmp(why, "preempt") == 0)
        p->preempt = true;
    if (strcmp(why, "disk_full") == 0) {
        part_stop_for(p, "disk full: jazarid's disk is full, so the job's log and outputs could "
                         "not be kept");
        return;
    }
    if (strcmp(how, "checkpoint") == 0)
        jz_node_signal(a->node, p->pid, SIGUSR1);
    else if (strcmp(how, "kill") == 0)
        part_kill(p);
    else
        jz_node_signal(a->node, p->pid, SIGTERM);
}

static void handle_forget(struct jz_agent *a, const json_t *m)
{
    struct part *p = find_part(a, jz_json_int(m, "job", 0), (int)jz_json_int(m, "part", 0),
                               jz_json_int(m, "run", 0));
    if (p && !p->running) {
        /* A remote node's folder was sent to jazarid, which keeps the job's files: free the
         * disk, unless a newer run of the job uses the folder now. */
        bool in_use = false;
        for (struct part *q = a->parts; q; q = q->next)
            in_use |= q != p && q->job == p->job;
        if (a->cfg.ship_files && !in_use)
            release_folder(a, p->dir);
        part_unlink(a, p);
        part_free(p);
    }
}

/* A file jazarid stages into a part's folder before its launch (a checkpoint to resume from,
 * another job's artifact): "name" is "checkpoint/checkpoint.bin" or "in/NAME". */
static void handle_file(struct jz_agent *a, const struct jz_msg *m)
{
    int64_t job = jz_json_int(m->hdr, "job", 0);
    const char *name = jz_json_str(m->hdr, "name", "");
    int64_t off = jz_json_int(m->hdr, "off", -1);
    bool ok_name = strcmp(name, "checkpoint/checkpoint.bin") == 0 ||
                   (strncmp(name, "in/", 3) == 0 && jz_name_is_safe(name + 3, 255));
    if (job <= 0 || !ok_name || off < 0) {
        jz_log_warn("agent", "ignoring a file message for job %lld named '%.80s'",
                    (long long)job, name);
        return;
    }
    /* The folder may hold what an earlier run of the job left (links included): everything is
     * made and written through descriptors, beneath it, through no link, as this agent may be
     * root; a file is truncated only once it is known to be a plain file of its own. */
    const char *sub = name[0] == 'c' ? "checkpoint" : "in";
    const char *base = strchr(name, '/') + 1;
    char dir[1300], tmp[300];
    snprintf(dir, sizeof dir, "%s/jobs/%lld", a->state_dir, (long long)job);
    jz_mkdir_p(dir, 0750);
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd >= 0 && mkdirat(dfd, sub, 0750) != 0 && errno != EEXIST) {
        close(dfd);
        dfd = -1;
    }
    int sfd = dfd >= 0 ? jz_openat_beneath(dfd, sub, O_RDONLY | O_DIRECTORY, (uid_t)-1) : -1;
    if (dfd >= 0)
        close(dfd);
    snprintf(tmp, sizeof tmp, "%s.part", base);
    int fd = sfd < 0 ? -1 : jz_openat_beneath(sfd, tmp, O_WRONLY | O_CREAT, (uid_t)-1);
    struct stat st = {0};
    bool ok = fd >= 0 && fstat(fd, &st) == 0 && st.st_nlink == 1 &&
              (off != 0 || ftruncate(fd, 0) == 0) &&
              (!m->len || pwrite(fd, m->data, m->len, off) == (ssize_t)m->len);
    if (!ok)
        jz_log_error("agent", "job %lld: cannot write %s/%s.part: %s", (long long)job, dir, name,
                     fd >= 0 && st.st_nlink != 1 ? "it has other links" : strerror(errno));
    if (fd >= 0)
        close(fd);
    if (ok && jz_json_bool(m->hdr, "last", false) && renameat(sfd, tmp, sfd, base) != 0)
        jz_log_error("agent", "job %lld: cannot rename %s/%s: %s", (long long)job, dir, name,
                     strerror(errno));
    if (sfd >= 0)
        close(sfd);
}

/* After a reconnection jazarid says how much of a part's log it has: lines queued on the lost
 * connection are sent again from there. */
static void handle_log_from(struct jz_agent *a, const json_t *m)
{
    struct part *p = find_part(a, jz_json_int(m, "job", 0), (int)jz_json_int(m, "part", 0),
                               jz_json_int(m, "run", 0));
    int64_t off = jz_json_int(m, "off", -1); /* bytes of this run's lines jazarid has */
    if (p && off >= 0 && p->log_start + off < p->log_sent)
        p->log_sent = p->log_start + off;
}

static void handle_synced(struct jz_agent *a);

void jz_agent_receive(struct jz_agent *a, const struct jz_msg *m)
{
    const char *t = jz_msg_type(m);
    if (strcmp(t, "launch") == 0)
        handle_launch(a, m->hdr);
    else if (strcmp(t, "stop") == 0)
        handle_stop(a, m->hdr);
    else if (strcmp(t, "forget") == 0)
        handle_forget(a, m->hdr);
    else if (strcmp(t, "file") == 0)
        handle_file(a, m);
    else if (strcmp(t, "log_from") == 0)
        handle_log_from(a, m->hdr);
    else if (strcmp(t, "synced") == 0)
        handle_synced(a);
    else
        jz_log_debug("agent", "ignoring a '%.40s' message", t);
}

/* --- connection ----------------------------------------------------------------------------- */

json_t *jz_agent_hello(struct jz_agent *a)
{
    json_t *running = json_array(), *ended = json_array();
    for (struct part *p = a->parts; p; p = p->next)
        json_array_append_new(p->running ? running : ended,
                              json_pack("{s:I, s:i, s:I}", "job", (json_int_t)p->job, "part",
                                        p->part, "run", (json_int_t)p->run));
    char desc[256];
    jz_topo_describe(jz_node_topo(a->node), desc, sizeof desc);
    return json_pack("{s:s, s:i, s:s, s:s, s:O, s:s%, s:s, s:s, s:s?, s:o, s:o}", "t", "hello",
                     "v", JZ_PROTO_VERSION, "name", a->name, "site", a->site, "labels", a->labels,
                     "topology", a->xml, a->xml_len, "source", jz_node_source(a->node),
                     "description", desc, "address", a->address[0] ? a->address : NULL,
                     "running", running, "ended", ended);
}

void jz_agent_connected(struct jz_agent *a)
{
    a->connected = true;
    for (struct part *p = a->parts; p; p = p->next)
        p->reported = false;
}

/* jazarid has reconciled this node's parts (and said where each log stands): what ended or was
 * written while disconnected can go now. */
static void handle_synced(struct jz_agent *a)
{
    for (struct part *p = a->parts; p; p = p->next) {
        /* A checkpoint sent on the lost connection may not have arrived: send the latest. */
        char ckpt[1300];
        snprintf(ckpt, sizeof ckpt, "%s/checkpoint/checkpoint.bin", p->dir);
        if (a->cfg.ship_files && p->part == 0 && (p->running || p->offline_end) &&
            access(ckpt, R_OK) == 0)
            ship_file(p, "checkpoint/checkpoint.bin");
        if (!p->running)
            report_outcome(p);
    }
}

void jz_agent_disconnected(struct jz_agent *a)
{
    a->connected = false;
}

/* --- life cycle ----------------------------------------------------------------------------- */

/* True when pid is still a jazari-worker (so that a recycled pid is never killed). */
static bool is_our_worker(pid_t pid)
{
    char path[64], cmd[256] = "";
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(cmd, 1, sizeof cmd - 1, f);
    fclose(f);
    cmd[n] = '\0';
    return strstr(cmd, "jazari-worker") != NULL;
}

/* Parts an earlier run of this agent left: their workers died with it (PR_SET_PDEATHSIG), what
 * the jobs started lives on in their own process groups. Kill it; report the parts lost. */
static void recover_leftovers(struct jz_agent *a)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/running.list", a->state_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    long long job, run;
    int partno, pid, pgid;
    char line[256];
    /* Line by line: a line that does not hold exactly the five numbers is skipped. */
    while (fgets(line, sizeof line, f)) {
        char extra;
        if (sscanf(line, "%lld %d %lld %d %d %c", &job, &partno, &run, &pid, &pgid, &extra) != 5 ||
            job <= 0 || partno < 0)
            continue;
        if (pid > 1 && is_our_worker(pid)) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        /* A process-group id is not reused while any member lives, so this reaches only what
         * is left of this job. With cgroups, the cgroups of the last run are killed instead
         * (confine_open), which also reaches what left the group. */
        if (pgid > 1 && !a->cgs)
            kill(-pgid, SIGKILL);
        struct part *p = part_new(a, job, partno, run);
        if (p)
            p->outcome = json_pack("{s:s, s:s}", "state", "LOST", "reason",
                                   "node lost: the node agent restarted while it ran");
    }
    fclose(f);
    unlink(path);
}

/* A confining agent: its state folder is root's, jobs/ only passable (each part's folder is its
 * account's, 0700), and the cgroups an earlier run of this agent left are killed whole (what
 * their jobs started with setsid too). */
static int confine_open(struct jz_agent *a, struct jz_error *err)
{
    if (geteuid() != 0)
        return jz_error_set(err, JZ_EPERM, "confining jobs needs root (run the agent as root, "
                                           "or without confinement for development)");
    a->min_uid = jz_account_min_uid();
    char jobs[1100], spare[1100];
    snprintf(jobs, sizeof jobs, "%s/jobs", a->state_dir);
    snprintf(spare, sizeof spare, "%s/spare", a->state_dir);
    if (jz_mkdir_p(jobs, 0711) != 0 || chown(a->state_dir, 0, 0) != 0 ||
        chmod(a->state_dir, 0711) != 0 || chown(jobs, 0, 0) != 0 || chmod(jobs, 0711) != 0)
        return jz_error_set(err, JZ_EIO, "cannot secure %s: %s", a->state_dir, strerror(errno));
    chmod(spare, 0700);
    char name[200];
    if (a->cfg.cgroup_name) {
        jz_strlcpy(name, a->cfg.cgroup_name, sizeof name);
    } else {
        /* Unique per agent on this machine: several may run side by side (tests, a head node
         * with its embedded agent and another one). */
        char real[4096];
        const char *key = realpath(a->state_dir, real) ? real : a->state_dir;
        uint32_t h = 2166136261u;
        for (const char *c = key; *c; c++)
            h = (h ^ (unsigned char)*c) * 16777619u;
        snprintf(name, sizeof name, "jazari/%s-%08x", a->name, h);
    }
    struct jz_error cerr = {0};
    if (jz_cgroup_system_open(NULL, name, &a->cgs, &cerr)) {
        jz_log_warn("agent", "no cgroups (%s): jobs run as their accounts, but memory, pids "
                             "and CPU limits are not enforced and what a job leaves behind is "
                             "found by process group only", cerr.msg);
        a->cgs = NULL;
        return 0;
    }
    size_t killed = 0;
    if (jz_cgroup_system_reap(a->cgs, &killed, NULL, &cerr))
        jz_log_warn("agent", "cannot clear the cgroups of an earlier run: %s", cerr.msg);
    else if (killed)
        jz_log_warn("agent", "killed %zu job cgroup(s) an earlier run of this agent left",
                    killed);
    jz_log_info("agent", "jobs run confined: as their users' accounts, in cgroups (%s)",
                jz_cgroup_system_describe(a->cgs));
    return 0;
}

int jz_agent_create(struct event_base *base, const struct jz_agent_config *cfg,
                    jz_agent_send_fn send, void *arg, struct jz_agent **out, struct jz_error *err)
{
    struct jz_agent *a = calloc(1, sizeof *a);
    if (!a)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    a->base = base;
    a->records_fd = -1;
    a->cfg = *cfg;
    a->send = send;
    a->send_arg = arg;
    int rc = 0;
    if (!jz_name_is_safe(cfg->name, 63) ||
        (cfg->site && *cfg->site && !jz_name_is_safe(cfg->site, 63))) {
        rc = jz_error_set(err, JZ_EINVAL, "node and site names are 1-63 of [A-Za-z0-9._-]");
        goto fail;
    }
    jz_strlcpy(a->name, cfg->name, sizeof a->name);
    /* "" lets the join token (or jazarid) say which site. */
    jz_strlcpy(a->site, cfg->site ? cfg->site : "", sizeof a->site);
    if (!jz_strlcpy(a->state_dir, cfg->state_dir, sizeof a->state_dir) ||
        !jz_strlcpy(a->plugin_dirs, cfg->plugin_dirs ? cfg->plugin_dirs : "",
                    sizeof a->plugin_dirs)) {
        rc = jz_error_set(err, JZ_ELIMIT, "state or plugin folder path too long");
        goto fail;
    }
    if (cfg->server_copies &&
        snprintf(a->copies_dir, sizeof a->copies_dir, "%s%s",
                 cfg->server_copies_dir ? cfg->server_copies_dir : a->state_dir,
                 cfg->server_copies_dir ? "" : "/plugins") >= (int)sizeof a->copies_dir) {
        rc = jz_error_set(err, JZ_ELIMIT, "plugin copies folder path too long");
        goto fail;
    }
    a->cfg.server_copies_dir = NULL; /* the caller's string: a->copies_dir is kept instead */
    jz_strlcpy(a->fallback, cfg->fallback_backend ? cfg->fallback_backend : "cpu",
               sizeof a->fallback);
    jz_strlcpy(a->address, cfg->address ? cfg->address : "", sizeof a->address);
    a->labels = cfg->labels ? json_deep_copy(cfg->labels) : json_object();
    a->cfg.name = a->name;
    struct jz_node_config ncfg = {.name = a->name,
                                  .topology_path = cfg->topology_path,
                                  .worker_path = cfg->worker_path};
    if ((rc = jz_node_create(base, &ncfg, &a->node, err)) ||
        (rc = jz_node_topology_xml(a->node, &a->xml, &a->xml_len, err)))
        goto fail;
    /* It travels in the hello, whose header has a limit (with room for the rest of it). */
    if (a->xml_len > JZ_PROTO_MAX_HEADER - 64 * 1024) {
        rc = jz_error_set(err, JZ_ELIMIT, "the topology XML is %zu bytes; at most %u can be sent",
                          a->xml_len, JZ_PROTO_MAX_HEADER - 64 * 1024);
        goto fail;
    }
    if (cfg->confine && (rc = confine_open(a, err)))
        goto fail;
    recover_leftovers(a);
    if (cfg->ship_files) { /* spare folders of an earlier run: start with none */
        char spare[1100];
        snprintf(spare, sizeof spare, "%s/spare", a->state_dir);
        jz_remove_tree(spare);
        jz_mkdir_p(spare, 0750);
    }
    a->records_ev = event_new(base, -1, 0, on_records_flush, a);
    a->watch_timer = event_new(base, -1, EV_PERSIST, on_watch, a);
    struct timeval wtv = {.tv_sec = 0, .tv_usec = WATCH_MS * 1000};
    if (!a->records_ev || !a->watch_timer || evtimer_add(a->watch_timer, &wtv) != 0) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto fail;
    }
    if (cfg->ship_files) {
        a->log_timer = event_new(base, -1, EV_PERSIST, on_log_timer, a);
        struct timeval tv = {.tv_sec = 0, .tv_usec = LOG_SHIP_MS * 1000};
        evtimer_add(a->log_timer, &tv);
    }
    *out = a;
    return 0;
fail:
    jz_agent_destroy(a);
    return rc;
}

void jz_agent_destroy(struct jz_agent *a)
{
    if (!a)
        return;
    jz_node_destroy(a->node); /* kills every worker and what it started */
    for (struct part *p = a->parts, *next; p; p = next) {
        next = p->next;
        part_cgroup_end(p);
        part_free(p);
    }
    jz_cgroup_system_close(a->cgs);
    if (a->watch_timer)
        event_free(a->watch_timer);
    if (a->records_fd >= 0)
        close(a->records_fd);
    if (a->records_ev) {
        event_free(a->records_ev);
        char path[1100];
        snprintf(path, sizeof path, "%s/running.list", a->state_dir);
        unlink(path); /* every worker was killed just now */
    }
    if (a->log_timer)
        event_free(a->log_timer);
    json_decref(a->labels);
    free(a->xml);
    free(a);
}

void jz_agent_set_file_sender(struct jz_agent *a, jz_agent_send_file_fn fn)
{
    a->send_file = fn;
}

const char *jz_agent_name(const struct jz_agent *a)
{
    return a->name;
}


size_t jz_agent_running(const struct jz_agent *a)
{
    size_t n = 0;
    for (const struct part *p = a->parts; p; p = p->next)
        n += p->running;
    return n;
}
