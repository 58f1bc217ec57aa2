/* jazari-bench-submit: concurrent clients submitting jobs over HTTP to a fresh jazarid
 * (throughput and latency of durable submissions), then the dispatch latency from submit to
 * RUNNING on an idle node. Prints one JSON object on stdout; progress goes to stderr. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/strutil.h"
#include "common/time.h"
#include "daemon.h"
#include "httpc.h"
#include "stats.h"

#ifndef JZ_BENCH_DEFAULT_TOPOLOGY
#error "JZ_BENCH_DEFAULT_TOPOLOGY must name the default topology fixture"
#endif

#define WARMUP_S 1
#define MAX_CLIENTS 1024
#define MAX_SECONDS 60 /* every job stays queued: jazarid holds ~8 KB per job */
#define MAX_DISPATCH_JOBS 100000
#define IO_TIMEOUT_MS 30000    /* one request; a stuck server fails the run, not hangs it */
#define DISPATCH_WAIT_MS 30000 /* one dispatch job from submit to its end */
#define DISPATCH_POLL_US 200   /* between polls of a dispatch job's record */
#define STOP_GRACE_MS 60000    /* jazarid's shutdown, with tens of thousands of jobs */

/* The throughput phase's job: one GPU each, so 8 start and the rest queue; nothing ends. */
static const char submit_body[] =
    "{\"plugin\":\"batch\",\"name\":\"bench-submit\",\"params\":{\"argv\":[\"sleep\",\"600\"]},"
    "\"resources\":{\"gpus\":1}}";
/* The dispatch phase's job: no GPU, ends at once, so the node is idle for the next one. */
static const char dispatch_body[] =
    "{\"plugin\":\"batch\",\"name\":\"bench-dispatch\",\"params\":{\"argv\":[\"true\"]},"
    "\"resources\":{\"gpus\":0}}";

static volatile sig_atomic_t g_signalled;

static void on_signal(int sig)
{
    g_signalled = sig;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleeps until the monotonic time t_ns; false when a signal asked us to stop. */
static bool sleep_until(int64_t t_ns)
{
    struct timespec ts = {.tv_sec = t_ns / 1000000000LL, .tv_nsec = t_ns % 1000000000LL};
    while (!g_signalled) {
        int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (rc == 0)
            return true;
        if (rc != EINTR)
            return false;
    }
    return false;
}

static double cpu_self_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* --- options ----------------------------------------------------------------------------- */

struct options {
    long clients, seconds, dispatch_jobs;
    char jazarid[4096];
    char topology[4096];
    char confine[130]; /* "SERVICE:JOB" accounts, or "": jazarid in one process, unconfined */
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: jazari-bench-submit [options]\n"
        "Starts a fresh jazarid, measures durable job submissions over HTTP and the\n"
        "dispatch latency on an idle node, and prints one JSON object.\n"
        "  --clients N        concurrent clients, one keep-alive connection each (default 16,\n"
        "                     at most %d)\n"
        "  --seconds S        measured seconds of submitting, after a %d s warm-up (default 5,\n"
        "                     at most %d)\n"
        "  --dispatch-jobs N  jobs for the dispatch latency, one at a time (default 200, at\n"
        "                     most %d; 0 skips that phase)\n"
        "  --jazarid PATH     the jazarid to start (default: next to this program)\n"
        "  --topology FILE    hwloc XML of the node (default: the 8xT4 fixture)\n"
        "  --confine SRV:JOB  as root: jazarid runs as account SRV, its local node agent\n"
        "                     runs jobs as account JOB in cgroups (default: unconfined)\n"
        "  --help             this text\n"
        "Exit status: 0 when every request succeeded, 1 when any failed, 2 for bad options.\n",
        MAX_CLIENTS, WARMUP_S, MAX_SECONDS, MAX_DISPATCH_JOBS);
}


