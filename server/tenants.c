/* Tenant objects: a typed record per tenant, JSON only at the edges (the API and the store), and
 * the scheduler's policy for the tenant made from the configuration file's entry with the
 * object's fields over it. */
#include "server/tenants.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "scheduler/config.h"
#include "server/prices.h"

struct tenant {
    char name[JZ_SCHED_NAME_LEN];
    char cls[JZ_MAX_NAME_LEN + 1];
    char home_site[JZ_SCHED_NAME_LEN];      /* "" when none */
    char priority_class[JZ_SCHED_NAME_LEN]; /* "" when the object does not set it */
    double weight;                          /* 0 when the object does not set it */
    bool has_max_gpus;
    unsigned max_gpus;
    bool has_site_quotas, has_model_quotas; /* set by the object ({} included) */
    struct jz_sched_site_quota *site_quotas;
    size_t nsite_quotas;
    struct jz_sched_model_quota *model_quotas;
    size_t nmodel_quotas;
    char created_by[JZ_MAX_NAME_LEN + 1], updated_by[JZ_MAX_NAME_LEN + 1];
    int64_t created_ms, updated_ms;
};

struct jz_tenants {
    struct jz_server *srv;
    struct tenant **v; /* sorted by name */
    size_t n, cap;
};

static void tenant_free(struct tenant *t)
{
    if (!t)
        return;
    free(t->site_quotas);
    free(t->model_quotas);
    free(t);
}

static struct tenant *find(const struct jz_tenants *ts, const char *name, size_t *pos)
{
    size_t lo = 0, hi = ts->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ts->v[mid]->name, name);
        if (c == 0) {
            if (pos)
                *pos = mid;
            return ts->v[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return NULL;
}

/* --- JSON <-> record ------------------------------------------------------------------------ */

static int quota_value(const json_t *x, const char *field, const char *key, unsigned *out,
                       struct jz_error *err)
{
    double m = json_is_integer(x) ? (double)json_integer_value(x) : -1;
    if (!json_is_integer(x) || m < 0 || m > JZ_TENANT_MAX_GPUS)
        return jz_error_set(err, JZ_EINVAL, "%s: %.64s: expected a whole number of GPUs, 0 to %d",
                            field, key, JZ_TENANT_MAX_GPUS);
    *out = (unsigned)m;
    return 0;
}

/* {"site": gpus, ...} into t's site quotas (field "site_quotas"). */
static int parse_site_quotas(const json_t *v, struct tenant *t, struct jz_error *err)
{
    size_t n = json_object_size(v);
    if (!json_is_object(v))
        return jz_error_set(err, JZ_EINVAL, "site_quotas: expected an object {SITE: GPUS}");
    if (n > JZ_TENANT_MAX_QUOTAS)
        return jz_error_set(err, JZ_EINVAL, "site_quotas: at most %d sites",
                            JZ_TENANT_MAX_QUOTAS);
    t->site_quotas = calloc(n + 1, sizeof *t->site_quotas);
    if (!t->site_quotas)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    const char *site;
    json_t *x;
    json_object_foreach((json_t *)v, site, x)
    {
        if (!jz_name_is_safe(site, JZ_SCHED_NAME_LEN - 1))
            return jz_error_set(err, JZ_EINVAL,
                                "site_quotas: site names are 1-%d of A-Z a-z 0-9 . _ -",
                                JZ_SCHED_NAME_LEN - 1);
        struct jz_sched_site_quota *q = &t->site_quotas[t->nsite_quotas];
        int rc = quota_value(x, "site_quotas", site, &q->max_gpus, err);
        if (rc)
            return rc;
        jz_strlcpy(q->site, site, sizeof q->site);
        t->nsite_quotas++;
    }
    t->has_site_quotas = true;
    return 0;
}

/* A GPU model as a quota names it: printable ASCII ("NVIDIA A100-SXM4 80GB" has spaces). */
static bool model_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n >= JZ_SCHED_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (m[i] < 0x20 || m[i] > 0x7e)
            return false;
    return true;
}

