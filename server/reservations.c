/* Booked compute slots (reservations.h): placement over the scheduler's nodes, the capacity
 * check against every booking and configured reservation overlapping the window, the credit
 * hold at booking and its settlement at the window's end or at cancellation. */
#include "server/reservations.h"

#include <event2/event.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/time.h"
#include "scheduler/booking.h"
#include "scheduler/config.h"
#include "scheduler/place.h"
#include "scheduler/topo.h"
#include "server/auth.h"
#include "server/jobs.h"
#include "server/ledger.h"
#include "server/nodes.h"
#include "server/prices.h"
#include "server/tenants.h"

enum status { LIVE, ENDED, CANCELLED };
static const char *const status_names[] = {"live", "ended", "cancelled"};

struct booking {
    int64_t id;
    char name[32]; /* "resv:ID": the scheduler's reservation prefix and the ledger's ref */
    char tenant[JZ_MAX_NAME_LEN + 1], user[JZ_MAX_NAME_LEN + 1];
    char model[JZ_TOPO_MODEL_LEN], site[JZ_SCHED_NAME_LEN];
    unsigned gpus;
    int64_t start, end, created; /* seconds */
    double price, per_gpu_hour;
    size_t n;
    char **nodes;
    unsigned *take;
    enum status status;
    bool in_sched;  /* its reservations are in the scheduler (nodes may join after start-up) */
    json_t *report; /* ended or cancelled: what was booked, used and charged */
};

struct jz_reservations {
    struct jz_server *srv;
    struct booking **b;
    size_t n, cap;
    int64_t max_id;
    struct event *tick;
};

static int64_t now_s(void)
{
    return jz_time_now_ms() / 1000;
}

static int64_t limit(const struct jz_reservations *rs, const char *key, int64_t fallback)
{
    json_t *v = json_object_get(json_object_get(rs->srv->config, "booking"), key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : fallback;
}

static void booking_free(struct booking *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->nodes[i]);
    free(b->nodes);
    free(b->take);
    json_decref(b->report);
    free(b);
}

static struct booking *find(struct jz_reservations *rs, int64_t id)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->b[i]->id == id)
            return rs->b[i];
    return NULL;
}

static void iso(int64_t s, char *buf, size_t len)
{
    jz_time_format_iso(s * 1000, buf, len);
}

/* The booking as stored (stored true) or as shown. */
static json_t *booking_json(const struct booking *b, bool stored)
{
    char st[40], en[40], cr[40];
    iso(b->start, st, sizeof st);
    iso(b->end, en, sizeof en);
    iso(b->created, cr, sizeof cr);
    json_t *nodes = json_array();
    for (size_t i = 0; i < b->n; i++)
        json_array_append_new(
            nodes, json_pack("{s:s, s:i}", "node", b->nodes[i], "gpus", (int)b->take[i]));
    json_t *o = json_pack(
        "{s:I, s:s, s:s, s:s, s:i, s:s?, s:s?, s:s, s:s, s:I, s:I, s:s, s:o,"
        " s:f, s:f, s:f}",
        "id", (json_int_t)b->id, "name", b->name, "tenant", b->tenant, "user", b->user, "gpus",
        (int)b->gpus, "model", b->model[0] ? b->model : NULL, "site", b->site[0] ? b->site : NULL,
        "start", st, "end", en, "start_epoch", (json_int_t)b->start, "end_epoch",
        (json_int_t)b->end, "created", cr, "nodes", nodes, "price", b->price, "price_per_gpu_hour",
        b->per_gpu_hour, "gpu_hours", b->gpus * (double)(b->end - b->start) / 3600.0);
    if (!o)
        return NULL;
    if (stored) {
        json_object_set_new(o, "status", json_string(status_names[b->status]));
    } else {
        int64_t now = now_s();
        const char *state = b->status == CANCELLED ? "cancelled"
                            : b->status == ENDED   ? "ended"
                            : now < b->start       ? "booked"
                                                   : "active";
        json_object_set_new(o, "state", json_string(state));
    }
    if (b->report)
        json_object_set(o, "report", b->report);
    return o;
}

static int save(struct jz_reservations *rs, const struct booking *b, struct jz_error *err)
{
    char key[32];
    snprintf(key, sizeof key, "%012lld", (long long)b->id);
    json_t *v = booking_json(b, true);
    if (!v)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    int rc = rs->srv->store->ops->object_put(rs->srv->store, "reservation", key, v, err);
    json_decref(v);
    if (!rc)
        jz_server_request_commit(rs->srv);
    return rc;
}

