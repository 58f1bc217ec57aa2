/* A new policy for a live scheduler (jz_sched_reconfigure), a new set of reservations
 * (jz_sched_reservations_replace), or both (jz_sched_reload: the service's SIGHUP). Each is
 * prepared (checked, and every allocation made) before anything is committed, and commits cannot
 * fail, so a refused or failed call leaves the scheduler as it was and the service keeps running
 * on the old policy. */
#include "scheduler/sched_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A name field of a caller's struct: terminated within its array, 1 to 63 characters. */
static bool field_name_ok(const char *name)
{
    return memchr(name, '\0', JZ_SCHED_NAME_LEN) && jz_sched__name_ok(name);
}

/* ---------- policy ---------- */

/* What a configured tenant becomes, prepared before anything changes. */
struct tenant_plan {
    struct tenant *t; /* the scheduler's, or a new one (is_new) not yet inserted */
    bool is_new;
    int cls; /* in the new classes */
    struct site_quota *quotas;
    struct model_quota *mquotas;
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks the configured tenants against the new classes. A tenant listed twice is refused:
 * which of the two entries applies would be a guess. */
static int tenants_check(const struct jz_sched_config *cfg, const struct jz_sched_class *classes,
                         size_t nclasses, struct jz_error *err)
{
    size_t n = cfg->tenant_count;
    if (n > JZ_SCHED_MAX_TENANTS)
        return jz_error_set(err, JZ_ELIMIT, "more than %d tenants", JZ_SCHED_MAX_TENANTS);
    if (n && !cfg->tenants)
        return jz_error_set(err, JZ_EINVAL, "tenant_count without tenants");
    for (size_t i = 0; i < n; i++) {
        const struct jz_sched_tenant *t = &cfg->tenants[i];
        int rc = jz_sched__tenant_check(t, err);
        if (rc)
            return rc;
        bool known = !t->class_name[0];
        for (size_t c = 0; c < nclasses && !known; c++)
            known = strcmp(classes[c].name, t->class_name) == 0;
        if (!known)
            return jz_error_set(err, JZ_ENOENT, "tenant %s: unknown class %s", t->name,
                                t->class_name);
    }
    if (n < 2)
        return 0;
    const char **v = malloc(n * sizeof(*v));
    if (!v)
        return jz_error_set(err, JZ_ENOMEM, "out of memory checking tenants");
    for (size_t i = 0; i < n; i++)
        v[i] = cfg->tenants[i].name;
    qsort(v, n, sizeof(*v), name_cmp);
    int rc = 0;
    for (size_t i = 1; i < n && rc == 0; i++)
        if (strcmp(v[i - 1], v[i]) == 0)
            rc = jz_error_set(err, JZ_EEXIST, "tenant %s is configured twice", v[i]);
    free(v);
    return rc;
}

static void plans_free(struct tenant_plan *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++) {
        free(p[i].quotas);
        free(p[i].mquotas);
        if (p[i].is_new)
            free(p[i].t);
    }
    free(p);
}

/* Sites the quotas name that the scheduler does not know yet: interned only when the policy is
 * committed, so that a refused or checked-only reload leaves the sites as they were (and does
 * not use up JZ_SCHED_MAX_SITES). New site k gets index base + k, base being the site count when
 * prepared: nothing else adds sites between prepare and commit. */
#define NEW_SITE_SLOTS (2 * JZ_SCHED_MAX_SITES) /* open addressing, at most half full */
struct new_sites {
    char *name[JZ_SCHED_MAX_SITES]; /* malloc'd; NULL once the scheduler took it */
    size_t n;
    uint32_t base;
    uint16_t slot[NEW_SITE_SLOTS]; /* index + 1 by name, 0 empty */
};
_Static_assert((NEW_SITE_SLOTS & (NEW_SITE_SLOTS - 1)) == 0 && JZ_SCHED_MAX_SITES < UINT16_MAX,
               "new_sites.slot is masked by NEW_SITE_SLOTS - 1 and holds indexes + 1");

static size_t site_slot(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 16777619u;
    return h & (NEW_SITE_SLOTS - 1);
}