static int parse_model_quotas(const json_t *v, struct tenant *t, struct jz_error *err)
{
    size_t n = json_object_size(v);
    if (!json_is_object(v))
        return jz_error_set(err, JZ_EINVAL, "model_quotas: expected an object {MODEL: GPUS}");
    if (n > JZ_TENANT_MAX_QUOTAS)
        return jz_error_set(err, JZ_EINVAL, "model_quotas: at most %d models",
                            JZ_TENANT_MAX_QUOTAS);
    t->model_quotas = calloc(n + 1, sizeof *t->model_quotas);
    if (!t->model_quotas)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    const char *model;
    json_t *x;
    json_object_foreach((json_t *)v, model, x)
    {
        if (!model_ok(model))
            return jz_error_set(err, JZ_EINVAL,
                                "model_quotas: a model is 1-%d printable characters (a part of "
                                "the GPU's name, any case)",
                                JZ_SCHED_NAME_LEN - 1);
        struct jz_sched_model_quota *q = &t->model_quotas[t->nmodel_quotas];
        int rc = quota_value(x, "model_quotas", model, &q->max_gpus, err);
        if (rc)
            return rc;
        jz_strlcpy(q->model, model, sizeof q->model);
        t->nmodel_quotas++;
    }
    t->has_model_quotas = true;
    return 0;
}

static const char *const fields[] = {"class",        "home_site",      "weight",     "max_gpus",
                                     "site_quotas",  "model_quotas",   "priority_class",
                                     "created_by",   "created_ms",     "updated_by", "updated_ms",
                                     NULL};
#define API_FIELDS 7 /* the first ones: what a client may send */

/* A record from its JSON (the stored form, or a body merged over it). Every field is checked;
 * nothing is applied. A stored record's class is not held to the prices of the day (a reload
 * may have dropped a class): its tenant keeps its object. */
static int from_json(struct jz_tenants *ts, const char *name, const json_t *o, size_t nfields,
                     bool stored, struct tenant **out, struct jz_error *err)
{
    *out = NULL;
    if (!json_is_object(o))
        return jz_error_set(err, JZ_EINVAL, "body: expected a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < nfields && !known; i++)
            known = strcmp(fields[i], key) == 0;
        if (!known)
            return jz_error_set(err, JZ_EINVAL, "%.64s: unknown field", key);
    }
    struct tenant *t = calloc(1, sizeof *t);
    if (!t)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    int rc = 0;
    if (!jz_name_is_safe(name, JZ_TENANT_NAME_MAX)) {
        rc = jz_error_set(err, JZ_EINVAL, "name: use 1-%d of A-Z a-z 0-9 . _ -",
                          JZ_TENANT_NAME_MAX);
        goto fail;
    }
    jz_strlcpy(t->name, name, sizeof t->name);
    const json_t *cls = json_object_get(o, "class");
    if (!json_is_string(cls) || !jz_name_is_safe(json_string_value(cls), JZ_MAX_NAME_LEN) ||
        (!stored && !jz_prices_class_known(ts->srv, json_string_value(cls)))) {
        rc = jz_error_set(err, JZ_EINVAL,
                          "class: required, one of institute, university, startup, public or a "
                          "class of the configuration's prices");
        goto fail;
    }
    jz_strlcpy(t->cls, json_string_value(cls), sizeof t->cls);
    if ((v = json_object_get(o, "home_site")) && !json_is_null(v)) {
        if (!json_is_string(v) || !jz_name_is_safe(json_string_value(v), JZ_SCHED_NAME_LEN - 1)) {
            rc = jz_error_set(err, JZ_EINVAL, "home_site: a site name of 1-%d of A-Z a-z 0-9 . _ -",
                              JZ_SCHED_NAME_LEN - 1);
            goto fail;
        }
        jz_strlcpy(t->home_site, json_string_value(v), sizeof t->home_site);
    }
    if ((v = json_object_get(o, "weight")) && !json_is_null(v)) {
        double w = json_is_number(v) ? json_number_value(v) : 0;
        if (!json_is_number(v) || !isfinite(w) || w <= 0 || w > JZ_TENANT_MAX_WEIGHT) {
            rc = jz_error_set(err, JZ_EINVAL, "weight: a number in (0, %g]", JZ_TENANT_MAX_WEIGHT);
            goto fail;
        }
        t->weight = w;
    }
    if ((v = json_object_get(o, "max_gpus")) && !json_is_null(v)) {
        if ((rc = quota_value(v, "max_gpus", "value", &t->max_gpus, err)))
            goto fail;
        t->has_max_gpus = true;
    }
    if ((v = json_object_get(o, "site_quotas")) && !json_is_null(v) &&
        (rc = parse_site_quotas(v, t, err)))
        goto fail;
    if ((v = json_object_get(o, "model_quotas")) && !json_is_null(v) &&
        (rc = parse_model_quotas(v, t, err)))
        goto fail;
    if ((v = json_object_get(o, "priority_class")) && !json_is_null(v)) {
        if (!json_is_string(v) ||
            !jz_name_is_safe(json_string_value(v), JZ_SCHED_NAME_LEN - 1)) {
            rc = jz_error_set(err, JZ_EINVAL,
                              "priority_class: a scheduler class name of 1-%d characters",
                              JZ_SCHED_NAME_LEN - 1);
            goto fail;
        }
        jz_strlcpy(t->priority_class, json_string_value(v), sizeof t->priority_class);
    }
    jz_strlcpy(t->created_by, jz_json_str(o, "created_by", ""), sizeof t->created_by);
    jz_strlcpy(t->updated_by, jz_json_str(o, "updated_by", ""), sizeof t->updated_by);
    t->created_ms = jz_json_int(o, "created_ms", 0);
    t->updated_ms = jz_json_int(o, "updated_ms", 0);
    *out = t;
    return 0;
fail:
    tenant_free(t);
    return rc;
}