/* ---------- the scheduler's copy ---------- */

static void part_name(const struct booking *b, size_t k, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%zu", b->name, k);
}

static void sched_remove(struct jz_reservations *rs, struct booking *b)
{
    b->in_sched = false;
    for (size_t k = 0; k < b->n; k++) {
        char nm[JZ_SCHED_NAME_LEN];
        part_name(b, k, nm, sizeof nm);
        jz_sched_reservation_remove(rs->srv->sched, nm, NULL);
    }
}

static int sched_add(struct jz_reservations *rs, struct booking *b, struct jz_error *err)
{
    for (size_t k = 0; k < b->n; k++) {
        struct jz_sched_reservation r = {.nodes = (const char *const *)&b->nodes[k],
                                         .node_count = 1,
                                         .gpus_per_node = b->take[k],
                                         .start = b->start,
                                         .end = b->end};
        part_name(b, k, r.name, sizeof r.name);
        snprintf(r.tenant, sizeof r.tenant, "%s", b->tenant);
        int rc = jz_sched_reservation_add(rs->srv->sched, &r, err);
        if (rc) {
            for (size_t j = 0; j < k; j++) {
                char nm[JZ_SCHED_NAME_LEN];
                part_name(b, j, nm, sizeof nm);
                jz_sched_reservation_remove(rs->srv->sched, nm, NULL);
            }
            return rc;
        }
    }
    b->in_sched = true;
    return 0;
}

/* ---------- use by jobs ---------- */

/* GPU-hours that jobs bound to b ran inside its window, until `until`. */
static double used_gpu_hours(struct jz_reservations *rs, const struct booking *b, int64_t until)
{
    return jz_jobs_reservation_gpu_hours(rs->srv->jobs, b->name, b->start, b->end, until);
}

/* The jobs bound to a booking that is over or cancelled: the pending ones could never start,
 * and the running ones are paid by it no more (a cancelled slot ends its runs, as a cloud
 * capacity reservation's instances go with it). */
struct bound {
    const char *name;
    int64_t *ids;
    size_t n, cap;
};

static void collect_bound(void *arg, struct jz_job *job)
{
    struct bound *b = arg;
    const char *resv = json_string_value(jz_job_request_field(job, "reservation"));
    if (!resv || strcmp(resv, b->name) != 0)
        return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int64_t *grown = realloc(b->ids, cap * sizeof *grown);
        if (!grown)
            return;
        b->ids = grown;
        b->cap = cap;
    }
    b->ids[b->n++] = jz_job_id(job);
}

static void cancel_bound(struct jz_reservations *rs, const struct booking *bk, const char *who)
{
    if (!rs->srv->jobs)
        return;
    struct bound b = {.name = bk->name};
    jz_jobs_unfinished_each(rs->srv->jobs, collect_bound, &b);
    for (size_t i = 0; i < b.n; i++) {
        struct jz_job *job = jz_jobs_find(rs->srv->jobs, b.ids[i]);
        struct jz_error err = {0};
        if (job && jz_jobs_cancel(rs->srv->jobs, job, who, &err))
            jz_log_warn("reservations", "job %lld of reservation %lld: not cancelled: %s",
                        (long long)b.ids[i], (long long)bk->id, err.msg);
    }
    free(b.ids);
}

/* Settles b at `at` (its end, or a cancellation): charges the elapsed part of the window,
 * releases the rest, takes it out of the scheduler, records the report. */
static int finish(struct jz_reservations *rs, struct booking *b, int64_t at, enum status st,
                  const char *who, struct jz_error *err)
{
    int64_t elapsed = at <= b->start ? 0 : (at >= b->end ? b->end : at) - b->start;
    double frac = (double)elapsed / (double)(b->end - b->start);
    double charge = st == ENDED ? b->price : b->price * frac;
    char why[160];
    snprintf(why, sizeof why, "reservation %lld %s", (long long)b->id,
             st == ENDED ? "ended" : "cancelled");
    int rc = jz_ledger_settle(rs->srv->ledger, b->tenant, b->name, charge, NULL, who, why, err);
    if (rc)
        return rc;
    double booked = b->gpus * (double)(b->end - b->start) / 3600.0;
    double paid = st == ENDED ? booked : b->gpus * (double)elapsed / 3600.0;
    double used = rs->srv->jobs ? used_gpu_hours(rs, b, at < b->end ? at : b->end) : 0;
    char when[40];
    iso(at, when, sizeof when);
    json_decref(b->report);
    b->report =
        json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f}", "status", status_names[st], "at",
                  when, "by", who, "booked_gpu_hours", booked, "paid_gpu_hours", paid,
                  "used_gpu_hours", used, "unused_gpu_hours", paid > used ? paid - used : 0.0,
                  "charged", charge, "released", b->price - charge);
    b->status = st;
    sched_remove(rs, b);
    rc = save(rs, b, err);
    cancel_bound(rs, b, who);
    return rc;
}

