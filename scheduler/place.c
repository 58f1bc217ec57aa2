/* Placement on one node: the GPU set with the smallest worst-case distance (ties: least
 * fragmentation), then cores local to each chosen GPU and their NUMA memory. */
#include "scheduler/place.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXACT_LIMIT 20000u /* enumerate every k-subset when there are at most this many */

static bool bit(const uint64_t *bm, size_t i)
{
    return bm && (bm[i / 64] >> (i % 64)) & 1u;
}

/* Lexicographic score of a candidate set; lower is better. */
struct score {
    unsigned worst;
    unsigned frag[JZ_TOPO_LINK_COUNT];
    unsigned sum;
};

static int score_cmp(const struct score *a, const struct score *b)
{
    if (a->worst != b->worst)
        return a->worst < b->worst ? -1 : 1;
    for (int l = 0; l < JZ_TOPO_LINK_COUNT; l++)
        if (a->frag[l] != b->frag[l])
            return a->frag[l] < b->frag[l] ? -1 : 1;
    if (a->sum != b->sum)
        return a->sum < b->sum ? -1 : 1;
    return 0;
}

/* Feasibility hook: may the chosen set be used (e.g. are there enough local cores)? */
typedef bool feasible_fn(const struct jz_topo *t, uint64_t set, void *ctx);

struct chooser {
    const struct jz_topo *t;
    const unsigned char *dist; /* the topology's matrix */
    size_t n;
    uint64_t free_mask;
    feasible_fn *feasible;
    void *ctx;
    bool have;
    uint64_t best;
    struct score best_score;
    unsigned ties; /* candidates with the best worst distance, for the reason sentence */
};

static unsigned worst_of(const struct chooser *c, const size_t *idx, size_t k, unsigned *sum)
{
    unsigned w = 0, s = 0;
    for (size_t a = 0; a < k; a++)
        for (size_t b = a + 1; b < k; b++) {
            unsigned d = c->dist[idx[a] * c->n + idx[b]];
            s += d;
            if (d > w)
                w = d;
        }
    *sum = s;
    return w;
}

/* For each link level L, how many free GPUs left outside the set sit within L of it: taking
 * GPUs from already-broken groups keeps larger free groups whole. */
static void frag_of(const struct chooser *c, uint64_t free_mask, uint64_t set, const size_t *idx,
                    size_t k, unsigned *frag)
{
    memset(frag, 0, sizeof(unsigned) * JZ_TOPO_LINK_COUNT);
    uint64_t rest = free_mask & ~set;
    while (rest) {
        size_t g = (size_t)__builtin_ctzll(rest);
        rest &= rest - 1;
        unsigned best = JZ_TOPO_LINK_SYSTEM;
        for (size_t a = 0; a < k; a++) {
            unsigned l = c->dist[g * c->n + idx[a]] / 16u;
            if (l < best)
                best = l;
        }
        for (unsigned l = best; l < JZ_TOPO_LINK_COUNT; l++)
            frag[l]++;
    }
}

static void consider(struct chooser *c, const size_t *idx, size_t k)
{
    uint64_t set = 0;
    for (size_t a = 0; a < k; a++)
        set |= 1ull << idx[a];
    struct score s;
    s.worst = worst_of(c, idx, k, &s.sum);
    if (c->have && s.worst > c->best_score.worst)
        return;
    frag_of(c, c->free_mask, set, idx, k, s.frag);
    int cmp = c->have ? score_cmp(&s, &c->best_score) : -1;
    if (c->have && s.worst == c->best_score.worst &&
        memcmp(s.frag, c->best_score.frag, sizeof(s.frag)) != 0)
        c->ties++; /* the fragmentation rule, not distance, told these apart */
    if (cmp >= 0)
        return;
    if (c->feasible && !c->feasible(c->t, set, c->ctx))
        return;
    if (c->have && s.worst < c->best_score.worst)
        c->ties = 0;
    c->have = true;
    c->best = set;
    c->best_score = s;
}

