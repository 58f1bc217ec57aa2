/* Local node: topology discovery and worker processes (fork/exec, event pipes, reaping). */
#include "node/node.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hwloc.h>

#include "common/json.h"
#include "common/strutil.h"
#include "scheduler/topo_hwloc.h"


#define WORKER_LINE_MAX (64 * 1024) /* an event line longer than this is dropped */

struct worker {
    struct worker *next;
    struct jz_node *node;
    pid_t pid;
    pid_t job_pgid; /* the job's own process group (from the "started" event), 0 before */
    int fd;
    struct event *ev;
    struct event *eof_timer; /* armed when the worker exits: EOF is not waited for forever */
    char *line;
    size_t len;
    bool overflow;
    bool exited, eof;
    int status;
    struct jz_node_worker_cbs cbs;
    void *arg;
};

struct jz_node {
    struct event_base *base;
    char name[64];
    char source[4200];
    bool declared;
    char worker_path[4096];
    struct jz_topo *topo;
    struct event *sigchld;
    struct worker *workers;
};

static void worker_free(struct worker *w)
{
    if (w->ev)
        event_free(w->ev);
    if (w->eof_timer)
        event_free(w->eof_timer);
    if (w->fd >= 0)
        close(w->fd);
    free(w->line);
    free(w);
}

static void worker_finish_if_done(struct worker *w)
{
    if (!w->exited || !w->eof)
        return;
    struct jz_node *n = w->node;
    for (struct worker **pp = &n->workers; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    struct jz_node_worker_cbs cbs = w->cbs;
    void *arg = w->arg;
    int status = w->status;
    worker_free(w);
    cbs.on_exit(arg, status);
}

static void deliver_line(struct worker *w, const char *line, size_t len)
{
    if (len == 0)
        return;
    json_t *ev = jz_json_parse(line, len, 8, NULL);
    if (ev && json_is_object(ev)) {
        /* The job runs in a process group of its own: remember it, so that every way of
         * stopping the job also stops what the job started. */
        if (strcmp(jz_json_str(ev, "type", ""), "started") == 0 && w->job_pgid == 0) {
            json_int_t pgid = jz_json_int(ev, "pid", 0);
            if (pgid > 1 && pgid != getpid())
                w->job_pgid = (pid_t)pgid;
        }
        w->cbs.on_event(w->arg, ev);
    }
    json_decref(ev);
}

static void on_worker_readable(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            if (w->len && !w->overflow)
                deliver_line(w, w->line, w->len);
            w->len = 0;
            event_del(w->ev);
            w->eof = true;
            worker_finish_if_done(w);
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                if (!w->overflow)
                    deliver_line(w, w->line, w->len);
                w->len = 0;
                w->overflow = false;
            } else if (w->len < WORKER_LINE_MAX) {
                w->line[w->len++] = buf[i];
            } else {
                w->overflow = true;
            }
        }
    }
}

#define EOF_GRACE_S 5

/* The worker has been gone for a while and something it left (a descendant that escaped its
 * process group) still holds the event pipe: stop waiting for it. */
static void on_eof_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (w->len && !w->overflow)
        deliver_line(w, w->line, w->len);
    w->len = 0;
    event_del(w->ev);
    w->eof = true;
    worker_finish_if_done(w);
}

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
    struct jz_node *n = arg;
    struct worker *w = n->workers;
    while (w) {
        struct worker *next = w->next;
        int status;
        if (!w->exited && waitpid(w->pid, &status, WNOHANG) == w->pid) {
            w->exited = true;
            w->status = status;
            /* The worker is gone (killed, perhaps): what is left in the job's process group
             * must not run unsupervised. (A cgroup, where the agent has one, holds the rest.) */
            if (w->job_pgid)
                kill(-w->job_pgid, SIGKILL);
            w->eof_timer = evtimer_new(n->base, on_eof_timeout, w);
            struct timeval tv = {.tv_sec = EOF_GRACE_S};
            if (w->eof_timer)
                evtimer_add(w->eof_timer, &tv);
            /* Read what is left in the pipe now: the worker is gone, so EOF follows unless
             * a grandchild still holds the write end (then the event delivers it later). */
            on_worker_readable(w->fd, EV_READ, w);
        }
        w = next;
    }
}

int jz_node_create(struct event_base *base, const struct jz_node_config *cfg,
                   struct jz_node **out, struct jz_error *err)
{
    struct jz_node *n = calloc(1, sizeof *n);
    if (!n)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    n->base = base;
    jz_strlcpy(n->name, cfg->name ? cfg->name : "local", sizeof n->name);
    jz_strlcpy(n->worker_path, cfg->worker_path, sizeof n->worker_path);
    int rc;
    if (cfg->topology_path && *cfg->topology_path) {
        n->declared = true;
        snprintf(n->source, sizeof n->source, "xml:%s", cfg->topology_path);
        rc = jz_topo_hwloc_load_xml(cfg->topology_path, &n->topo, err);
    } else {
        snprintf(n->source, sizeof n->source, "live");
        rc = jz_topo_hwloc_load_live(&n->topo, err);
    }
    if (rc)
        goto fail;
    n->sigchld = evsignal_new(base, SIGCHLD, on_sigchld, n);
    if (!n->sigchld || evsignal_add(n->sigchld, NULL) != 0) {
        rc = jz_error_set(err, JZ_EIO, "cannot watch SIGCHLD");
        goto fail;
    }
    *out = n;
    return 0;
fail:
    jz_node_destroy(n);
    return rc;
}