static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_CLIENTS = 256, OPT_SECONDS, OPT_DISPATCH, OPT_JAZARID, OPT_TOPOLOGY, OPT_CONFINE };
    static const struct option opts[] = {
        {"clients", required_argument, NULL, OPT_CLIENTS},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"dispatch-jobs", required_argument, NULL, OPT_DISPATCH},
        {"jazarid", required_argument, NULL, OPT_JAZARID},
        {"topology", required_argument, NULL, OPT_TOPOLOGY},
        {"confine", required_argument, NULL, OPT_CONFINE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.clients = 16, .seconds = 5, .dispatch_jobs = 200};
    char exe_dir[4096];
    if (jz_exe_dir(exe_dir, sizeof exe_dir) != 0)
        snprintf(exe_dir, sizeof exe_dir, ".");
    snprintf(o->jazarid, sizeof o->jazarid, "%.4000s/jazarid", exe_dir);
    jz_strlcpy(o->topology, JZ_BENCH_DEFAULT_TOPOLOGY, sizeof o->topology);
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case OPT_CLIENTS:
            ok = jz_bench_parse_long(optarg, 1, MAX_CLIENTS, &o->clients);
            break;
        case OPT_SECONDS:
            ok = jz_bench_parse_long(optarg, 1, MAX_SECONDS, &o->seconds);
            break;
        case OPT_DISPATCH:
            ok = jz_bench_parse_long(optarg, 0, MAX_DISPATCH_JOBS, &o->dispatch_jobs);
            break;
        case OPT_JAZARID:
            ok = jz_strlcpy(o->jazarid, optarg, sizeof o->jazarid);
            break;
        case OPT_TOPOLOGY:
            ok = jz_strlcpy(o->topology, optarg, sizeof o->topology);
            break;
        case OPT_CONFINE:
            ok = strchr(optarg, ':') && jz_strlcpy(o->confine, optarg, sizeof o->confine);
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "jazari-bench-submit: bad value for --%s: '%s'\n",
                    opts[c - OPT_CLIENTS].name, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "jazari-bench-submit: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* --- phase 1: submission throughput ------------------------------------------------------- */

struct shared {
    int port;
    const char *token;
    int64_t w0_ns, w1_ns; /* the measured window */
    atomic_bool stop;
    atomic_uint_fast64_t ok_live;
};

struct client {
    pthread_t thread;
    struct shared *sh;
    struct jz_lathist hist; /* latencies of the 201s completed inside the window */
    uint64_t ok_window, ok_total, errors;
    char first_error[300];
};

static void client_error(struct client *cl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void client_error(struct client *cl, const char *fmt, ...)
{
    cl->errors++;
    if (cl->first_error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cl->first_error, sizeof cl->first_error, fmt, ap);
    va_end(ap);
}

static void *client_main(void *arg)
{
    struct client *cl = arg;
    struct shared *sh = cl->sh;
    struct jz_httpc conn = {.fd = -1};
    struct jz_error err = {0};
    if (jz_httpc_open(&conn, sh->port, IO_TIMEOUT_MS, &err)) {
        client_error(cl, "%s", err.msg);
        atomic_store(&sh->stop, true);
        return NULL;
    }
    while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
        int64_t t0 = now_ns();
        if (t0 >= sh->w1_ns)
            break;
        int status = 0;
        const char *body;
        size_t blen;
        if (jz_httpc_request(&conn, "POST", "/v1/jobs", sh->token, submit_body, &status, &body,
                             &blen, &err)) {
            /* A broken connection ends the run: the others stop too, and it fails. */
            client_error(cl, "POST /v1/jobs: %s", err.msg);
            atomic_store(&sh->stop, true);
            break;
        }
        int64_t t1 = now_ns();
        if (status != 201) {
            client_error(cl, "POST /v1/jobs answered %d: %.200s", status, body);
            continue;
        }
        cl->ok_total++;
        atomic_fetch_add_explicit(&sh->ok_live, 1, memory_order_relaxed);
        if (t1 >= sh->w0_ns && t1 < sh->w1_ns) {
            cl->ok_window++;
            jz_lathist_add(&cl->hist, (uint64_t)(t1 - t0) / 1000);
        }
    }
    jz_httpc_close(&conn);
    return NULL;
}

struct submit_result {
    bool ran;
    uint64_t ok_window, ok_total, errors;
    double seconds; /* of the measured window; 0 when it never began */
    double p50_ms, p99_ms, max_ms;
    double server_cpu_util, bench_cpu_util; /* cores busy during the window */
};

/* Reads a JSON body; NULL (with a message) when it is not JSON. */
static json_t *parse_body(const char *body, size_t len, char *why, size_t why_len)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    if (!j)
        snprintf(why, why_len, "bad JSON in a response: %s", jerr.text);
    return j;
}

