/* jazari-bench-nodes: (1) many simulated node agents registering with a fresh jazarid and
 * heartbeating over one epoll loop (registration rate, jazarid's CPU and memory); (2) trivial
 * jobs end to end through one real jazari-node agent (jobs/s, submit-to-running latency).
 * Prints one JSON object per measurement on stdout; progress goes to stderr. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/strutil.h"
#include "common/time.h"
#include "daemon.h"
#include "httpc.h"
#include "stats.h"

#ifndef JZ_BENCH_DEFAULT_TOPOLOGY
#error "JZ_BENCH_DEFAULT_TOPOLOGY must name the topology fixture"
#endif

#define IO_TIMEOUT_MS 30000
#define REGISTER_TIMEOUT_MS 120000 /* all agents welcomed or refused */
#define MAX_INFLIGHT 128           /* hellos sent but not yet answered, at most */
#define HB_PERIOD_MS 2000
#define NODE_UP_TIMEOUT_MS 30000
#define JOBS_TIMEOUT_MS 300000 /* from the first submit until every job ended */
#define SUBMIT_CLIENTS 8
#define STOP_GRACE_MS 30000

static volatile sig_atomic_t g_signalled;

static void on_signal(int sig)
{
    g_signalled = sig;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !g_signalled)
        ;
}

static double round3(double v)
{
    return (double)(long long)(v * 1000.0 + (v >= 0 ? 0.5 : -0.5)) / 1000.0;
}

/* --- options ----------------------------------------------------------------------------- */

struct options {
    long agents, seconds, jobs, latency_jobs;
    char jazarid[4096], node[4096], plugin_dir[4096], topology[4096];
    char confine[64]; /* "": the agent runs jobs unconfined; else as this Unix account */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: jazari-bench-nodes [options]\n"
            "  --agents N     simulated node agents (default 1000; 0 skips that measurement)\n"
            "  --seconds S    heartbeat window in seconds (default 20)\n"
            "  --jobs N       trivial jobs through one real agent (default 2000; 0 skips)\n"
            "  --latency-jobs N  first, N jobs one at a time on the idle node: submit to\n"
            "                 running without a queue (default 200; 0 skips)\n"
            "  --confine ACCOUNT  the agent (run as root) confines jobs: as ACCOUNT, in\n"
            "                 cgroups (default: unconfined, to compare against)\n"
            "  --help         this text\n"
            "jazarid, jazari-node and the plugins are taken from this program's build tree.\n");
}


