/* Parses the "scheduler" object of the service configuration into a jz_sched_config, its
 * classes, tenants and reservations. Pure: it reads an in-memory JSON value, never a file. */
#include "scheduler/config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/time.h"

struct owned {
    struct jz_sched_class *classes;
    struct jz_sched_tenant *tenants;
    size_t ntenants;
    struct jz_sched_site_quota **site_quotas; /* per tenant */
    struct jz_sched_model_quota **model_quotas; /* per tenant */
    char **names;                             /* reservation node names, flat */
    size_t nnames;
    const char **node_ptrs;
};

void jz_sched_parsed_free(struct jz_sched_parsed *p)
{
    if (!p)
        return;
    struct owned *o = p->owned;
    if (o) {
        free(o->classes);
        free(o->tenants);
        for (size_t i = 0; o->site_quotas && i < o->ntenants; i++)
            free(o->site_quotas[i]);
        free(o->site_quotas);
        for (size_t i = 0; o->model_quotas && i < o->ntenants; i++)
            free(o->model_quotas[i]);
        free(o->model_quotas);
        for (size_t i = 0; i < o->nnames; i++)
            free(o->names[i]);
        free(o->names);
        free(o->node_ptrs);
        free(o);
    }
    free(p->reservations);
    free(p);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int jz_sched_time_parse(const char *s, int64_t *out, struct jz_error *err)
{
    if (!s || !*s)
        return jz_error_set(err, JZ_EINVAL, "empty time");
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end == '\0') {
        *out = v;
        return 0;
    }
    int y, mo, d, h, mi, se, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n != 19)
        return jz_error_set(err, JZ_EINVAL, "time \"%s\" is not YYYY-MM-DDTHH:MM:SSZ", s);
    const char *rest = s + n;
    if (*rest == '.')
        for (rest++; *rest >= '0' && *rest <= '9'; rest++)
            ;
    static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strcmp(rest, "Z") != 0 || mo < 1 || mo > 12 || d < 1 ||
        (unsigned)d > mdays[mo - 1] + (mo == 2 && is_leap(y)) || h > 23 || mi > 59 || se > 60 ||
        h < 0 || mi < 0 || se < 0)
        return jz_error_set(err, JZ_EINVAL, "time \"%s\" is not a valid UTC time", s);
    *out = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
    return 0;
}

/* A duration: a number of seconds or a string like "7d", "1h30m". */
static int get_duration(const json_t *v, const char *key, double *out, struct jz_error *err)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        if (!(*out >= 0))
            return jz_error_set(err, JZ_ERANGE, "scheduler.%s must not be negative", key);
        return 0;
    }
    if (json_is_string(v)) {
        int64_t secs;
        struct jz_error why = {0}; /* not err: its message is formatted into err below */
        if (jz_duration_parse(json_string_value(v), &secs, &why) != 0)
            return jz_error_set(err, JZ_EINVAL, "scheduler.%s: %s", key, why.msg);
        *out = (double)secs;
        return 0;
    }
    return jz_error_set(err, JZ_EINVAL, "scheduler.%s must be seconds or a duration string", key);
}

/* A duration of at most a year (JZ_SCHED_MAX_TIME_LIMIT), as whole seconds. */
static int get_time_span(const json_t *v, const char *key, int64_t *out, struct jz_error *err)
{
    double x = 0;
    int rc = get_duration(v, key, &x, err);
    if (rc)
        return rc;
    if (x > (double)JZ_SCHED_MAX_TIME_LIMIT)
        return jz_error_set(err, JZ_ERANGE, "scheduler.%s must be at most 366 days", key);
    *out = (int64_t)x;
    return 0;
}

static int get_number(const json_t *v, const char *key, double lo, double hi, double *out,
                      struct jz_error *err)
{
    if (!json_is_number(v) || !(json_number_value(v) >= lo) || !(json_number_value(v) <= hi))
        return jz_error_set(err, JZ_ERANGE, "%s must be a number in [%g, %g]", key, lo, hi);
    *out = json_number_value(v);
    return 0;
}