/* Checks the server's own view after the phase: its newest job id must equal the number of
 * 201s (ids are dense from 1), and every GPU must be busy, so the jobs did start. */
static int check_server_view(const struct jz_benchd *d, uint64_t ok_total, struct jz_error *err)
{
    struct jz_httpc conn = {.fd = -1};
    int status = 0, rc = 0;
    const char *body;
    size_t blen;
    char why[200] = "";
    json_t *j = NULL;
    if (jz_httpc_open(&conn, d->port, IO_TIMEOUT_MS, err) ||
        jz_httpc_request(&conn, "GET", "/v1/jobs?order=desc&limit=1", d->token, NULL, &status,
                         &body, &blen, err)) {
        rc = err ? err->code : JZ_EIO;
        goto out;
    }
    if (status != 200 || !(j = parse_body(body, blen, why, sizeof why))) {
        rc = jz_error_set(err, JZ_ECORRUPT, "GET /v1/jobs: status %d %s", status, why);
        goto out;
    }
    json_t *last = json_array_get(json_object_get(j, "jobs"), 0);
    long long max_id = json_integer_value(json_object_get(last, "id"));
    json_decref(j);
    j = NULL;
    if ((uint64_t)max_id != ok_total) {
        rc = jz_error_set(err, JZ_ECORRUPT,
                          "the server's newest job is %lld but clients got %llu 201s", max_id,
                          (unsigned long long)ok_total);
        goto out;
    }
    if (jz_httpc_request(&conn, "GET", "/v1/nodes", d->token, NULL, &status, &body, &blen, err)) {
        rc = err ? err->code : JZ_EIO;
        goto out;
    }
    if (status != 200 || !(j = parse_body(body, blen, why, sizeof why))) {
        rc = jz_error_set(err, JZ_ECORRUPT, "GET /v1/nodes: status %d %s", status, why);
        goto out;
    }
    json_t *node = json_array_get(json_object_get(j, "nodes"), 0);
    long long total = json_integer_value(json_object_get(node, "gpus_total"));
    long long free_gpus = json_integer_value(json_object_get(node, "gpus_free"));
    long long expect_busy = (long long)ok_total < total ? (long long)ok_total : total;
    if (total - free_gpus != expect_busy)
        rc = jz_error_set(err, JZ_ECORRUPT, "%lld of %lld GPUs busy after the phase; expected %lld",
                          total - free_gpus, total, expect_busy);
    else
        fprintf(stderr, "submit: server agrees: %lld jobs, %lld GPUs busy\n", max_id,
                total - free_gpus);
out:
    json_decref(j);
    jz_httpc_close(&conn);
    return rc;
}

/* A jazarid on the topology fixture. The throughput phase queues every job it submits, so the
 * per-user pending limit (100000 by default) must not be what ends a long run. */
static int start_jazarid(const struct options *o, struct jz_benchd *d, struct jz_error *err)
{
    if (access(o->topology, R_OK) != 0)
        return jz_error_set(err, JZ_ENOENT, "cannot read %s: %s (see --topology)", o->topology,
                            strerror(errno));
    char srv[130] = "", job[130] = "";
    if (o->confine[0]) {
        const char *colon = strchr(o->confine, ':');
        snprintf(srv, sizeof srv, "%.*s", (int)(colon - o->confine), o->confine);
        snprintf(job, sizeof job, "%s", colon + 1);
    }
    const char *const extra[] = {"--topology", o->topology, "--max-pending", "10000000",
                                 srv[0] ? "--user" : NULL, srv, "--default-unix-user", job, NULL};
    return jz_benchd_start(d, o->jazarid, extra, NULL, err);
}

static int run_submit_phase(const struct options *o, struct submit_result *res,
                            struct jz_error *err)
{
    struct jz_benchd d = {0};
    struct client *cls = NULL;
    long started = 0;
    int rc = 0;
    fprintf(stderr, "submit: starting jazarid (%s)\n", o->topology);
    if (start_jazarid(o, &d, err))
        return err->code;
    fprintf(stderr, "submit: jazarid pid %d on port %d, state in %s\n", (int)d.pid, d.port, d.dir);