static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option opts[] = {
        {"agents", required_argument, NULL, 'a'}, {"seconds", required_argument, NULL, 's'},
        {"jobs", required_argument, NULL, 'j'},   {"help", no_argument, NULL, 'h'},
        {"latency-jobs", required_argument, NULL, 'l'},
        {"confine", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.agents = 1000, .seconds = 20, .jobs = 2000, .latency_jobs = 200};
    char exe_dir[4096];
    if (jz_exe_dir(exe_dir, sizeof exe_dir) != 0)
        snprintf(exe_dir, sizeof exe_dir, ".");
    /* build/bin/jazari-bench-nodes: jazarid next to it, plugins in build/plugins. */
    snprintf(o->jazarid, sizeof o->jazarid, "%.4000s/jazarid", exe_dir);
    snprintf(o->node, sizeof o->node, "%.4000s/jazari-node", exe_dir);
    snprintf(o->plugin_dir, sizeof o->plugin_dir, "%.4000s/../plugins", exe_dir);
    jz_strlcpy(o->topology, JZ_BENCH_DEFAULT_TOPOLOGY, sizeof o->topology);
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'a': ok = jz_bench_parse_long(optarg, 0, 100000, &o->agents); break;
        case 's': ok = jz_bench_parse_long(optarg, 1, 3600, &o->seconds); break;
        case 'j': ok = jz_bench_parse_long(optarg, 0, 10000000, &o->jobs); break;
        case 'l': ok = jz_bench_parse_long(optarg, 0, 100000, &o->latency_jobs); break;
        case 'c': ok = jz_strlcpy(o->confine, optarg, sizeof o->confine); break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
        if (!ok) {
            fprintf(stderr, "jazari-bench-nodes: bad value '%s'\n", optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "jazari-bench-nodes: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* --- jazarid ------------------------------------------------------------------------------ */

/* A jazarid without a local node: jobs run on the agents the benchmark starts. */
static int daemon_start(struct jz_benchd *d, const struct options *o, struct jz_error *err)
{
    const char *const extra[] = {"--no-local-node", "--node-timeout", "30", "--plugin-dir",
                                 o->plugin_dir, o->confine[0] ? "--default-unix-user" : NULL,
                                 o->confine, NULL};
    return jz_benchd_start(d, o->jazarid, extra, NULL, err);
}

static int http_json(struct jz_httpc *c, const char *method, const char *path, const char *token,
                     const char *body, int expect, json_t **out, struct jz_error *err)
{
    int status = 0;
    const char *rbody;
    size_t rlen;
    if (jz_httpc_request(c, method, path, token, body, &status, &rbody, &rlen, err))
        return err->code;
    if (status != expect)
        return jz_error_set(err, JZ_EIO, "%s %s answered %d: %.200s", method, path, status, rbody);
    json_error_t jerr;
    *out = json_loadb(rbody, rlen, 0, &jerr);
    if (!*out)
        return jz_error_set(err, JZ_ECORRUPT, "%s %s: bad JSON: %s", method, path, jerr.text);
    return 0;
}

static int join_token(struct jz_httpc *c, const struct jz_benchd *d, char *tok, size_t len,
                      struct jz_error *err)
{
    json_t *j = NULL;
    if (http_json(c, "POST", "/v1/admin/node-tokens", d->token, "{}", 201, &j, err))
        return err->code;
    const char *t = json_string_value(json_object_get(j, "token"));
    int rc = t && jz_strlcpy(tok, t, len) ? 0 : jz_error_set(err, JZ_ECORRUPT, "no join token");
    json_decref(j);
    return rc;
}

/* Counts nodes in state "up"; when name is set, *named_up tells whether that one is up. */
static int nodes_up(struct jz_httpc *c, const struct jz_benchd *d, const char *name,
                    long *up, long *total, bool *named_up, struct jz_error *err)
{
    json_t *j = NULL;
    if (http_json(c, "GET", "/v1/nodes", d->token, NULL, 200, &j, err))
        return err->code;
    json_t *arr = json_object_get(j, "nodes"), *n;
    size_t i;
    *up = 0;
    *total = (long)json_array_size(arr);
    if (named_up)
        *named_up = false;
    json_array_foreach(arr, i, n) {
        const char *st = json_string_value(json_object_get(n, "state"));
        bool is_up = st && strcmp(st, "up") == 0;
        *up += is_up;
        if (name && named_up && is_up &&
            strcmp(json_string_value(json_object_get(n, "name")) ?: "", name) == 0)
            *named_up = true;
    }
    json_decref(j);
    return 0;
}

/* VmRSS of pid in kB; -1 when unknown. */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* Counts the lines of DIR/NAME that mention "warn" or "error" and prints the first few to
 * stderr, so that a problem in jazarid's behaviour shows up in the results. */
static long log_problems(const char *dir, const char *name, const char *who)
{
    char path[4300], line[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long n = 0;
    while (fgets(line, sizeof line, f))
        if (strcasestr(line, "warn") || strcasestr(line, "error")) {
            if (n++ < 5)
                fprintf(stderr, "%s log: %s", who, line);
        }
    fclose(f);
    return n;
}

/* --- measurement 1: simulated agents ------------------------------------------------------ */

enum agent_state { A_IDLE, A_CONNECTING, A_SENDING, A_WAITING, A_UP, A_REFUSED, A_FAILED };

struct agent {
    int fd;
    enum agent_state st;
    char hdr[80]; /* the hello up to the shared tail: carries the name */
    size_t hdr_len, sent;
    int64_t next_hb;
    char line[1024];
    size_t line_len;
    bool line_overflow;
};

struct agents_result {
    bool ran;
    long agents, registered, refused, failed, disconnected, lines_after_welcome;
    double registration_s, window_s, cpu_pct;
    long rss_after_reg_kb, rss_end_kb, nodes_up, nodes_total;
    uint64_t heartbeats, hb_errors;
    long log_problems;
    char first_problem[300];
};

static void problem(struct agents_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void problem(struct agents_result *r, const char *fmt, ...)
{
    if (r->first_problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->first_problem, sizeof r->first_problem, fmt, ap);
    va_end(ap);
}

static void raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if ((long)rl.rlim_cur >= need)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || (long)rl.rlim_max >= need ? (rlim_t)need
                                                                            : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || (long)rl.rlim_cur < need)
        fprintf(stderr, "agents: warning: RLIMIT_NOFILE is %ld, %ld wanted\n",
                (long)rl.rlim_cur, need);
}

struct sim {
    struct agent *a;
    long n;
    int ep;
    int port;
    const char *tail; /* shared hello tail after the name */
    size_t tail_len;
    long inflight, next_to_start, done; /* done: welcomed, refused or failed */
    struct agents_result *r;
};

static void agent_close(struct sim *s, struct agent *a, enum agent_state st)
{
    if (a->fd >= 0) {
        epoll_ctl(s->ep, EPOLL_CTL_DEL, a->fd, NULL);
        close(a->fd);
        a->fd = -1;
    }
    bool was_pending = a->st == A_CONNECTING || a->st == A_SENDING || a->st == A_WAITING;
    if (was_pending) {
        s->inflight--;
        s->done++;
    }
    if (a->st == A_UP)
        s->r->disconnected++;
    a->st = st;
    if (st == A_FAILED && was_pending)
        s->r->failed++;
}

static void agent_start(struct sim *s, struct agent *a)
{
    a->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    s->inflight++;
    a->st = A_CONNECTING;
    if (a->fd < 0) {
        problem(s->r, "socket: %s", strerror(errno));
        agent_close(s, a, A_FAILED);
        return;
    }
    int one = 1;
    setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(a->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        problem(s->r, "connect: %s", strerror(errno));
        agent_close(s, a, A_FAILED);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = a};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, a->fd, &ev);
}

static void agent_send(struct sim *s, struct agent *a)
{
    size_t total = a->hdr_len + s->tail_len;
    while (a->sent < total) {
        struct iovec iov[2];
        int n = 0;
        if (a->sent < a->hdr_len) {
            iov[n++] = (struct iovec){a->hdr + a->sent, a->hdr_len - a->sent};
            iov[n++] = (struct iovec){(void *)s->tail, s->tail_len};
        } else {
            iov[n++] = (struct iovec){(void *)(s->tail + (a->sent - a->hdr_len)),
                                      total - a->sent};
        }
        ssize_t w = writev(a->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            problem(s->r, "sending a hello: %s", strerror(errno));
            agent_close(s, a, A_FAILED);
            return;
        }
        a->sent += (size_t)w;
    }
    a->st = A_WAITING;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = a};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, a->fd, &ev);
}