static int get_name(const json_t *v, const char *key, char *dst, struct jz_error *err)
{
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) >= JZ_SCHED_NAME_LEN)
        return jz_error_set(err, JZ_EINVAL, "%s must be a string of 1 to %d characters", key,
                            JZ_SCHED_NAME_LEN - 1);
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

static int parse_weights(const json_t *w, struct jz_sched_config *c, struct jz_error *err)
{
    if (!json_is_object(w))
        return jz_error_set(err, JZ_EINVAL, "scheduler.weights must be an object");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)w, k, v)
    {
        double *dst = strcmp(k, "fairshare") == 0 ? &c->weight_fairshare
                      : strcmp(k, "age") == 0     ? &c->weight_age
                      : strcmp(k, "class") == 0   ? &c->weight_class
                      : strcmp(k, "size") == 0    ? &c->weight_size
                      : strcmp(k, "las") == 0     ? &c->weight_las
                      : strcmp(k, "shortest") == 0 ? &c->weight_shortest
                                                  : NULL;
        if (!dst)
            return jz_error_set(err, JZ_EINVAL, "scheduler.weights: unknown key \"%s\"", k);
        int rc = get_number(v, "scheduler.weights values", 0, 1e9, dst, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* "age" (first come, first served), "las", "shortest" or "las+shortest". */
static int parse_order(const json_t *v, const char *key, unsigned *out, struct jz_error *err)
{
    const char *s = json_string_value(v);
    static const struct {
        const char *name;
        unsigned order;
    } names[] = {{"age", 0},
                 {"las", JZ_SCHED_ORDER_LAS},
                 {"shortest", JZ_SCHED_ORDER_SHORTEST},
                 {"las+shortest", JZ_SCHED_ORDER_LAS | JZ_SCHED_ORDER_SHORTEST}};
    for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].order;
            return 0;
        }
    return jz_error_set(err, JZ_EINVAL,
                        "%s must be \"age\", \"las\", \"shortest\" or \"las+shortest\"", key);
}

/* "las_thresholds": ["1h", "16h"]: GPU-time (a GPU-seconds number or a duration), increasing. */
static int parse_thresholds(const json_t *a, struct jz_sched_config *c, struct jz_error *err)
{
    size_t n = json_array_size(a);
    if (!json_is_array(a) || n > JZ_SCHED_MAX_LAS_BANDS)
        return jz_error_set(err, JZ_ELIMIT,
                            "scheduler.las_thresholds must be an array of at most %d GPU-times",
                            JZ_SCHED_MAX_LAS_BANDS);
    for (size_t i = 0; i < n; i++) {
        int rc = get_duration(json_array_get(a, i), "las_thresholds[]", &c->las_thresholds[i],
                              err);
        if (rc)
            return rc;
        if (!(c->las_thresholds[i] > (i ? c->las_thresholds[i - 1] : 0)))
            return jz_error_set(err, JZ_ERANGE,
                                "scheduler.las_thresholds must be positive and increasing");
    }
    c->las_band_count = n;
    return 0;
}