/* The index site will have once the plan is committed: a known site's, or a new one's (added to
 * ns), refused beyond JZ_SCHED_MAX_SITES. */
static int site_plan(const struct jz_sched *s, struct new_sites *ns, const char *tenant,
                     const char *site, uint32_t *out, struct jz_error *err)
{
    if ((*out = jz_sched__site_find(s, site)) != UINT32_MAX)
        return 0;
    size_t k = site_slot(site);
    for (; ns->slot[k]; k = (k + 1) & (NEW_SITE_SLOTS - 1))
        if (strcmp(ns->name[ns->slot[k] - 1], site) == 0) {
            *out = ns->base + ns->slot[k] - 1;
            return 0;
        }
    if (ns->base + ns->n >= JZ_SCHED_MAX_SITES)
        return jz_error_set(err, JZ_ELIMIT, "tenant %s: site %s would make more than %d sites",
                            tenant, site, JZ_SCHED_MAX_SITES);
    size_t len = strlen(site) + 1;
    if (!(ns->name[ns->n] = malloc(len)))
        return jz_error_set(err, JZ_ENOMEM, "out of memory reconfiguring tenant %s", tenant);
    memcpy(ns->name[ns->n], site, len);
    ns->slot[k] = (uint16_t)(ns->n + 1);
    *out = ns->base + (uint32_t)ns->n++;
    return 0;
}

static void new_sites_free(struct new_sites *ns)
{
    for (size_t k = 0; k < ns->n; k++)
        free(ns->name[k]);
    ns->n = 0;
}

/* Allocates what the configured tenants will hold: new tenants (not yet inserted) and quota
 * lists, with the indexes their sites will have (a site name without nodes changes nothing);
 * sites not known yet go to ns. */
static int tenants_prepare(struct jz_sched *s, const struct jz_sched_config *cfg,
                           const struct jz_sched_class *classes, size_t nclasses, int def,
                           struct tenant_plan **out, size_t *nnew_out, struct new_sites *ns,
                           struct jz_error *err)
{
    size_t n = cfg->tenant_count, nnew = 0;
    struct tenant_plan *p = calloc(n + 1, sizeof(*p));
    if (!p)
        return jz_error_set(err, JZ_ENOMEM, "out of memory reconfiguring the scheduler");
    for (size_t i = 0; i < n; i++)
        nnew += jz_sched__tenant_find(s, cfg->tenants[i].name) < 0;
    int rc = 0;
    if (s->ntenants + nnew > JZ_SCHED_MAX_TENANTS) {
        rc = jz_error_set(err, JZ_ELIMIT, "more than %d tenants", JZ_SCHED_MAX_TENANTS);
        goto fail;
    }
    ns->base = (uint32_t)s->sites.n;
    for (size_t i = 0; i < n; i++) {
        const struct jz_sched_tenant *t = &cfg->tenants[i];
        int ti = jz_sched__tenant_find(s, t->name);
        p[i].is_new = ti < 0;
        p[i].t = ti < 0 ? jz_sched__tenant_new(s, t->name) : s->tenants[ti];
        p[i].cls = def;
        for (size_t c = 0; c < nclasses && t->class_name[0]; c++)
            if (strcmp(classes[c].name, t->class_name) == 0)
                p[i].cls = (int)c;
        size_t nq = t->site_quota_count;
        if (!p[i].t || (nq && !(p[i].quotas = calloc(nq, sizeof(*p[i].quotas))))) {
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory reconfiguring tenant %s", t->name);
            goto fail;
        }
        for (size_t q = 0; q < nq; q++) {
            if ((rc = site_plan(s, ns, t->name, t->site_quotas[q].site, &p[i].quotas[q].site,
                                err)) != 0)
                goto fail;
            p[i].quotas[q].max = t->site_quotas[q].max_gpus;
        }
        if ((rc = jz_sched__model_quotas_copy(t, &p[i].mquotas, err)) != 0)
            goto fail;
    }
    *out = p;
    *nnew_out = nnew;
    return 0;
fail:
    plans_free(p, n);
    new_sites_free(ns);
    return rc;
}

/* A class goes away only when no job is of it: a waiting job would have no rank or order, and
 * a running one could not be told apart from the jobs it may preempt or be preempted by. */