void jz_node_destroy(struct jz_node *n)
{
    if (!n)
        return;
    for (struct worker *w = n->workers, *next; w; w = next) {
        next = w->next;
        if (w->job_pgid)
            kill(-w->job_pgid, SIGKILL);
        if (!w->exited) { /* a reaped pid may belong to someone else by now */
            kill(-w->pid, SIGKILL);
            kill(w->pid, SIGKILL);
            waitpid(w->pid, NULL, 0);
        }
        worker_free(w);
    }
    if (n->sigchld)
        event_free(n->sigchld);
    jz_topo_destroy(n->topo);
    free(n);
}

const char *jz_node_name(const struct jz_node *n)
{
    return n->name;
}

const char *jz_node_source(const struct jz_node *n)
{
    return n->source;
}

bool jz_node_declared(const struct jz_node *n)
{
    return n->declared;
}

int jz_node_topology_xml(const struct jz_node *n, char **xml, size_t *len, struct jz_error *err)
{
    if (n->declared) {
        const char *path = n->source + 4; /* "xml:PATH" */
        FILE *f = fopen(path, "rb");
        if (!f)
            return jz_error_set(err, JZ_EIO, "cannot read %s: %s", path, strerror(errno));
        char *buf = NULL;
        size_t cap = 0, used = 0, got;
        do {
            if (used + 65536 + 1 > cap) {
                char *grown = realloc(buf, cap = (cap ? cap * 2 : 262144));
                if (!grown || cap > JZ_TOPO_XML_MAX_BYTES + 65536) {
                    free(grown ? grown : buf);
                    fclose(f);
                    return jz_error_set(err, JZ_ELIMIT, "%s is too large", path);
                }
                buf = grown;
            }
            got = fread(buf + used, 1, 65536, f);
            used += got;
        } while (got > 0);
        fclose(f);
        buf[used] = '\0';
        *xml = buf;
        *len = used;
        return 0;
    }
    hwloc_topology_t h;
    if (hwloc_topology_init(&h) != 0)
        return jz_error_set(err, JZ_ENOMEM, "hwloc: cannot initialise");
    hwloc_topology_set_io_types_filter(h, HWLOC_TYPE_FILTER_KEEP_ALL); /* as the adapter loads */
    char *buf = NULL;
    int blen = 0;
    int rc = 0;
    if (hwloc_topology_load(h) != 0 || hwloc_topology_export_xmlbuffer(h, &buf, &blen, 0) != 0) {
        rc = jz_error_set(err, JZ_EIO, "hwloc: cannot export this machine's topology");
    } else {
        *xml = strdup(buf);
        *len = blen > 0 ? (size_t)blen - 1 : 0;
        if (!*xml)
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        hwloc_free_xmlbuffer(h, buf);
    }
    hwloc_topology_destroy(h);
    return rc;
}

const struct jz_topo *jz_node_topo(const struct jz_node *n)
{
    return n->topo;
}

const char *jz_node_gpu_backend(const struct jz_node *n, size_t gpu, const char *fallback)
{
    const struct jz_topo_gpu *g = jz_topo_gpu_at(n->topo, gpu);
    if (n->declared || !g)
        return fallback;
    if (strstr(g->os_names, "cuda"))
        return "cuda";
    if (strstr(g->os_names, "opencl"))
        return "opencl";
    return fallback;
}

/* In the child, before exec: joins the cgroups, limits and switches identity. Only system
 * calls (the child may run in the parent's memory: see jz_node_launch). The identity changes
 * are raw system calls, not glibc's wrappers, which coordinate every thread of the process
 * through its memory. The child stays non-dumpable after the switch (the kernel's default),
 * so the job's account cannot read the agent's memory through it; exec makes the worker
 * dumpable again, its memory being the job's own. Returns false when any step failed (the
 * child must not go on). */
