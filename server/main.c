/* jazarid: the Jazari job service. One libevent loop serves the REST API, drives the local node
 * and commits every loop iteration's changes to the store together. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/strutil.h"
#include "scheduler/config.h"
#include "scheduler/sched.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/events.h"
#include "server/front.h"
#include "server/http.h"
#include "server/jobs.h"
#include "server/ledger.h"
#include "server/nodes.h"
#include "server/plugins.h"
#include "server/privsep.h"
#include "server/reload.h"
#include "server/reservations.h"
#include "server/server.h"
#include "server/tenants.h"

/* The plugin registry, from the composed plugin folders; private copies go to STATE/plugins. */
static int load_plugins(struct jz_server *srv, struct jz_error *err)
{
    char copies[4200];
    snprintf(copies, sizeof copies, "%s/plugins", srv->cfg.state_dir);
    struct jz_plugins_config pc = {.dirs = srv->cfg.plugin_dir,
                                   .worker_path = srv->cfg.worker_path,
                                   .copies_dir = copies,
                                   .site = json_object_get(srv->config, "plugins")};
    return jz_plugins_load(&pc, &srv->plugins, err);
}

/* What waits for one sealed store batch: replies to send and jobs to launch. */
struct jz_batch_waiter {
    struct jz_batch_waiter *next;
    uint64_t seq;
    struct jz_deferred_reply *replies;
    struct jz_job *placed;
    struct jz_events_held *events; /* published once the batch is durable (events.h) */
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
    w->events = jz_events_take_held(srv->events);
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
        jz_events_publish(srv->events, w->events, ok);
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

/* SIGHUP: the configuration file and the plugin folders again (reload.h); SIGUSR1: the log
 * file reopened under its name (logrotate's postrotate). On the loop's thread, between
 * requests. */
static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    struct jz_server *srv = arg;
    if (srv->stopping)
        return;
    struct jz_error err = {0};
    if (sig == SIGUSR1) {
        if (jz_log_reopen(&err))
            jz_log_error("jazarid", "SIGUSR1: log not reopened: %s", err.msg);
        else
            jz_log_info("jazarid", "SIGUSR1: log reopened");
        return;
    }
    jz_log_info("jazarid", "SIGHUP: reloading %s and the plugin folders",
                srv->cfg.config_path[0] ? srv->cfg.config_path : "(no configuration file)");
    if (jz_server_reload(srv, NULL, &err) == 0)
        jz_server_request_commit(srv); /* a new policy may start jobs at once */
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
    switch (jz_config_parse_args(argc, argv, &srv.args)) {
    case JZ_CONFIG_RUN: break;
    case JZ_CONFIG_DONE: return 0;
    case JZ_CONFIG_USAGE: return 2;
    }
    struct jz_error err = {0};
    if (jz_config_build(srv.args, cfg, &srv.config, &err)) {
        fprintf(stderr, "jazarid: %s\n", err.msg);
        jz_config_args_free(srv.args);
        return 2;
    }
    if (jz_log_open(cfg->log_file, "jazarid", (enum jz_log_sev)cfg->log_level, &err)) {
        fprintf(stderr, "jazarid: --log-file %s: %s\n", cfg->log_file, err.msg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* A reload asked for while starting (systemd may send it early) waits for nothing rather
     * than kill the service; the loop's handlers take over once it runs. Children reset every
     * signal before exec (node/node.c). */
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    if (jz_config_resolve_paths(cfg, &err)) {
        fprintf(stderr, "jazarid: %s\n", err.msg);
        return err.code == JZ_EINVAL ? 2 : 1;
    }
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
        jz_privsep_start(cfg, jz_log_level_name((enum jz_log_sev)cfg->log_level),
                         &srv.local_agent_fd, &srv.local_agent_pid, &err))
        goto out;
    if (jz_store_sqlite_open(dbpath, &srv.store, &err) ||
        jz_auth_open(&srv, &srv.auth, &err) ||
        load_plugins(&srv, &err))
        goto out;
    /* Events before jobs: what recovery changes is published with the first batch. */
    if (open_scheduler(&srv, &err) || jz_tenants_open(&srv, &srv.tenants, &err) ||
        jz_ledger_open(&srv, &srv.ledger, &err) ||
        jz_reservations_open(&srv, &srv.reservations, &err) || jz_events_open(&srv, &srv.events, &err) || jz_jobs_open(&srv, &srv.jobs, &err))
        goto out;
    if (srv.store->ops->sync(srv.store, &err)) /* recovery's changes */
        goto out;
    srv.store_done_ev = event_new(srv.base, srv.store->ops->completion_fd(srv.store),
                                  EV_READ | EV_PERSIST, on_store_done, &srv);
    event_add(srv.store_done_ev, NULL);
    srv.sigint_ev = evsignal_new(srv.base, SIGINT, on_stop_signal, &srv);
    srv.sigterm_ev = evsignal_new(srv.base, SIGTERM, on_stop_signal, &srv);
    srv.sighup_ev = evsignal_new(srv.base, SIGHUP, on_reload_signal, &srv);
    srv.sigusr1_ev = evsignal_new(srv.base, SIGUSR1, on_reload_signal, &srv);
    evsignal_add(srv.sigint_ev, NULL);
    evsignal_add(srv.sigterm_ev, NULL);
    evsignal_add(srv.sighup_ev, NULL);
    evsignal_add(srv.sigusr1_ev, NULL);

    jz_log_info("jazarid", "listening on http://%s:%d, node agents on port %d (state %s, %zu "
                "nodes, %zu plugin files)", cfg->listen_host, srv.bound_port,
                jz_nodes_agent_port(srv.nodes), cfg->state_dir, jz_nodes_listed(srv.nodes),
                jz_plugins_count(srv.plugins));
    if (cfg->port_file[0] && write_port_file(cfg->port_file, srv.bound_port) != 0) {
        jz_error_set(&err, JZ_EIO, "cannot write %s", cfg->port_file);
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
    jz_reservations_close(srv.reservations);
    jz_ledger_close(srv.ledger);
    jz_tenants_close(srv.tenants);
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
        jz_events_drop_held(w->events);
        free(w);
    }
    jz_http_drop_deferred(jz_http_take_deferred(&srv));
    /* After the API (its streams are closed with it) and the store: what was never durable is
     * never published. */
    jz_events_close(srv.events);
    if (srv.commit_ev)
        event_free(srv.commit_ev);
    if (srv.sigint_ev)
        event_free(srv.sigint_ev);
    if (srv.sigterm_ev)
        event_free(srv.sigterm_ev);
    if (srv.sighup_ev)
        event_free(srv.sighup_ev);
    if (srv.sigusr1_ev)
        event_free(srv.sigusr1_ev);
    jz_config_args_free(srv.args);
    json_decref(srv.config);
    event_base_free(srv.base);
    return rc;
}