static uint64_t binom_capped(unsigned n, unsigned k, uint64_t cap)
{
    if (k > n)
        return 0;
    uint64_t r = 1;
    for (unsigned i = 1; i <= k; i++) {
        r = r * (n - k + i) / i;
        if (r > cap)
            return cap + 1;
    }
    return r;
}

static void enumerate(struct chooser *c, const size_t *freev, size_t n, unsigned k)
{
    size_t pos[JZ_TOPO_MAX_GPUS], idx[JZ_TOPO_MAX_GPUS];
    for (unsigned i = 0; i < k; i++)
        pos[i] = i;
    for (;;) {
        for (unsigned i = 0; i < k; i++)
            idx[i] = freev[pos[i]];
        consider(c, idx, k);
        int i = (int)k - 1;
        while (i >= 0 && pos[i] == n - k + (size_t)i)
            i--;
        if (i < 0)
            return;
        pos[i]++;
        for (unsigned j = (unsigned)i + 1; j < k; j++)
            pos[j] = pos[j - 1] + 1;
    }
}

/* Too many subsets to enumerate: grow a set from every seed, each time adding the GPU that
 * keeps the worst distance (then the total) smallest. */
static void greedy(struct chooser *c, const size_t *freev, size_t n, unsigned k)
{
    size_t idx[JZ_TOPO_MAX_GPUS];
    for (size_t s = 0; s < n; s++) {
        uint64_t in = 1ull << freev[s];
        idx[0] = freev[s];
        size_t m = 1;
        while (m < k) {
            size_t pick = SIZE_MAX;
            unsigned pw = ~0u, ps = ~0u;
            for (size_t q = 0; q < n; q++) {
                size_t g = freev[q];
                if (in & (1ull << g))
                    continue;
                unsigned w = 0, sum = 0;
                for (size_t a = 0; a < m; a++) {
                    unsigned d = c->dist[g * c->n + idx[a]];
                    sum += d;
                    if (d > w)
                        w = d;
                }
                if (w < pw || (w == pw && sum < ps)) {
                    pick = g;
                    pw = w;
                    ps = sum;
                }
            }
            idx[m++] = pick;
            in |= 1ull << pick;
        }
        consider(c, idx, k);
    }
}

static int choose(const struct jz_topo *t, uint64_t free_mask, unsigned k, feasible_fn *feasible,
                  void *ctx, uint64_t *chosen, unsigned *ties)
{
    size_t freev[JZ_TOPO_MAX_GPUS], n = 0;
    for (uint64_t m = free_mask; m; m &= m - 1)
        freev[n++] = (size_t)__builtin_ctzll(m);
    if (k == 0) {
        *chosen = 0;
        return 0;
    }
    if (k > n)
        return JZ_EBUSY;
    struct chooser c = {.t = t,
                        .dist = jz_topo_distance_matrix(t),
                        .n = jz_topo_gpu_count(t),
                        .free_mask = free_mask,
                        .feasible = feasible,
                        .ctx = ctx};
    if (binom_capped((unsigned)n, k, EXACT_LIMIT) <= EXACT_LIMIT)
        enumerate(&c, freev, n, k);
    else
        greedy(&c, freev, n, k);
    if (!c.have)
        return JZ_EBUSY;
    *chosen = c.best;
    if (ties)
        *ties = c.ties;
    return 0;
}

int jz_place_gpu_set(const struct jz_topo *t, uint64_t free_mask, unsigned k, uint64_t *chosen)
{
    if (!t || !chosen || k > JZ_TOPO_MAX_GPUS)
        return JZ_EINVAL;
    size_t n = jz_topo_gpu_count(t);
    if (n < 64)
        free_mask &= (1ull << n) - 1;
    return choose(t, free_mask, k, NULL, NULL, chosen, NULL);
}

/* --- cores --- */

struct core_ctx {
    const struct jz_topo *t;
    const uint64_t *core_busy;
    unsigned per_gpu;
    uint64_t *taken; /* scratch bitmap, JZ_BITMAP_WORDS(core_count) words */
    size_t *out;     /* chosen cores, per_gpu * k */
    size_t out_count;
};