/* A booking over for longer than the jobs' retention (limits.retention_days) leaves memory and
 * the store, as finished jobs do; its ledger entries stay (statements read those). One a tick
 * is plenty: a booking ends at most once. */
static void prune(struct jz_reservations *rs, size_t i, int64_t now)
{
    struct booking *b = rs->b[i];
    int64_t keep = rs->srv->cfg.retention_s;
    if (keep <= 0 || b->end + keep > now)
        return;
    char key[32];
    struct jz_error err = {0};
    snprintf(key, sizeof key, "%012lld", (long long)b->id);
    if (rs->srv->store->ops->object_put(rs->srv->store, "reservation", key, NULL, &err)) {
        jz_log_error("reservations", "reservation %lld: cannot purge: %s", (long long)b->id,
                     err.msg);
        return;
    }
    booking_free(b);
    memmove(&rs->b[i], &rs->b[i + 1], (rs->n - i - 1) * sizeof rs->b[0]); /* order kept */
    rs->n--;
    jz_server_request_commit(rs->srv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct jz_reservations *rs = arg;
    int64_t now = now_s();
    for (size_t i = 0; i < rs->n; i++) {
        struct booking *b = rs->b[i];
        if (b->status == LIVE && b->end > now && !b->in_sched) {
            /* Its nodes were not known at start-up (agents join later): try again. */
            struct jz_error e = {0};
            if (!sched_add(rs, b, &e))
                jz_log_info("reservations", "reservation %lld is in the scheduler again",
                            (long long)b->id);
            continue;
        }
        if (b->status != LIVE) {
            size_t before = rs->n;
            prune(rs, i, now);
            if (rs->n < before)
                i--; /* the next one moved into i */
            continue;
        }
        if (b->end > now)
            continue;
        struct jz_error err = {0};
        if (finish(rs, b, b->end, ENDED, "jazarid", &err))
            jz_log_error("reservations", "reservation %lld: settling failed: %s", (long long)b->id,
                         err.msg);
        else
            jz_log_info("reservations", "reservation %lld of %s ended", (long long)b->id,
                        b->tenant);
    }
}

void jz_reservations_resync(struct jz_reservations *rs)
{
    int64_t now = now_s();
    for (size_t i = 0; rs && i < rs->n; i++) {
        struct booking *b = rs->b[i];
        struct jz_error e = {0};
        if (b->status == LIVE && b->end > now && !b->in_sched && !sched_add(rs, b, &e))
            jz_log_info("reservations", "reservation %lld is in the scheduler again",
                        (long long)b->id);
    }
}

/* ---------- loading ---------- */

static int append(struct jz_reservations *rs, struct booking *b)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 16;
        struct booking **v = realloc(rs->b, cap * sizeof(*v));
        if (!v)
            return JZ_ENOMEM;
        rs->b = v;
        rs->cap = cap;
    }
    rs->b[rs->n++] = b;
    if (b->id > rs->max_id)
        rs->max_id = b->id;
    return 0;
}

static struct booking *booking_new(size_t n)
{
    struct booking *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->nodes = calloc(n ? n : 1, sizeof(*b->nodes));
    b->take = calloc(n ? n : 1, sizeof(*b->take));
    if (!b->nodes || !b->take) {
        booking_free(b);
        return NULL;
    }
    return b;
}

static int64_t iso_s(const json_t *o, const char *key)
{
    int64_t ms = 0;
    if (jz_time_parse_iso(jz_json_str(o, key, NULL), &ms, NULL))
        return 0;
    return ms / 1000;
}

