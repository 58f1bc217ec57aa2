/* The credit ledger (ledger.h): per-tenant sums and the open holds in memory, every entry
 * appended to the store in the current batch. */
#include "server/ledger.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "scheduler/sched.h"
#include "server/jobs.h"

struct account {
    char tenant[JZ_MAX_NAME_LEN + 1];
    bool metered;
    double purchased, refunded, adjusted, charged, held;
    double gpu_seconds; /* charged runs' GPU time */
    int64_t runs;       /* charged job runs */
    json_t *by_plugin;  /* plugin -> GPU-seconds */
};

struct jz_ledger {
    struct jz_server *srv;
    struct account **accts; /* one per tenant with any entry, in the order first seen */
    size_t naccts, cap;
    json_t *index;          /* tenant -> its position in accts */
    json_t *holds;    /* ref -> {"tenant", "amount"}: holds not yet released */
    json_t *settled;  /* refs other than job runs' once released (a few: bookings), which the
                       * store would never take again: so neither does memory */
    bool loading;
};

static void account_free(struct account *a)
{
    if (a)
        json_decref(a->by_plugin);
    free(a);
}

/* The tenant's account, NULL when it has none. */
static struct account *find(const struct jz_ledger *l, const char *tenant)
{
    json_t *at = json_object_get(l->index, tenant);
    return at ? l->accts[json_integer_value(at)] : NULL;
}

/* The tenant's account, made on first use (NULL only when out of memory). */
static struct account *acct(struct jz_ledger *l, const char *tenant)
{
    struct account *a = find(l, tenant);
    if (a)
        return a;
    if (l->naccts == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct account **grown = realloc(l->accts, cap * sizeof *grown);
        if (!grown)
            return NULL;
        l->accts = grown;
        l->cap = cap;
    }
    a = calloc(1, sizeof *a);
    if (!a || !(a->by_plugin = json_object())) {
        free(a);
        return NULL;
    }
    jz_strlcpy(a->tenant, tenant, sizeof a->tenant);
    json_object_set_new(l->index, tenant, json_integer((json_int_t)l->naccts));
    l->accts[l->naccts++] = a;
    return a;
}

static double balance_of(const struct account *a)
{
    return a->purchased + a->refunded + a->adjusted - a->charged;
}

/* Applies an entry to the sums (at load and when appended). */
static void apply(struct jz_ledger *l, const struct jz_credit_entry *e)
{
    struct account *a = acct(l, e->tenant);
    if (!a)
        return;
    const char *k = e->kind, *ref = e->ref ? e->ref : "";
    if (strcmp(k, "purchase") == 0) {
        a->purchased += e->amount;
        a->metered = true;
    } else if (strcmp(k, "refund") == 0) {
        a->refunded += e->amount;
        a->metered = true;
    } else if (strcmp(k, "adjustment") == 0) {
        a->adjusted += e->amount;
        a->metered = true;
    } else if (strcmp(k, "hold") == 0 && *ref) {
        json_object_set_new(l->holds, ref, json_pack("{s:s, s:f}", "tenant", e->tenant,
                                                     "amount", e->amount));
        a->held += e->amount;
    } else if (strcmp(k, "release") == 0 && *ref) {
        json_t *h = json_object_get(l->holds, ref);
        if (h) {
            a->held -= jz_json_num(h, "amount", 0);
            if (a->held < 1e-9)
                a->held = 0;
            json_object_del(l->holds, ref);
            if (strncmp(ref, "job:", 4) != 0) /* job runs' refs are unique by construction */
                json_object_set_new(l->settled, ref, json_true());
        }
    } else if (strcmp(k, "charge") == 0) {
        a->charged += e->amount;
        a->gpu_seconds += e->gpu_seconds;
        if (e->job_id) {
            a->runs++;
            const char *p = e->plugin ? e->plugin : "?";
            json_object_set_new(a->by_plugin, p,
                                json_real(jz_json_num(a->by_plugin, p, 0) + e->gpu_seconds));
        }
    }
}