static int classes_map(const struct jz_sched *s, const struct jz_sched_class *classes,
                       size_t nclasses, int *map, struct jz_error *err)
{
    size_t users[JZ_SCHED_MAX_CLASSES] = {0};
    for (size_t i = 0; i < s->table_cap; i++)
        if (s->table[i])
            users[s->table[i]->cls]++;
    for (size_t c = 0; c < s->nclasses; c++) {
        map[c] = -1;
        for (size_t k = 0; k < nclasses && map[c] < 0; k++)
            if (strcmp(s->classes[c].name, classes[k].name) == 0)
                map[c] = (int)k;
        if (map[c] < 0 && users[c])
            return jz_error_set(err, JZ_EBUSY,
                                "class %s still has %zu job%s (waiting or running): it cannot be "
                                "removed or renamed until they end%s",
                                s->classes[c].name, users[c], users[c] == 1 ? "" : "s",
                                (int)c == s->default_class
                                    ? " (it is the default class: list it in \"classes\" to "
                                      "keep it)"
                                    : "");
    }
    return 0;
}

/* A new policy, checked and allocated, not yet applied. */
struct policy_plan {
    struct jz_sched_config cfg; /* its classes and tenants borrowed from the caller */
    struct jz_sched_class classes[JZ_SCHED_MAX_CLASSES];
    size_t nclasses;
    int def, map[JZ_SCHED_MAX_CLASSES]; /* old class index -> new */
    struct tenant_plan *tenants;
    size_t nnew; /* tenants it creates */
    struct new_sites sites;
};

static int policy_prepare(struct jz_sched *s, const struct jz_sched_config *cfg,
                          struct policy_plan *pp, struct jz_error *err)
{
    memset(pp, 0, sizeof(*pp));
    if (!cfg)
        return jz_error_set(err, JZ_EINVAL, "reconfigure needs a configuration");
    pp->cfg = *cfg;
    pp->cfg.default_class[JZ_SCHED_NAME_LEN - 1] = '\0';
    int rc;
    if ((rc = jz_sched__config_check(&pp->cfg, err)) != 0 ||
        (rc = jz_sched__classes_build(&pp->cfg, pp->classes, &pp->nclasses, &pp->def, err)) != 0 ||
        (rc = classes_map(s, pp->classes, pp->nclasses, pp->map, err)) != 0 ||
        (rc = tenants_check(&pp->cfg, pp->classes, pp->nclasses, err)) != 0)
        return rc;
    return tenants_prepare(s, &pp->cfg, pp->classes, pp->nclasses, pp->def, &pp->tenants, &pp->nnew,
                           &pp->sites, err);
}

static void policy_plan_free(struct policy_plan *pp)
{
    plans_free(pp->tenants, pp->cfg.tenant_count);
    pp->tenants = NULL;
    new_sites_free(&pp->sites);
}

/* Applies a prepared policy; room for pp->nnew tenants and pp->sites.n sites was reserved.
 * Cannot fail. */