static int parse_classes(const json_t *a, struct owned *o, struct jz_sched_config *c,
                         struct jz_error *err)
{
    size_t n = json_array_size(a);
    if (!json_is_array(a) || n > JZ_SCHED_MAX_CLASSES)
        return jz_error_set(err, JZ_ELIMIT, "scheduler.classes must be an array of at most %d",
                            JZ_SCHED_MAX_CLASSES);
    o->classes = calloc(n + 1, sizeof(*o->classes));
    if (!o->classes)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i), *v;
        const char *k;
        if (!json_is_object(e))
            return jz_error_set(err, JZ_EINVAL, "scheduler.classes[%zu] must be an object", i);
        struct jz_sched_class *cl = &o->classes[i];
        cl->rank = 50;
        cl->order = UINT_MAX; /* not said: the scheduler's "order", once it is known */
        json_object_foreach(e, k, v)
        {
            int rc = 0;
            double r = 0; /* set on success; -O2 cannot see that */
            if (strcmp(k, "name") == 0)
                rc = get_name(v, "scheduler.classes[].name", cl->name, err);
            else if (strcmp(k, "rank") == 0) {
                rc = get_number(v, "scheduler.classes[].rank", 0, 100, &r, err);
                cl->rank = (unsigned)r;
            } else if (strcmp(k, "can_preempt") == 0) {
                if (!json_is_boolean(v))
                    rc = jz_error_set(err, JZ_EINVAL, "can_preempt must be true or false");
                cl->can_preempt = json_is_true(v);
            } else if (strcmp(k, "order") == 0)
                rc = parse_order(v, "scheduler.classes[].order", &cl->order, err);
            else
                rc = jz_error_set(err, JZ_EINVAL, "scheduler.classes[%zu]: unknown key \"%s\"", i,
                                  k);
            if (rc)
                return rc;
        }
        if (!cl->name[0])
            return jz_error_set(err, JZ_EINVAL, "scheduler.classes[%zu] needs a name", i);
    }
    c->classes = o->classes;
    c->class_count = n;
    return 0;
}

/* "site_quotas": {"rabat": 16, "casa": 8}: GPUs in use at once per site (0: none there). */
static int parse_site_quotas(const json_t *v, size_t i, struct jz_sched_site_quota **out,
                             struct jz_sched_tenant *t, struct jz_error *err)
{
    size_t n = json_object_size(v);
    if (!json_is_object(v) || n > JZ_SCHED_MAX_SITES)
        return jz_error_set(err, JZ_ELIMIT,
                            "scheduler.tenants[%zu].site_quotas must be an object of at most %d "
                            "sites",
                            i, JZ_SCHED_MAX_SITES);
    struct jz_sched_site_quota *q = calloc(n + 1, sizeof(*q));
    if (!q)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    *out = q;
    const char *site;
    json_t *x;
    size_t k = 0;
    json_object_foreach((json_t *)v, site, x)
    {
        if (!*site || strlen(site) >= JZ_SCHED_NAME_LEN)
            return jz_error_set(err, JZ_EINVAL,
                                "scheduler.tenants[%zu].site_quotas: site names are 1 to %d "
                                "characters",
                                i, JZ_SCHED_NAME_LEN - 1);
        double m = 0; /* set on success; -O2 cannot see that */
        int rc = get_number(x, "scheduler.tenants[].site_quotas values", 0, 1e7, &m, err);
        if (rc)
            return rc;
        memcpy(q[k].site, site, strlen(site) + 1);
        q[k++].max_gpus = (unsigned)m;
    }
    t->site_quotas = q;
    t->site_quota_count = k;
    return 0;
}

/* "model_quotas": {"A100": 8, "H100": 0}: GPUs in use at once per GPU model (a
 * case-insensitive substring of the model's name; 0: none of that model). */
static int parse_model_quotas(const json_t *v, size_t i, struct jz_sched_model_quota **out,
                              struct jz_sched_tenant *t, struct jz_error *err)
{
    size_t n = json_object_size(v);
    if (!json_is_object(v) || n > JZ_SCHED_MAX_MODEL_QUOTAS)
        return jz_error_set(err, JZ_ELIMIT,
                            "scheduler.tenants[%zu].model_quotas must be an object of at most %d "
                            "models",
                            i, JZ_SCHED_MAX_MODEL_QUOTAS);
    struct jz_sched_model_quota *q = calloc(n + 1, sizeof(*q));
    if (!q)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    *out = q;
    const char *model;
    json_t *x;
    size_t k = 0;
    json_object_foreach((json_t *)v, model, x)
    {
        if (!*model || strlen(model) >= JZ_SCHED_NAME_LEN)
            return jz_error_set(err, JZ_EINVAL,
                                "scheduler.tenants[%zu].model_quotas: models are 1 to %d "
                                "characters",
                                i, JZ_SCHED_NAME_LEN - 1);
        double m = 0; /* set on success; -O2 cannot see that */
        int rc = get_number(x, "scheduler.tenants[].model_quotas values", 0, 1e7, &m, err);
        if (rc)
            return rc;
        memcpy(q[k].model, model, strlen(model) + 1);
        q[k++].max_gpus = (unsigned)m;
    }
    t->model_quotas = q;
    t->model_quota_count = k;
    return 0;
}