/* Tells the scheduler whether a metered tenant may start anything, and the gate to look again
 * (credit came back, or a hold was released). */
static void update_credit(struct jz_ledger *l, const char *tenant)
{
    struct account *a = acct(l, tenant);
    if (!a || !a->metered || l->loading)
        return;
    struct jz_error err = {0};
    if (jz_sched_tenant_set_credit(l->srv->sched, tenant, balance_of(a) - a->held > 0, &err))
        jz_log_warn("ledger", "tenant %s: %s", tenant, err.msg);
    if (l->srv->jobs)
        jz_jobs_credit_changed(l->srv->jobs);
}

static int append(struct jz_ledger *l, struct jz_credit_entry *e, struct jz_error *err)
{
    e->time_ms = jz_time_now_ms();
    if (l->srv->store->ops->credit_add(l->srv->store, e, err))
        return err->code ? err->code : JZ_EIO;
    apply(l, e);
    update_credit(l, e->tenant);
    jz_server_request_commit(l->srv);
    return 0;
}

/* --- opening: the current entries, or the first schema's moved over ------------------------- */

static int load_entry(void *arg, const struct jz_credit_entry *e)
{
    apply(arg, e);
    return 0;
}

struct legacy {
    struct jz_ledger *l;
    int64_t n;
    int failed;
};

/* A grant of the first schema was GPU-hours: with no price list a credit is a GPU-hour. */
static int move_legacy(void *arg, const struct jz_ledger_entry *old)
{
    struct legacy *m = arg;
    char ref[64];
    snprintf(ref, sizeof ref, "legacy:%lld", (long long)++m->n);
    bool grant = strcmp(old->kind, "grant") == 0;
    struct jz_credit_entry e = {.time_ms = old->time_ms,
                                .tenant = old->tenant,
                                .kind = grant ? (old->gpu_seconds >= 0 ? "purchase" : "adjustment")
                                              : "charge",
                                .ref = ref,
                                .who = "migration",
                                .note = old->note,
                                .plugin = old->plugin,
                                .amount = old->gpu_seconds / 3600.0,
                                .gpu_seconds = grant ? 0 : old->gpu_seconds,
                                .job_id = old->job_id};
    struct jz_error err = {0};
    if (m->l->srv->store->ops->credit_add(m->l->srv->store, &e, &err)) {
        m->failed = err.code ? err.code : JZ_EIO;
        return 1;
    }
    apply(m->l, &e);
    return 0;
}

static int count_entry(void *arg, const struct jz_credit_entry *e)
{
    (void)e;
    ++*(int64_t *)arg;
    return 1; /* one is enough */
}

int jz_ledger_open(struct jz_server *srv, struct jz_ledger **out, struct jz_error *err)
{
    struct jz_ledger *l = calloc(1, sizeof *l);
    if (!l)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    l->srv = srv;
    l->index = json_object();
    l->holds = json_object();
    l->settled = json_object();
    l->loading = true;
    struct jz_store *st = srv->store;
    int64_t any = 0;
    int rc = st->ops->credit_each(st, NULL, INT64_MIN, INT64_MAX, count_entry, &any, err);
    if (!rc && any)
        rc = st->ops->credit_each(st, NULL, INT64_MIN, INT64_MAX, load_entry, l, err);
    if (!rc && !any) {
        struct legacy m = {.l = l};
        rc = st->ops->ledger_each(st, move_legacy, &m, err);
        if (!rc && m.failed)
            rc = jz_error_set(err, m.failed, "cannot move the first ledger's entries");
        if (!rc && m.n)
            jz_log_info("ledger", "moved %lld entries of GPU-hours to the credit ledger (a "
                                  "credit is a GPU-hour until prices are configured)",
                        (long long)m.n);
    }
    if (rc) {
        jz_ledger_close(l);
        return rc;
    }
    l->loading = false;
    for (size_t i = 0; i < l->naccts; i++)
        update_credit(l, l->accts[i]->tenant);
    *out = l;
    return 0;
}