static int load_one(void *arg, const char *key, json_t *v)
{
    (void)key;
    struct jz_reservations *rs = arg;
    json_t *nodes = json_object_get(v, "nodes"), *nd;
    struct booking *b = booking_new(json_array_size(nodes));
    if (!b)
        return JZ_ENOMEM;
    b->id = jz_json_int(v, "id", 0);
    snprintf(b->name, sizeof b->name, "resv:%lld", (long long)b->id);
    snprintf(b->tenant, sizeof b->tenant, "%s", jz_json_str(v, "tenant", ""));
    snprintf(b->user, sizeof b->user, "%s", jz_json_str(v, "user", ""));
    snprintf(b->model, sizeof b->model, "%s", jz_json_str(v, "model", ""));
    snprintf(b->site, sizeof b->site, "%s", jz_json_str(v, "site", ""));
    b->gpus = (unsigned)jz_json_int(v, "gpus", 0);
    b->start = jz_json_int(v, "start_epoch", 0);
    b->end = jz_json_int(v, "end_epoch", 0);
    b->created = iso_s(v, "created");
    b->price = json_number_value(json_object_get(v, "price"));
    b->per_gpu_hour = json_number_value(json_object_get(v, "price_per_gpu_hour"));
    const char *st = jz_json_str(v, "status", "live");
    b->status = strcmp(st, "ended") == 0 ? ENDED : strcmp(st, "cancelled") == 0 ? CANCELLED : LIVE;
    b->report = json_incref(json_object_get(v, "report"));
    size_t i;
    json_array_foreach(nodes, i, nd)
    {
        b->nodes[i] = strdup(jz_json_str(nd, "node", ""));
        b->take[i] = (unsigned)jz_json_int(nd, "gpus", 0);
        if (!b->nodes[i]) {
            b->n = i;
            booking_free(b);
            return JZ_ENOMEM;
        }
        b->n = i + 1;
    }
    int rc = b->id <= 0 ? 0 : append(rs, b); /* a record without an id is skipped */
    if (b->id <= 0 || rc)
        booking_free(b);
    return rc;
}

/* The highest id ever given, failed bookings' too: ids (and their ledger references) are never
 * reused, across restarts. */
static int load_counter(void *arg, const char *key, json_t *value)
{
    struct jz_reservations *rs = arg;
    int64_t v = json_integer_value(json_object_get(value, "max"));
    if (strcmp(key, "reservation") == 0 && v > rs->max_id)
        rs->max_id = v;
    return 0;
}

int jz_reservations_open(struct jz_server *srv, struct jz_reservations **out, struct jz_error *err)
{
    struct jz_reservations *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    rs->srv = srv;
    int rc = srv->store->ops->objects_each(srv->store, "reservation", load_one, rs, err);
    if (!rc)
        rc = srv->store->ops->objects_each(srv->store, "counter", load_counter, rs, err);
    if (rc) {
        jz_reservations_close(rs);
        return rc;
    }
    int64_t now = now_s();
    for (size_t i = 0; i < rs->n; i++) {
        struct booking *b = rs->b[i];
        struct jz_error e = {0};
        if (b->status != LIVE)
            continue;
        if (b->end <= now) /* ended while the service was down: on_tick settles it */
            continue;
        if (sched_add(rs, b, &e))
            jz_log_info("reservations", "reservation %lld waits for its nodes: %s",
                        (long long)b->id, e.msg);
    }
    rs->tick = event_new(srv->base, -1, EV_PERSIST, on_tick, rs);
    struct timeval tv = {1, 0};
    if (!rs->tick || event_add(rs->tick, &tv)) {
        jz_reservations_close(rs);
        return jz_error_set(err, JZ_ENOMEM, "cannot start the reservations' timer");
    }
    *out = rs;
    return 0;
}

void jz_reservations_close(struct jz_reservations *rs)
{
    if (!rs)
        return;
    if (rs->tick)
        event_free(rs->tick);
    for (size_t i = 0; i < rs->n; i++)
        booking_free(rs->b[i]);
    free(rs->b);
    free(rs);
}

/* ---------- booking ---------- */

static int field_err(const char **field, const char *name, struct jz_error *err, int code,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int field_err(const char **field, const char *name, struct jz_error *err, int code,
                     const char *fmt, ...)
{
    *field = name;
    char msg[JZ_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jz_error_set(err, code, "%s", msg);
}

static int parse_when(const json_t *body, const char *key, int64_t now, int64_t *out,
                      struct jz_error *err)
{
    const char *s = jz_json_str(body, key, NULL);
    int64_t ms;
    if (s && strcmp(s, "now") == 0) {
        *out = now;
        return 0;
    }
    if (!s || jz_time_parse_iso(s, &ms, NULL))
        return jz_error_set(err, JZ_EINVAL,
                            "%s: an ISO 8601 time with its zone (2026-12-01T09:00:00Z) or \"now\"",
                            key);
    *out = ms / 1000;
    return 0;
}

/* Candidate nodes and the holds on them in [start, end). Fills cand/holds (malloc'd). */
struct census {
    struct jz_booking_node *nodes;
    size_t *sched_index; /* scheduler node of each candidate */
    size_t n;
    struct jz_booking_hold *holds;
    size_t nholds, holds_cap;
    char (*owners)[80];
};

static void census_free(struct census *c)
{
    free(c->nodes);
    free(c->sched_index);
    free(c->holds);
    free(c->owners);
}

static size_t cand_find(const struct census *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->nodes[i].name, name) == 0)
            return i;
    return SIZE_MAX;
}