static void agent_line(struct sim *s, struct agent *a, int64_t t)
{
    if (a->st != A_WAITING) {
        s->r->lines_after_welcome++;
        return;
    }
    json_t *j = json_loadb(a->line, a->line_len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "t"));
    if (type && strcmp(type, "welcome") == 0) {
        a->st = A_UP;
        s->inflight--;
        s->done++;
        s->r->registered++;
        a->next_hb = t + HB_PERIOD_MS;
    } else {
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        problem(s->r, "hello answered: %.250s", text ? text : a->line);
        free(text);
        s->r->refused += type && strcmp(type, "refuse") == 0;
        if (!(type && strcmp(type, "refuse") == 0))
            s->r->failed++;
        agent_close(s, a, A_REFUSED);
        /* agent_close counted it done; keep failed/refused counts separate */
    }
    json_decref(j);
}

static void agent_read(struct sim *s, struct agent *a, int64_t t)
{
    char buf[8192];
    for (;;) {
        ssize_t r = read(a->fd, buf, sizeof buf);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return;
            problem(s->r, "read: %s", strerror(errno));
            agent_close(s, a, A_FAILED);
            return;
        }
        if (r == 0) {
            if (a->st != A_UP)
                problem(s->r, "jazarid closed a connection before its welcome");
            agent_close(s, a, A_FAILED);
            return;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] == '\n') {
                if (!a->line_overflow)
                    agent_line(s, a, t);
                a->line_len = 0;
                a->line_overflow = false;
                if (a->fd < 0)
                    return;
            } else if (a->line_len + 1 < sizeof a->line) {
                a->line[a->line_len++] = buf[i];
            } else {
                a->line_overflow = true; /* a long frame after the welcome: not ours to read */
            }
        }
    }
}

/* Sends due heartbeats; returns ms until the next is due (capped). */
static void send_heartbeats(struct sim *s, int64_t t)
{
    static const char hb[] = "{\"t\":\"hb\"}\n";
    for (long i = 0; i < s->n; i++) {
        struct agent *a = &s->a[i];
        if (a->st != A_UP || a->next_hb > t)
            continue;
        ssize_t w = write(a->fd, hb, sizeof hb - 1);
        if (w != (ssize_t)(sizeof hb - 1)) {
            s->r->hb_errors++;
            problem(s->r, "heartbeat write: %s", w < 0 ? strerror(errno) : "short");
        } else {
            s->r->heartbeats++;
        }
        a->next_hb += HB_PERIOD_MS;
        if (a->next_hb <= t)
            a->next_hb = t + HB_PERIOD_MS;
    }
}