static void policy_commit(struct jz_sched *s, struct policy_plan *pp)
{
    const struct jz_sched_config *cfg = &pp->cfg;
    /* In order: new site k becomes index base + k, as the quotas already say. */
    for (size_t k = 0; k < pp->sites.n; k++) {
        jz_sched__site_adopt(s, pp->sites.name[k]);
        pp->sites.name[k] = NULL;
    }
    pp->sites.n = 0;
    memcpy(s->classes, pp->classes, pp->nclasses * sizeof(*pp->classes));
    s->nclasses = pp->nclasses;
    s->default_class = pp->def;
    bool starve_changed = cfg->starve_after_s != s->cfg.starve_after_s ||
                          cfg->starve_drain_factor != s->cfg.starve_drain_factor;
    s->cfg = *cfg;
    s->cfg.classes = NULL; /* borrowed for the call only */
    s->cfg.tenants = NULL;
    /* Tenants the configuration no longer lists are as if never configured; usage (the fair
     * share's decayed history) and credit are kept: they are facts, not policy. */
    for (size_t i = 0; i < s->ntenants; i++) {
        struct tenant *t = s->tenants[i];
        t->weight = cfg->default_weight;
        t->max_gpus = 0;
        t->cls = pp->def;
        free(t->quotas);
        t->quotas = NULL;
        t->nquotas = 0;
        jz_sched__model_quotas_adopt(s, (uint32_t)i, NULL, 0);
    }
    for (size_t i = 0; i < cfg->tenant_count; i++) {
        struct tenant_plan *tp = &pp->tenants[i];
        if (tp->is_new)
            jz_sched__tenant_insert(s, tp->t); /* room was reserved */
        tp->is_new = false;
        tp->t->weight = cfg->tenants[i].weight;
        tp->t->max_gpus = cfg->tenants[i].max_gpus;
        tp->t->cls = tp->cls;
        tp->t->quotas = tp->quotas;
        tp->t->nquotas = cfg->tenants[i].site_quota_count;
        tp->quotas = NULL;
        jz_sched__model_quotas_adopt(s, (uint32_t)jz_sched__tenant_find(s, tp->t->name),
                                     tp->mquotas, cfg->tenants[i].model_quota_count);
        tp->mquotas = NULL;
    }
    /* Jobs keep the class they were submitted with (a tenant's new class is for its new
     * jobs); running ones keep everything else too. Waiting ones are ordered anew: their key
     * (class, size, age, LAS band, time left) follows the new weights and orders. */
    for (size_t i = 0; i < s->table_cap; i++) {
        struct job *j = s->table[i];
        if (!j)
            continue;
        j->cls = (uint8_t)pp->map[j->cls];
        if (j->state != JZ_SCHED_JOB_PENDING && j->state != JZ_SCHED_JOB_HELD)
            continue;
        if (cfg->starve_after_s == 0)
            j->starved = false; /* protection turned off */
        j->key = jz_sched__job_key_at(s, j, 0);
    }
    for (size_t i = 0; i < s->nactive; i++)
        jz_sched__queue_heapify(s->active[i]);
    if (starve_changed)
        s->next_starve_check = 0;    /* the next full pass looks with the new settings */
    jz_sched__fair_share_compute(s); /* the new weights count from the next decision */
    s->never_recheck = true;         /* quotas changed: parked jobs may fit them now */
}

/* ---------- reservations ---------- */

/* A new set of reservations, checked and allocated, not yet applied. */
struct resv_plan {
    const struct jz_sched_reservation *r; /* the caller's, borrowed for the call */
    size_t n;
    struct resv *nr;
    uint32_t *count; /* per node: reservations holding it */
    uint32_t **lists;
    struct tenant **fresh; /* tenants unknown when prepared, not yet inserted */
    size_t nfresh;
};

static void resv_plan_free(struct jz_sched *s, struct resv_plan *rp)
{
    for (size_t k = 0; rp->fresh && k < rp->nfresh; k++)
        free(rp->fresh[k]);
    for (size_t nd = 0; rp->lists && nd < s->nnodes; nd++)
        free(rp->lists[nd]);
    free(rp->lists);
    free(rp->fresh);
    free(rp->nr);
    free(rp->count);
    memset(rp, 0, sizeof(*rp));
}

