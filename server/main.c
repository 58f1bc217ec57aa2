/* jazarid: the Jazari job service. One libevent loop serves the REST API, drives the local node
 * and commits every loop iteration's changes to the store together. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "scheduler/config.h"
#include "scheduler/sched.h"
#include "server/auth.h"
#include "server/front.h"
#include "server/http.h"
#include "server/jobs.h"
#include "server/ledger.h"
#include "server/nodes.h"
#include "server/plugins.h"
#include "server/privsep.h"
#include "server/server.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: jazarid [options]\n"
            "  --listen HOST:PORT     address to serve the REST API on (default 127.0.0.1:8600;\n"
            "                         port 0 picks a free port, printed at start-up)\n"
            "  --state-dir DIR        database, job files and admin.token (default ./jazari-state)\n"
            "  --topology FILE.xml    declare the local node's GPUs from an hwloc XML file\n"
            "                         (default: discover this machine)\n"
            "  --no-local-node        run jobs on jazari-node agents only\n"
            "  --site SITE            the local node's site (default: default)\n"
            "  --agent-listen H:P     where node agents connect (default: the API's host, a\n"
            "                         free port, published at GET /v1/agent)\n"
            "  --node-timeout SECONDS a node silent this long is down (default 10)\n"
            "  --plugin-dir DIRS      ':'-separated plugin folders (default: the built-in ones)\n"
            "  --worker PATH          the jazari-worker executable (default: next to jazarid)\n"
            "  --fallback-backend B   backend for declared GPUs: cpu or opencl (default cpu)\n"
            "  --kill-grace SECONDS   TERM-to-KILL grace for cancel and time limits (default 10)\n"
            "  --max-pending N        pending jobs allowed per user (default 100000)\n"
            "  --user ACCOUNT         started as root: run as ACCOUNT (default jazari); the\n"
            "                         local node agent stays root to confine jobs; 'root'\n"
            "                         keeps everything as root, jobs unconfined\n"
            "  --node-dir DIR         the confined local node's folder (default STATE-DIR-node)\n"
            "  --default-unix-user A  the Unix account jobs of users without one run as on\n"
            "                         confining nodes (default: none; such jobs fail)\n"
            "  --tls-cert FILE        serve the API and node agents over TLS with this PEM\n"
            "                         certificate chain (with --tls-key FILE, its key)\n"
            "  --tls-key FILE         the certificate's private key (PEM, unencrypted)\n"
            "  --allow-plain-http     serve without TLS on an address other than loopback\n"
            "  --max-connections N    API connections at once; accepting pauses at the cap\n"
            "                         (default: from the descriptor limit, at most 4096)\n"
            "  --idle-timeout SECONDS close an API connection silent this long (default 60)\n"
            "  --rate-limit N[/s]     requests per second per token, or per client address\n"
            "                         without one (default 50; 0: no limit; admins exempt)\n"
            "  --rate-burst N         requests allowed at once above the rate (default 200)\n"
            "  --max-log-streams N    'logs -f' streams open at once per user (default 16)\n"
            "  --config FILE.json     configuration file\n"
            "  --port-file FILE       write the bound port here once listening (written as\n"
            "                         the --user account)\n"
            "  --log-level LEVEL      error, warn, info (default) or debug\n");
}

/* A whole decimal number in [min, max]. */
static bool parse_count(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "N" or "N/s" requests per second (N may have a fraction; 0 turns rate limiting off). */
static bool parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0 && v <= 1e6) || (*end && strcmp(end, "/s") != 0))
        return false;
    *out = v;
    return true;
}

static int parse_listen(const char *s, struct jz_server_config *cfg)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= sizeof cfg->listen_host)
        return -1;
    memcpy(cfg->listen_host, s, hlen);
    cfg->listen_host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -1;
    cfg->listen_port = (int)port;
    return 0;
}

/* What waits for one sealed store batch: replies to send and jobs to launch. */
struct jz_batch_waiter {
    struct jz_batch_waiter *next;
    uint64_t seq;
    struct jz_deferred_reply *replies;
    struct jz_job *placed;
};

/* End of a loop iteration's work: decide, seal the batch, and let the writer thread make it
 * durable while the loop goes on. */
