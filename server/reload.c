/* Reloading the configuration file and the plugin folders (SIGHUP, POST /v1/admin/reload):
 * everything is parsed and checked first, then applied; a file with any error changes nothing.
 * Running jobs are not touched: they keep their plugin copies, limits and allocations. */
#include "server/reload.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "scheduler/config.h"
#include "scheduler/sched.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/front.h"
#include "server/plugins.h"
#include "server/tenants.h"
#include "server/reservations.h"

/* Whether a section of the configuration file is the same in a and b (absent is {}). */
static bool same_section(const json_t *a, const json_t *b, const char *key)
{
    const json_t *x = json_object_get(a, key), *y = json_object_get(b, key);
    if (!x || !y)
        return (!x || json_object_size(x) == 0) && (!y || json_object_size(y) == 0);
    return json_equal(x, y);
}

/* The scheduler's policy and the configured reservations, from the new file's "scheduler",
 * together and all or nothing (jz_sched_reload). Checked (check_only) before anything changes,
 * then applied, with what changed in the log. srv->config still holds the old file. */
static int reload_scheduler(struct jz_server *srv, const json_t *file, bool check_only,
                            bool *changed, struct jz_error *err)
{
    *changed = !same_section(srv->config, file, "scheduler");
    if (!*changed)
        return 0;
    struct jz_sched_parsed *pc = NULL, *old = NULL;
    int rc = jz_sched_config_parse(json_object_get(file, "scheduler"), &pc, err);
    /* The file's reservations and the booked ones (reservations.h) together. */
    struct jz_sched_reservation *all = NULL;
    size_t nall = 0;
    if (!rc)
        rc = jz_reservations_with_booked(srv->reservations, pc->reservations,
                                         pc->reservation_count, &all, &nall, err);
    if (!rc)
        rc = jz_sched_reload(srv->sched, &pc->cfg, all, nall, check_only, err);
    free(all);
    if (!rc && !check_only) {
        char line[1024];
        struct jz_error oerr = {0};
        if (!jz_sched_config_parse(json_object_get(srv->config, "scheduler"), &old, &oerr) &&
            jz_sched_parsed_diff(old, pc, line, sizeof line) > 0)
            jz_log_info("reload", "scheduler: %s", line);
    }
    jz_sched_parsed_free(old);
    jz_sched_parsed_free(pc);
    return rc;
}

/* The plugin folders' rescan ended (on the loop's thread): the new registry is in place. */
static void on_plugins_rescanned(void *arg, int rc, size_t added, size_t removed,
                                 const char *why)
{
    (void)arg;
    if (rc)
        jz_log_error("reload", "plugins kept as they were: %s", why ? why : "?");
    else
        jz_log_info("reload", "plugins rescanned: %zu new, %zu gone", added, removed);
}

static void add_names(json_t *arr, const char *list)
{
    while (*list) {
        size_t len = strcspn(list, ",");
        json_array_append_new(arr, json_stringn(list, len));
        list += len;
        while (*list == ',' || *list == ' ')
            list++;
    }
}

int jz_server_reload(struct jz_server *srv, json_t **report, struct jz_error *err)
{
    struct jz_server_config next;
    json_t *file = NULL;
    if (jz_config_build(srv->args, &next, &file, err) || jz_config_resolve_paths(&next, err))
        goto refused;
    /* Everything that can refuse, before anything changes. */
    bool sched_changed = false;
    if (reload_scheduler(srv, file, true, &sched_changed, err) ||
        jz_auth_set_tenants(srv->auth, file, true, err))
        goto refused;
    char live[1024], restart[1024];
    jz_config_diff(&srv->cfg, &next, live, sizeof live, restart, sizeof restart);
    /* A plugin's site configuration reaches it when its worker starts; the registry keeps the
     * one it was loaded with (the private copies and descriptions depend on it). */
    if (!same_section(srv->config, file, "plugins"))
        snprintf(restart + strlen(restart), sizeof restart - strlen(restart), "%splugins",
                 restart[0] ? ", " : "");
    /* The commit point: the scheduler takes the new policy or refuses it whole. */
    if (sched_changed && reload_scheduler(srv, file, false, &sched_changed, err))
        goto refused;
    if (jz_auth_set_tenants(srv->auth, file, false, err)) /* out of memory only */
        jz_log_error("reload", "tenants kept as they were: %s", err->msg);
    struct jz_error merr = {0};
    if (jz_auth_reload_monitor_token(srv->auth, &merr))
        jz_log_error("reload", "monitoring token kept as it was: %s", merr.msg);
    if (strcmp(srv->cfg.log_file, next.log_file) != 0 || srv->cfg.log_level != next.log_level) {
        struct jz_error lerr = {0};
        if (jz_log_open(next.log_file, "jazarid", (enum jz_log_sev)next.log_level, &lerr)) {
            jz_log_error("reload", "log kept where it was: %s: %s", next.log_file, lerr.msg);
            memcpy(next.log_file, srv->cfg.log_file, sizeof next.log_file);
        }
    }
    jz_config_keep_restart(&srv->cfg, &next);
    srv->cfg = next;
    jz_front_apply_limits(srv);
    evhttp_set_timeout(srv->http, (int)srv->cfg.idle_timeout_s);
    json_t *old_file = srv->config;
    srv->config = file;
    file = NULL;
    json_decref(old_file);
    /* The scheduler took the file's tenants: the tenant objects go over them again. */
    jz_tenants_apply_all(srv->tenants);

    /* Plugins last, off the loop's thread: describing a changed file runs its constructors in
     * a worker process (seconds, for a bad one), which must not stall the API or the node
     * agents' heartbeats. The registry is swapped on the loop's thread when the scan ends
     * (on_plugins_rescanned); a folder that cannot be read is a warning, single bad files are
     * refusals, and jobs keep the copies they were accepted with. */
    struct jz_error perr = {0};
    int prc =
        jz_plugins_reload_start(&srv->plugins, srv->base, on_plugins_rescanned, NULL, &perr);
    json_t *r = json_pack("{s:[], s:[], s:b, s:{s:I, s:s}}", "changed", "restart_needed",
                          "scheduler", sched_changed, "plugins", "versions",
                          (json_int_t)jz_plugins_count(srv->plugins), "rescan",
                          prc ? "not started" : "started");
    add_names(json_object_get(r, "changed"), live);
    add_names(json_object_get(r, "restart_needed"), restart);
    if (prc)
        json_object_set_new(json_object_get(r, "plugins"), "error", json_string(perr.msg));
    jz_log_info("reload", "configuration reloaded%s%s%s%s; plugin folders: %s%s",
                live[0] ? " (changed: " : "", live, live[0] ? ")" : "",
                sched_changed ? ", scheduler policy replaced" : "",
                prc ? "not rescanned: " : "rescan started", prc ? perr.msg : "");
    if (restart[0])
        jz_log_warn("reload", "changed settings that take effect at the next start: %s",
                    restart);
    if (report)
        *report = r;
    else
        json_decref(r);
    return 0;

refused:
    json_decref(file);
    jz_log_error("reload", "configuration not reloaded, nothing changed: %s", err->msg);
    return err->code ? err->code : JZ_EINVAL;
}