static int hold_add(struct census *c, const char *owner, const char *node, unsigned gpus,
                    int64_t start, int64_t end)
{
    size_t k = cand_find(c, node);
    if (k == SIZE_MAX)
        return 0;
    if (c->nholds == c->holds_cap) {
        size_t cap = c->holds_cap ? c->holds_cap * 2 : 32;
        struct jz_booking_hold *h = realloc(c->holds, cap * sizeof(*h));
        if (!h)
            return JZ_ENOMEM;
        c->holds = h;
        char(*o)[80] = realloc(c->owners, cap * sizeof(*o));
        if (!o)
            return JZ_ENOMEM;
        c->owners = o;
        c->holds_cap = cap;
    }
    snprintf(c->owners[c->nholds], sizeof c->owners[0], "%s", owner);
    c->holds[c->nholds] =
        (struct jz_booking_hold){.node = k, .gpus = gpus, .start = start, .end = end};
    c->nholds++;
    return 0;
}

static int census_make(struct jz_reservations *rs, const char *model, const char *site,
                       struct census *c)
{
    struct jz_sched *s = rs->srv->sched;
    size_t total = jz_sched_node_count(s);
    memset(c, 0, sizeof(*c));
    c->nodes = calloc(total ? total : 1, sizeof(*c->nodes));
    c->sched_index = calloc(total ? total : 1, sizeof(*c->sched_index));
    if (!c->nodes || !c->sched_index)
        return JZ_ENOMEM;
    for (size_t i = 0; i < total; i++) {
        struct jz_sched_node_info info;
        if (jz_sched_node_info(s, i, &info, NULL) || info.removed || info.gpus == 0)
            continue;
        if (site && *site && strcmp(info.site, site) != 0)
            continue;
        const struct jz_topo *t = jz_nodes_topo(rs->srv->nodes, i);
        unsigned usable = 0;
        for (size_t g = 0; t && g < jz_topo_gpu_count(t); g++)
            usable += jz_place_model_matches(jz_topo_gpu_at(t, g)->model, model);
        if (!t)
            usable = model && *model ? 0 : info.gpus;
        if (usable == 0)
            continue;
        c->nodes[c->n] =
            (struct jz_booking_node){.name = info.name, .gpus = usable, .total = info.gpus};
        c->sched_index[c->n++] = i;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < rs->n; i++) {
        const struct booking *b = rs->b[i];
        for (size_t k = 0; !rc && b->status == LIVE && k < b->n; k++)
            rc = hold_add(c, b->name, b->nodes[k], b->take[k], b->start, b->end);
    }
    struct jz_sched_parsed *pc = NULL;
    if (!rc && !jz_sched_config_parse(json_object_get(rs->srv->config, "scheduler"), &pc, NULL)) {
        for (size_t i = 0; !rc && i < pc->reservation_count; i++) {
            const struct jz_sched_reservation *r = &pc->reservations[i];
            char owner[80];
            snprintf(owner, sizeof owner, "configured reservation %s", r->name);
            for (size_t k = 0; !rc && k < r->node_count; k++)
                rc = hold_add(c, owner, r->nodes[k], r->gpus_per_node, r->start, r->end);
        }
    }
    jz_sched_parsed_free(pc);
    for (size_t h = 0; h < c->nholds; h++)
        c->holds[h].owner = c->owners[h];
    return rc;
}

static size_t live_of(const struct jz_reservations *rs, const char *tenant)
{
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++)
        n += rs->b[i]->status == LIVE && strcmp(rs->b[i]->tenant, tenant) == 0;
    return n;
}

/* Credits per GPU-hour of the dearest GPU of node (of model, when given) a booking may take. */
static double node_price(const struct jz_reservations *rs, const char *node, const char *model,
                         const char *cls)
{
    size_t idx;
    double best = jz_prices_per_gpu_hour(rs->srv, model, cls);
    if (jz_nodes_find(rs->srv->nodes, node, &idx) != 0)
        return best;
    const struct jz_topo *t = jz_nodes_topo(rs->srv->nodes, idx);
    bool any = false;
    double dearest = 0;
    for (size_t g = 0; t && g < jz_topo_gpu_count(t); g++) {
        const struct jz_topo_gpu *gpu = jz_topo_gpu_at(t, g);
        if (!gpu || (model && !jz_place_model_matches(gpu->model, model)))
            continue;
        double p = jz_prices_per_gpu_hour(rs->srv, gpu->model, cls);
        if (!any || p > dearest)
            dearest = p;
        any = true;
    }
    return any ? dearest : best;
}