static int parse_tenants(const json_t *a, struct owned *o, struct jz_sched_config *c,
                         struct jz_error *err)
{
    size_t n = json_array_size(a);
    if (!json_is_array(a) || n > JZ_SCHED_MAX_TENANTS)
        return jz_error_set(err, JZ_ELIMIT, "scheduler.tenants must be an array of at most %d",
                            JZ_SCHED_MAX_TENANTS);
    o->tenants = calloc(n + 1, sizeof(*o->tenants));
    o->site_quotas = calloc(n + 1, sizeof(*o->site_quotas));
    o->model_quotas = calloc(n + 1, sizeof(*o->model_quotas));
    if (!o->tenants || !o->site_quotas || !o->model_quotas)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    o->ntenants = n;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i), *v;
        const char *k;
        if (!json_is_object(e))
            return jz_error_set(err, JZ_EINVAL, "scheduler.tenants[%zu] must be an object", i);
        struct jz_sched_tenant *t = &o->tenants[i];
        t->weight = 1;
        json_object_foreach(e, k, v)
        {
            int rc = 0;
            double x = 0; /* set on success; -O2 cannot see that */
            if (strcmp(k, "name") == 0)
                rc = get_name(v, "scheduler.tenants[].name", t->name, err);
            else if (strcmp(k, "weight") == 0)
                rc = get_number(v, "scheduler.tenants[].weight", 1e-9, 1e9, &t->weight, err);
            else if (strcmp(k, "max_gpus") == 0) {
                rc = get_number(v, "scheduler.tenants[].max_gpus", 0, 1e7, &x, err);
                t->max_gpus = (unsigned)x;
            } else if (strcmp(k, "class") == 0)
                rc = get_name(v, "scheduler.tenants[].class", t->class_name, err);
            else if (strcmp(k, "site_quotas") == 0 && !o->site_quotas[i])
                rc = parse_site_quotas(v, i, &o->site_quotas[i], t, err);
            else if (strcmp(k, "model_quotas") == 0 && !o->model_quotas[i])
                rc = parse_model_quotas(v, i, &o->model_quotas[i], t, err);
            else
                rc = jz_error_set(err, JZ_EINVAL, "scheduler.tenants[%zu]: unknown key \"%s\"", i,
                                  k);
            if (rc)
                return rc;
        }
        if (!t->name[0])
            return jz_error_set(err, JZ_EINVAL, "scheduler.tenants[%zu] needs a name", i);
        /* A reload refuses a tenant listed twice (which entry applies would be a guess), so
         * the parser does too: a file that starts the service also reloads. */
        for (size_t p = 0; p < i; p++)
            if (strcmp(o->tenants[p].name, t->name) == 0)
                return jz_error_set(err, JZ_EEXIST, "scheduler.tenants: %s is listed twice",
                                    t->name);
    }
    c->tenants = o->tenants;
    c->tenant_count = n;
    return 0;
}

static int parse_time(const json_t *v, const char *key, int64_t *out, struct jz_error *err)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return jz_error_set(err, JZ_EINVAL, "%s must be a UTC time string or seconds", key);
    return jz_sched_time_parse(json_string_value(v), out, err);
}