void jz_ledger_close(struct jz_ledger *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->naccts; i++)
        account_free(l->accts[i]);
    free(l->accts);
    json_decref(l->index);
    json_decref(l->holds);
    json_decref(l->settled);
    free(l);
}

/* --- queries ---------------------------------------------------------------------------- */

bool jz_ledger_known(struct jz_ledger *l, const char *tenant)
{
    return find(l, tenant) != NULL;
}

bool jz_ledger_metered(struct jz_ledger *l, const char *tenant)
{
    const struct account *a = find(l, tenant);
    return a && a->metered;
}

double jz_ledger_balance(struct jz_ledger *l, const char *tenant)
{
    const struct account *a = find(l, tenant);
    return a ? balance_of(a) : 0;
}

double jz_ledger_available(struct jz_ledger *l, const char *tenant)
{
    const struct account *a = find(l, tenant);
    if (!a || !a->metered)
        return INFINITY;
    return balance_of(a) - a->held;
}

bool jz_ledger_held(struct jz_ledger *l, const char *ref, double *amount)
{
    json_t *h = json_object_get(l->holds, ref);
    if (amount)
        *amount = h ? jz_json_num(h, "amount", 0) : 0;
    return h != NULL;
}

/* --- entries ---------------------------------------------------------------------------- */

static int check_common(const char *tenant, const char *ref, double amount, struct jz_error *err)
{
    if (!jz_name_is_safe(tenant, JZ_MAX_NAME_LEN))
        return jz_error_set(err, JZ_EINVAL, "tenant: use 1-%d of A-Z a-z 0-9 . _ -",
                            JZ_MAX_NAME_LEN);
    if (ref && strlen(ref) > JZ_LEDGER_MAX_REF)
        return jz_error_set(err, JZ_EINVAL, "reference too long");
    if (!isfinite(amount) || fabs(amount) > JZ_LEDGER_MAX_AMOUNT)
        return jz_error_set(err, JZ_EINVAL, "amount: at most %g credits either way",
                            JZ_LEDGER_MAX_AMOUNT);
    return 0;
}

int jz_ledger_hold(struct jz_ledger *l, const char *tenant, const char *ref, double amount,
                   const char *who, const char *why, bool force, struct jz_error *err)
{
    int rc = check_common(tenant, ref, amount, err);
    if (rc)
        return rc;
    if (!ref || !*ref || amount < 0)
        return jz_error_set(err, JZ_EINVAL, "a hold needs a reference and an amount >= 0");
    if (json_object_get(l->holds, ref) || json_object_get(l->settled, ref))
        return jz_error_set(err, JZ_EEXIST, "%s holds credit already, or did", ref);
    double avail = jz_ledger_available(l, tenant);
    if (!force && amount > avail)
        return jz_error_set(err, JZ_EAGAIN,
                            "tenant %s needs %.4f credits for %s and has %.4f available "
                            "(%.4f missing)",
                            tenant, amount, ref, avail > 0 ? avail : 0,
                            amount - (avail > 0 ? avail : 0));
    struct jz_credit_entry e = {.tenant = tenant, .kind = "hold", .ref = ref, .who = who,
                                .note = why, .amount = amount};
    return append(l, &e, err);
}