int jz_reservations_book(struct jz_reservations *rs, const struct jz_user *u, const json_t *body,
                         json_t **out, const char **field, struct jz_error *err)
{
    static const char *const keys[] = {"gpus", "model", "site", "start", "end", "tenant", NULL};
    *field = NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v)
    {
        size_t i = 0;
        while (keys[i] && strcmp(keys[i], k) != 0)
            i++;
        if (!keys[i])
            return field_err(field, "body", err, JZ_EINVAL, "unknown field \"%.60s\"", k);
    }
    json_t *jg = json_object_get(body, "gpus");
    if (!json_is_integer(jg) || json_integer_value(jg) < 1 || json_integer_value(jg) > 4096)
        return field_err(field, "gpus", err, JZ_EINVAL, "gpus: %s", "an integer from 1 to 4096");
    const char *model = jz_json_str(body, "model", NULL), *site = jz_json_str(body, "site", NULL);
    if ((json_object_get(body, "model") && !json_is_null(json_object_get(body, "model")) &&
         !model) ||
        (model && (strlen(model) == 0 || strlen(model) >= JZ_TOPO_MODEL_LEN)))
        return field_err(field, "model", err, JZ_EINVAL, "model: %s", "a GPU model name");
    if ((json_object_get(body, "site") && !json_is_null(json_object_get(body, "site")) && !site) ||
        (site && (strlen(site) == 0 || strlen(site) >= JZ_SCHED_NAME_LEN)))
        return field_err(field, "site", err, JZ_EINVAL, "site: %s", "a site name");
    const char *tenant = jz_json_str(body, "tenant", u->tenant);
    if (strlen(tenant) == 0 || strlen(tenant) > JZ_MAX_NAME_LEN)
        return field_err(field, "tenant", err, JZ_EINVAL, "tenant: %s", "a tenant name");
    if (!jz_auth_may_manage_tenant(u, tenant))
        return field_err(field, "tenant", err, JZ_EPERM,
                         "only an admin or a tenant-admin of %s may book for it", tenant);
    int64_t now = now_s(), start = 0, end = 0;
    if (parse_when(body, "start", now, &start, err)) {
        *field = "start";
        return err->code;
    }
    if (parse_when(body, "end", now, &end, err)) {
        *field = "end";
        return err->code;
    }
    if (start < now - 300) {
        *field = "start";
        return jz_error_set(err, JZ_ERANGE, "start: in the past");
    }
    if (start < now)
        start = now;
    int64_t ahead = limit(rs, "max_ahead_s", JZ_RESV_MAX_AHEAD_S);
    int64_t wmin = limit(rs, "min_window_s", JZ_RESV_MIN_WINDOW_S);
    int64_t wmax = limit(rs, "max_window_s", JZ_RESV_MAX_WINDOW_S);
    if (start > now + ahead) {
        *field = "start";
        return jz_error_set(err, JZ_ERANGE, "start: at most %lld days ahead",
                            (long long)(ahead / 86400));
    }
    if (end - start < wmin || end - start > wmax) {
        *field = "end";
        return jz_error_set(err, JZ_ERANGE, "end: the window must last %lld s to %lld s",
                            (long long)wmin, (long long)wmax);
    }
    int64_t most = limit(rs, "max_per_tenant", JZ_RESV_MAX_PER_TENANT);
    if ((int64_t)live_of(rs, tenant) >= most) {
        *field = "tenant";
        return jz_error_set(err, JZ_ELIMIT, "tenant %.64s already has %lld bookings (the limit)",
                            tenant, (long long)most);
    }
    unsigned gpus = (unsigned)json_integer_value(jg);
    struct census c;
    unsigned *take = NULL;
    struct booking *b = NULL;
    int rc = census_make(rs, model, site, &c);
    if (rc) {
        jz_error_set(err, rc, "out of memory");
        goto fail;
    }
    take = calloc(c.n ? c.n : 1, sizeof(*take));
    if (!take) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto fail;
    }
    char why[JZ_ERROR_MSG_MAX];
    rc = jz_booking_place(c.nodes, c.n, c.holds, c.nholds, gpus, start, end, take, why, sizeof why);
    if (rc == JZ_EBUSY) {
        *field = "gpus";
        jz_error_set(err, JZ_EBUSY, "%s", why);
        goto fail;
    }
    if (rc) {
        jz_error_set(err, rc, "cannot place the booking");
        goto fail;
    }
    size_t used = 0;
    for (size_t i = 0; i < c.n; i++)
        used += take[i] != 0;
    b = booking_new(used);
    if (!b) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < c.n; i++) {
        if (!take[i])
            continue;
        b->nodes[b->n] = strdup(c.nodes[i].name);
        if (!b->nodes[b->n]) {
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
            goto fail;
        }
        b->take[b->n++] = take[i];
    }
    b->id = ++rs->max_id; /* never given again, even when this booking fails below */
    json_t *counter = json_pack("{s:I}", "max", (json_int_t)rs->max_id);
    struct jz_error cerr = {0};
    if (!counter ||
        rs->srv->store->ops->object_put(rs->srv->store, "counter", "reservation", counter, &cerr))
        jz_log_error("reservations", "the id counter is not stored: %s", cerr.msg);
    json_decref(counter);
    snprintf(b->name, sizeof b->name, "resv:%lld", (long long)b->id);
    snprintf(b->tenant, sizeof b->tenant, "%s", tenant);
    snprintf(b->user, sizeof b->user, "%s", u->name);
    snprintf(b->model, sizeof b->model, "%s", model ? model : "");
    snprintf(b->site, sizeof b->site, "%s", site ? site : "");
    b->gpus = gpus;
    b->start = start;
    b->end = end;
    b->created = now;
    /* Priced at the GPUs it holds, not the model asked for (none, or a loose one, would let a
     * booking pay the default price for dear GPUs): on each node the dearest GPU it may take. */
    const char *cls = jz_tenants_class(rs->srv->tenants, tenant);
    double per_hour = 0;
    for (size_t i = 0; i < b->n; i++)
        per_hour += b->take[i] * node_price(rs, b->nodes[i], model, cls);
    b->per_gpu_hour = per_hour / gpus;
    b->price = (double)(end - start) / 3600.0 * per_hour;
    char hwhy[200];
    snprintf(hwhy, sizeof hwhy, "reservation %lld: %u GPUs%s%s, %lld s", (long long)b->id, gpus,
             model ? " of " : "", model ? model : "", (long long)(end - start));
    rc = jz_ledger_hold(rs->srv->ledger, tenant, b->name, b->price, u->name, hwhy, false, err);
    if (rc == JZ_EAGAIN) {
        double avail = jz_ledger_available(rs->srv->ledger, tenant);
        *field = "credits";
        jz_error_set(err, JZ_EAGAIN,
                     "the booking costs %.2f credits; tenant %.64s has %.2f available (%.2f "
                     "missing)",
                     b->price, tenant, avail, b->price - avail);
        goto fail;
    }
    if (rc)
        goto fail;
    if ((rc = sched_add(rs, b, err))) {
        jz_ledger_settle(rs->srv->ledger, tenant, b->name, 0, NULL, u->name, "booking failed",
                         NULL);
        goto fail;
    }
    if ((rc = append(rs, b))) {
        sched_remove(rs, b);
        jz_ledger_settle(rs->srv->ledger, tenant, b->name, 0, NULL, u->name, "booking failed",
                         NULL);
        jz_error_set(err, rc, "out of memory");
        goto fail;
    }
    if ((rc = save(rs, b, err)))
        jz_log_error("reservations", "reservation %lld not stored: %s", (long long)b->id, err->msg);
    census_free(&c);
    free(take);
    *out = booking_json(b, false);
    return 0;