#define PLACE_STACK_CORES 512 /* jz_place_gpus: nodes up to this many cores use no heap scratch */

static bool core_pref(const struct jz_topo *t, size_t core, int numa)
{
    return jz_topo_core_at(t, core)->numa_os == numa;
}

/* Takes per_gpu free cores from each GPU's own local cores (its NUMA node's first), serving the
 * GPUs with the fewest free local cores first so shared localities are split fairly. */
static bool assign_cores(const struct jz_topo *t, uint64_t set, void *vctx)
{
    struct core_ctx *c = vctx;
    size_t nc = jz_topo_core_count(t);
    memset(c->taken, 0, JZ_BITMAP_WORDS(nc) * sizeof(uint64_t));
    c->out_count = 0;
    if (c->per_gpu == 0)
        return true;
    size_t order[JZ_TOPO_MAX_GPUS], avail[JZ_TOPO_MAX_GPUS], k = 0;
    bool several = (set & (set - 1)) != 0; /* one GPU needs no serving order */
    for (uint64_t m = set; m; m &= m - 1) {
        size_t g = (size_t)__builtin_ctzll(m);
        const struct jz_topo_gpu *gpu = jz_topo_gpu_at(t, g);
        size_t a = 0;
        for (size_t i = 0; several && i < gpu->local_core_count; i++)
            a += !bit(c->core_busy, gpu->local_cores[i]);
        order[k] = g;
        avail[k++] = a;
    }
    for (size_t i = 1; i < k; i++) /* insertion sort: k is small */
        for (size_t j = i; j > 0 && avail[j] < avail[j - 1]; j--) {
            size_t x = avail[j];
            avail[j] = avail[j - 1];
            avail[j - 1] = x;
            x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    for (size_t q = 0; q < k; q++) {
        const struct jz_topo_gpu *gpu = jz_topo_gpu_at(t, order[q]);
        unsigned need = c->per_gpu;
        for (int pass = 0; pass < 2 && need; pass++)
            for (size_t i = 0; i < gpu->local_core_count && need; i++) {
                size_t core = gpu->local_cores[i];
                if (bit(c->core_busy, core) || bit(c->taken, core))
                    continue;
                bool pref = gpu->numa_os < 0 || core_pref(t, core, gpu->numa_os);
                if (pass == 0 && !pref)
                    continue;
                if (pass == 1 && pref)
                    continue;
                c->taken[core / 64] |= 1ull << (core % 64);
                c->out[c->out_count++] = core;
                need--;
            }
        if (need)
            return false;
    }
    return true;
}

bool jz_place_model_matches(const char *model, const char *want)
{
    if (!want || !*want)
        return true;
    size_t lw = strlen(want);
    for (const char *p = model; *p; p++) {
        size_t i = 0;
        while (i < lw && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)want[i]))
            i++;
        if (i == lw)
            return true;
    }
    return false;
}