int jz_ledger_settle(struct jz_ledger *l, const char *tenant, const char *ref, double charge,
                     const struct jz_ledger_use *use, const char *who, const char *why,
                     struct jz_error *err)
{
    int rc = check_common(tenant, ref, charge, err);
    if (rc)
        return rc;
    if (!ref || !*ref || charge < 0)
        return jz_error_set(err, JZ_EINVAL, "a charge needs a reference and an amount >= 0");
    json_t *h = json_object_get(l->holds, ref);
    if (!h)
        return 0; /* settled already (or never held): never twice */
    const char *owner = jz_json_str(h, "tenant", tenant);
    char who_tenant[JZ_MAX_NAME_LEN + 1];
    jz_strlcpy(who_tenant, owner, sizeof who_tenant);
    struct jz_credit_entry c = {.tenant = who_tenant, .kind = "charge", .ref = ref, .who = who,
                                .note = why, .amount = charge,
                                .gpu_seconds = use ? use->gpu_seconds : 0,
                                .plugin = use ? use->plugin : NULL,
                                .job_id = use ? use->job_id : 0};
    struct jz_credit_entry r = {.tenant = who_tenant, .kind = "release", .ref = ref, .who = who,
                                .note = why, .amount = jz_json_num(h, "amount", 0)};
    if ((rc = append(l, &c, err)))
        return rc;
    return append(l, &r, err);
}

int jz_ledger_add(struct jz_ledger *l, const char *tenant, const char *kind, double amount,
                  const char *who, const char *why, bool override, struct jz_error *err)
{
    int rc = check_common(tenant, NULL, amount, err);
    if (rc)
        return rc;
    bool adjustment = strcmp(kind, "adjustment") == 0;
    if (!adjustment && strcmp(kind, "purchase") != 0 && strcmp(kind, "refund") != 0)
        return jz_error_set(err, JZ_EINVAL, "kind: purchase, refund or adjustment");
    if (amount == 0 || (!adjustment && amount < 0))
        return jz_error_set(err, JZ_EINVAL, "amount: %s", adjustment ? "must not be 0"
                                                                    : "must be above 0");
    struct account *a = acct(l, tenant);
    if (!a)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    if (adjustment && amount < 0 && balance_of(a) + amount < 0 && !override)
        return jz_error_set(err, JZ_EINVAL,
                            "amount: the balance of %s would be %.2f: give override to allow a "
                            "negative balance",
                            tenant, balance_of(a) + amount);
    struct jz_credit_entry e = {.tenant = tenant, .kind = kind, .who = who, .note = why,
                                .amount = amount};
    return append(l, &e, err);
}

/* --- reports ---------------------------------------------------------------------------- */

static json_t *usage_row(const char *name, const struct account *a)
{
    json_t *by = json_object();
    const char *p;
    json_t *v;
    json_object_foreach(a->by_plugin, p, v)
        json_object_set_new(by, p, json_real(json_number_value(v) / 3600.0));
    double bal = balance_of(a);
    /* The first fields in credits; the GPU-hour ones read as before when no price is set. */
    return json_pack("{s:s, s:b, s:f, s:f, s:o, s:f, s:f, s:f, s:f, s:f, s:o, s:I, s:o}",
                     "tenant", name, "metered", a->metered, "balance", bal, "held", a->held,
                     "available", a->metered ? json_real(bal - a->held) : json_null(),
                     "purchased", a->purchased + a->refunded + a->adjusted, "charged",
                     a->charged, "granted_gpu_hours", a->purchased + a->refunded + a->adjusted,
                     "used_gpu_hours", a->gpu_seconds / 3600.0, "used_credits", a->charged,
                     "balance_gpu_hours", a->metered ? json_real(bal) : json_null(), "jobs",
                     (json_int_t)a->runs, "used_gpu_hours_by_plugin", by);
}

json_t *jz_ledger_usage_json(struct jz_ledger *l, const char *tenant)
{
    json_t *arr = json_array();
    if (tenant) {
        struct account empty = {.by_plugin = json_object()};
        const struct account *a = find(l, tenant);
        json_array_append_new(arr, usage_row(tenant, a ? a : &empty));
        json_decref(empty.by_plugin);
    } else {
        for (size_t i = 0; i < l->naccts; i++)
            json_array_append_new(arr, usage_row(l->accts[i]->tenant, l->accts[i]));
    }
    return json_pack("{s:o}", "tenants", arr);
}

struct statement {
    double opening, opening_held;
    json_t *open_holds; /* ref -> amount, through the period */
    json_t *entries;    /* NULL while summing what came before */
    json_t *totals;     /* kind -> credits */
    size_t count;
    bool truncated;
};

