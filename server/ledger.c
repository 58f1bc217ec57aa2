/* The credit ledger: per-tenant totals kept in memory, every movement appended to the store. */
#include "server/ledger.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "scheduler/sched.h"

struct jz_ledger {
    struct jz_server *srv;
    json_t *tenants; /* tenant -> {"granted", "used", "jobs", "metered", "by_plugin": {}} */
};

static json_t *tenant_row(struct jz_ledger *l, const char *tenant)
{
    json_t *t = json_object_get(l->tenants, tenant);
    if (!t) {
        t = json_pack("{s:f, s:f, s:I, s:b, s:{}}", "granted", 0.0, "used", 0.0, "jobs",
                      (json_int_t)0, "metered", 0, "by_plugin");
        json_object_set_new(l->tenants, tenant, t);
    }
    return t;
}

static void add_num(json_t *obj, const char *key, double delta)
{
    json_object_set_new(obj, key, json_real(jz_json_num(obj, key, 0) + delta));
}

static double balance(const json_t *t)
{
    return jz_json_num(t, "granted", 0) - jz_json_num(t, "used", 0);
}

static void apply(struct jz_ledger *l, const struct jz_ledger_entry *e)
{
    json_t *t = tenant_row(l, e->tenant);
    if (strcmp(e->kind, "grant") == 0) {
        add_num(t, "granted", e->gpu_seconds);
        json_object_set_new(t, "metered", json_true());
    } else {
        add_num(t, "used", e->gpu_seconds);
        json_object_set_new(t, "jobs", json_integer(jz_json_int(t, "jobs", 0) + 1));
        add_num(json_object_get(t, "by_plugin"), e->plugin ? e->plugin : "?", e->gpu_seconds);
    }
}

/* Tells the scheduler whether a metered tenant may start jobs. */
static void update_credit(struct jz_ledger *l, const char *tenant)
{
    json_t *t = json_object_get(l->tenants, tenant);
    if (!t || !jz_json_bool(t, "metered", false))
        return;
    struct jz_error err = {0};
    if (jz_sched_tenant_set_credit(l->srv->sched, tenant, balance(t) > 0, &err))
        jz_log_warn("ledger", "tenant %s: %s", tenant, err.msg);
    jz_server_request_commit(l->srv); /* regained credit: schedule again */
}

static int load_entry(void *arg, const struct jz_ledger_entry *e)
{
    apply(arg, e);
    return 0;
}

int jz_ledger_open(struct jz_server *srv, struct jz_ledger **out, struct jz_error *err)
{
    struct jz_ledger *l = calloc(1, sizeof *l);
    if (!l)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    l->srv = srv;
    l->tenants = json_object();
    int rc = srv->store->ops->ledger_each(srv->store, load_entry, l, err);
    if (rc) {
        jz_ledger_close(l);
        return rc;
    }
    const char *name;
    json_t *t;
    json_object_foreach(l->tenants, name, t) update_credit(l, name);
    *out = l;
    return 0;
}

void jz_ledger_close(struct jz_ledger *l)
{
    if (!l)
        return;
    json_decref(l->tenants);
    free(l);
}

static void append(struct jz_ledger *l, const struct jz_ledger_entry *e)
{
    struct jz_error err = {0};
    if (l->srv->store->ops->ledger_add(l->srv->store, e, &err))
        jz_log_error("ledger", "%s", err.msg);
    apply(l, e);
    update_credit(l, e->tenant);
    jz_server_request_commit(l->srv);
}

void jz_ledger_charge(struct jz_ledger *l, const char *tenant, const char *plugin, int64_t job_id,
                      double gpu_seconds)
{
    if (!(gpu_seconds > 0))
        return;
    struct jz_ledger_entry e = {.time_ms = jz_time_now_ms(), .tenant = tenant, .kind = "charge",
                                .gpu_seconds = gpu_seconds, .job_id = job_id, .plugin = plugin};
    append(l, &e);
}

int jz_ledger_grant(struct jz_ledger *l, const char *tenant, double gpu_hours, const char *note,
                    struct jz_error *err)
{
    if (!isfinite(gpu_hours) || gpu_hours == 0 || fabs(gpu_hours) > JZ_LEDGER_MAX_GRANT_HOURS)
        return jz_error_set(err, JZ_EINVAL, "gpu_hours: must be non-zero, at most %g either way",
                            JZ_LEDGER_MAX_GRANT_HOURS);
    if (!jz_name_is_safe(tenant, JZ_MAX_NAME_LEN))
        return jz_error_set(err, JZ_EINVAL, "tenant: use 1-%d of A-Z a-z 0-9 . _ -",
                            JZ_MAX_NAME_LEN);
    struct jz_ledger_entry e = {.time_ms = jz_time_now_ms(), .tenant = tenant, .kind = "grant",
                                .gpu_seconds = gpu_hours * 3600.0, .note = note};
    append(l, &e);
    return 0;
}

static json_t *usage_row(const char *name, const json_t *t)
{
    json_t *by = json_object();
    const char *p;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(t, "by_plugin"), p, v)
        json_object_set_new(by, p, json_real(json_number_value(v) / 3600.0));
    bool metered = jz_json_bool(t, "metered", false);
    return json_pack("{s:s, s:b, s:f, s:f, s:o, s:I, s:o}", "tenant", name, "metered", metered,
                     "granted_gpu_hours", jz_json_num(t, "granted", 0) / 3600.0,
                     "used_gpu_hours", jz_json_num(t, "used", 0) / 3600.0, "balance_gpu_hours",
                     metered ? json_real(balance(t) / 3600.0) : json_null(), "jobs",
                     (json_int_t)jz_json_int(t, "jobs", 0), "used_gpu_hours_by_plugin", by);
}

json_t *jz_ledger_usage_json(struct jz_ledger *l, const char *tenant)
{
    json_t *arr = json_array();
    if (tenant) {
        json_t *t = json_object_get(l->tenants, tenant);
        json_t *empty = t ? NULL : json_pack("{s:f, s:f, s:I, s:b, s:{}}", "granted", 0.0, "used",
                                             0.0, "jobs", (json_int_t)0, "metered", 0,
                                             "by_plugin");
        json_array_append_new(arr, usage_row(tenant, t ? t : empty));
        json_decref(empty);
    } else {
        const char *name;
        json_t *t;
        json_object_foreach(l->tenants, name, t) json_array_append_new(arr, usage_row(name, t));
    }
    return json_pack("{s:o}", "tenants", arr);
}
