/* Node sets: all-or-nothing placement of multi-node (gang) jobs, and the nodes held for the head
 * of the queue until its estimated start (for a gang, the earliest time enough nodes are free).
 *
 * A gang is placed in three steps. Candidates: nodes with enough free GPUs and cores that the
 * job may use now (site quota, reservations, the head's hold, preemptors' claims), scanned from
 * the fullest up (best fit), a bounded number of them. Choice: the fewest sites (one if any site
 * can hold every part within the tenant's quota there), inside a site the fewest switch groups
 * (nodes sharing a switch_name; a node without one is a group of its own), then the least waste
 * (free GPUs left over, so big free islands stay whole). Placement: each part goes through the
 * single-node placement (its closest GPU set and local cores); if one fails, that node is
 * dropped and the choice is made again. */
#include "scheduler/sched_impl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define GANG_SCAN_LIMIT 4096 /* candidate nodes per gang attempt, plus 4 per part */
#define GANG_RETRIES 4       /* new choices after a chosen node's placement fails */

#define grow jz_sched__grow

static int cand_cmp(const void *a, const void *b)
{
    const struct gang_cand *x = a, *y = b;
    if (x->site != y->site)
        return x->site < y->site ? -1 : 1;
    if (x->sw != y->sw)
        return x->sw < y->sw ? -1 : 1;
    if (x->waste != y->waste)
        return x->waste < y->waste ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node;
}

/* A switch group inside one site's range of candidates. */
struct group {
    size_t a, len;
    uint64_t waste; /* of the whole group */
};

static int group_cmp(const void *a, const void *b)
{
    const struct group *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    if (x->waste != y->waste)
        return x->waste < y->waste ? -1 : 1;
    return x->a < y->a ? -1 : x->a > y->a;
}

/* Chooses m candidates in gc[a, b) (one site, sorted by switch then waste): whole switch groups,
 * largest first, until one group can hold the rest, taking then the group that wastes least.
 * Writes the chosen indexes to pick (when not NULL) and returns the groups used; *waste gets
 * their waste. groups is scratch of b - a entries. */
static unsigned pick_in_site(const struct gang_cand *gc, size_t a, size_t b, size_t m,
                             struct group *groups, uint32_t *pick, uint64_t *waste)
{
    size_t ng = 0;
    for (size_t i = a; i < b;) {
        size_t e = i + 1;
        while (gc[i].sw != NO_SWITCH && e < b && gc[e].sw == gc[i].sw)
            e++;
        uint64_t w = 0;
        for (size_t k = i; k < e; k++)
            w += gc[k].waste;
        groups[ng++] = (struct group){.a = i, .len = e - i, .waste = w};
        i = e;
    }
    qsort(groups, ng, sizeof(*groups), group_cmp);
    unsigned used = 0;
    size_t left = m, out = 0;
    *waste = 0;
    for (size_t g = 0; g < ng && left > 0; g++) {
        size_t take = g;
        if (groups[g].len >= left) {
            /* Every group from g on that can hold the rest: the one that wastes least on it. */
            uint64_t best = UINT64_MAX;
            for (size_t h = g; h < ng && groups[h].len >= left; h++) {
                uint64_t w = 0;
                for (size_t k = 0; k < left; k++)
                    w += gc[groups[h].a + k].waste;
                if (w < best) {
                    best = w;
                    take = h;
                }
            }
        }
        size_t n = groups[take].len < left ? groups[take].len : left;
        for (size_t k = 0; k < n; k++) {
            *waste += gc[groups[take].a + k].waste;
            if (pick)
                pick[out++] = (uint32_t)(groups[take].a + k);
        }
        left -= n;
        used++;
        if (take != g) /* g stays a candidate for nothing: the rest is placed */
            break;
    }
    return used;
}

/* Parts the tenant may start in one site (its quota there), at most live. */
static size_t site_cap(const struct tenant *t, uint32_t site, unsigned k, size_t live)
{
    if (k == 0)
        return live;
    unsigned room = jz_sched__site_room(t, site);
    size_t cap = room == UINT_MAX ? live : room / k;
    return cap < live ? cap : live;
}

struct range {
    size_t a, b, cap;
    uint32_t site;
};

static int range_cmp(const void *a, const void *b)
{
    const struct range *x = a, *y = b;
    if (x->cap != y->cap)
        return x->cap > y->cap ? -1 : 1;
    return x->a < y->a ? -1 : x->a > y->a;
}

/* Chooses need candidates out of gc[0, nc) (sorted) into pick. FAIL_QUOTA when site quotas
 * leave too few (then *quota_site is such a site); FAIL_RESOURCES when out of memory. */