    struct shared sh = {.port = d.port, .token = d.token};
    int64_t t_start = now_ns();
    sh.w0_ns = t_start + WARMUP_S * 1000000000LL;
    sh.w1_ns = sh.w0_ns + o->seconds * 1000000000LL;
    cls = calloc((size_t)o->clients, sizeof *cls);
    if (!cls) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto out;
    }
    double srv0 = -1, self0 = 0; /* CPU times at the start of the window */
    uint64_t prev = 0;
    for (; started < o->clients; started++) {
        cls[started].sh = &sh;
        int e = pthread_create(&cls[started].thread, NULL, client_main, &cls[started]);
        if (e) {
            rc = jz_error_set(err, JZ_EIO, "pthread_create: %s", strerror(e));
            atomic_store(&sh.stop, true);
            goto join;
        }
    }
    fprintf(stderr, "submit: %ld clients, %d s warm-up, then %ld s measured\n", o->clients,
            WARMUP_S, o->seconds);
    for (long k = 1; k <= WARMUP_S + o->seconds; k++) {
        if (!sleep_until(t_start + k * 1000000000LL) || atomic_load(&sh.stop))
            break;
        if (k == WARMUP_S) {
            srv0 = jz_benchd_cpu_s(&d);
            self0 = cpu_self_s();
        }
        uint64_t now_ok = atomic_load(&sh.ok_live);
        fprintf(stderr, "submit: t=%lds %s %llu submits/s\n", k, k <= WARMUP_S ? "(warm-up)" : "",
                (unsigned long long)(now_ok - prev));
        prev = now_ok;
    }
join:;
    /* The window actually measured: shorter than asked when a signal or an error ended it. */
    int64_t t_end = now_ns();
    if (t_end > sh.w1_ns)
        t_end = sh.w1_ns;
    if (srv0 >= 0 && t_end > sh.w0_ns) {
        res->seconds = (double)(t_end - sh.w0_ns) / 1e9;
        res->server_cpu_util = (jz_benchd_cpu_s(&d) - srv0) / res->seconds;
        res->bench_cpu_util = (cpu_self_s() - self0) / res->seconds;
    }
    atomic_store(&sh.stop, true);
    for (long i = 0; i < started; i++)
        pthread_join(cls[i].thread, NULL);
    struct jz_lathist *all = calloc(1, sizeof *all);
    if (!all) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto out;
    }
    const char *first_error = NULL;
    for (long i = 0; i < started; i++) {
        jz_lathist_merge(all, &cls[i].hist);
        res->ok_window += cls[i].ok_window;
        res->ok_total += cls[i].ok_total;
        res->errors += cls[i].errors;
        if (!first_error && cls[i].first_error[0])
            first_error = cls[i].first_error;
    }
    res->ran = true;
    res->p50_ms = jz_lathist_quantile_us(all, 0.50) / 1000.0;
    res->p99_ms = jz_lathist_quantile_us(all, 0.99) / 1000.0;
    res->max_ms = (double)all->max_us / 1000.0;
    free(all);
    fprintf(stderr, "submit: %llu submissions in the window (%llu in all), %llu errors\n",
            (unsigned long long)res->ok_window, (unsigned long long)res->ok_total,
            (unsigned long long)res->errors);
    if (first_error)
        fprintf(stderr, "submit: first error: %s\n", first_error);
    if (g_signalled && !rc)
        rc = jz_error_set(err, JZ_ECANCELED, "stopped by signal %d", (int)g_signalled);
    if (!rc && res->errors == 0 && check_server_view(&d, res->ok_total, err))
        rc = err->code;
out:
    free(cls);
    int64_t s0 = now_ns();
    struct jz_error serr = {0};
    if (jz_benchd_stop(&d, STOP_GRACE_MS, &serr)) {
        fprintf(stderr, "submit: %s; its log ends:\n", serr.msg);
        jz_benchd_dump_log(&d, 2000);
        if (!rc)
            rc = jz_error_set(err, serr.code, "%s", serr.msg);
    } else {
        fprintf(stderr, "submit: jazarid stopped in %.0f ms\n", (double)(now_ns() - s0) / 1e6);
    }
    jz_benchd_cleanup(&d);
    return rc;
}

/* --- phase 2: dispatch latency on an idle node ------------------------------------------- */

struct dispatch_result {
    bool ran;
    long jobs_done;
    uint64_t errors;
    double p50_ms, p99_ms, max_ms; /* start_time - submit_time, from the record */
    double obs_p50_ms, obs_p99_ms; /* client: POST sent until a GET saw it leave PENDING */
};