/* The fields a client sets, as they are stored and shown (new reference). */
static json_t *fields_json(const struct tenant *t)
{
    json_t *o = json_pack("{s:s}", "class", t->cls);
    if (!o)
        return NULL;
    if (t->home_site[0])
        json_object_set_new(o, "home_site", json_string(t->home_site));
    if (t->weight > 0)
        json_object_set_new(o, "weight", json_real(t->weight));
    if (t->has_max_gpus)
        json_object_set_new(o, "max_gpus", json_integer(t->max_gpus));
    if (t->has_site_quotas) {
        json_t *q = json_object();
        for (size_t i = 0; i < t->nsite_quotas; i++)
            json_object_set_new(q, t->site_quotas[i].site,
                                json_integer(t->site_quotas[i].max_gpus));
        json_object_set_new(o, "site_quotas", q);
    }
    if (t->has_model_quotas) {
        json_t *q = json_object();
        for (size_t i = 0; i < t->nmodel_quotas; i++)
            json_object_set_new(q, t->model_quotas[i].model,
                                json_integer(t->model_quotas[i].max_gpus));
        json_object_set_new(o, "model_quotas", q);
    }
    if (t->priority_class[0])
        json_object_set_new(o, "priority_class", json_string(t->priority_class));
    return o;
}

static json_t *stored_json(const struct tenant *t)
{
    json_t *o = fields_json(t);
    if (o)
        json_object_update_new(o, json_pack("{s:s, s:I, s:s, s:I}", "created_by", t->created_by,
                                            "created_ms", (json_int_t)t->created_ms, "updated_by",
                                            t->updated_by, "updated_ms",
                                            (json_int_t)t->updated_ms));
    return o;
}

static json_t *api_json(const struct tenant *t)
{
    json_t *o = fields_json(t);
    if (!o)
        return NULL;
    char c[40], u[40];
    jz_time_format_iso(t->created_ms, c, sizeof c);
    jz_time_format_iso(t->updated_ms, u, sizeof u);
    json_object_set_new(o, "name", json_string(t->name));
    json_object_update_new(o, json_pack("{s:s, s:s, s:s, s:s}", "created", c, "created_by",
                                        t->created_by, "updated", u, "updated_by",
                                        t->updated_by));
    return o;
}

/* --- the scheduler -------------------------------------------------------------------------- */

/* The running file's "scheduler" parsed (it was checked when it was loaded); NULL, and the
 * scheduler's defaults apply, if it cannot be. */
static struct jz_sched_parsed *file_policy(const struct jz_tenants *ts)
{
    struct jz_sched_parsed *pc = NULL;
    struct jz_error perr = {0};
    if (jz_sched_config_parse(json_object_get(ts->srv->config, "scheduler"), &pc, &perr))
        return NULL;
    return pc;
}