fail:
    booking_free(b);
    census_free(&c);
    free(take);
    return rc ? rc : err->code;
}

/* ---------- reading and cancelling ---------- */

static bool visible(const struct jz_user *u, const struct booking *b)
{
    return u->admin || strcmp(u->tenant, b->tenant) == 0;
}

json_t *jz_reservations_list(struct jz_reservations *rs, const struct jz_user *u,
                             const char *tenant)
{
    json_t *arr = json_array();
    for (size_t i = rs->n; i-- > 0;) {
        const struct booking *b = rs->b[i];
        if (visible(u, b) && (!tenant || strcmp(tenant, b->tenant) == 0))
            json_array_append_new(arr, booking_json(b, false));
    }
    return json_pack("{s:o}", "reservations", arr);
}

json_t *jz_reservations_get(struct jz_reservations *rs, const struct jz_user *u, int64_t id)
{
    struct booking *b = find(rs, id);
    if (!b || !visible(u, b))
        return NULL;
    json_t *o = booking_json(b, false);
    if (b->status == LIVE)
        json_object_set_new(o, "used_gpu_hours",
                            json_real(used_gpu_hours(rs, b, now_s() < b->end ? now_s() : b->end)));
    return o;
}

int jz_reservations_cancel(struct jz_reservations *rs, const struct jz_user *u, int64_t id,
                           json_t **out, struct jz_error *err)
{
    struct booking *b = find(rs, id);
    if (!b || !visible(u, b))
        return jz_error_set(err, JZ_ENOENT, "no reservation %lld", (long long)id);
    if (!jz_auth_may_manage_tenant(u, b->tenant))
        return jz_error_set(err, JZ_EPERM,
                            "only an admin or a tenant-admin of %.64s may cancel its bookings",
                            b->tenant);
    if (b->status != LIVE)
        return jz_error_set(err, JZ_EBUSY, "reservation %lld has %s", (long long)id,
                            b->status == ENDED ? "ended" : "been cancelled");
    int rc = finish(rs, b, now_s(), CANCELLED, u->name, err);
    if (rc)
        return rc;
    *out = booking_json(b, false);
    return 0;
}

