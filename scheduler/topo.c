/* The plain topology model: building it, freezing it (GPU order, distances, core locality) and
 * reading it. No hwloc and no I/O here. */
#include "scheduler/topo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gpu_build {
    struct jz_topo_gpu g;
    int *local_pus;
    size_t local_pu_count;
    size_t *local_cores;
    size_t added; /* order of jz_topo_add_gpu, for links declared before sorting */
};

struct link_pair {
    size_t a, b;
};

struct jz_topo {
    bool finished;
    struct jz_topo_core *cores;
    size_t core_count, core_cap;
    size_t pu_count;
    struct gpu_build *gpus;
    size_t gpu_count, gpu_cap;
    struct link_pair *links;
    size_t link_count, link_cap;
    int *numa;
    size_t numa_count;
    unsigned char *dist; /* gpu_count^2 distances, link class * 16 + hops */
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return JZ_ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

int jz_topo_create(struct jz_topo **out, struct jz_error *err)
{
    struct jz_topo *t = calloc(1, sizeof(*t));
    if (!t)
        return jz_error_set(err, JZ_ENOMEM, "out of memory creating a topology");
    *out = t;
    return 0;
}

void jz_topo_destroy(struct jz_topo *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->core_count; i++)
        free((void *)t->cores[i].pus);
    for (size_t i = 0; i < t->gpu_count; i++) {
        free(t->gpus[i].local_pus);
        free(t->gpus[i].local_cores);
    }
    free(t->cores);
    free(t->gpus);
    free(t->links);
    free(t->numa);
    free(t->dist);
    free(t);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int copy_pus(const int *pus, size_t n, int **out, struct jz_error *err)
{
    int *c = malloc((n ? n : 1) * sizeof(int));
    if (!c)
        return jz_error_set(err, JZ_ENOMEM, "out of memory copying a CPU list");
    for (size_t i = 0; i < n; i++) {
        if (pus[i] < 0 || pus[i] >= JZ_TOPO_MAX_PUS) {
            free(c);
            return jz_error_set(err, JZ_ERANGE, "OS processor number %d is out of range [0, %d)",
                                pus[i], JZ_TOPO_MAX_PUS);
        }
        c[i] = pus[i];
    }
    qsort(c, n, sizeof(int), cmp_int);
    *out = c;
    return 0;
}

int jz_topo_add_core(struct jz_topo *t, int numa_os, int package, const int *pus, size_t pu_count,
                     struct jz_error *err)
{
    if (!t || t->finished || (pu_count && !pus) || pu_count == 0)
        return jz_error_set(err, JZ_EINVAL,
                            "a core needs at least one processor (and an "
                            "unfinished topology)");
    if (t->core_count >= JZ_TOPO_MAX_CORES)
        return jz_error_set(err, JZ_ELIMIT, "more than %d cores on one node", JZ_TOPO_MAX_CORES);
    if (t->pu_count + pu_count > JZ_TOPO_MAX_PUS)
        return jz_error_set(err, JZ_ELIMIT, "more than %d processors on one node", JZ_TOPO_MAX_PUS);
    int *c;
    int rc = copy_pus(pus, pu_count, &c, err);
    if (rc)
        return rc;
    if (grow((void **)&t->cores, &t->core_cap, t->core_count + 1, sizeof(*t->cores))) {
        free(c);
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a core");
    }
    struct jz_topo_core *core = &t->cores[t->core_count];
    core->index = t->core_count;
    core->numa_os = numa_os < 0 ? -1 : numa_os;
    core->package = package < 0 ? -1 : package;
    core->pus = c;
    core->pu_count = pu_count;
    t->core_count++;
    t->pu_count += pu_count;
    return 0;
}

int jz_topo_add_gpu(struct jz_topo *t, const struct jz_topo_gpu *desc, const int *local_pus,
                    size_t local_pu_count, struct jz_error *err)
{
    if (!t || t->finished || !desc || (local_pu_count && !local_pus))
        return jz_error_set(err, JZ_EINVAL, "invalid GPU description or finished topology");
    if (t->gpu_count >= JZ_TOPO_MAX_GPUS)
        return jz_error_set(err, JZ_ELIMIT, "more than %d GPUs on one node", JZ_TOPO_MAX_GPUS);
    int *c;
    int rc = copy_pus(local_pus, local_pu_count, &c, err);
    if (rc)
        return rc;
    if (grow((void **)&t->gpus, &t->gpu_cap, t->gpu_count + 1, sizeof(*t->gpus))) {
        free(c);
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a GPU");
    }
    struct gpu_build *b = &t->gpus[t->gpu_count];
    memset(b, 0, sizeof(*b));
    b->g = *desc;
    /* Strings may come from anywhere: force termination rather than trust the caller. */
    b->g.pci_bus_id[JZ_TOPO_PCI_ID_LEN - 1] = '\0';
    b->g.model[JZ_TOPO_MODEL_LEN - 1] = '\0';
    b->g.vendor[JZ_TOPO_MODEL_LEN - 1] = '\0';
    b->g.os_names[JZ_TOPO_OS_NAMES_LEN - 1] = '\0';
    b->g.pci_path[JZ_TOPO_PCI_PATH_LEN - 1] = '\0';
    b->g.local_cores = NULL;
    b->g.local_core_count = 0;
    if (b->g.numa_os < 0)
        b->g.numa_os = -1;
    if (b->g.package < 0)
        b->g.package = -1;
    b->local_pus = c;
    b->local_pu_count = local_pu_count;
    b->added = t->gpu_count;
    t->gpu_count++;
    return 0;
}

int jz_topo_add_link(struct jz_topo *t, size_t a, size_t b, struct jz_error *err)
{
    if (!t || t->finished || a >= t->gpu_count || b >= t->gpu_count)
        return jz_error_set(err, JZ_EINVAL, "link between unknown GPUs %zu and %zu", a, b);
    if (a == b)
        return 0;
    if (t->link_count >= (size_t)JZ_TOPO_MAX_GPUS * JZ_TOPO_MAX_GPUS)
        return jz_error_set(err, JZ_ELIMIT, "too many GPU links");
    if (grow((void **)&t->links, &t->link_cap, t->link_count + 1, sizeof(*t->links)))
        return jz_error_set(err, JZ_ENOMEM, "out of memory adding a GPU link");
    t->links[t->link_count++] = (struct link_pair){a, b};
    return 0;
}

static int cmp_gpu(const void *pa, const void *pb)
{
    const struct gpu_build *a = pa, *b = pb;
    int c = strcmp(a->g.pci_bus_id, b->g.pci_bus_id);
    if (c)
        return c;
    if (a->g.subdevice != b->g.subdevice)
        return a->g.subdevice < b->g.subdevice ? -1 : 1;
    return (a->added > b->added) - (a->added < b->added);
}

/* Number of '/'-separated components of a PCI path ("" has none). */
static size_t path_len(const char *p)
{
    if (!*p)
        return 0;
    size_t n = 1;
    for (; *p; p++)
        n += *p == '/';
    return n;
}

/* Number of leading components a and b share; *last_is_host tells whether the last shared one
 * is a host bridge (written "DDDD:[BB-SS]" by the adapter). */
static size_t path_common(const char *a, const char *b, bool *last_is_host)
{
    size_t n = 0;
    *last_is_host = false;
    while (*a && *b) {
        size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
        if (la != lb || memcmp(a, b, la) != 0)
            break;
        n++;
        *last_is_host = memchr(a, '[', la) != NULL;
        a += la;
        b += lb;
        if (*a == '/')
            a++;
        if (*b == '/')
            b++;
    }
    return n;
}

static unsigned compute_distance(const struct jz_topo_gpu *a, const struct jz_topo_gpu *b,
                                 bool linked)
{
    if (a->pci_bus_id[0] && strcmp(a->pci_bus_id, b->pci_bus_id) == 0)
        return JZ_TOPO_LINK_SAME_DEVICE * 16;
    if (linked) /* among linked peers, prefer those also close on the PCI/NUMA side */
        return JZ_TOPO_LINK_NVLINK * 16 + compute_distance(a, b, false) / 16;
    bool host;
    size_t common = path_common(a->pci_path, b->pci_path, &host);
    if (common > 0) {
        size_t la = path_len(a->pci_path), lb = path_len(b->pci_path);
        size_t hops = (la > lb ? la : lb) - common;
        if (hops > 15)
            hops = 15;
        unsigned cls = host ? JZ_TOPO_LINK_HOST_BRIDGE : JZ_TOPO_LINK_PCI_SWITCH;
        return cls * 16 + (unsigned)hops;
    }
    if (a->numa_os >= 0 && a->numa_os == b->numa_os)
        return JZ_TOPO_LINK_NUMA * 16;
    if (a->package >= 0 && a->package == b->package)
        return JZ_TOPO_LINK_PACKAGE * 16;
    return JZ_TOPO_LINK_SYSTEM * 16;
}

int jz_topo_finish(struct jz_topo *t, struct jz_error *err)
{
    if (!t || t->finished)
        return jz_error_set(err, JZ_EINVAL, "topology already finished");
    size_t n = t->gpu_count;
    int max_pu = -1;
    for (size_t i = 0; i < t->core_count; i++)
        if (t->cores[i].pus[t->cores[i].pu_count - 1] > max_pu)
            max_pu = t->cores[i].pus[t->cores[i].pu_count - 1];

    int rc = JZ_ENOMEM;
    size_t *pu_core = NULL, *rank = NULL, *count = NULL;
    unsigned char *dist = NULL, *linked = NULL;
    int *numa = NULL;
    size_t numa_count = 0;

    pu_core = malloc(((size_t)max_pu + 1) * sizeof(size_t) + 1);
    rank = malloc((n ? n : 1) * sizeof(size_t));
    count = calloc(t->core_count + 1, sizeof(size_t));
    dist = malloc(n * n + 1);
    linked = calloc(n * n + 1, 1);
    numa = malloc((t->core_count + 1) * sizeof(int));
    if (!pu_core || !rank || !count || !dist || !linked || !numa)
        goto fail;
    for (int p = 0; p <= max_pu; p++)
        pu_core[p] = SIZE_MAX;
    for (size_t i = 0; i < t->core_count; i++)
        for (size_t k = 0; k < t->cores[i].pu_count; k++) {
            if (pu_core[t->cores[i].pus[k]] != SIZE_MAX) {
                rc = jz_error_set(err, JZ_EINVAL, "processor %d belongs to two cores",
                                  t->cores[i].pus[k]);
                goto fail;
            }
            pu_core[t->cores[i].pus[k]] = i;
        }

    /* Local cores per GPU: a core is local when every one of its PUs is in the GPU's list. */
    for (size_t g = 0; g < n; g++) {
        struct gpu_build *b = &t->gpus[g];
        size_t nloc = 0;
        if (b->local_pu_count == 0) {
            for (size_t c = 0; c < t->core_count; c++)
                count[c] = t->cores[c].pu_count;
        } else {
            memset(count, 0, t->core_count * sizeof(size_t));
            for (size_t k = 0; k < b->local_pu_count; k++) {
                int p = b->local_pus[k];
                if (p <= max_pu && pu_core[p] != SIZE_MAX)
                    count[pu_core[p]]++;
            }
        }
        for (size_t c = 0; c < t->core_count; c++)
            nloc += count[c] == t->cores[c].pu_count;
        /* A GPU whose listed PUs match no core (cores missing from the export) is treated as
         * local to every core rather than to none, so it stays usable. */
        bool all = nloc == 0;
        if (all)
            nloc = t->core_count;
        b->local_cores = malloc((nloc ? nloc : 1) * sizeof(size_t));
        if (!b->local_cores)
            goto fail;
        size_t w = 0;
        for (size_t c = 0; c < t->core_count; c++)
            if (all || count[c] == t->cores[c].pu_count)
                b->local_cores[w++] = c;
        b->g.local_cores = b->local_cores;
        b->g.local_core_count = w;
    }

    if (n)
        qsort(t->gpus, n, sizeof(*t->gpus), cmp_gpu);
    for (size_t g = 0; g < n; g++) {
        rank[t->gpus[g].added] = g;
        t->gpus[g].g.index = g;
    }
    for (size_t l = 0; l < t->link_count; l++) {
        size_t a = rank[t->links[l].a], b = rank[t->links[l].b];
        linked[a * n + b] = linked[b * n + a] = 1;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            dist[i * n + j] = i == j ? 0
                                     : (unsigned char)compute_distance(&t->gpus[i].g, &t->gpus[j].g,
                                                                       linked[i * n + j]);

    for (size_t c = 0; c < t->core_count; c++) {
        int v = t->cores[c].numa_os;
        if (v < 0)
            continue;
        bool seen = false;
        for (size_t k = 0; k < numa_count && !seen; k++)
            seen = numa[k] == v;
        if (!seen)
            numa[numa_count++] = v;
    }
    qsort(numa, numa_count, sizeof(int), cmp_int);

    t->dist = dist;
    t->numa = numa;
    t->numa_count = numa_count;
    t->finished = true;
    free(pu_core);
    free(rank);
    free(count);
    free(linked);
    return 0;
fail:
    if (rc == JZ_ENOMEM)
        jz_error_set(err, JZ_ENOMEM, "out of memory finishing a topology");
    for (size_t g = 0; g < n; g++) {
        free(t->gpus[g].local_cores);
        t->gpus[g].local_cores = NULL;
        t->gpus[g].g.local_cores = NULL;
        t->gpus[g].g.local_core_count = 0;
    }
    free(pu_core);
    free(rank);
    free(count);
    free(dist);
    free(linked);
    free(numa);
    return rc;
}

bool jz_topo_is_finished(const struct jz_topo *t)
{
    return t && t->finished;
}

size_t jz_topo_gpu_count(const struct jz_topo *t)
{
    return t ? t->gpu_count : 0;
}

size_t jz_topo_core_count(const struct jz_topo *t)
{
    return t ? t->core_count : 0;
}

size_t jz_topo_cpu_count(const struct jz_topo *t)
{
    return t ? t->pu_count : 0;
}

const struct jz_topo_gpu *jz_topo_gpu_at(const struct jz_topo *t, size_t i)
{
    return t && i < t->gpu_count ? &t->gpus[i].g : NULL;
}

const struct jz_topo_core *jz_topo_core_at(const struct jz_topo *t, size_t i)
{
    return t && i < t->core_count ? &t->cores[i] : NULL;
}

size_t jz_topo_numa_count(const struct jz_topo *t)
{
    return t ? t->numa_count : 0;
}

int jz_topo_numa_at(const struct jz_topo *t, size_t i)
{
    return t && i < t->numa_count ? t->numa[i] : -1;
}

unsigned jz_topo_gpu_distance(const struct jz_topo *t, size_t i, size_t j)
{
    if (!t || !t->finished || i >= t->gpu_count || j >= t->gpu_count)
        return JZ_TOPO_LINK_SYSTEM * 16 + 15;
    return t->dist[i * t->gpu_count + j];
}

const unsigned char *jz_topo_distance_matrix(const struct jz_topo *t)
{
    return t && t->finished ? t->dist : NULL;
}

enum jz_topo_link jz_topo_gpu_link(const struct jz_topo *t, size_t i, size_t j)
{
    return (enum jz_topo_link)(jz_topo_gpu_distance(t, i, j) / 16);
}

const char *jz_topo_link_name(enum jz_topo_link link)
{
    switch (link) {
    case JZ_TOPO_LINK_SAME_DEVICE:
        return "same device";
    case JZ_TOPO_LINK_NVLINK:
        return "NVLink/XGMI";
    case JZ_TOPO_LINK_PCI_SWITCH:
        return "same PCIe switch";
    case JZ_TOPO_LINK_HOST_BRIDGE:
        return "same host bridge";
    case JZ_TOPO_LINK_NUMA:
        return "same NUMA node";
    case JZ_TOPO_LINK_PACKAGE:
        return "same package";
    case JZ_TOPO_LINK_SYSTEM:
        return "across packages";
    }
    return "unknown";
}

int jz_topo_describe(const struct jz_topo *t, char *buf, size_t len)
{
    if (!t || !buf || len == 0)
        return JZ_EINVAL;
    int packages[64];
    size_t np = 0;
    for (size_t c = 0; c < t->core_count; c++) {
        int p = t->cores[c].package;
        bool seen = false;
        for (size_t k = 0; k < np && !seen; k++)
            seen = packages[k] == p;
        if (!seen && np < 64)
            packages[np++] = p;
    }
    int w = snprintf(buf, len, "%zu package%s, %zu NUMA node%s, %zu cores, %zu PUs, %zu GPU%s", np,
                     np == 1 ? "" : "s", t->numa_count, t->numa_count == 1 ? "" : "s",
                     t->core_count, t->pu_count, t->gpu_count, t->gpu_count == 1 ? "" : "s");
    if (w < 0 || (size_t)w >= len)
        return JZ_ERANGE;
    if (t->gpu_count > 0 && t->gpus[0].g.model[0]) {
        size_t used = (size_t)w;
        int w2 = snprintf(buf + used, len - used, " (%s)", t->gpus[0].g.model);
        if (w2 < 0 || (size_t)w2 >= len - used)
            return JZ_ERANGE;
    }
    return 0;
}