static bool state_is_final(const char *s)
{
    return strcmp(s, "PENDING") != 0 && strcmp(s, "RUNNING") != 0;
}

/* Submits one job and follows it to its end. Writes the record's dispatch latency and the
 * client's observed one (ms). */
static int dispatch_one(struct jz_httpc *conn, const struct jz_benchd *d, double *rec_ms,
                        double *obs_ms, struct jz_error *err)
{
    int status = 0;
    const char *body;
    size_t blen;
    char why[200] = "";
    int64_t t0 = now_ns();
    if (jz_httpc_request(conn, "POST", "/v1/jobs", d->token, dispatch_body, &status, &body, &blen,
                         err))
        return err->code;
    json_t *j = status == 201 ? parse_body(body, blen, why, sizeof why) : NULL;
    if (!j)
        return jz_error_set(err, JZ_EIO, "POST /v1/jobs answered %d: %.200s %s", status, body, why);
    long long id = json_integer_value(json_object_get(j, "id"));
    json_decref(j);
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%lld", id);
    double observed = -1;
    for (;;) {
        if (jz_httpc_request(conn, "GET", path, d->token, NULL, &status, &body, &blen, err))
            return err->code;
        int64_t t1 = now_ns();
        if (status != 200 || !(j = parse_body(body, blen, why, sizeof why)))
            return jz_error_set(err, JZ_EIO, "GET %s answered %d: %.200s %s", path, status, body,
                                why);
        const char *state = json_string_value(json_object_get(j, "state"));
        if (!state) {
            json_decref(j);
            return jz_error_set(err, JZ_ECORRUPT, "job %lld has no state", id);
        }
        if (observed < 0 && strcmp(state, "PENDING") != 0)
            observed = (double)(t1 - t0) / 1e6;
        if (state_is_final(state)) {
            int rc = 0;
            int64_t submit_ms = 0, start_ms = 0;
            if (strcmp(state, "SUCCEEDED") != 0)
                rc = jz_error_set(err, JZ_EIO, "job %lld ended %s: %.200s", id, state,
                                  json_string_value(json_object_get(j, "reason")));
            else if (jz_time_parse_iso(json_string_value(json_object_get(j, "submit_time")),
                                     &submit_ms, err) ||
                     jz_time_parse_iso(json_string_value(json_object_get(j, "start_time")), &start_ms,
                                     err))
                rc = err->code;
            json_decref(j);
            if (rc)
                return rc;
            *rec_ms = (double)(start_ms - submit_ms);
            *obs_ms = observed;
            return 0;
        }
        json_decref(j);
        if (t1 - t0 > DISPATCH_WAIT_MS * 1000000LL)
            return jz_error_set(err, JZ_ETIMEDOUT, "job %lld still %s after %d ms", id, state,
                                DISPATCH_WAIT_MS);
        if (g_signalled)
            return jz_error_set(err, JZ_ECANCELED, "stopped by signal %d", (int)g_signalled);
        struct timespec ts = {.tv_nsec = DISPATCH_POLL_US * 1000L};
        nanosleep(&ts, NULL);
    }
}

static int run_dispatch_phase(const struct options *o, struct dispatch_result *res,
                              struct jz_error *err)
{
    struct jz_benchd d = {0};
    struct jz_httpc conn = {.fd = -1};
    size_t n = (size_t)o->dispatch_jobs;
    double *rec = calloc(n, sizeof *rec), *obs = calloc(n, sizeof *obs);
    int rc = 0;
    if (!rec || !obs) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto out;
    }
    fprintf(stderr, "dispatch: starting a second, idle jazarid\n");
    if (start_jazarid(o, &d, err) ||
        jz_httpc_open(&conn, d.port, IO_TIMEOUT_MS, err)) {
        rc = err->code;
        goto out;
    }
    res->ran = true;
    for (size_t i = 0; i < n; i++) {
        if (dispatch_one(&conn, &d, &rec[i], &obs[i], err)) {
            res->errors++;
            rc = err->code;
            break;
        }
        res->jobs_done++;
        if ((i + 1) % 50 == 0 || i + 1 == n)
            fprintf(stderr, "dispatch: %zu/%zu jobs\n", i + 1, n);
    }
    size_t done = (size_t)res->jobs_done;
    res->p50_ms = jz_quantile_sorted(rec, done, 0.50);
    res->p99_ms = jz_quantile_sorted(rec, done, 0.99);
    res->max_ms = done ? rec[done - 1] : 0;
    res->obs_p50_ms = jz_quantile_sorted(obs, done, 0.50);
    res->obs_p99_ms = jz_quantile_sorted(obs, done, 0.99);