static void on_commit(evutil_socket_t fd, short what, void *arg)
{
    struct jz_server *srv = arg;
    /* Decisions (and records changed by worker events) first, so that they are in this batch. */
    if (!srv->stopping)
        jz_jobs_schedule(srv->jobs);
    else
        jz_jobs_flush(srv->jobs);
    struct jz_batch_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        jz_log_error("jazarid", "out of memory; retrying the commit");
        jz_server_request_commit(srv);
        return;
    }
    w->seq = srv->store->ops->seal(srv->store);
    w->replies = jz_http_take_deferred(srv);
    w->placed = jz_jobs_take_placed(srv->jobs);
    *srv->waiters_tail = w;
    srv->waiters_tail = &w->next;
}

static void on_batch_done(void *arg, uint64_t seq, bool ok)
{
    struct jz_server *srv = arg;
    if (!ok && !srv->store_failed) {
        /* The loop's state now holds changes the database refused. Acknowledge nothing more
         * and stop: a restart recovers from the last durable state. */
        jz_log_error("store", "batch %llu could not be made durable after retries; stopping "
                              "so that a restart recovers from the database",
                     (unsigned long long)seq);
        srv->store_failed = srv->stopping = true;
        event_base_loopbreak(srv->base);
        return;
    }
    if (srv->store_failed)
        return;
    while (srv->waiters_head && srv->waiters_head->seq <= seq) {
        struct jz_batch_waiter *w = srv->waiters_head;
        srv->waiters_head = w->next;
        if (!srv->waiters_head)
            srv->waiters_tail = &srv->waiters_head;
        jz_http_send_deferred(w->replies, ok);
        jz_jobs_launch(srv->jobs, w->placed, ok);
        free(w);
    }
    /* A graceful stop ends once every acknowledged change is durable and answered; a short
     * delay lets the replies leave. */
    if (srv->stopping && !srv->waiters_head && !srv->store->ops->busy(srv->store)) {
        struct timeval flush = {.tv_sec = 0, .tv_usec = 200 * 1000};
        event_base_loopexit(srv->base, &flush);
    }
}

static void on_store_done(evutil_socket_t fd, short what, void *arg)
{
    struct jz_server *srv = arg;
    srv->store->ops->completions(srv->store, on_batch_done, srv);
}

void jz_server_request_commit(struct jz_server *srv)
{
    if (srv->commit_ev && !event_pending(srv->commit_ev, EV_TIMEOUT, NULL))
        event_active(srv->commit_ev, EV_TIMEOUT, 0);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct jz_server *srv = arg;
    if (srv->stopping) {
        jz_log_info("jazarid", "signal %d again: stopping now", (int)sig);
        event_base_loopbreak(srv->base);
        return;
    }
    jz_log_info("jazarid", "signal %d: stopping once pending changes are durable", (int)sig);
    /* New requests get 503; what was acknowledged or placed is made durable and answered
     * first (jobs placed but not yet started go back to the queue), then the loop ends. */
    srv->stopping = true;
    jz_http_stop_accepting(srv);
    jz_server_request_commit(srv);
    struct timeval limit = {.tv_sec = 10};
    event_base_loopexit(srv->base, &limit);
}

/* The configuration file's "limits" object: what one job may write and run, and the free disk
 * every node keeps (docs/security.md). Unknown keys and wrong types are errors naming them. */
static int parse_limits(struct jz_server *srv, struct jz_error *err)
{
    struct jz_server_config *cfg = &srv->cfg;
    struct {
        const char *key;
        int64_t *dst;
        int64_t scale, max;
    } keys[] = {
        {"log_bytes", &cfg->log_max_bytes, 1, 1LL << 50},
        {"output_bytes", &cfg->output_max_bytes, 1, 1LL << 50},
        {"pids", &cfg->pids_max, 1, 1 << 22},
        {"params_bytes", &cfg->params_max_bytes, 1, JZ_MAX_BODY_BYTES},
        {"min_free_mb", &cfg->min_free_bytes, 1 << 20, 1 << 30},
    };
    json_t *lim = json_object_get(srv->config, "limits");
    if (!lim)
        return 0;
    if (!json_is_object(lim))
        return jz_error_set(err, JZ_EINVAL, "config: \"limits\" must be an object");
    const char *k;
    json_t *v;
    json_object_foreach(lim, k, v) {
        if (strcmp(k, "retention_days") == 0) { /* days, fractions allowed */
            double days = json_number_value(v);
            if (!json_is_number(v) || days < 0 || days > 36500)
                return jz_error_set(err, JZ_EINVAL, "config: limits.retention_days must be a "
                                                    "number of days from 0 to 36500 (0: keep)");
            cfg->retention_s = (int64_t)(days * 86400.0 + 0.5);
            if (days > 0 && cfg->retention_s == 0)
                cfg->retention_s = 1;
            continue;
        }
        size_t i = 0;
        while (i < sizeof keys / sizeof keys[0] && strcmp(keys[i].key, k) != 0)
            i++;
        if (i == sizeof keys / sizeof keys[0])
            return jz_error_set(err, JZ_EINVAL, "config: unknown key limits.%.60s", k);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > keys[i].max)
            return jz_error_set(err, JZ_EINVAL,
                                "config: limits.%s must be an integer from 0 to %lld (0: none)",
                                k, (long long)keys[i].max);
        *keys[i].dst = (int64_t)json_integer_value(v) * keys[i].scale;
    }
    return 0;
}