static int resv_prepare(struct jz_sched *s, const struct jz_sched_reservation *r, size_t n,
                        struct resv_plan *rp, struct jz_error *err)
{
    memset(rp, 0, sizeof(*rp));
    if (n && !r)
        return jz_error_set(err, JZ_EINVAL, "replacing reservations needs a list");
    if (n > JZ_SCHED_MAX_RESERVATIONS)
        return jz_error_set(err, JZ_ELIMIT, "more than %d reservations", JZ_SCHED_MAX_RESERVATIONS);
    for (size_t i = 0; i < n; i++) {
        if (!field_name_ok(r[i].name) || !field_name_ok(r[i].tenant) || r[i].end <= r[i].start ||
            r[i].gpus_per_node == 0 || r[i].node_count == 0 || !r[i].nodes)
            return jz_error_set(err, JZ_EINVAL,
                                "reservation %zu needs a name, a tenant, nodes, GPUs and "
                                "start < end",
                                i);
        for (size_t k = 0; k < i; k++)
            if (strcmp(r[k].name, r[i].name) == 0)
                return jz_error_set(err, JZ_EEXIST, "reservation %s is listed twice", r[i].name);
    }
    rp->r = r;
    rp->n = n;
    /* seen: per node, the last reservation that listed it (to refuse a node listed twice in
     * one reservation, which would count its GPUs twice). */
    uint32_t *seen = calloc(s->nnodes + 1, sizeof(*seen));
    rp->count = calloc(s->nnodes + 1, sizeof(*rp->count));
    rp->lists = calloc(s->nnodes + 1, sizeof(*rp->lists));
    rp->nr = calloc(n + 1, sizeof(*rp->nr));
    rp->fresh = calloc(n + 1, sizeof(*rp->fresh));
    int rc = 0;
    if (!seen || !rp->count || !rp->lists || !rp->nr || !rp->fresh)
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory replacing reservations");
    for (size_t i = 0; i < n && rc == 0; i++)
        for (size_t k = 0; k < r[i].node_count; k++) {
            const char *name = r[i].nodes[k];
            size_t nd = name ? jz_sched__node_find(s, name) : SIZE_MAX;
            if (nd == SIZE_MAX || r[i].gpus_per_node > s->nodes[nd].gpus) {
                rc = jz_error_set(err, nd == SIZE_MAX ? JZ_ENOENT : JZ_ERANGE,
                                  "reservation %s: node %s %s", r[i].name, name ? name : "(null)",
                                  nd == SIZE_MAX ? "is unknown" : "has fewer GPUs");
                break;
            }
            if (seen[nd] == i + 1) {
                rc = jz_error_set(err, JZ_EEXIST, "reservation %s: node %s is listed twice",
                                  r[i].name, name);
                break;
            }
            seen[nd] = (uint32_t)i + 1;
            rp->count[nd]++;
        }
    free(seen);
    for (size_t i = 0; i < n && rc == 0; i++) {
        snprintf(rp->nr[i].name, sizeof(rp->nr[i].name), "%s", r[i].name);
        rp->nr[i].start = r[i].start;
        rp->nr[i].end = r[i].end;
        rp->nr[i].gpus = r[i].gpus_per_node;
        bool known = jz_sched__tenant_find(s, r[i].tenant) >= 0;
        for (size_t k = 0; k < rp->nfresh && !known; k++)
            known = strcmp(rp->fresh[k]->name, r[i].tenant) == 0;
        if (known)
            continue;
        if (!(rp->fresh[rp->nfresh] = jz_sched__tenant_new(s, r[i].tenant)))
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory replacing reservations");
        else
            rp->nfresh++;
    }
    for (size_t nd = 0; nd < s->nnodes && rc == 0; nd++)
        if (rp->count[nd] && !(rp->lists[nd] = malloc(rp->count[nd] * sizeof(uint32_t))))
            rc = jz_error_set(err, JZ_ENOMEM, "out of memory replacing reservations");
    if (rc)
        resv_plan_free(s, rp);
    return rc;
}

/* Applies a prepared set of reservations; room for rp->nfresh tenants was reserved (some may
 * exist by now: the policy applied first may have created them). Cannot fail. */
static void resv_commit(struct jz_sched *s, struct resv_plan *rp)
{
    for (size_t i = 0; i < rp->n; i++) {
        int ti = jz_sched__tenant_find(s, rp->r[i].tenant);
        for (size_t k = 0; k < rp->nfresh && ti < 0; k++)
            if (rp->fresh[k] && strcmp(rp->fresh[k]->name, rp->r[i].tenant) == 0) {
                /* As if created now: under the policy just applied, if any. */
                rp->fresh[k]->weight = s->cfg.default_weight;
                rp->fresh[k]->cls = s->default_class;
                jz_sched__tenant_insert(s, rp->fresh[k]);
                rp->fresh[k] = NULL;
                ti = (int)s->ntenants - 1;
            }
        rp->nr[i].tenant = (uint32_t)ti;
    }
    for (size_t nd = 0; nd < s->nnodes; nd++) {
        free(s->nodes[nd].resv);
        s->nodes[nd].resv = rp->lists[nd];
        s->nodes[nd].nresv = 0;
        rp->lists[nd] = NULL;
    }
    for (size_t i = 0; i < rp->n; i++)
        for (size_t k = 0; k < rp->r[i].node_count; k++) {
            struct node *nd = &s->nodes[jz_sched__node_find(s, rp->r[i].nodes[k])];
            nd->resv[nd->nresv++] = (uint32_t)i;
        }
    free(s->resv);
    s->resv = rp->nr;
    s->nresv = rp->n;
    rp->nr = NULL;
    resv_plan_free(s, rp); /* the fresh tenants left over were created by the policy */
}