/* The scheduler's tenant: the file's entry in pc (or the defaults) with t's fields over it (t
 * NULL: the file's alone). */
static int apply_with(struct jz_tenants *ts, const struct jz_sched_parsed *pc, const char *name,
                      const struct tenant *t, struct jz_error *err)
{
    struct jz_sched_tenant st = {0};
    jz_strlcpy(st.name, name, sizeof st.name);
    st.weight = 1;
    if (pc) {
        st.weight = pc->cfg.default_weight;
        for (size_t i = 0; i < pc->cfg.tenant_count; i++)
            if (strcmp(pc->cfg.tenants[i].name, name) == 0)
                st = pc->cfg.tenants[i];
    }
    if (t) {
        if (t->weight > 0)
            st.weight = t->weight;
        if (t->has_max_gpus)
            st.max_gpus = t->max_gpus;
        if (t->priority_class[0])
            jz_strlcpy(st.class_name, t->priority_class, sizeof st.class_name);
        if (t->has_site_quotas) {
            st.site_quotas = t->site_quotas;
            st.site_quota_count = t->nsite_quotas;
        }
        if (t->has_model_quotas) {
            st.model_quotas = t->model_quotas;
            st.model_quota_count = t->nmodel_quotas;
        }
    }
    int rc = jz_sched_tenant_set(ts->srv->sched, &st, err);
    if (rc && t && strstr(err->msg, "unknown class")) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        jz_error_set(err, JZ_EINVAL, "priority_class: %s", why);
    }
    return rc;
}

static int apply(struct jz_tenants *ts, const char *name, const struct tenant *t,
                 struct jz_error *err)
{
    struct jz_sched_parsed *pc = file_policy(ts);
    int rc = apply_with(ts, pc, name, t, err);
    jz_sched_parsed_free(pc);
    return rc;
}

void jz_tenants_apply_all(struct jz_tenants *ts)
{
    if (!ts || !ts->n)
        return;
    struct jz_sched_parsed *pc = file_policy(ts); /* once for all of them */
    for (size_t i = 0; i < ts->n; i++) {
        struct jz_error err = {0};
        if (apply_with(ts, pc, ts->v[i]->name, ts->v[i], &err))
            jz_log_error("tenants", "tenant %s: its object's values are not applied: %s",
                         ts->v[i]->name, err.msg);
    }
    jz_sched_parsed_free(pc);
}

/* --- the module ----------------------------------------------------------------------------- */

static int insert(struct jz_tenants *ts, struct tenant *t, struct jz_error *err)
{
    size_t pos;
    if (find(ts, t->name, &pos))
        return jz_error_set(err, JZ_EEXIST, "name: tenant '%s' already exists", t->name);
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 16;
        struct tenant **v = realloc(ts->v, cap * sizeof *v);
        if (!v)
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        ts->v = v;
        ts->cap = cap;
    }
    memmove(ts->v + pos + 1, ts->v + pos, (ts->n - pos) * sizeof *ts->v);
    ts->v[pos] = t;
    ts->n++;
    return 0;
}

static int load_one(void *arg, const char *key, json_t *value)
{
    struct jz_tenants *ts = arg;
    struct tenant *t = NULL;
    struct jz_error err = {0};
    if (from_json(ts, key, value, sizeof fields / sizeof fields[0] - 1, true, &t, &err) ||
        insert(ts, t, &err)) {
        jz_log_error("tenants", "tenant record '%.64s' is left out: %s", key, err.msg);
        tenant_free(t);
    }
    return 0;
}

int jz_tenants_open(struct jz_server *srv, struct jz_tenants **out, struct jz_error *err)
{
    struct jz_tenants *ts = calloc(1, sizeof *ts);
    if (!ts)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    ts->srv = srv;
    int rc = srv->store->ops->objects_each(srv->store, "tenant", load_one, ts, err);
    if (rc) {
        jz_tenants_close(ts);
        return rc;
    }
    jz_tenants_apply_all(ts);
    *out = ts;
    return 0;
}

void jz_tenants_close(struct jz_tenants *ts)
{
    if (!ts)
        return;
    for (size_t i = 0; i < ts->n; i++)
        tenant_free(ts->v[i]);
    free(ts->v);
    free(ts);
}