static void sim_poll(struct sim *s, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(s->ep, evs, 256, timeout_ms);
    int64_t t = now_ms();
    for (int i = 0; i < n; i++) {
        struct agent *a = evs[i].data.ptr;
        if (a->fd < 0)
            continue;
        if (a->st == A_CONNECTING && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            if (soerr) {
                problem(s->r, "connect: %s", strerror(soerr));
                agent_close(s, a, A_FAILED);
                continue;
            }
            a->st = A_SENDING;
        }
        if (a->st == A_SENDING && (evs[i].events & EPOLLOUT))
            agent_send(s, a);
        if (a->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            agent_read(s, a, t);
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        *len = (size_t)n;
    }
    return b;
}

static int run_agents(const struct options *o, struct agents_result *r, struct jz_error *err)
{
    struct jz_benchd d = {0};
    struct jz_httpc c = {.fd = -1};
    struct sim s = {.ep = -1, .r = r, .n = o->agents};
    char tok[256];
    char *tail = NULL;
    int rc = 0;
    r->agents = o->agents;
    raise_nofile(o->agents + 256);
    size_t xml_len;
    char *xml = read_file(o->topology, &xml_len);
    if (!xml)
        return jz_error_set(err, JZ_ENOENT, "cannot read %s", o->topology);
    fprintf(stderr, "agents: starting jazarid\n");
    if (daemon_start(&d, o, err)) {
        free(xml);
        return err->code;
    }
    fprintf(stderr, "agents: jazarid pid %d, port %d, state in %s\n", (int)d.pid, d.port, d.dir);
    json_t *j = NULL;
    if (jz_httpc_open(&c, d.port, IO_TIMEOUT_MS, err) ||
        join_token(&c, &d, tok, sizeof tok, err) ||
        http_json(&c, "GET", "/v1/agent", d.token, NULL, 200, &j, err)) {
        rc = err->code;
        goto out;
    }
    s.port = (int)json_integer_value(json_object_get(j, "port"));
    json_decref(j);
    /* The hello after its name, shared by every agent. */
    json_t *xs = json_string(xml);
    char *xml_json = json_dumps(xs, JSON_ENCODE_ANY);
    json_decref(xs);
    size_t cap = strlen(xml_json) + strlen(tok) + 256;
    tail = malloc(cap);
    s.tail_len = (size_t)snprintf(tail, cap,
                                  ",\"site\":\"\",\"labels\":{},\"topology\":%s,\"running\":[],"
                                  "\"ended\":[],\"join_token\":\"%s\"}\n",
                                  xml_json, tok);
    free(xml_json);
    s.tail = tail;
    s.a = calloc((size_t)s.n, sizeof *s.a);
    s.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!s.a || s.ep < 0) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory or epoll");
        goto out;
    }
    for (long i = 0; i < s.n; i++) {
        s.a[i].fd = -1;
        s.a[i].hdr_len = (size_t)snprintf(s.a[i].hdr, sizeof s.a[i].hdr,
                                          "{\"t\":\"hello\",\"v\":1,\"name\":\"sim-%05ld\"", i);
    }
    r->ran = true;
    fprintf(stderr, "agents: agent port %d; registering %ld agents (at most %d at once)\n",
            s.port, s.n, MAX_INFLIGHT);
    int64_t t0 = now_ms(), last_report = t0;
    while (s.done < s.n && !g_signalled) {
        while (s.next_to_start < s.n && s.inflight < MAX_INFLIGHT)
            agent_start(&s, &s.a[s.next_to_start++]);
        sim_poll(&s, 10);
        int64_t t = now_ms();
        send_heartbeats(&s, t);
        if (t - last_report >= 1000) {
            fprintf(stderr, "agents: %ld welcomed, %ld refused, %ld failed after %.1f s\n",
                    r->registered, r->refused, r->failed, (double)(t - t0) / 1000);
            last_report = t;
        }
        if (t - t0 > REGISTER_TIMEOUT_MS) {
            rc = jz_error_set(err, JZ_ETIMEDOUT, "only %ld of %ld agents answered in %d ms",
                              s.done, s.n, REGISTER_TIMEOUT_MS);
            goto out;
        }
    }
    r->registration_s = (double)(now_ms() - t0) / 1000.0;
    r->rss_after_reg_kb = rss_kb(d.pid);
    fprintf(stderr, "agents: %ld welcomed in %.3f s (%ld refused, %ld failed); heartbeating "
                    "for %ld s\n",
            r->registered, r->registration_s, r->refused, r->failed, o->seconds);
    double cpu0 = jz_benchd_cpu_s(&d);
    int64_t w0 = now_ms(), w1 = w0 + o->seconds * 1000;
    for (int64_t t = w0; t < w1 && !g_signalled; t = now_ms()) {
        sim_poll(&s, (int)(w1 - t < 10 ? w1 - t : 10));
        send_heartbeats(&s, now_ms());
    }
    r->window_s = (double)(now_ms() - w0) / 1000.0;
    double cpu1 = jz_benchd_cpu_s(&d);
    r->cpu_pct = cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) / r->window_s * 100.0 : -1;
    r->rss_end_kb = rss_kb(d.pid);
    if (nodes_up(&c, &d, NULL, &r->nodes_up, &r->nodes_total, NULL, err))
        rc = err->code;
    fprintf(stderr, "agents: %ld of %ld nodes up; %llu heartbeats sent\n", r->nodes_up,
            r->nodes_total, (unsigned long long)r->heartbeats);
out:
    jz_httpc_close(&c);
    if (s.a)
        for (long i = 0; i < s.n; i++)
            if (s.a[i].fd >= 0)
                close(s.a[i].fd);
    if (s.ep >= 0)
        close(s.ep);
    free(s.a);
    free(tail);
    free(xml);
    if (rc)
        jz_benchd_dump_log(&d, 2000);
    struct jz_error serr = {0};
    if (d.dir[0])
        r->log_problems = log_problems(d.dir, "jazarid.log", "agents: jazarid");
    if (jz_benchd_stop(&d, STOP_GRACE_MS, &serr)) {
        fprintf(stderr, "agents: %s\n", serr.msg);
        jz_benchd_dump_log(&d, 2000);
    }
    jz_benchd_cleanup(&d);
    return rc;
}

/* --- measurement 2: trivial jobs through one agent ---------------------------------------- */