/* CPU-only jobs: best fit on one NUMA node, keeping cores local to GPUs for GPU jobs. */
static bool pick_cpu_only(const struct jz_topo *t, const uint64_t *core_busy, unsigned want,
                          size_t *out, size_t *out_count)
{
    size_t nc = jz_topo_core_count(t), ng = jz_topo_gpu_count(t);
    uint8_t *gpu_local = calloc(nc + 1, 1);
    if (!gpu_local)
        return false;
    for (size_t g = 0; g < ng; g++) {
        const struct jz_topo_gpu *gpu = jz_topo_gpu_at(t, g);
        if (gpu->local_core_count == nc)
            continue; /* local to everything says nothing */
        for (size_t i = 0; i < gpu->local_core_count; i++)
            gpu_local[gpu->local_cores[i]] = 1;
    }
    /* NUMA groups, including "unknown" (-1). */
    size_t nn = jz_topo_numa_count(t) + 1;
    int best = -2;
    size_t best_plain = SIZE_MAX, best_free = SIZE_MAX, total = 0;
    bool best_plain_fits = false;
    for (size_t i = 0; i < nn; i++) {
        int numa = i + 1 == nn ? -1 : jz_topo_numa_at(t, i);
        size_t fr = 0, plain = 0;
        for (size_t c = 0; c < nc; c++) {
            if (jz_topo_core_at(t, c)->numa_os != numa || bit(core_busy, c))
                continue;
            fr++;
            plain += !gpu_local[c];
        }
        total += fr;
        if (fr < want)
            continue;
        bool plain_fits = plain >= want;
        bool better;
        if (best == -2)
            better = true;
        else if (plain_fits != best_plain_fits)
            better = plain_fits;
        else if (plain_fits)
            better = plain < best_plain;
        else
            better = plain > best_plain || (plain == best_plain && fr < best_free);
        if (better) {
            best = numa;
            best_plain = plain;
            best_free = fr;
            best_plain_fits = plain_fits;
        }
    }
    size_t n = 0;
    if (best != -2) {
        for (int pass = 0; pass < 2; pass++)
            for (size_t c = 0; c < nc && n < want; c++)
                if (jz_topo_core_at(t, c)->numa_os == best && !bit(core_busy, c) &&
                    gpu_local[c] == pass)
                    out[n++] = c;
    } else if (total >= want) {
        for (int pass = 0; pass < 2; pass++)
            for (size_t c = 0; c < nc && n < want; c++)
                if (!bit(core_busy, c) && gpu_local[c] == pass)
                    out[n++] = c;
    }
    free(gpu_local);
    *out_count = n;
    return n == want;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Placement lists are short: insertion sort beats qsort's setup there. */
static void sort_ints(int *v, size_t n)
{
    if (n > 64) {
        qsort(v, n, sizeof(int), cmp_int);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        int x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

static void sort_sizes(size_t *v, size_t n)
{
    if (n > 64) {
        qsort(v, n, sizeof(size_t), cmp_size);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        size_t x = v[i], j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* "1,3,5" without printf, which dominated placement time in the benchmark. */
static void list_ints(const int *v, size_t n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char tmp[16];
        size_t t = 0;
        unsigned x = v[i] < 0 ? (unsigned)-(long)v[i] : (unsigned)v[i];
        do
            tmp[t++] = (char)('0' + x % 10);
        while ((x /= 10) && t < sizeof(tmp));
        if (v[i] < 0)
            tmp[t++] = '-';
        if (used + t + 2 >= len)
            break;
        if (i)
            buf[used++] = ',';
        while (t)
            buf[used++] = tmp[--t];
        buf[used] = '\0';
    }
}

static void say(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap); /* a reason cut short is still a reason */
    va_end(ap);
}

static void refuse(struct jz_place_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void refuse(struct jz_place_result *res, const char *fmt, ...)
{
    memset(res, 0, sizeof(*res));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
    va_end(ap);
}

void jz_place_result_free(struct jz_place_result *res)
{
    if (!res)
        return;
    free(res->gpus);
    free(res->cores);
    free(res->cpus);
    free(res->numa);
    /* all but the reason's tail: this runs once per start and per refused try */
    res->fits = false;
    res->gpu_count = res->core_count = res->cpu_count = res->numa_count = 0;
    res->gpus = res->cores = NULL;
    res->cpus = res->numa = NULL;
    res->worst_link = JZ_TOPO_LINK_SAME_DEVICE;
    res->reason[0] = '\0';
}

/* Fills the arrays of a fitting result from chosen GPUs and cores. */
static int fill(const struct jz_topo *t, uint64_t set, const size_t *cores, size_t ncores,
                struct jz_place_result *out)
{
    size_t gpu_count = (size_t)__builtin_popcountll(set), npu = 0;
    for (size_t i = 0; i < ncores; i++)
        npu += jz_topo_core_at(t, cores[i])->pu_count;
    size_t *gpus = malloc((gpu_count + 1) * sizeof(size_t));
    size_t *rcores = malloc((ncores + 1) * sizeof(size_t));
    int *cpus = malloc((npu + 1) * sizeof(int));
    int *numa = malloc((gpu_count + ncores + 1) * sizeof(int));
    if (!gpus || !rcores || !cpus || !numa) {
        free(gpus);
        free(rcores);
        free(cpus);
        free(numa);
        return JZ_ENOMEM;
    }
    /* Written in place, field by field: the scheduler fills one result per start, and zeroing
     * and copying the whole struct (its reason is 256 bytes) was half of this function. */
    struct jz_place_result *r = out;
    r->fits = true;
    r->gpu_count = gpu_count;
    r->gpus = gpus;
    r->cores = rcores;
    r->cpus = cpus;
    r->cpu_count = 0;
    r->numa = numa;
    r->numa_count = 0;
    r->reason[0] = '\0';
    size_t k = 0;
    for (uint64_t m = set; m; m &= m - 1)
        r->gpus[k++] = (size_t)__builtin_ctzll(m);
    memcpy(r->cores, cores, ncores * sizeof(size_t));
    r->core_count = ncores;
    sort_sizes(r->cores, ncores);
    for (size_t i = 0; i < ncores; i++) {
        const struct jz_topo_core *c = jz_topo_core_at(t, r->cores[i]);
        memcpy(r->cpus + r->cpu_count, c->pus, c->pu_count * sizeof(int));
        r->cpu_count += c->pu_count;
    }
    sort_ints(r->cpus, r->cpu_count);
    /* Memory follows the GPUs (their NUMA nodes); a CPU-only job's follows its cores. */
    for (size_t i = 0; i < r->gpu_count; i++)
        if (jz_topo_gpu_at(t, r->gpus[i])->numa_os >= 0)
            r->numa[r->numa_count++] = jz_topo_gpu_at(t, r->gpus[i])->numa_os;
    if (r->numa_count == 0)
        for (size_t i = 0; i < ncores; i++)
            if (jz_topo_core_at(t, r->cores[i])->numa_os >= 0)
                r->numa[r->numa_count++] = jz_topo_core_at(t, r->cores[i])->numa_os;
    sort_ints(r->numa, r->numa_count);
    size_t w = 0;
    for (size_t i = 0; i < r->numa_count; i++)
        if (w == 0 || r->numa[w - 1] != r->numa[i])
            r->numa[w++] = r->numa[i];
    r->numa_count = w;
    unsigned worst = 0;
    const unsigned char *dist = jz_topo_distance_matrix(t);
    size_t ng = jz_topo_gpu_count(t);
    for (size_t a = 0; a < r->gpu_count; a++)
        for (size_t b = a + 1; b < r->gpu_count; b++)
            if (dist[r->gpus[a] * ng + r->gpus[b]] > worst)
                worst = dist[r->gpus[a] * ng + r->gpus[b]];
    r->worst_link = (enum jz_topo_link)(worst / 16);
    return 0;
}

/* The sentence of a GPU result; ties: candidates that were as close (the choice among equals is
 * said). */
static void describe(struct jz_place_result *r, unsigned ties)
{
    char gl[128], list[128];
    int gv[JZ_TOPO_MAX_GPUS] = {0};
    for (size_t i = 0; i < r->gpu_count; i++)
        gv[i] = (int)r->gpus[i];
    list_ints(gv, r->gpu_count, gl, sizeof(gl));
    list_ints(r->numa, r->numa_count, list, sizeof(list));
    if (r->gpu_count == 1)
        say(r->reason, sizeof(r->reason),
            "GPU %s%s, with %zu local core%s and memory on NUMA node %s.", gl,
            ties > 0 ? " (of the free GPUs, the one that leaves larger free groups whole)" : "",
            r->core_count, r->core_count == 1 ? "" : "s", r->numa_count ? list : "unknown");
    else
        say(r->reason, sizeof(r->reason),
            "GPUs %s are the closest free set (worst link: %s)%s, with %zu local cores and "
            "memory on NUMA node %s.",
            gl, jz_topo_link_name(r->worst_link),
            ties > 0 ? ", chosen among equals to leave larger free groups whole" : "", r->core_count,
            r->numa_count ? list : "unknown");
}

void jz_place_describe(struct jz_place_result *res)
{
    if (res && res->fits && !res->reason[0] && res->gpu_count > 0 && res->gpus)
        describe(res, 0);
}

/* The result for a chosen GPU set and its cores, with the sentence that explains it unless
 * quiet. */
static int gpu_result(const struct jz_topo *t, uint64_t set, const size_t *cores, size_t ncores,
                      unsigned ties, bool quiet, struct jz_place_result *out)
{
    int rc = fill(t, set, cores, ncores, out);
    if (rc)
        return rc;
    if (!quiet)
        describe(out, ties);
    return 0;
}

int jz_place_gpus(const struct jz_topo *t, const struct jz_place_usage *usage,
                  const struct jz_place_request *req, uint64_t set, struct jz_place_result *res,
                  struct jz_error *err)
{
    if (!t || !req || !res || !jz_topo_is_finished(t) || req->gpus == 0 ||
        (unsigned)__builtin_popcountll(set) != req->gpus ||
        (jz_topo_gpu_count(t) < 64 && (set >> jz_topo_gpu_count(t)) != 0))
        return jz_error_set(err, JZ_EINVAL, "GPU set does not match the request or topology");
    const uint64_t *gbusy = usage ? usage->gpu_busy : NULL;
    for (uint64_t m = set; m; m &= m - 1)
        if (bit(gbusy, (size_t)__builtin_ctzll(m)))
            return jz_error_set(err, JZ_EBUSY, "GPU %d is in use", __builtin_ctzll(m));
    size_t nc = jz_topo_core_count(t);
    /* The scheduler calls this for every start: scratch on the stack for usual nodes. */
    size_t cores_stack[PLACE_STACK_CORES];
    uint64_t taken_stack[JZ_BITMAP_WORDS(PLACE_STACK_CORES)];
    bool small = nc <= PLACE_STACK_CORES;
    size_t *cores = small ? cores_stack : malloc((nc + 1) * sizeof(size_t));
    uint64_t *taken = small ? taken_stack : malloc((JZ_BITMAP_WORDS(nc) + 1) * sizeof(uint64_t));
    int rc = 0;
    if (!cores || !taken) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory placing a job");
        goto out;
    }
    struct core_ctx cc = {.t = t,
                          .core_busy = usage ? usage->core_busy : NULL,
                          .per_gpu = req->cpus_per_gpu,
                          .taken = taken,
                          .out = cores};
    if (!assign_cores(t, set, &cc)) {
        refuse(res, "the chosen GPUs lack %u free local cores each", req->cpus_per_gpu);
        goto out;
    }
    if (gpu_result(t, set, cores, cc.out_count, 0, req->quiet, res) != 0)
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory placing a job");
out:
    if (!small) {
        free(cores);
        free(taken);
    }
    return rc;
}

int jz_place(const struct jz_topo *t, const struct jz_place_usage *usage,
             const struct jz_place_request *req, struct jz_place_result *res, struct jz_error *err)
{
    if (!t || !req || !res || !jz_topo_is_finished(t))
        return jz_error_set(err, JZ_EINVAL, "placement needs a finished topology and a request");
    if (req->gpus > JZ_TOPO_MAX_GPUS)
        return jz_error_set(err, JZ_ELIMIT, "at most %d GPUs per node", JZ_TOPO_MAX_GPUS);
    if (req->cpus_per_gpu > JZ_TOPO_MAX_CORES || req->cpus > JZ_TOPO_MAX_CORES)
        return jz_error_set(err, JZ_ELIMIT, "at most %d cores per node", JZ_TOPO_MAX_CORES);
    if (req->gpus == 0 && req->cpus == 0)
        return jz_error_set(err, JZ_EINVAL, "a request needs GPUs or cores");
    const uint64_t *gbusy = usage ? usage->gpu_busy : NULL;
    const uint64_t *cbusy = usage ? usage->core_busy : NULL;
    size_t ng = jz_topo_gpu_count(t), nc = jz_topo_core_count(t);
    size_t *cores = malloc((nc + 1) * sizeof(size_t));
    uint64_t *taken = malloc((JZ_BITMAP_WORDS(nc) + 1) * sizeof(uint64_t));
    if (!cores || !taken) {
        free(cores);
        free(taken);
        return jz_error_set(err, JZ_ENOMEM, "out of memory placing a job");
    }
    int rc = 0;
    char list[128];

    if (req->gpus == 0) {
        size_t n;
        if (!pick_cpu_only(t, cbusy, req->cpus, cores, &n)) {
            size_t fr = 0;
            for (size_t c = 0; c < nc; c++)
                fr += !bit(cbusy, c);
            refuse(res, "needs %u cores but only %zu of %zu are free", req->cpus, fr, nc);
            goto out;
        }
        if ((rc = fill(t, 0, cores, n, res)) != 0)
            goto nomem;
        list_ints(res->numa, res->numa_count, list, sizeof(list));
        say(res->reason, sizeof(res->reason),
            "%zu free cores on NUMA node %s, away from GPU-local cores where possible.", n,
            res->numa_count ? list : "unknown");
        goto out;
    }

    uint64_t free_mask = 0;
    size_t nfree = 0, nmodel = 0, nmem = 0, ncore_ok = 0;
    for (size_t g = 0; g < ng; g++) {
        if (bit(gbusy, g))
            continue;
        nfree++;
        const struct jz_topo_gpu *gpu = jz_topo_gpu_at(t, g);
        if (!jz_place_model_matches(gpu->model, req->model))
            continue;
        nmodel++;
        if (req->min_memory_bytes && gpu->memory_bytes < req->min_memory_bytes)
            continue;
        nmem++;
        size_t a = 0;
        for (size_t i = 0; i < gpu->local_core_count; i++)
            a += !bit(cbusy, gpu->local_cores[i]);
        if (a < req->cpus_per_gpu)
            continue;
        ncore_ok++;
        free_mask |= 1ull << g;
    }
    if (ng < req->gpus) {
        refuse(res, "needs %u GPU%s but the node has %zu", req->gpus, req->gpus == 1 ? "" : "s",
               ng);
        goto out;
    }
    if (nfree < req->gpus) {
        refuse(res, "needs %u GPU%s but only %zu of %zu are free", req->gpus,
               req->gpus == 1 ? "" : "s", nfree, ng);
        goto out;
    }
    if (nmodel < req->gpus) {
        refuse(res, "needs %u GPU(s) of model \"%s\" but only %zu free GPUs match", req->gpus,
               req->model, nmodel);
        goto out;
    }
    if (nmem < req->gpus) {
        refuse(res, "needs %u GPU(s) with at least %llu MiB but only %zu free GPUs have it",
               req->gpus, (unsigned long long)(req->min_memory_bytes >> 20), nmem);
        goto out;
    }
    if (ncore_ok < req->gpus) {
        refuse(res, "needs %u cores local to each of %u GPUs but only %zu free GPUs have them",
               req->cpus_per_gpu, req->gpus, ncore_ok);
        goto out;
    }
    struct core_ctx cc = {
        .t = t, .core_busy = cbusy, .per_gpu = req->cpus_per_gpu, .taken = taken, .out = cores};
    uint64_t set;
    unsigned ties = 0;
    /* Usually the closest set also has its cores; only when it does not, search again with
     * the core check inside the search (slower). */
    bool ok = choose(t, free_mask, req->gpus, NULL, NULL, &set, &ties) == 0 &&
              (req->cpus_per_gpu == 0 || assign_cores(t, set, &cc));
    if (!ok && req->cpus_per_gpu &&
        choose(t, free_mask, req->gpus, assign_cores, &cc, &set, &ties) != 0) {
        refuse(res, "no set of %u free GPUs has %u free local cores for each GPU", req->gpus,
               req->cpus_per_gpu);
        goto out;
    }
    if (!ok && req->cpus_per_gpu)
        assign_cores(t, set, &cc); /* the chooser may have tried others since */
    if ((rc = gpu_result(t, set, cores, cc.out_count, ties, false, res)) != 0)
        goto nomem;
    goto out;
nomem:
    rc = jz_error_set(err, JZ_ENOMEM, "out of memory placing a job");
out:
    free(cores);
    free(taken);
    return rc;
}