static enum fail choose(const struct jz_sched *s, const struct job *j, const struct gang_cand *gc,
                        size_t nc, size_t need, uint32_t *pick, struct plan *out,
                        uint32_t *quota_site)
{
    const struct tenant *t = s->tenants[j->tenant];
    struct range *ranges = malloc((nc + 1) * sizeof(*ranges));
    struct group *groups = malloc((nc + 1) * sizeof(*groups));
    enum fail rc = FAIL_RESOURCES;
    if (!ranges || !groups)
        goto out;
    size_t nr = 0;
    for (size_t i = 0; i < nc;) {
        size_t e = i + 1;
        while (e < nc && gc[e].site == gc[i].site)
            e++;
        size_t cap = site_cap(t, gc[i].site, j->gpus, e - i);
        if (cap < e - i)
            *quota_site = gc[i].site;
        ranges[nr++] = (struct range){.a = i, .b = e, .cap = cap, .site = gc[i].site};
        i = e;
    }
    /* One site when any can hold every part: the fewest switch groups, then the least waste. */
    size_t best = SIZE_MAX;
    unsigned best_groups = UINT_MAX;
    uint64_t best_waste = UINT64_MAX;
    for (size_t r = 0; r < nr; r++) {
        if (ranges[r].cap < need)
            continue;
        uint64_t w;
        unsigned g = pick_in_site(gc, ranges[r].a, ranges[r].b, need, groups, NULL, &w);
        if (g < best_groups || (g == best_groups && w < best_waste)) {
            best = r;
            best_groups = g;
            best_waste = w;
        }
    }
    if (best != SIZE_MAX) {
        uint64_t w;
        out->nswitches = pick_in_site(gc, ranges[best].a, ranges[best].b, need, groups, pick, &w);
        out->nsites = 1;
        rc = FIT;
        goto out;
    }
    /* Across sites: the fewest, largest first. */
    qsort(ranges, nr, sizeof(*ranges), range_cmp);
    size_t left = need, done = 0;
    out->nsites = out->nswitches = 0;
    for (size_t r = 0; r < nr && left > 0; r++) {
        size_t m = ranges[r].cap < left ? ranges[r].cap : left;
        if (m == 0)
            continue;
        uint64_t w;
        out->nswitches += pick_in_site(gc, ranges[r].a, ranges[r].b, m, groups, pick + done, &w);
        out->nsites++;
        done += m;
        left -= m;
    }
    rc = left == 0 ? FIT : FAIL_QUOTA;
out:
    free(ranges);
    free(groups);
    return rc;
}

/* Whether topology ti can hold a part of j: 0 unknown, 1 yes, 2 no (per attempt). */
static bool topo_ok(struct jz_sched *s, uint8_t *memo, size_t ti, const struct job *j)
{
    if (!memo[ti])
        memo[ti] = jz_sched__topo_holds(s, ti, j) ? 1 : 2;
    return memo[ti] == 1;
}

enum fail jz_sched__gang_place(struct jz_sched *s, struct job *j, int64_t now,
                               const struct head *hd, struct plan *out)
{
    unsigned k = j->gpus;
    size_t need = jz_sched__parts_of(j);
    size_t enough = 0;
    for (unsigned f = k; f < s->nbuckets; f++)
        enough += s->bucket_n[f];
    if (enough < need)
        return FAIL_NONE_FREE;
    size_t limit = GANG_SCAN_LIMIT + 4 * need;
    if (limit > enough)
        limit = enough;
    uint8_t *memo = calloc(s->ntopos + 1, 1);
    if (!memo ||
        grow((void **)&s->gc, &s->gc_cap, limit + jz_sched__nclaims(j) + 1, sizeof(*s->gc)) ||
        grow((void **)&s->scratch, &s->scratch_cap, need + 1, sizeof(*s->scratch))) {
        free(memo);
        return FAIL_RESOURCES; /* out of memory: it waits, and the next decision tries again */
    }
    size_t nc = 0, nquota = 0, nresv = 0, nshadow = 0;
    /* The nodes held for it first: its victims left them for it. */
    for (unsigned i = 0; i < jz_sched__nclaims(j); i++) {
        size_t n = j->claims[i];
        const struct node *nd = &s->nodes[n];
        if (nd->claim_job == j->id && jz_sched__node_usable(s, j, n, now, hd) == FIT &&
            topo_ok(s, memo, nd->topo_i, j))
            s->gc[nc++] = (struct gang_cand){
                .node = (uint32_t)n, .site = nd->site, .sw = nd->sw, .waste = nd->free_gpus - k};
    }
    for (unsigned f = k; f < s->nbuckets && nc < limit; f++)
        for (size_t b = 0; b < s->bucket_n[f] && nc < limit; b++) {
            size_t n = s->bucket[f][b];
            const struct node *nd = &s->nodes[n];
            if (jz_sched__nclaims(j) && nd->claim_job == j->id)
                continue; /* already in */
            switch (jz_sched__node_usable(s, j, n, now, hd)) {
            case FIT:
                break;
            case FAIL_QUOTA:
                nquota++;
                out->quota_site = nd->site;
                continue;
            case FAIL_RESERVATION:
                nresv++;
                continue;
            case FAIL_SHADOW:
                nshadow++;
                continue;
            default:
                continue;
            }
            if (!topo_ok(s, memo, nd->topo_i, j))
                continue;
            s->gc[nc++] = (struct gang_cand){
                .node = (uint32_t)n, .site = nd->site, .sw = nd->sw, .waste = f - k};
        }
    free(memo);
    out->usable = nc;
    if (nc < need) {
        if (nquota && nc + nquota >= need)
            return FAIL_QUOTA;
        if (nresv && nc + nresv >= need)
            return FAIL_RESERVATION;
        if (nshadow && nc + nshadow >= need)
            return FAIL_SHADOW;
        return FAIL_RESOURCES;
    }
    qsort(s->gc, nc, sizeof(*s->gc), cand_cmp);
    struct jz_sched_part *parts = calloc(need, sizeof(*parts));
    if (!parts)
        return FAIL_RESOURCES;
    uint32_t *pick = s->scratch;
    for (int round = 0; round <= GANG_RETRIES && nc >= need; round++) {
        enum fail why = choose(s, j, s->gc, nc, need, pick, out, &out->quota_site);
        if (why != FIT) {
            free(parts);
            return why;
        }
        size_t placed = 0;
        for (; placed < need; placed++) {
            struct gang_cand *c = &s->gc[pick[placed]];
            if (!jz_sched__place_on_node(s, j, c->node, &parts[placed].place)) {
                c->dead = true;
                break;
            }
            parts[placed].node = c->node;
            parts[placed].node_name = s->nodes[c->node].name;
        }
        if (placed == need) {
            out->parts = parts;
            out->n = need;
            return FIT;
        }
        for (size_t i = 0; i < placed; i++)
            jz_place_result_free(&parts[i].place);
        /* Drop the node that did not take its part; the order stays sorted. */
        size_t w = 0;
        for (size_t i = 0; i < nc; i++)
            if (!s->gc[i].dead)
                s->gc[w++] = s->gc[i];
        nc = w;
    }
    free(parts);
    return FAIL_RESOURCES;
}