out:
    jz_httpc_close(&conn);
    if (d.pid) {
        struct jz_error serr = {0};
        if (jz_benchd_stop(&d, STOP_GRACE_MS, &serr)) {
            fprintf(stderr, "dispatch: %s; its log ends:\n", serr.msg);
            jz_benchd_dump_log(&d, 2000);
            if (!rc)
                rc = jz_error_set(err, serr.code, "%s", serr.msg);
        }
    }
    jz_benchd_cleanup(&d);
    free(rec);
    free(obs);
    return rc;
}

/* --- output ------------------------------------------------------------------------------ */

static json_t *ms(double v)
{
    return json_real((double)(long long)(v * 1000.0 + 0.5) / 1000.0);
}

static json_t *ms_or_null(bool have, double v)
{
    return have ? ms(v) : json_null();
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

    struct submit_result sub = {0};
    struct dispatch_result dis = {0};
    struct jz_error err1 = {0}, err2 = {0};
    int rc1 = run_submit_phase(&o, &sub, &err1);
    if (rc1)
        fprintf(stderr, "jazari-bench-submit: submit phase: %s\n", err1.msg);
    int rc2 = 0;
    if (o.dispatch_jobs > 0 && sub.ran && !g_signalled) {
        rc2 = run_dispatch_phase(&o, &dis, &err2);
        if (rc2)
            fprintf(stderr, "jazari-bench-submit: dispatch phase: %s\n", err2.msg);
    }

    bool have_sub = sub.ran && sub.seconds > 0 && sub.ok_window > 0;
    bool have_dis = dis.ran && dis.jobs_done > 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    json_t *out = json_object();
    json_object_set_new(
        out, "submits_per_s",
        have_sub
            ? json_real((double)(long long)((double)sub.ok_window / sub.seconds * 10 + 0.5) / 10)
            : json_null());
    json_object_set_new(out, "submit_p50_ms", ms_or_null(have_sub, sub.p50_ms));
    json_object_set_new(out, "submit_p99_ms", ms_or_null(have_sub, sub.p99_ms));
    json_object_set_new(out, "dispatch_p50_ms", ms_or_null(have_dis, dis.p50_ms));
    json_object_set_new(out, "dispatch_p99_ms", ms_or_null(have_dis, dis.p99_ms));
    json_object_set_new(out, "confined", json_boolean(o.confine[0] != '\0'));
    json_object_set_new(out, "clients", json_integer(o.clients));
    json_object_set_new(out, "seconds", json_integer(o.seconds));
    json_object_set_new(out, "submitted", json_integer((json_int_t)sub.ok_window));
    json_object_set_new(out, "errors", json_integer((json_int_t)(sub.errors + dis.errors)));
    json_object_set_new(out, "dispatch_jobs", json_integer(dis.jobs_done));
    json_object_set_new(out, "measured_s", have_sub ? ms(sub.seconds) : json_null());
    json_object_set_new(out, "submitted_total", json_integer((json_int_t)sub.ok_total));
    json_object_set_new(out, "submit_max_ms", ms_or_null(have_sub, sub.max_ms));
    json_object_set_new(out, "dispatch_max_ms", ms_or_null(have_dis, dis.max_ms));
    json_object_set_new(out, "dispatch_observed_p50_ms", ms_or_null(have_dis, dis.obs_p50_ms));
    json_object_set_new(out, "dispatch_observed_p99_ms", ms_or_null(have_dis, dis.obs_p99_ms));
    json_object_set_new(out, "jazarid_cpu_util", have_sub ? ms(sub.server_cpu_util) : json_null());
    json_object_set_new(out, "bench_cpu_util", have_sub ? ms(sub.bench_cpu_util) : json_null());
    json_object_set_new(out, "machine", json_pack("{s:i}", "cpus", (int)cpus));
    json_dumpf(out, stdout, JSON_REAL_PRECISION(12));
    fputc('\n', stdout);
    fflush(stdout);
    json_decref(out);
    bool failed = rc1 || rc2 || sub.errors || dis.errors || g_signalled;
    return failed ? 1 : 0;
}