bool jz_tenants_exists(const struct jz_tenants *ts, const char *name)
{
    return ts && name && find(ts, name, NULL);
}

const char *jz_tenants_class(const struct jz_tenants *ts, const char *name)
{
    const struct tenant *t = ts && name ? find(ts, name, NULL) : NULL;
    return t ? t->cls : NULL;
}

json_t *jz_tenants_json(const struct jz_tenants *ts, const char *name)
{
    const struct tenant *t = ts && name ? find(ts, name, NULL) : NULL;
    return t ? api_json(t) : NULL;
}

json_t *jz_tenants_list_json(const struct jz_tenants *ts)
{
    json_t *arr = json_array();
    for (size_t i = 0; ts && arr && i < ts->n; i++)
        json_array_append_new(arr, api_json(ts->v[i]));
    return arr;
}

int jz_tenants_put(struct jz_tenants *ts, const char *name, const json_t *body, bool create,
                   const char *by, struct jz_error *err)
{
    if (!json_is_object(body))
        return jz_error_set(err, JZ_EINVAL, "body: expected a JSON object");
    size_t pos;
    struct tenant *old = find(ts, name, &pos);
    if (create && old)
        return jz_error_set(err, JZ_EEXIST, "name: tenant '%s' already exists", name);
    if (!create && !old)
        return jz_error_set(err, JZ_ENOENT, "name: no tenant named '%.128s'", name);
    if (create && ts->n >= JZ_TENANT_MAX_COUNT)
        return jz_error_set(err, JZ_ELIMIT, "name: at most %d tenants", JZ_TENANT_MAX_COUNT);
    /* Only the fields a client may send, then the old record under them. */
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        bool known = false;
        for (size_t i = 0; i < API_FIELDS && !known; i++)
            known = strcmp(fields[i], key) == 0;
        if (!known)
            return jz_error_set(err, JZ_EINVAL, "%.64s: unknown field", key);
    }
    json_t *merged = old ? fields_json(old) : json_object();
    if (!merged)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    json_object_foreach((json_t *)body, key, v)
    {
        if (json_is_null(v))
            json_object_del(merged, key);
        else
            json_object_set(merged, key, v);
    }
    struct tenant *t = NULL;
    int rc = from_json(ts, name, merged, API_FIELDS, false, &t, err);
    json_decref(merged);
    if (rc)
        return rc;
    int64_t now = jz_time_now_ms();
    jz_strlcpy(t->created_by, old ? old->created_by : by, sizeof t->created_by);
    t->created_ms = old ? old->created_ms : now;
    jz_strlcpy(t->updated_by, by, sizeof t->updated_by);
    t->updated_ms = now;
    if ((rc = apply(ts, name, t, err)))
        goto fail;
    json_t *rec = stored_json(t);
    rc = rec ? ts->srv->store->ops->object_put(ts->srv->store, "tenant", name, rec, err)
             : jz_error_set(err, JZ_ENOMEM, "out of memory");
    json_decref(rec);
    if (rc) {
        apply(ts, name, old, &(struct jz_error){0}); /* the scheduler as it was */
        goto fail;
    }
    if (old) {
        ts->v[pos] = t;
        tenant_free(old);
    } else if ((rc = insert(ts, t, err))) {
        goto fail;
    }
    return 0;
fail:
    tenant_free(t);
    return rc;
}

int jz_tenants_remove(struct jz_tenants *ts, const char *name, struct jz_error *err)
{
    size_t pos;
    struct tenant *t = find(ts, name, &pos);
    if (!t)
        return jz_error_set(err, JZ_ENOENT, "name: no tenant named '%.128s'", name);
    int rc = ts->srv->store->ops->object_put(ts->srv->store, "tenant", name, NULL, err);
    if (rc)
        return rc;
    struct jz_error aerr = {0};
    if (apply(ts, name, NULL, &aerr))
        jz_log_error("tenants", "tenant %s: the file's values are not applied: %s", name,
                     aerr.msg);
    memmove(ts->v + pos, ts->v + pos + 1, (ts->n - pos - 1) * sizeof *ts->v);
    ts->n--;
    tenant_free(t);
    return 0;
}