static const char job_body[] =
    "{\"plugin\":\"batch\",\"params\":{\"argv\":[\"true\"]},\"resources\":{\"gpus\":1}}";

struct submitter {
    pthread_t thread;
    int port;
    const char *token;
    atomic_long *next;
    long total;
    long ok, errors;
    char first_error[300];
};

static void *submit_main(void *arg)
{
    struct submitter *sb = arg;
    struct jz_httpc c = {.fd = -1};
    struct jz_error err = {0};
    if (jz_httpc_open(&c, sb->port, IO_TIMEOUT_MS, &err)) {
        snprintf(sb->first_error, sizeof sb->first_error, "%s", err.msg);
        sb->errors++;
        return NULL;
    }
    while (!g_signalled && atomic_fetch_add(sb->next, 1) < sb->total) {
        int status = 0;
        const char *body;
        size_t blen;
        if (jz_httpc_request(&c, "POST", "/v1/jobs", sb->token, job_body, &status, &body, &blen,
                             &err) ||
            status != 201) {
            sb->errors++;
            if (!sb->first_error[0])
                snprintf(sb->first_error, sizeof sb->first_error, "POST /v1/jobs: %d %.200s",
                         status, status ? body : err.msg);
            if (!status)
                break; /* the connection is gone */
            continue;
        }
        sb->ok++;
    }
    jz_httpc_close(&c);
    return NULL;
}

struct jobs_result {
    bool ran;
    long jobs, submitted, submit_errors, ended, failed, other_end;
    double submit_s, elapsed_s, jobs_per_s, p50_ms, p99_ms, max_ms;
    long idle_jobs;
    double idle_p50_ms, idle_p99_ms; /* submit -> running, one job at a time */
    long log_problems, node_log_problems;
    char first_problem[300];
};

static bool state_final(const char *s)
{
    return s && strcmp(s, "PENDING") != 0 && strcmp(s, "RUNNING") != 0;
}

struct node_proc {
    pid_t pid;
};

static int node_start(struct node_proc *np, const struct options *o, const struct jz_benchd *d,
                      const char *tok, struct jz_error *err)
{
    char server[64], state[4200], log_path[4200];
    snprintf(server, sizeof server, "http://127.0.0.1:%d", d->port);
    snprintf(state, sizeof state, "%s/node", d->dir);
    snprintf(log_path, sizeof log_path, "%s/node.log", d->dir);
    char *argv[] = {"jazari-node", "--server", server, "--join-token", (char *)tok,
                    "--name", "n1", "--topology", (char *)o->topology, "--state-dir", state,
                    "--plugin-dir", (char *)o->plugin_dir,
                    o->confine[0] ? NULL : "--no-confine", NULL};
    if (o->confine[0])
        chmod(d->dir, 0711); /* the job account passes through to its folder */
    return jz_bench_spawn(o->node, argv, log_path, &np->pid, err);
}