#define STATEMENT_MAX_ENTRIES 100000

static int statement_entry(void *arg, const struct jz_credit_entry *e)
{
    struct statement *s = arg;
    double signed_amount = 0;
    const char *k = e->kind, *ref = e->ref ? e->ref : "";
    if (strcmp(k, "purchase") == 0 || strcmp(k, "refund") == 0 || strcmp(k, "adjustment") == 0)
        signed_amount = e->amount;
    else if (strcmp(k, "charge") == 0)
        signed_amount = -e->amount;
    if (strcmp(k, "hold") == 0 && *ref)
        json_object_set_new(s->open_holds, ref, json_real(e->amount));
    else if (strcmp(k, "release") == 0 && *ref)
        json_object_del(s->open_holds, ref);
    if (!s->entries) {
        s->opening += signed_amount;
        return 0;
    }
    json_object_set_new(s->totals, k, json_real(jz_json_num(s->totals, k, 0) + e->amount));
    if (s->count++ >= STATEMENT_MAX_ENTRIES) {
        s->truncated = true;
        return 0;
    }
    char ts[40];
    jz_time_format_iso(e->time_ms, ts, sizeof ts);
    json_array_append_new(s->entries,
                          json_pack("{s:I, s:s, s:s, s:f, s:f, s:s?, s:s?, s:s?, s:o, s:f}",
                                    "seq", (json_int_t)e->seq, "time", ts, "kind", k, "amount",
                                    e->amount, "balance_change", signed_amount, "ref",
                                    *ref ? ref : NULL, "who", e->who, "note", e->note, "job",
                                    e->job_id ? json_integer(e->job_id) : json_null(),
                                    "gpu_hours", e->gpu_seconds / 3600.0));
    return 0;
}

static double held_sum(const json_t *holds)
{
    double sum = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)holds, k, v) sum += json_number_value(v);
    return sum;
}

int jz_ledger_statement(struct jz_ledger *l, const char *tenant, int64_t from_ms, int64_t to_ms,
                        json_t **out, struct jz_error *err)
{
    struct jz_store *st = l->srv->store;
    struct statement s = {.open_holds = json_object(), .totals = json_object()};
    int rc = st->ops->credit_each(st, tenant, INT64_MIN, from_ms, statement_entry, &s, err);
    s.opening_held = held_sum(s.open_holds);
    s.entries = json_array();
    if (!rc)
        rc = st->ops->credit_each(st, tenant, from_ms, to_ms, statement_entry, &s, err);
    if (rc) {
        json_decref(s.open_holds);
        json_decref(s.entries);
        json_decref(s.totals);
        return rc;
    }
    double closing = s.opening;
    json_t *arr = s.entries;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) closing += jz_json_num(e, "balance_change", 0);
    if (s.truncated) { /* the sums are whole even when the list is cut */
        closing = s.opening + jz_json_num(s.totals, "purchase", 0) +
                  jz_json_num(s.totals, "refund", 0) + jz_json_num(s.totals, "adjustment", 0) -
                  jz_json_num(s.totals, "charge", 0);
    }
    char from[40], to[40];
    jz_time_format_iso(from_ms, from, sizeof from);
    jz_time_format_iso(to_ms, to, sizeof to);
    *out = json_pack("{s:s, s:s, s:s, s:s, s:f, s:f, s:o, s:o, s:f, s:f, s:b, s:b}", "tenant",
                     tenant, "from", from, "to", to, "unit", "credits", "opening_balance",
                     s.opening, "opening_held", s.opening_held, "entries", arr, "totals",
                     s.totals, "closing_balance", closing, "closing_held",
                     held_sum(s.open_holds), "metered", jz_ledger_metered(l, tenant),
                     "truncated", s.truncated);
    json_decref(s.open_holds);
    return *out ? 0 : jz_error_set(err, JZ_ENOMEM, "out of memory");
}