static int parse_reservations(const json_t *a, struct owned *o, struct jz_sched_parsed *p,
                              struct jz_error *err)
{
    size_t n = json_array_size(a);
    if (!json_is_array(a) || n > JZ_SCHED_MAX_RESERVATIONS)
        return jz_error_set(err, JZ_ELIMIT, "scheduler.reservations must be an array of at most %d",
                            JZ_SCHED_MAX_RESERVATIONS);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = json_array_size(json_object_get(json_array_get(a, i), "nodes"));
        if (k > JZ_SCHED_MAX_NODES)
            return jz_error_set(err, JZ_ELIMIT, "reservation with too many nodes");
        total += k;
    }
    p->reservations = calloc(n + 1, sizeof(*p->reservations));
    o->names = calloc(total + 1, sizeof(char *));
    o->node_ptrs = calloc(total + 1, sizeof(char *));
    if (!p->reservations || !o->names || !o->node_ptrs)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(a, i), *v;
        const char *k;
        if (!json_is_object(e))
            return jz_error_set(err, JZ_EINVAL, "scheduler.reservations[%zu] must be an object", i);
        struct jz_sched_reservation *r = &p->reservations[i];
        r->nodes = o->node_ptrs + o->nnames;
        bool have_start = false, have_end = false;
        json_object_foreach(e, k, v)
        {
            int rc = 0;
            double x = 0; /* set on success; -O2 cannot see that */
            if (strcmp(k, "name") == 0)
                rc = get_name(v, "scheduler.reservations[].name", r->name, err);
            else if (strcmp(k, "tenant") == 0)
                rc = get_name(v, "scheduler.reservations[].tenant", r->tenant, err);
            else if (strcmp(k, "gpus_per_node") == 0) {
                rc = get_number(v, "scheduler.reservations[].gpus_per_node", 1, JZ_TOPO_MAX_GPUS,
                                &x, err);
                r->gpus_per_node = (unsigned)x;
            } else if (strcmp(k, "start") == 0) {
                rc = parse_time(v, "scheduler.reservations[].start", &r->start, err);
                have_start = true;
            } else if (strcmp(k, "end") == 0) {
                rc = parse_time(v, "scheduler.reservations[].end", &r->end, err);
                have_end = true;
            } else if (strcmp(k, "nodes") == 0) {
                if (!json_is_array(v) || json_array_size(v) == 0)
                    rc = jz_error_set(err, JZ_EINVAL,
                                      "reservation nodes must be a non-empty "
                                      "array of names");
                for (size_t q = 0; rc == 0 && q < json_array_size(v); q++) {
                    const char *nm = json_string_value(json_array_get(v, q));
                    if (!nm || !*nm || strlen(nm) >= JZ_SCHED_NAME_LEN) {
                        rc = jz_error_set(err, JZ_EINVAL, "bad node name in reservation");
                        break;
                    }
                    char *copy = malloc(strlen(nm) + 1);
                    if (!copy) {
                        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
                        break;
                    }
                    memcpy(copy, nm, strlen(nm) + 1);
                    o->names[o->nnames] = copy;
                    o->node_ptrs[o->nnames++] = copy;
                    r->node_count++;
                }
            } else
                rc = jz_error_set(err, JZ_EINVAL, "scheduler.reservations[%zu]: unknown key \"%s\"",
                                  i, k);
            if (rc)
                return rc;
        }
        if (!r->name[0] || !r->tenant[0] || !r->node_count || !r->gpus_per_node || !have_start ||
            !have_end || r->end <= r->start)
            return jz_error_set(err, JZ_EINVAL,
                                "scheduler.reservations[%zu] needs name, tenant, nodes, "
                                "gpus_per_node, and start before end",
                                i);
    }
    p->reservation_count = n;
    return 0;
}