/* ---------- the entry points ---------- */

/* Tenants the reservations would create that the policy does not: with those of the policy,
 * they must fit JZ_SCHED_MAX_TENANTS. */
static size_t fresh_beyond(const struct resv_plan *rp, const struct jz_sched_config *cfg)
{
    size_t n = 0;
    for (size_t k = 0; k < rp->nfresh; k++) {
        bool in_cfg = false;
        for (size_t i = 0; cfg && i < cfg->tenant_count && !in_cfg; i++)
            in_cfg = strcmp(cfg->tenants[i].name, rp->fresh[k]->name) == 0;
        n += !in_cfg;
    }
    return n;
}

/* The common path: prepare what is asked (the policy when cfg, the reservations when
 * with_resv), then commit all of it, or nothing (check only, or any error). */
static int reload(struct jz_sched *s, const struct jz_sched_config *cfg, bool with_resv,
                  const struct jz_sched_reservation *r, size_t n, bool check_only,
                  struct jz_error *err)
{
    if (!s)
        return jz_error_set(err, JZ_EINVAL, "no scheduler");
    struct policy_plan *pp = NULL;
    struct resv_plan rp = {0};
    int rc = 0;
    if (cfg) {
        if (!(pp = malloc(sizeof(*pp))))
            return jz_error_set(err, JZ_ENOMEM, "out of memory reconfiguring the scheduler");
        if ((rc = policy_prepare(s, cfg, pp, err)) != 0)
            goto out;
    }
    if (with_resv && (rc = resv_prepare(s, r, n, &rp, err)) != 0)
        goto out;
    size_t more = (pp ? pp->nnew : 0) + fresh_beyond(&rp, pp ? &pp->cfg : NULL);
    if (s->ntenants + more > JZ_SCHED_MAX_TENANTS) {
        rc = jz_error_set(err, JZ_ELIMIT, "more than %d tenants", JZ_SCHED_MAX_TENANTS);
        goto out;
    }
    /* Reserving room changes nothing visible: the tenant and site indexes only grow. */
    if (!check_only && (jz_sched__tenants_reserve(s, (pp ? pp->nnew : 0) + rp.nfresh) ||
                        (pp && jz_sched__sites_reserve(s, pp->sites.n)))) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory reconfiguring the scheduler");
        goto out;
    }
    if (check_only)
        goto out;
    /* Nothing below can fail. */
    if (pp)
        policy_commit(s, pp);
    if (with_resv)
        resv_commit(s, &rp);
out:
    if (pp)
        policy_plan_free(pp);
    free(pp);
    resv_plan_free(s, &rp);
    return rc;
}

int jz_sched_reconfigure(struct jz_sched *s, const struct jz_sched_config *cfg,
                         struct jz_error *err)
{
    if (!cfg)
        return jz_error_set(err, JZ_EINVAL, "reconfigure needs a scheduler and a configuration");
    return reload(s, cfg, false, NULL, 0, false, err);
}

int jz_sched_reservations_replace(struct jz_sched *s, const struct jz_sched_reservation *r,
                                  size_t n, struct jz_error *err)
{
    return reload(s, NULL, true, r, n, false, err);
}

int jz_sched_reload(struct jz_sched *s, const struct jz_sched_config *cfg,
                    const struct jz_sched_reservation *r, size_t n, bool check_only,
                    struct jz_error *err)
{
    if (!cfg)
        return jz_error_set(err, JZ_EINVAL, "reload needs a configuration");
    return reload(s, cfg, true, r, n, check_only, err);
}