static void node_stop(struct node_proc *np)
{
    if (np->pid <= 0)
        return;
    kill(np->pid, SIGTERM);
    int st;
    for (int waited = 0; waited < STOP_GRACE_MS; waited += 10) {
        if (waitpid(np->pid, &st, WNOHANG) == np->pid) {
            np->pid = 0;
            return;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "jobs: jazari-node did not stop within %d ms; killing it\n", STOP_GRACE_MS);
    kill(-np->pid, SIGKILL);
    kill(np->pid, SIGKILL);
    waitpid(np->pid, &st, 0);
    np->pid = 0;
}


static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_jobs(const struct options *o, struct jobs_result *r, struct jz_error *err)
{
    struct jz_benchd d = {0};
    struct node_proc np = {0};
    struct jz_httpc c = {.fd = -1};
    struct submitter sbs[SUBMIT_CLIENTS];
    long started = 0;
    atomic_long next = 0;
    size_t n = (size_t)o->jobs;
    double *lat = calloc(n, sizeof *lat);
    bool *seen = calloc(n + 1, sizeof *seen);
    int rc = 0;
    r->jobs = o->jobs;
    memset(sbs, 0, sizeof sbs);
    if (!lat || !seen) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto out;
    }
    fprintf(stderr, "jobs: starting a second jazarid\n");
    if (daemon_start(&d, o, err)) {
        rc = err->code;
        goto out;
    }
    char tok[256];
    if (jz_httpc_open(&c, d.port, IO_TIMEOUT_MS, err) ||
        join_token(&c, &d, tok, sizeof tok, err) || node_start(&np, o, &d, tok, err)) {
        rc = err->code;
        goto out;
    }
    fprintf(stderr, "jobs: jazarid pid %d port %d; jazari-node pid %d\n", (int)d.pid, d.port,
            (int)np.pid);
    int64_t t0 = now_ms();
    for (;;) {
        long up, total;
        bool n1_up = false;
        if (nodes_up(&c, &d, "n1", &up, &total, &n1_up, err)) {
            rc = err->code;
            goto out;
        }
        if (n1_up)
            break;
        int st;
        if (waitpid(np.pid, &st, WNOHANG) == np.pid) {
            np.pid = 0;
            rc = jz_error_set(err, JZ_EIO, "jazari-node exited (status %d) before it was up", st);
            goto out;
        }
        if (now_ms() - t0 > NODE_UP_TIMEOUT_MS || g_signalled) {
            rc = jz_error_set(err, JZ_ETIMEDOUT, "node n1 not up within %d ms",
                              NODE_UP_TIMEOUT_MS);
            goto out;
        }
        sleep_ms(50);
    }
    /* Submit -> running on an idle node: one job at a time, each waited for. */
    long long id_base = 0; /* ids taken by these jobs: the throughput jobs come after */
    if (o->latency_jobs > 0) {
        double *idle = calloc((size_t)o->latency_jobs, sizeof *idle);
        size_t ni = 0;
        for (long k = 0; idle && k < o->latency_jobs && !g_signalled; k++) {
            json_t *j = NULL;
            if (http_json(&c, "POST", "/v1/jobs", d.token, job_body, 201, &j, err)) {
                rc = err->code;
                free(idle);
                goto out;
            }
            long long id = json_integer_value(json_object_get(j, "id"));
            json_decref(j);
            id_base = id;
            char path[64];
            snprintf(path, sizeof path, "/v1/jobs/%lld", id);
            for (int64_t w0 = now_ms();;) {
                if (http_json(&c, "GET", path, d.token, NULL, 200, &j, err)) {
                    rc = err->code;
                    free(idle);
                    goto out;
                }
                const char *st = json_string_value(json_object_get(j, "state"));
                if (st && state_final(st)) {
                    int64_t sub = 0, start = 0;
                    const char *ss = json_string_value(json_object_get(j, "submit_time"));
                    const char *rs = json_string_value(json_object_get(j, "start_time"));
                    if (ss && rs && !jz_time_parse_iso(ss, &sub, NULL) &&
                        !jz_time_parse_iso(rs, &start, NULL))
                        idle[ni++] = (double)(start - sub);
                    json_decref(j);
                    break;
                }
                json_decref(j);
                if (now_ms() - w0 > IO_TIMEOUT_MS) {
                    rc = jz_error_set(err, JZ_ETIMEDOUT, "job %lld did not end", id);
                    free(idle);
                    goto out;
                }
                sleep_ms(2);
            }
        }
        qsort(idle, ni, sizeof *idle, cmp_double);
        r->idle_jobs = (long)ni;
        r->idle_p50_ms = jz_quantile_sorted(idle, ni, 0.50);
        r->idle_p99_ms = jz_quantile_sorted(idle, ni, 0.99);
        free(idle);
        fprintf(stderr, "jobs: %zu jobs one at a time: submit -> running p50 %.1f ms\n", ni,
                r->idle_p50_ms);
    }
    fprintf(stderr, "jobs: n1 up after %lld ms; submitting %ld jobs from %d clients\n",
            (long long)(now_ms() - t0), o->jobs, SUBMIT_CLIENTS);
    r->ran = true;
    int64_t first_submit_wall = wall_ms(), s0 = now_ms();
    for (; started < SUBMIT_CLIENTS; started++) {
        sbs[started] = (struct submitter){.port = d.port, .token = d.token, .next = &next,
                                          .total = o->jobs};
        if (pthread_create(&sbs[started].thread, NULL, submit_main, &sbs[started])) {
            rc = jz_error_set(err, JZ_EIO, "pthread_create failed");
            break;
        }
    }
    for (long i = 0; i < started; i++) {
        pthread_join(sbs[i].thread, NULL);
        r->submitted += sbs[i].ok;
        r->submit_errors += sbs[i].errors;
        if (sbs[i].first_error[0] && !r->first_problem[0])
            snprintf(r->first_problem, sizeof r->first_problem, "%s", sbs[i].first_error);
    }
    r->submit_s = (double)(now_ms() - s0) / 1000.0;
    fprintf(stderr, "jobs: %ld submitted in %.3f s (%ld errors)\n", r->submitted, r->submit_s,
            r->submit_errors);
    if (rc)
        goto out;
    /* Wait until no job is left waiting or running: one cheap request (the first such job) per
     * poll, so that the benchmark's own reads do not weigh on jazarid while it works. */
    int64_t last_report = now_ms();
    for (;;) {
        json_t *j = NULL;
        if (http_json(&c, "GET", "/v1/jobs?state=PENDING,RUNNING&limit=1", d.token, NULL, 200,
                      &j, err)) {
            rc = err->code;
            goto out;
        }
        bool done = json_array_size(json_object_get(j, "jobs")) == 0;
        json_decref(j);
        if (done)
            break;
        int64_t t = now_ms();
        if (t - last_report >= 1000) {
            fprintf(stderr, "jobs: still running after %.1f s\n", (double)(t - s0) / 1000);
            last_report = t;
        }
        if (t - s0 > JOBS_TIMEOUT_MS || g_signalled) {
            rc = jz_error_set(err, JZ_ETIMEDOUT, "jobs did not all end in %d ms",
                              JOBS_TIMEOUT_MS);
            goto out;
        }
        sleep_ms(50);
    }
    /* Then one pass over every job for the figures. */
    long long low = id_base; /* every id <= low has ended */
    int64_t max_end = 0;
    size_t nlat = 0;
    while (r->ended < r->submitted) {
        long long after = low;
        bool gap = false;
        for (;;) {
            char path[96];
            snprintf(path, sizeof path, "/v1/jobs?limit=1000&after=%lld", after);
            json_t *j = NULL;
            if (http_json(&c, "GET", path, d.token, NULL, 200, &j, err)) {
                rc = err->code;
                goto out;
            }
            json_t *arr = json_object_get(j, "jobs"), *job;
            size_t i;
            json_array_foreach(arr, i, job) {
                long long id = json_integer_value(json_object_get(job, "id"));
                const char *st = json_string_value(json_object_get(job, "state"));
                if (!state_final(st)) {
                    gap = true;
                    continue;
                }
                if (!gap && id == low + 1)
                    low = id;
                if (id - id_base < 1 || (size_t)(id - id_base) > n || seen[id - id_base])
                    continue;
                seen[id - id_base] = true;
                r->ended++;
                if (strcmp(st, "SUCCEEDED") != 0) {
                    if (strcmp(st, "FAILED") == 0)
                        r->failed++;
                    else
                        r->other_end++;
                    if (!r->first_problem[0]) {
                        char *text = json_dumps(job, JSON_COMPACT);
                        snprintf(r->first_problem, sizeof r->first_problem, "job %lld: %.250s",
                                 id, text ? text : st);
                        free(text);
                    }
                }
                int64_t sub_ms = 0, start_ms = 0, end_ms = 0;
                const char *ss = json_string_value(json_object_get(job, "submit_time"));
                const char *rs = json_string_value(json_object_get(job, "start_time"));
                const char *es = json_string_value(json_object_get(job, "end_time"));
                if (ss && rs && !jz_time_parse_iso(ss, &sub_ms, NULL) &&
                    !jz_time_parse_iso(rs, &start_ms, NULL))
                    lat[nlat++] = (double)(start_ms - sub_ms);
                if (es && !jz_time_parse_iso(es, &end_ms, NULL) && end_ms > max_end)
                    max_end = end_ms;
            }
            json_t *na = json_object_get(j, "next_after");
            bool more = json_is_integer(na);
            after = more ? json_integer_value(na) : after;
            json_decref(j);
            if (!more)
                break;
        }
        int64_t t = now_ms();
        if (r->ended >= r->submitted)
            break;
        if (t - last_report >= 1000) {
            fprintf(stderr, "jobs: %ld of %ld ended after %.1f s\n", r->ended, r->submitted,
                    (double)(t - s0) / 1000);
            last_report = t;
        }
        if (t - s0 > JOBS_TIMEOUT_MS || g_signalled) {
            rc = jz_error_set(err, JZ_ETIMEDOUT, "only %ld of %ld jobs ended in %d ms", r->ended,
                              r->submitted, JOBS_TIMEOUT_MS);
            goto out;
        }
        sleep_ms(100);
    }
    r->elapsed_s = (double)(max_end - first_submit_wall) / 1000.0;
    r->jobs_per_s = r->elapsed_s > 0 ? (double)r->ended / r->elapsed_s : 0;
    qsort(lat, nlat, sizeof *lat, cmp_double);
    r->p50_ms = jz_quantile_sorted(lat, nlat, 0.50);
    r->p99_ms = jz_quantile_sorted(lat, nlat, 0.99);
    r->max_ms = nlat ? lat[nlat - 1] : 0;
    fprintf(stderr, "jobs: all %ld ended, the last %.3f s after the first submit (%ld FAILED)\n",
            r->ended, r->elapsed_s, r->failed);
out:
    jz_httpc_close(&c);
    if (rc && d.dir[0]) {
        char p[4300];
        snprintf(p, sizeof p, "%s/node.log", d.dir);
        fprintf(stderr, "--- jazari-node log tail ---\n");
        jz_bench_dump_file(p, 2000);
        fprintf(stderr, "--- jazarid log tail ---\n");
        jz_benchd_dump_log(&d, 2000);
    }
    node_stop(&np);
    if (d.dir[0]) {
        r->log_problems = log_problems(d.dir, "jazarid.log", "jobs: jazarid");
        r->node_log_problems = log_problems(d.dir, "node.log", "jobs: jazari-node");
    }
    struct jz_error serr = {0};
    if (jz_benchd_stop(&d, STOP_GRACE_MS, &serr)) {
        fprintf(stderr, "jobs: %s\n", serr.msg);
        jz_benchd_dump_log(&d, 2000);
    }
    jz_benchd_cleanup(&d);
    free(lat);
    free(seen);
    return rc;
}