int jz_sched_config_parse(const json_t *obj, struct jz_sched_parsed **out, struct jz_error *err)
{
    if (!out)
        return jz_error_set(err, JZ_EINVAL, "no output");
    if (obj && !json_is_object(obj))
        return jz_error_set(err, JZ_EINVAL, "\"scheduler\" must be an object");
    struct jz_sched_parsed *p = calloc(1, sizeof(*p));
    struct owned *o = calloc(1, sizeof(*o));
    if (!p || !o) {
        free(p);
        free(o);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    p->owned = o;
    jz_sched_config_defaults(&p->cfg);
    int rc = 0;
    const char *k;
    json_t *v;
    if (obj)
        json_object_foreach((json_t *)obj, k, v)
        {
            double x = 0; /* set on success; -O2 cannot see that */
            if (strcmp(k, "half_life") == 0)
                rc = get_duration(v, k, &p->cfg.half_life_s, err);
            else if (strcmp(k, "age_scale") == 0)
                rc = get_duration(v, k, &p->cfg.age_scale_s, err);
            else if (strcmp(k, "preempt_grace") == 0) {
                rc = get_time_span(v, k, &p->cfg.preempt_grace_s, err);
            } else if (strcmp(k, "weights") == 0)
                rc = parse_weights(v, &p->cfg, err);
            else if (strcmp(k, "default_weight") == 0)
                rc = get_number(v, "scheduler.default_weight", 1e-9, 1e9, &p->cfg.default_weight,
                                err);
            else if (strcmp(k, "backfill_depth") == 0) {
                rc = get_number(v, "scheduler.backfill_depth", 1, 1e6, &x, err);
                p->cfg.backfill_depth = (unsigned)x;
            } else if (strcmp(k, "backfill_max_tests") == 0) {
                rc = get_number(v, "scheduler.backfill_max_tests", 1, 1e7, &x, err);
                p->cfg.backfill_max_tests = (unsigned)x;
            } else if (strcmp(k, "order") == 0)
                rc = parse_order(v, "scheduler.order", &p->cfg.default_order, err);
            else if (strcmp(k, "las_thresholds") == 0)
                rc = parse_thresholds(v, &p->cfg, err);
            else if (strcmp(k, "preempt_margin") == 0)
                rc = get_number(v, "scheduler.preempt_margin", 0, 1e12, &p->cfg.preempt_margin,
                                err);
            else if (strcmp(k, "preempt_min_run") == 0) {
                rc = get_time_span(v, k, &p->cfg.preempt_min_run_s, err);
            } else if (strcmp(k, "starve_after") == 0) {
                rc = get_time_span(v, k, &p->cfg.starve_after_s, err);
            } else if (strcmp(k, "starve_drain_factor") == 0)
                rc = get_number(v, "scheduler.starve_drain_factor", 0, 1e6,
                                &p->cfg.starve_drain_factor, err);
            else if (strcmp(k, "max_preemptions") == 0) {
                rc = get_number(v, "scheduler.max_preemptions", 0, 255, &x, err);
                p->cfg.max_preemptions = (unsigned)x;
            } else if (strcmp(k, "default_class") == 0)
                rc = get_name(v, "scheduler.default_class", p->cfg.default_class, err);
            else if (strcmp(k, "classes") == 0)
                rc = parse_classes(v, o, &p->cfg, err);
            else if (strcmp(k, "tenants") == 0)
                rc = parse_tenants(v, o, &p->cfg, err);
            else if (strcmp(k, "reservations") == 0)
                rc = parse_reservations(v, o, p, err);
            else
                rc = jz_error_set(err, JZ_EINVAL, "scheduler: unknown key \"%s\"", k);
            if (rc)
                break;
        }
    if (rc == 0 && (!(p->cfg.half_life_s > 0) || !(p->cfg.age_scale_s > 0)))
        rc = jz_error_set(err, JZ_ERANGE, "scheduler.half_life and age_scale must be positive");
    /* Classes that do not say how they order take the scheduler's order. */
    for (size_t i = 0; rc == 0 && i < p->cfg.class_count; i++)
        if (o->classes[i].order == UINT_MAX)
            o->classes[i].order = p->cfg.default_order;
    if (rc) {
        jz_sched_parsed_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* ---------- differences, for the reload's log line ---------- */

struct diff {
    char *buf;
    size_t len, used, n;
};

static void diff_add(struct diff *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void diff_add(struct diff *d, const char *fmt, ...)
{
    d->n++;
    if (!d->buf || d->len == 0 || d->used + 1 >= d->len)
        return;
    if (d->n > 1)
        d->used += (size_t)snprintf(d->buf + d->used, d->len - d->used, ", ");
    if (d->used + 1 < d->len) {
        va_list ap;
        va_start(ap, fmt);
        d->used += (size_t)vsnprintf(d->buf + d->used, d->len - d->used, fmt, ap);
        va_end(ap);
    }
    if (d->used + 1 >= d->len) { /* cut: say so */
        d->used = d->len - 1;
        if (d->len > 4)
            memcpy(d->buf + d->len - 4, "...", 4);
    }
}

static const char *order_name(unsigned o)
{
    static const char *const names[] = {"age", "las", "shortest", "las+shortest"};
    return o < 4 ? names[o] : "?";
}

static void diff_num(struct diff *d, const char *key, double a, double b)
{
    if (a != b)
        diff_add(d, "%s %g -> %g", key, a, b);
}

static const struct jz_sched_class *class_by_name(const struct jz_sched_config *c, const char *n)
{
    for (size_t i = 0; i < c->class_count; i++)
        if (strcmp(c->classes[i].name, n) == 0)
            return &c->classes[i];
    return NULL;
}

static const struct jz_sched_tenant *tenant_by_name(const struct jz_sched_config *c, const char *n)
{
    for (size_t i = 0; i < c->tenant_count; i++)
        if (strcmp(c->tenants[i].name, n) == 0)
            return &c->tenants[i];
    return NULL;
}

static bool quotas_equal(const struct jz_sched_tenant *a, const struct jz_sched_tenant *b)
{
    if (a->site_quota_count != b->site_quota_count)
        return false;
    for (size_t i = 0; i < a->site_quota_count; i++) {
        bool found = false;
        for (size_t k = 0; k < b->site_quota_count && !found; k++)
            found = strcmp(a->site_quotas[i].site, b->site_quotas[k].site) == 0 &&
                    a->site_quotas[i].max_gpus == b->site_quotas[k].max_gpus;
        if (!found)
            return false;
    }
    return true;
}

static bool model_quotas_equal(const struct jz_sched_tenant *a, const struct jz_sched_tenant *b)
{
    if (a->model_quota_count != b->model_quota_count)
        return false;
    for (size_t i = 0; i < a->model_quota_count; i++) {
        bool found = false;
        for (size_t k = 0; k < b->model_quota_count && !found; k++)
            found = strcmp(a->model_quotas[i].model, b->model_quotas[k].model) == 0 &&
                    a->model_quotas[i].max_gpus == b->model_quotas[k].max_gpus;
        if (!found)
            return false;
    }
    return true;
}

static void diff_config(struct diff *d, const struct jz_sched_config *a,
                        const struct jz_sched_config *b)
{
#define NUM(f) diff_num(d, #f, (double)a->f, (double)b->f)
    NUM(half_life_s);
    NUM(weight_fairshare);
    NUM(weight_age);
    NUM(age_scale_s);
    NUM(weight_class);
    NUM(weight_size);
    NUM(default_weight);
    NUM(preempt_grace_s);
    NUM(backfill_depth);
    NUM(backfill_max_tests);
    NUM(weight_las);
    NUM(weight_shortest);
    NUM(preempt_margin);
    NUM(preempt_min_run_s);
    NUM(max_preemptions);
    NUM(starve_after_s);
    NUM(starve_drain_factor);
#undef NUM
    bool same = a->las_band_count == b->las_band_count;
    for (size_t i = 0; same && i < a->las_band_count; i++)
        same = a->las_thresholds[i] == b->las_thresholds[i];
    if (!same)
        diff_add(d, "las_thresholds changed");
    if (a->default_order != b->default_order)
        diff_add(d, "default_order %s -> %s", order_name(a->default_order),
                 order_name(b->default_order));
    if (strncmp(a->default_class, b->default_class, JZ_SCHED_NAME_LEN) != 0)
        diff_add(d, "default_class %.63s -> %.63s", a->default_class, b->default_class);
    for (size_t i = 0; i < a->class_count; i++)
        if (!class_by_name(b, a->classes[i].name))
            diff_add(d, "class %s removed", a->classes[i].name);
    for (size_t i = 0; i < b->class_count; i++) {
        const struct jz_sched_class *y = &b->classes[i], *x = class_by_name(a, y->name);
        if (!x) {
            diff_add(d, "class %s added", y->name);
            continue;
        }
        if (x->rank != y->rank)
            diff_add(d, "class %s rank %u -> %u", y->name, x->rank, y->rank);
        if (x->order != y->order)
            diff_add(d, "class %s order %s -> %s", y->name, order_name(x->order),
                     order_name(y->order));
        if (x->can_preempt != y->can_preempt)
            diff_add(d, "class %s can_preempt %s -> %s", y->name,
                     x->can_preempt ? "true" : "false", y->can_preempt ? "true" : "false");
    }
    for (size_t i = 0; i < a->tenant_count; i++)
        if (!tenant_by_name(b, a->tenants[i].name))
            diff_add(d, "tenant %s removed (default weight, no quota)", a->tenants[i].name);
    for (size_t i = 0; i < b->tenant_count; i++) {
        const struct jz_sched_tenant *y = &b->tenants[i], *x = tenant_by_name(a, y->name);
        if (!x) {
            diff_add(d, "tenant %s added", y->name);
            continue;
        }
        if (x->weight != y->weight)
            diff_add(d, "tenant %s weight %g -> %g", y->name, x->weight, y->weight);
        if (x->max_gpus != y->max_gpus)
            diff_add(d, "tenant %s max_gpus %u -> %u", y->name, x->max_gpus, y->max_gpus);
        if (strcmp(x->class_name, y->class_name) != 0)
            diff_add(d, "tenant %s class \"%s\" -> \"%s\"", y->name, x->class_name,
                     y->class_name);
        if (!quotas_equal(x, y))
            diff_add(d, "tenant %s site_quotas changed", y->name);
        if (!model_quotas_equal(x, y))
            diff_add(d, "tenant %s model_quotas changed", y->name);
    }
}

size_t jz_sched_config_diff(const struct jz_sched_config *a, const struct jz_sched_config *b,
                            char *buf, size_t len)
{
    struct diff d = {.buf = buf, .len = len};
    if (buf && len)
        buf[0] = '\0';
    if (a && b)
        diff_config(&d, a, b);
    return d.n;
}

static const struct jz_sched_reservation *resv_by_name(const struct jz_sched_parsed *p,
                                                       const char *n)
{
    for (size_t i = 0; i < p->reservation_count; i++)
        if (strcmp(p->reservations[i].name, n) == 0)
            return &p->reservations[i];
    return NULL;
}

static bool resv_equal(const struct jz_sched_reservation *x, const struct jz_sched_reservation *y)
{
    if (strcmp(x->tenant, y->tenant) != 0 || x->start != y->start || x->end != y->end ||
        x->gpus_per_node != y->gpus_per_node || x->node_count != y->node_count)
        return false;
    for (size_t i = 0; i < x->node_count; i++)
        if (strcmp(x->nodes[i], y->nodes[i]) != 0)
            return false;
    return true;
}

size_t jz_sched_parsed_diff(const struct jz_sched_parsed *a, const struct jz_sched_parsed *b,
                            char *buf, size_t len)
{
    struct diff d = {.buf = buf, .len = len};
    if (buf && len)
        buf[0] = '\0';
    if (!a || !b)
        return 0;
    diff_config(&d, &a->cfg, &b->cfg);
    for (size_t i = 0; i < a->reservation_count; i++)
        if (!resv_by_name(b, a->reservations[i].name))
            diff_add(&d, "reservation %s removed", a->reservations[i].name);
    for (size_t i = 0; i < b->reservation_count; i++) {
        const struct jz_sched_reservation *y = &b->reservations[i], *x = resv_by_name(a, y->name);
        if (!x)
            diff_add(&d, "reservation %s added", y->name);
        else if (!resv_equal(x, y))
            diff_add(&d, "reservation %s changed", y->name);
    }
    return d.n;
}