/* The policy from the configuration file's "scheduler" object (docs/scheduler.md), the nodes
 * (known ones from the store, the local one), then the reservations, which name nodes. */
static int open_scheduler(struct jz_server *srv, struct jz_error *err)
{
    struct jz_sched_parsed *pc = NULL;
    int rc = jz_sched_config_parse(json_object_get(srv->config, "scheduler"), &pc, err);
    if (!rc)
        rc = jz_sched_create(&pc->cfg, &srv->sched, err);
    if (!rc)
        rc = jz_nodes_open(srv, &srv->nodes, err);
    for (size_t i = 0; !rc && i < pc->reservation_count; i++)
        rc = jz_sched_reservation_add(srv->sched, &pc->reservations[i], err);
    jz_sched_parsed_free(pc);
    return rc;
}

static int write_port_file(const char *path, int port)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

int main(int argc, char **argv)
{
    static struct jz_server srv; /* large (paths); one per process */
    struct jz_server_config *cfg = &srv.cfg;
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8600;
    snprintf(cfg->state_dir, sizeof cfg->state_dir, "jazari-state");
    snprintf(cfg->fallback_backend, sizeof cfg->fallback_backend, "cpu");
    cfg->kill_grace_s = 10;
    cfg->max_pending_per_user = 100000;
    cfg->node_timeout_s = JZ_NODE_DEFAULT_TIMEOUT_S;
    cfg->idle_timeout_s = JZ_DEFAULT_IDLE_TIMEOUT_S;
    cfg->rate_per_s = JZ_DEFAULT_RATE_PER_S;
    cfg->rate_burst = JZ_DEFAULT_RATE_BURST;
    cfg->max_log_streams = JZ_DEFAULT_LOG_STREAMS;
    /* Defaults of the limits on what a job writes and runs (docs/security.md). */
    cfg->log_max_bytes = 1LL << 30;
    cfg->output_max_bytes = 64LL << 30;
    cfg->pids_max = 4096;
    cfg->params_max_bytes = 64 * 1024;
    cfg->retention_s = 90LL * 86400;
    cfg->min_free_bytes = 256LL << 20;
    const char *port_file = NULL;
    int level = JZ_SEV_INFO;
    const char *log_level_name = "info";
    char default_account[64] = "";

    enum { OPT_LISTEN = 256, OPT_STATE, OPT_TOPO, OPT_PLUGINS, OPT_WORKER, OPT_FALLBACK,
           OPT_GRACE, OPT_MAXPEND, OPT_CONFIG, OPT_PORTFILE, OPT_LOGLEVEL, OPT_AGENT_LISTEN,
           OPT_NODE_TIMEOUT, OPT_NO_LOCAL, OPT_SITE, OPT_USER, OPT_NODE_DIR,
           OPT_TLS_CERT, OPT_TLS_KEY, OPT_PLAIN, OPT_MAXCONN, OPT_IDLE, OPT_RATE, OPT_BURST,
           OPT_STREAMS, OPT_DEFAULT_ACCOUNT };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"state-dir", required_argument, NULL, OPT_STATE},
        {"topology", required_argument, NULL, OPT_TOPO},
        {"plugin-dir", required_argument, NULL, OPT_PLUGINS},
        {"worker", required_argument, NULL, OPT_WORKER},
        {"fallback-backend", required_argument, NULL, OPT_FALLBACK},
        {"kill-grace", required_argument, NULL, OPT_GRACE},
        {"max-pending", required_argument, NULL, OPT_MAXPEND},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"port-file", required_argument, NULL, OPT_PORTFILE},
        {"log-level", required_argument, NULL, OPT_LOGLEVEL},
        {"agent-listen", required_argument, NULL, OPT_AGENT_LISTEN},
        {"node-timeout", required_argument, NULL, OPT_NODE_TIMEOUT},
        {"no-local-node", no_argument, NULL, OPT_NO_LOCAL},
        {"site", required_argument, NULL, OPT_SITE},
        {"user", required_argument, NULL, OPT_USER},
        {"node-dir", required_argument, NULL, OPT_NODE_DIR},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"allow-plain-http", no_argument, NULL, OPT_PLAIN},
        {"max-connections", required_argument, NULL, OPT_MAXCONN},
        {"idle-timeout", required_argument, NULL, OPT_IDLE},
        {"rate-limit", required_argument, NULL, OPT_RATE},
        {"rate-burst", required_argument, NULL, OPT_BURST},
        {"max-log-streams", required_argument, NULL, OPT_STREAMS},
        {"default-unix-user", required_argument, NULL, OPT_DEFAULT_ACCOUNT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case OPT_LISTEN: ok = parse_listen(optarg, cfg) == 0; break;
        case OPT_STATE: ok = jz_strlcpy(cfg->state_dir, optarg, sizeof cfg->state_dir); break;
        case OPT_TOPO: ok = jz_strlcpy(cfg->topology_path, optarg, sizeof cfg->topology_path); break;
        case OPT_PLUGINS: ok = jz_strlcpy(cfg->plugin_dir, optarg, sizeof cfg->plugin_dir); break;
        case OPT_WORKER: ok = jz_strlcpy(cfg->worker_path, optarg, sizeof cfg->worker_path); break;
        case OPT_FALLBACK:
            ok = strcmp(optarg, "cpu") == 0 || strcmp(optarg, "opencl") == 0;
            jz_strlcpy(cfg->fallback_backend, optarg, sizeof cfg->fallback_backend);
            break;
        case OPT_GRACE: cfg->kill_grace_s = strtoll(optarg, NULL, 10); ok = cfg->kill_grace_s >= 0 && cfg->kill_grace_s <= 3600; break;
        case OPT_MAXPEND: cfg->max_pending_per_user = strtoll(optarg, NULL, 10); ok = cfg->max_pending_per_user > 0; break;
        case OPT_CONFIG: ok = jz_strlcpy(cfg->config_path, optarg, sizeof cfg->config_path); break;
        case OPT_PORTFILE: port_file = optarg; break;
        case OPT_LOGLEVEL:
            level = jz_log_level_parse(optarg);
            ok = level >= 0;
            log_level_name = optarg;
            break;
        case OPT_AGENT_LISTEN: {
            struct jz_server_config probe = {0};
            ok = parse_listen(optarg, &probe) == 0 &&
                 jz_strlcpy(cfg->agent_listen, optarg, sizeof cfg->agent_listen);
            break;
        }
        case OPT_NODE_TIMEOUT: cfg->node_timeout_s = strtoll(optarg, NULL, 10); ok = cfg->node_timeout_s >= 1 && cfg->node_timeout_s <= 86400; break;
        case OPT_NO_LOCAL: cfg->no_local_node = true; break;
        case OPT_USER: ok = jz_strlcpy(cfg->run_as, optarg, sizeof cfg->run_as); break;
        case OPT_NODE_DIR: ok = jz_strlcpy(cfg->node_dir, optarg, sizeof cfg->node_dir); break;
        case OPT_DEFAULT_ACCOUNT:
            ok = jz_auth_unix_user_valid(optarg) &&
                 jz_strlcpy(default_account, optarg, sizeof default_account);
            break;
        case OPT_SITE: ok = jz_name_is_safe(optarg, 63) && jz_strlcpy(cfg->local_site, optarg, sizeof cfg->local_site); break;
        case OPT_TLS_CERT: ok = *optarg && jz_strlcpy(cfg->tls_cert, optarg, sizeof cfg->tls_cert); break;
        case OPT_TLS_KEY: ok = *optarg && jz_strlcpy(cfg->tls_key, optarg, sizeof cfg->tls_key); break;
        case OPT_PLAIN: cfg->allow_plain_http = true; break;
        case OPT_MAXCONN: ok = parse_count(optarg, 1, 1000000, &cfg->max_connections); break;
        case OPT_IDLE: ok = parse_count(optarg, 1, 86400, &cfg->idle_timeout_s); break;
        case OPT_RATE: ok = parse_rate(optarg, &cfg->rate_per_s); break;
        case OPT_BURST: {
            int64_t burst = 0;
            ok = parse_count(optarg, 1, 1000000, &burst);
            cfg->rate_burst = (double)burst;
            break;
        }
        case OPT_STREAMS: ok = parse_count(optarg, 1, 1024, &cfg->max_log_streams); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "jazarid: bad value for --%s: '%s'\n", opts[c - OPT_LISTEN].name,
                    optarg ? optarg : "");
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "jazarid: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    jz_log_init(stderr, (enum jz_log_sev)level);
    signal(SIGPIPE, SIG_IGN);

    char exe_dir[4096];
    if (jz_exe_dir(exe_dir, sizeof exe_dir) != 0)
        snprintf(exe_dir, sizeof exe_dir, ".");
    if (!cfg->worker_path[0])
        snprintf(cfg->worker_path, sizeof cfg->worker_path, "%.4000s/jazari-worker", exe_dir);
    if (!cfg->plugin_dir[0]) {
        /* Build tree (build/bin -> build/plugins), else the installed location. */
        char build_dir[4200];
        struct stat st;
        snprintf(build_dir, sizeof build_dir, "%.4000s/../plugins", exe_dir);
        if (stat(build_dir, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(cfg->plugin_dir, sizeof cfg->plugin_dir, "%s", build_dir);
        else
            snprintf(cfg->plugin_dir, sizeof cfg->plugin_dir, "%.4000s/../lib/jazari/plugins",
                     exe_dir);
    }

    struct jz_error err = {0};
    srv.config = json_object();
    if (cfg->config_path[0]) {
        json_decref(srv.config);
        srv.config = jz_json_load_file(cfg->config_path, 1024 * 1024, &err);
        if (!srv.config || !json_is_object(srv.config)) {
            fprintf(stderr, "jazarid: config %s: %s\n", cfg->config_path,
                    srv.config ? "must be a JSON object" : err.msg);
            return 2;
        }
    }
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/jobs", cfg->state_dir);
    if (jz_mkdir_p(sub, 0750) != 0) {
        fprintf(stderr, "jazarid: cannot create state directory %s: %s\n", cfg->state_dir,
                strerror(errno));
        return 1;
    }
    char abs_state[PATH_MAX];
    if (!realpath(cfg->state_dir, abs_state)) {
        fprintf(stderr, "jazarid: %s: %s\n", cfg->state_dir, strerror(errno));
        return 1;
    }
    jz_strlcpy(cfg->state_dir, abs_state, sizeof cfg->state_dir);
    /* Job paths below it go to the worker, which takes paths of JZ_MAX_PATH_LEN bytes. */
    if (strlen(cfg->state_dir) > JZ_MAX_PATH_LEN - 100) {
        fprintf(stderr, "jazarid: --state-dir %s is too long (at most %d bytes)\n",
                cfg->state_dir, JZ_MAX_PATH_LEN - 100);
        return 2;
    }
    if (default_account[0]) /* the option wins over the file */
        json_object_set_new(srv.config, "default_unix_user", json_string(default_account));
    json_t *dflt_acct = json_object_get(srv.config, "default_unix_user");
    if (dflt_acct && (!json_is_string(dflt_acct) ||
                      !jz_auth_unix_user_valid(json_string_value(dflt_acct)))) {
        fprintf(stderr, "jazarid: config: default_unix_user must be a Unix account name\n");
        return 2;
    }
    if (parse_limits(&srv, &err)) {
        fprintf(stderr, "jazarid: %s\n", err.msg);
        return 2;
    }
    if (!cfg->node_dir[0])
        snprintf(cfg->node_dir, sizeof cfg->node_dir, "%.4000s-node", cfg->state_dir);
    /* Nothing jazarid writes is for anyone else: the database, logs, tokens. */
    umask(077);
    char dbpath[4200];
    snprintf(dbpath, sizeof dbpath, "%s/jazari.db", cfg->state_dir);

    int rc = 1;
    srv.local_agent_fd = -1;
    srv.deferred_tail = &srv.deferred_head;
    srv.waiters_tail = &srv.waiters_head;
    srv.base = event_base_new();
    if (!srv.base) {
        fprintf(stderr, "jazarid: cannot create the event loop\n");
        return 1;
    }
    srv.commit_ev = event_new(srv.base, -1, 0, on_commit, &srv);
    /* The API listens (a port below 1024 may need root) and reads its TLS key (readable by
     * root only, as it should be) first. Then, started as root, jazarid starts its local agent
     * (which stays root) and becomes the unprivileged account for good, before it opens
     * anything in its state folder. Requests wait in the backlog until the loop runs. */
    if (jz_http_start(&srv, &err) ||
        jz_privsep_start(cfg, log_level_name, &srv.local_agent_fd, &srv.local_agent_pid, &err))
        goto out;
    if (jz_store_sqlite_open(dbpath, &srv.store, &err) ||
        jz_auth_open(&srv, &srv.auth, &err) ||
        jz_plugins_load(cfg->plugin_dir, cfg->worker_path, &srv.plugins, &err))
        goto out;
    if (open_scheduler(&srv, &err) || jz_ledger_open(&srv, &srv.ledger, &err) ||
        jz_jobs_open(&srv, &srv.jobs, &err))
        goto out;
    if (srv.store->ops->sync(srv.store, &err)) /* recovery's changes */
        goto out;
    srv.store_done_ev = event_new(srv.base, srv.store->ops->completion_fd(srv.store),
                                  EV_READ | EV_PERSIST, on_store_done, &srv);
    event_add(srv.store_done_ev, NULL);
    srv.sigint_ev = evsignal_new(srv.base, SIGINT, on_stop_signal, &srv);
    srv.sigterm_ev = evsignal_new(srv.base, SIGTERM, on_stop_signal, &srv);
    evsignal_add(srv.sigint_ev, NULL);
    evsignal_add(srv.sigterm_ev, NULL);

    jz_log_info("jazarid", "listening on http://%s:%d, node agents on port %d (state %s, %zu "
                "nodes, %zu plugin files)", cfg->listen_host, srv.bound_port,
                jz_nodes_agent_port(srv.nodes), cfg->state_dir, jz_nodes_listed(srv.nodes),
                jz_plugins_count(srv.plugins));
    if (port_file && write_port_file(port_file, srv.bound_port) != 0) {
        jz_error_set(&err, JZ_EIO, "cannot write %s", port_file);
        goto out;
    }
    jz_server_request_commit(&srv); /* schedule the jobs recovered as pending */
    event_base_dispatch(srv.base);
    rc = srv.store_failed ? 1 : 0;
    if (srv.store_failed)
        jz_error_set(&err, JZ_EIO, "stopped: the store could not be written");
out:
    if (rc)
        fprintf(stderr, "jazarid: %s\n", err.msg);
    srv.stopping = true;
    jz_http_stop(&srv);
    jz_jobs_close(srv.jobs);
    jz_ledger_close(srv.ledger);
    jz_sched_destroy(srv.sched);
    /* After the scheduler, which borrowed the nodes' topologies. Closing kills the local
     * agent's workers (their jobs count as "node lost"); remote agents keep theirs running. */
    jz_nodes_close(srv.nodes);
    jz_plugins_free(srv.plugins);
    jz_auth_close(srv.auth);
    jz_store_close(srv.store); /* makes queued writes durable first */
    if (srv.store_done_ev)
        event_free(srv.store_done_ev);
    /* Left only when a failed batch stopped the loop: their connections and workers are gone
     * with it, and their replies are never sent. */
    while (srv.waiters_head) {
        struct jz_batch_waiter *w = srv.waiters_head;
        srv.waiters_head = w->next;
        jz_http_drop_deferred(w->replies);
        free(w);
    }
    jz_http_drop_deferred(jz_http_take_deferred(&srv));
    if (srv.commit_ev)
        event_free(srv.commit_ev);
    if (srv.sigint_ev)
        event_free(srv.sigint_ev);
    if (srv.sigterm_ev)
        event_free(srv.sigterm_ev);
    json_decref(srv.config);
    event_base_free(srv.base);
    return rc;
}