static bool confine_child(const struct jz_node_launch_opts *o, pid_t parent)
{
    for (size_t i = 0; i < o->ncgroup_fds; i++)
        if (write(o->cgroup_fds[i], "0", 1) != 1)
            return false;
    if (o->file_size_max > 0) {
        struct rlimit rl = {(rlim_t)o->file_size_max, (rlim_t)o->file_size_max};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            return false;
    }
    if (o->set_ids) {
        if (o->nproc_max > 0) {
            struct rlimit rl = {(rlim_t)o->nproc_max, (rlim_t)o->nproc_max};
            setrlimit(RLIMIT_NPROC, &rl);
        }
        if (syscall(SYS_setgroups, o->ngroups, o->groups) != 0 ||
            syscall(SYS_setresgid, o->gid, o->gid, o->gid) != 0 ||
            syscall(SYS_setresuid, o->uid, o->uid, o->uid) != 0)
            return false;
        /* A change of credentials clears the parent-death signal: set it again. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            return false;
    }
    return true;
}

/* The child of jz_node_launch, until it execs the worker: resets signals, takes the event pipe
 * as fd 3, the spec as 4 and the plugin as 5, confines itself and execs. A function of its own
 * so that, after a vfork, its locals live in a frame of their own below the parent's, which the
 * child shares until exec. Its only writes to the parent's memory then are errno and the
 * dynamic linker's lazily bound entries for the functions it calls first. */
static __attribute__((noreturn, noinline)) void become_worker(
    char *worker_path, int ev_pipe, int spec_fd, const struct jz_node_launch_opts *opts,
    pid_t parent)
{
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    setpgid(0, 0); /* terminal signals meant for jazarid do not reach jobs directly */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull > 0) {
        dup2(devnull, 0);
        close(devnull);
    }
    /* Out of the way first: either descriptor may be 3 or 4 already. */
    int ev_fd = fcntl(ev_pipe, F_DUPFD_CLOEXEC, 10);
    int sp_fd = fcntl(spec_fd, F_DUPFD_CLOEXEC, 10);
    int pl_fd = opts && opts->pass_plugin_fd ? fcntl(opts->plugin_fd, F_DUPFD_CLOEXEC, 10) : 0;
    if (ev_fd < 0 || sp_fd < 0 || pl_fd < 0 || dup2(ev_fd, 3) < 0 || dup2(sp_fd, 4) < 0 ||
        (pl_fd > 0 && dup2(pl_fd, 5) < 0))
        _exit(127);
    if (opts && !confine_child(opts, parent))
        _exit(126);
    char *argv[] = {worker_path, "--spec", "/dev/fd/4", "--events-fd", "3", NULL};
    execv(worker_path, argv);
    _exit(127);
}

int jz_node_launch(struct jz_node *n, int spec_fd, const struct jz_node_launch_opts *opts,
                   const struct jz_node_worker_cbs *cbs, void *arg, pid_t *pid_out,
                   struct jz_error *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return jz_error_set(err, JZ_EIO, "pipe: %s", strerror(errno));
    struct worker *w = calloc(1, sizeof *w);
    char *line = malloc(WORKER_LINE_MAX);
    if (!w || !line) {
        free(w);
        free(line);
        close(fds[0]);
        close(fds[1]);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    /* Block every signal across the fork: until the child has reset the handlers, a signal
     * sent to it (a quick cancel) would run one of jazarid's handlers. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t parent = getpid();
    pid_t pid;
    if (opts && opts->set_ids) {
        /* A fork: after the identity switch the job's account may signal the child before it
         * execs, and a vfork parent would wait on a stopped child for good. */
        pid = fork();
    } else {
        /* A vfork: the child runs in this process's memory, and this thread waits, until it
         * execs the worker. A fork copied jazarid's page tables for each worker only to drop
         * them at the exec: a quarter of a launch's time with 14 MB resident, and more as the
         * state grows. */
        pid = vfork();
    }
    if (pid == 0)
        become_worker(n->worker_path, fds[1], spec_fd, opts, parent);
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        free(w);
        free(line);
        close(fds[0]);
        close(fds[1]);
        return jz_error_set(err, JZ_EIO, "fork: %s", strerror(fork_errno));
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    *w = (struct worker){.node = n, .pid = pid, .fd = fds[0], .line = line, .cbs = *cbs,
                         .arg = arg};
    w->ev = event_new(n->base, fds[0], EV_READ | EV_PERSIST, on_worker_readable, w);
    event_add(w->ev, NULL);
    w->next = n->workers;
    n->workers = w;
    *pid_out = pid;
    return 0;
}

int jz_node_signal(struct jz_node *n, pid_t pid, int sig)
{
    for (struct worker *w = n->workers; w; w = w->next)
        if (w->pid == pid && !w->exited)
            return kill(pid, sig) == 0 ? 0 : JZ_EIO;
    return JZ_ENOENT;
}

int jz_node_kill_group(struct jz_node *n, pid_t pid)
{
    for (struct worker *w = n->workers; w; w = w->next)
        if (w->pid == pid) {
            /* The job's group too: a descendant still holding the event pipe keeps the worker
             * "running" for us even after the worker itself has exited. */
            if (w->job_pgid)
                kill(-w->job_pgid, SIGKILL);
            if (!w->exited) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
            }
            return 0;
        }
    return JZ_ENOENT;
}