/* ---------- jobs ---------- */

int jz_reservations_check_job(struct jz_reservations *rs, const char *tenant, const json_t *value,
                              int64_t gpus_per_node, int64_t time_limit_s, char *name,
                              size_t name_len, struct jz_error *err)
{
    int64_t id = 0;
    const char *s = json_string_value(value);
    if (json_is_integer(value))
        id = json_integer_value(value);
    else if (s) {
        if (strncmp(s, "resv:", 5) == 0)
            s += 5;
        char *end;
        id = strtoll(s, &end, 10);
        if (*end || end == s)
            id = 0;
    }
    if (id <= 0)
        return jz_error_set(err, JZ_EINVAL, "expected a reservation id");
    struct booking *b = find(rs, id);
    if (!b || strcmp(b->tenant, tenant) != 0)
        return jz_error_set(err, JZ_EINVAL, "no reservation %lld of tenant %.64s", (long long)id,
                            tenant);
    int64_t now = now_s();
    if (b->status != LIVE || b->end <= now)
        return jz_error_set(err, JZ_EINVAL, "reservation %lld is over", (long long)id);
    unsigned most = 0;
    for (size_t k = 0; k < b->n; k++)
        if (b->take[k] > most)
            most = b->take[k];
    if (gpus_per_node < 1 || gpus_per_node > most)
        return jz_error_set(err, JZ_EINVAL,
                            "reservation %lld holds at most %u GPUs on a node; the job needs "
                            "%lld (and at least one)",
                            (long long)id, most, (long long)gpus_per_node);
    int64_t from = now > b->start ? now : b->start;
    if (from + time_limit_s > b->end) {
        char en[40];
        iso(b->end, en, sizeof en);
        return jz_error_set(err, JZ_ERANGE,
                            "the time limit (%lld s) runs past reservation %lld's end (%s): "
                            "at most %lld s",
                            (long long)time_limit_s, (long long)id, en, (long long)(b->end - from));
    }
    snprintf(name, name_len, "%s", b->name);
    return 0;
}

int jz_reservations_with_booked(struct jz_reservations *rs, const struct jz_sched_reservation *r,
                                size_t n, struct jz_sched_reservation **out, size_t *count,
                                struct jz_error *err)
{
    /* Only what the scheduler holds now: a booking whose nodes are not known (yet, or any
     * more) would make the reload refuse the whole configuration; the tick adds it later. */
    size_t total = n;
    for (size_t i = 0; rs && i < rs->n; i++)
        if (rs->b[i]->status == LIVE && rs->b[i]->in_sched)
            total += rs->b[i]->n;
    struct jz_sched_reservation *v = calloc(total ? total : 1, sizeof(*v));
    if (!v)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    if (n)
        memcpy(v, r, n * sizeof(*v));
    size_t at = n;
    for (size_t i = 0; rs && i < rs->n; i++) {
        const struct booking *b = rs->b[i];
        for (size_t k = 0; b->status == LIVE && b->in_sched && k < b->n; k++) {
            struct jz_sched_reservation *x = &v[at++];
            part_name(b, k, x->name, sizeof x->name);
            snprintf(x->tenant, sizeof x->tenant, "%s", b->tenant);
            x->nodes = (const char *const *)&b->nodes[k];
            x->node_count = 1;
            x->gpus_per_node = b->take[k];
            x->start = b->start;
            x->end = b->end;
        }
    }
    *out = v;
    *count = at;
    return 0;
}