/* ---------- the head's hold ---------- */

static bool heap_less(const struct tree *tr, uint32_t a, uint32_t b)
{
    return tr->t[a] < tr->t[b] || (tr->t[a] == tr->t[b] && a < b);
}

void jz_sched__head_shadow(struct jz_sched *s, struct job *j, int64_t now, struct head *hd)
{
    size_t need = jz_sched__parts_of(j);
    unsigned k = j->gpus;
    hd->t = NEVER;
    hd->mark = jz_sched__new_mark(s);
    if (k == 0 || k >= s->ntrees)
        return; /* CPU-only jobs hold nothing: GPUs are what the trees know about */
    const struct tree *tr = &s->trees[k];
    if (tr->t[1] == NEVER)
        return;
    /* Best-first walk of the tournament tree: leaves come out in order of the time they have
     * k free GPUs, so the need-th eligible one gives the earliest start. */
    uint8_t *memo = calloc(s->ntopos + 1, 1);
    size_t cap = 64, nh = 0, nch = 0;
    uint32_t *heap = malloc(cap * sizeof(*heap));
    if (!memo || grow((void **)&s->scratch, &s->scratch_cap, need + 1, sizeof(*s->scratch)) ||
        !heap)
        goto out;
    uint32_t *chosen = s->scratch;
    int64_t last = now;
    heap[nh++] = 1;
    while (nh > 0 && nch < need) {
        uint32_t i = heap[0], x = heap[--nh];
        size_t p = 0; /* sift x down from the root */
        for (;;) {
            size_t c = 2 * p + 1;
            if (c >= nh)
                break;
            if (c + 1 < nh && heap_less(tr, heap[c + 1], heap[c]))
                c++;
            if (!heap_less(tr, heap[c], x))
                break;
            heap[p] = heap[c];
            p = c;
        }
        if (nh)
            heap[p] = x;
        if (tr->t[i] == NEVER)
            break;
        if (i >= tr->p) {
            size_t n = i - tr->p;
            /* Nodes held for a preemptor are its, whatever their jobs' limits say. */
            bool claimed = n < s->nnodes && s->nodes[n].claim_job && s->nodes[n].claim_job != j->id;
            if (n < s->nnodes && !claimed && topo_ok(s, memo, s->nodes[n].topo_i, j)) {
                chosen[nch++] = (uint32_t)n;
                last = tr->t[i];
            }
            continue;
        }
        if (nh + 2 > cap) {
            uint32_t *nhp = realloc(heap, 2 * cap * sizeof(*heap));
            if (!nhp)
                goto out;
            heap = nhp;
            cap *= 2;
        }
        for (uint32_t c = 2 * i; c <= 2 * i + 1; c++) {
            if (tr->t[c] == NEVER)
                continue;
            size_t q = nh++;
            while (q > 0 && heap_less(tr, c, heap[(q - 1) / 2])) {
                heap[q] = heap[(q - 1) / 2];
                q = (q - 1) / 2;
            }
            heap[q] = c;
        }
    }
    if (nch == need) {
        hd->t = last < now ? now : last;
        for (size_t i = 0; i < nch; i++)
            s->nodes[chosen[i]].head_mark = hd->mark;
    }
out:
    free(memo);
    free(heap);
}