/* --- main -------------------------------------------------------------------------------- */

static void print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_REAL_PRECISION(12));
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(o);
}

int main(int argc, char **argv)
{
    struct options o;
    int prc = parse_options(argc, argv, &o);
    if (prc)
        return prc > 0 ? 0 : 2;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    bool failed = false;

    if (o.agents > 0) {
        struct agents_result r = {0};
        struct jz_error err = {0};
        int rc = run_agents(&o, &r, &err);
        if (rc)
            fprintf(stderr, "jazari-bench-nodes: agents: %s\n", err.msg);
        if (r.first_problem[0])
            fprintf(stderr, "jazari-bench-nodes: agents: first problem: %s\n", r.first_problem);
        bool have = r.ran && !rc;
        json_t *j = json_object();
        json_object_set_new(j, "measurement", json_string("agents"));
        json_object_set_new(j, "agents", json_integer(r.agents));
        json_object_set_new(j, "registered", json_integer(r.registered));
        json_object_set_new(j, "refused", json_integer(r.refused));
        json_object_set_new(j, "failed", json_integer(r.failed));
        json_object_set_new(j, "registration_s", have ? json_real(round3(r.registration_s))
                                                      : json_null());
        json_object_set_new(j, "registrations_per_s",
                            have && r.registration_s > 0
                                ? json_real(round3((double)r.registered / r.registration_s))
                                : json_null());
        json_object_set_new(j, "heartbeat_window_s", have ? json_real(round3(r.window_s))
                                                          : json_null());
        json_object_set_new(j, "heartbeats_sent", json_integer((json_int_t)r.heartbeats));
        json_object_set_new(j, "heartbeat_errors", json_integer((json_int_t)r.hb_errors));
        json_object_set_new(j, "disconnected", json_integer(r.disconnected));
        json_object_set_new(j, "jazarid_cpu_pct", have && r.cpu_pct >= 0
                                                      ? json_real(round3(r.cpu_pct))
                                                      : json_null());
        json_object_set_new(j, "jazarid_rss_kb_after_registration",
                            json_integer(r.rss_after_reg_kb));
        json_object_set_new(j, "jazarid_rss_kb_end", json_integer(r.rss_end_kb));
        json_object_set_new(j, "nodes_up", json_integer(r.nodes_up));
        json_object_set_new(j, "nodes_listed", json_integer(r.nodes_total));
        json_object_set_new(j, "jazarid_log_warnings", json_integer(r.log_problems));
        print_json(j);
        failed |= rc || r.registered != r.agents || r.nodes_up != r.agents || r.hb_errors ||
                  r.disconnected;
    }
    if (o.jobs > 0 && !g_signalled) {
        struct jobs_result r = {0};
        struct jz_error err = {0};
        int rc = run_jobs(&o, &r, &err);
        if (rc)
            fprintf(stderr, "jazari-bench-nodes: jobs: %s\n", err.msg);
        if (r.first_problem[0])
            fprintf(stderr, "jazari-bench-nodes: jobs: first problem: %s\n", r.first_problem);
        bool have = r.ran && !rc && r.ended > 0;
        json_t *j = json_object();
        json_object_set_new(j, "measurement", json_string("jobs"));
        json_object_set_new(j, "confined_as", o.confine[0] ? json_string(o.confine) : json_null());
        json_object_set_new(j, "jobs", json_integer(r.jobs));
        json_object_set_new(j, "clients", json_integer(SUBMIT_CLIENTS));
        json_object_set_new(j, "submitted", json_integer(r.submitted));
        json_object_set_new(j, "submit_errors", json_integer(r.submit_errors));
        json_object_set_new(j, "ended", json_integer(r.ended));
        json_object_set_new(j, "failed", json_integer(r.failed));
        json_object_set_new(j, "other_unsuccessful", json_integer(r.other_end));
        json_object_set_new(j, "jobs_per_s", have ? json_real(round3(r.jobs_per_s))
                                                  : json_null());
        json_object_set_new(j, "elapsed_s", have ? json_real(round3(r.elapsed_s)) : json_null());
        json_object_set_new(j, "submit_s", r.ran ? json_real(round3(r.submit_s)) : json_null());
        json_object_set_new(j, "submit_to_running_p50_ms",
                            have ? json_real(round3(r.p50_ms)) : json_null());
        json_object_set_new(j, "submit_to_running_p99_ms",
                            have ? json_real(round3(r.p99_ms)) : json_null());
        json_object_set_new(j, "submit_to_running_max_ms",
                            have ? json_real(round3(r.max_ms)) : json_null());
        json_object_set_new(j, "idle_jobs", json_integer(r.idle_jobs));
        json_object_set_new(j, "idle_submit_to_running_p50_ms",
                            r.idle_jobs ? json_real(round3(r.idle_p50_ms)) : json_null());
        json_object_set_new(j, "idle_submit_to_running_p99_ms",
                            r.idle_jobs ? json_real(round3(r.idle_p99_ms)) : json_null());
        json_object_set_new(j, "jazarid_log_warnings", json_integer(r.log_problems));
        json_object_set_new(j, "node_log_warnings", json_integer(r.node_log_problems));
        print_json(j);
        failed |= rc || r.submit_errors || r.failed || r.other_end || r.ended != r.jobs;
    }
    return failed || g_signalled ? 1 : 0;
}
