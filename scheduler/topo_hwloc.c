/* The hwloc adapter: reads cores, NUMA nodes, GPUs (by OS device, or by PCI class and vendor when
 * no backend saw them), PCI paths and NVLink/XGMI matrices into the plain model of topo.h. */
#include "scheduler/topo_hwloc.h"

#include <ctype.h>
#include <errno.h>
#include <hwloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_OSDEV_PER_PCI 64
#define MAX_BACKENDS 8

/* One GPU OS device found under a PCI device, remembered to map link matrices to GPUs. */
struct osdev_map {
    hwloc_obj_t obj;
    size_t gpu; /* added index in the topology builder */
};

struct load_ctx {
    hwloc_topology_t h;
    struct jz_topo *t;
    struct osdev_map *map;
    size_t map_count, map_cap;
    struct osdev_map *pcimap; /* PCI device -> first GPU on it (for matrices naming PCI devs) */
    size_t pcimap_count, pcimap_cap;
    size_t gpus;
};

static int map_push(struct osdev_map **v, size_t *n, size_t *cap, hwloc_obj_t obj, size_t gpu)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 32;
        struct osdev_map *nv = realloc(*v, nc * sizeof(*nv));
        if (!nv)
            return JZ_ENOMEM;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = (struct osdev_map){obj, gpu};
    return 0;
}

/* Allowed PUs of a cpuset as OS numbers; *out is malloc'd. */
static int cpuset_pus(struct load_ctx *c, hwloc_const_cpuset_t set, int **out, size_t *n)
{
    hwloc_bitmap_t b = hwloc_bitmap_dup(set);
    if (!b)
        return JZ_ENOMEM;
    hwloc_bitmap_and(b, b, hwloc_topology_get_allowed_cpuset(c->h));
    int w = hwloc_bitmap_weight(b);
    int *v = malloc((size_t)(w > 0 ? w : 1) * sizeof(int));
    if (!v) {
        hwloc_bitmap_free(b);
        return JZ_ENOMEM;
    }
    size_t k = 0;
    int i;
    hwloc_bitmap_foreach_begin(i, b) if (w > 0 && k < (size_t)w) v[k++] = i;
    hwloc_bitmap_foreach_end();
    hwloc_bitmap_free(b);
    *out = v;
    *n = k;
    return 0;
}

static int obj_os(hwloc_obj_t o)
{
    return o && o->os_index != HWLOC_UNKNOWN_INDEX ? (int)o->os_index
                                                   : (o ? (int)o->logical_index : -1);
}

/* The one object of type holding all of cpuset; -1 when it spans several (a device attached
 * at machine level is not local to any one NUMA node, and saying so beats guessing). */
static int container_of(struct load_ctx *c, hwloc_obj_type_t type, hwloc_const_cpuset_t set)
{
    hwloc_obj_t o = NULL;
    if (hwloc_bitmap_iszero(set))
        return -1;
    while ((o = hwloc_get_next_obj_by_type(c->h, type, o)) != NULL)
        if (!hwloc_bitmap_iszero(o->cpuset) && hwloc_bitmap_isincluded(set, o->cpuset))
            return obj_os(o);
    return -1;
}

static int numa_of(struct load_ctx *c, hwloc_const_cpuset_t set)
{
    return container_of(c, HWLOC_OBJ_NUMANODE, set);
}

static int package_of(struct load_ctx *c, hwloc_const_cpuset_t set)
{
    return container_of(c, HWLOC_OBJ_PACKAGE, set);
}

static int load_cores(struct load_ctx *c, struct jz_error *err)
{
    /* Cores are the allocation unit; a machine that exposes no Core objects gets one per PU. */
    hwloc_obj_type_t type =
        hwloc_get_nbobjs_by_type(c->h, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_obj_by_type(c->h, type, o)) != NULL) {
        int *pus;
        size_t n;
        if (cpuset_pus(c, o->cpuset, &pus, &n))
            return jz_error_set(err, JZ_ENOMEM, "out of memory reading cores");
        int rc = 0;
        if (n > 0) /* a core with no allowed PU is not usable */
            rc = jz_topo_add_core(c->t, numa_of(c, o->cpuset), package_of(c, o->cpuset), pus, n,
                                  err);
        free(pus);
        if (rc)
            return rc;
    }
    return 0;
}

static bool is_drm_name(const char *name)
{
    return strncmp(name, "card", 4) == 0 || strncmp(name, "renderD", 7) == 0 ||
           strncmp(name, "controlD", 8) == 0;
}

/* Compute OS devices (CUDA, NVML, OpenCL, RSMI, Level Zero...) but not DRM display nodes. */
static bool is_gpu_osdev(hwloc_obj_t o)
{
    if (o->type != HWLOC_OBJ_OS_DEVICE || !o->name)
        return false;
    if (o->attr->osdev.type != HWLOC_OBJ_OSDEV_GPU && o->attr->osdev.type != HWLOC_OBJ_OSDEV_COPROC)
        return false;
    return !is_drm_name(o->name);
}

static size_t backend_prefix(const char *name, char *buf, size_t len)
{
    size_t i = 0;
    while (name[i] && !isdigit((unsigned char)name[i]) && i + 1 < len) {
        buf[i] = name[i];
        i++;
    }
    buf[i] = '\0';
    return i;
}

static void append_name(char *dst, size_t len, const char *name)
{
    size_t used = strlen(dst);
    if (used + strlen(name) + 2 > len)
        return; /* os_names is informative; dropping a name beats failing the whole load */
    if (used)
        dst[used++] = ',';
    strcpy(dst + used, name);
}

static void fmt_pci_path(hwloc_obj_t pci, char *buf, size_t len)
{
    hwloc_obj_t chain[32];
    size_t n = 0;
    for (hwloc_obj_t p = pci->parent; p && p->type == HWLOC_OBJ_BRIDGE && n < 32; p = p->parent)
        chain[n++] = p;
    buf[0] = '\0';
    size_t used = 0;
    while (n-- > 0) {
        hwloc_obj_t b = chain[n];
        char part[40];
        if (b->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_HOST)
            snprintf(part, sizeof(part), "%04x:[%02x-%02x]",
                     (unsigned)b->attr->bridge.downstream.pci.domain,
                     (unsigned)b->attr->bridge.downstream.pci.secondary_bus,
                     (unsigned)b->attr->bridge.downstream.pci.subordinate_bus);
        else
            snprintf(part, sizeof(part), "%04x:%02x:%02x.%x",
                     (unsigned)b->attr->bridge.upstream.pci.domain,
                     (unsigned)b->attr->bridge.upstream.pci.bus,
                     (unsigned)b->attr->bridge.upstream.pci.dev,
                     (unsigned)b->attr->bridge.upstream.pci.func);
        int w = snprintf(buf + used, len - used, "%s%s", used ? "/" : "", part);
        if (w < 0 || (size_t)w >= len - used) {
            buf[used] = '\0';
            return;
        }
        used += (size_t)w;
    }
}

static uint64_t memory_of(hwloc_obj_t o)
{
    static const char *const keys[] = {"CUDAGlobalMemorySize", "OpenCLGlobalMemorySize",
                                       "RSMIVRAMSize", "LevelZeroHBMSize"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        const char *v = hwloc_obj_get_info_by_name(o, keys[k]);
        if (v && *v)
            return (uint64_t)strtoull(v, NULL, 10) * 1024u; /* hwloc reports KiB */
    }
    return 0;
}

static bool pci_only_gpu(hwloc_obj_t pci)
{
    unsigned cls = pci->attr->pcidev.class_id >> 8;
    unsigned vendor = pci->attr->pcidev.vendor_id;
    return (cls == 0x03 || cls == 0x12) && (vendor == 0x10de || vendor == 0x1002);
}

static int load_gpus_of(struct load_ctx *c, hwloc_obj_t pci, struct jz_error *err)
{
    hwloc_obj_t devs[MAX_OSDEV_PER_PCI];
    char prefixes[MAX_BACKENDS][16];
    size_t per_backend[MAX_BACKENDS] = {0};
    size_t backend_of[MAX_OSDEV_PER_PCI];
    size_t ndev = 0, nback = 0, logical = 0;
    for (hwloc_obj_t o = pci->io_first_child; o; o = o->next_sibling) {
        if (!is_gpu_osdev(o) || ndev == MAX_OSDEV_PER_PCI)
            continue;
        char pre[16];
        backend_prefix(o->name, pre, sizeof(pre));
        size_t b = 0;
        while (b < nback && strcmp(prefixes[b], pre) != 0)
            b++;
        if (b == nback) {
            if (nback == MAX_BACKENDS)
                continue;
            strcpy(prefixes[nback++], pre);
        }
        backend_of[ndev] = b;
        devs[ndev++] = o;
        if (++per_backend[b] > logical)
            logical = per_backend[b];
    }
    /* Logical GPUs on one PCI device: the largest count any one backend reports (CUDA, NVML and
     * OpenCL each name the same GPU once; RSMI names each CPX partition). */
    if (logical == 0) {
        if (!pci_only_gpu(pci))
            return 0;
        logical = 1;
    }
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(c->h, pci);
    int *local = NULL;
    size_t nlocal = 0;
    if (anc && cpuset_pus(c, anc->cpuset, &local, &nlocal))
        return jz_error_set(err, JZ_ENOMEM, "out of memory reading GPU locality");
    char path[JZ_TOPO_PCI_PATH_LEN];
    fmt_pci_path(pci, path, sizeof(path));
    int rc = 0;
    for (size_t l = 0; l < logical && rc == 0; l++) {
        struct jz_topo_gpu g;
        memset(&g, 0, sizeof(g));
        snprintf(g.pci_bus_id, sizeof(g.pci_bus_id), "%04x:%02x:%02x.%x",
                 (unsigned)pci->attr->pcidev.domain, (unsigned)pci->attr->pcidev.bus,
                 (unsigned)pci->attr->pcidev.dev, (unsigned)pci->attr->pcidev.func);
        g.subdevice = (unsigned)l;
        g.numa_os = anc ? numa_of(c, anc->cpuset) : -1;
        g.package = anc ? package_of(c, anc->cpuset) : -1;
        memcpy(g.pci_path, path, sizeof(path));
        size_t seen[MAX_BACKENDS] = {0};
        for (size_t d = 0; d < ndev; d++) {
            size_t b = backend_of[d];
            if (seen[b]++ != l)
                continue;
            append_name(g.os_names, sizeof(g.os_names), devs[d]->name);
            const char *model = hwloc_obj_get_info_by_name(devs[d], "GPUModel");
            if (!g.model[0] && model)
                snprintf(g.model, sizeof(g.model), "%s", model);
            const char *vendor = hwloc_obj_get_info_by_name(devs[d], "GPUVendor");
            if (!g.vendor[0] && vendor)
                snprintf(g.vendor, sizeof(g.vendor), "%s", vendor);
            if (!g.memory_bytes)
                g.memory_bytes = memory_of(devs[d]);
            if ((rc = map_push(&c->map, &c->map_count, &c->map_cap, devs[d], c->gpus)) != 0)
                break;
        }
        if (rc)
            break;
        if (!g.model[0]) {
            const char *m = hwloc_obj_get_info_by_name(pci, "PCIDevice");
            if (m)
                snprintf(g.model, sizeof(g.model), "%s", m);
            else
                snprintf(g.model, sizeof(g.model), "PCI %04x:%04x",
                         (unsigned)pci->attr->pcidev.vendor_id,
                         (unsigned)pci->attr->pcidev.device_id);
        }
        if (!g.vendor[0]) {
            const char *v = hwloc_obj_get_info_by_name(pci, "PCIVendor");
            if (v)
                snprintf(g.vendor, sizeof(g.vendor), "%s", v);
        }
        if (l == 0 &&
            (rc = map_push(&c->pcimap, &c->pcimap_count, &c->pcimap_cap, pci, c->gpus)) != 0)
            break;
        rc = jz_topo_add_gpu(c->t, &g, local, nlocal, err);
        if (rc == 0)
            c->gpus++;
    }
    free(local);
    if (rc == JZ_ENOMEM)
        return jz_error_set(err, JZ_ENOMEM, "out of memory reading GPUs");
    return rc;
}

/* GPUs the matrix object stands for: an OS device maps to its logical GPU; a PCI device to
 * the GPUs on it. Returns the count written to out. */
static size_t gpus_of_obj(struct load_ctx *c, hwloc_obj_t o, size_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < c->map_count; i++)
        if (c->map[i].obj == o)
            out[n++] = c->map[i].gpu;
    if (n)
        return n;
    for (size_t i = 0; i < c->pcimap_count; i++)
        if (c->pcimap[i].obj == o) {
            /* All logical GPUs of this PCI device were added consecutively. */
            size_t first = c->pcimap[i].gpu;
            size_t end = i + 1 < c->pcimap_count ? c->pcimap[i + 1].gpu : c->gpus;
            for (size_t g = first; g < end && n < JZ_TOPO_MAX_GPUS; g++)
                out[n++] = g;
        }
    return n;
}

static int link_all(struct load_ctx *c, const size_t *a, size_t na, const size_t *b, size_t nb,
                    struct jz_error *err)
{
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++) {
            int rc = jz_topo_add_link(c->t, a[i], b[j], err);
            if (rc)
                return rc;
        }
    return 0;
}

/* NVLink/XGMI bandwidth matrices: GPUs with a direct link, or sharing a switch (a non-GPU object
 * such as an NVSwitch they both link to), are one island. */
static int load_links(struct load_ctx *c, struct jz_error *err)
{
    unsigned nr = 0;
    if (hwloc_distances_get(c->h, &nr, NULL, HWLOC_DISTANCES_KIND_MEANS_BANDWIDTH, 0) != 0 ||
        nr == 0)
        return 0;
    struct hwloc_distances_s **d = calloc(nr, sizeof(*d));
    if (!d)
        return jz_error_set(err, JZ_ENOMEM, "out of memory reading GPU links");
    int rc = 0;
    if (hwloc_distances_get(c->h, &nr, d, HWLOC_DISTANCES_KIND_MEANS_BANDWIDTH, 0) != 0) {
        free(d);
        return 0;
    }
    size_t *ga = malloc(JZ_TOPO_MAX_GPUS * sizeof(size_t));
    size_t *gb = malloc(JZ_TOPO_MAX_GPUS * sizeof(size_t));
    size_t *members = malloc(JZ_TOPO_MAX_GPUS * sizeof(size_t));
    if (!ga || !gb || !members)
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory reading GPU links");
    for (unsigned m = 0; m < nr && rc == 0; m++) {
        struct hwloc_distances_s *x = d[m];
        unsigned n = x->nbobjs;
        for (unsigned i = 0; i < n && rc == 0; i++) {
            if (!x->objs[i] || x->objs[i]->type == HWLOC_OBJ_NUMANODE)
                continue;
            size_t na = gpus_of_obj(c, x->objs[i], ga);
            if (na > 0) {
                for (unsigned j = i + 1; j < n && rc == 0; j++) {
                    if (!x->objs[j] || (x->values[i * n + j] == 0 && x->values[j * n + i] == 0))
                        continue;
                    size_t nb = gpus_of_obj(c, x->objs[j], gb);
                    rc = link_all(c, ga, na, gb, nb, err);
                }
                continue;
            }
            /* Not a GPU: a switch. Every GPU linked to it joins one island. */
            size_t nm = 0;
            for (unsigned j = 0; j < n; j++) {
                if (j == i || !x->objs[j] ||
                    (x->values[i * n + j] == 0 && x->values[j * n + i] == 0))
                    continue;
                size_t k = gpus_of_obj(c, x->objs[j], gb);
                for (size_t q = 0; q < k && nm < JZ_TOPO_MAX_GPUS; q++)
                    members[nm++] = gb[q];
            }
            rc = link_all(c, members, nm, members, nm, err);
        }
    }
    free(ga);
    free(gb);
    free(members);
    for (unsigned m = 0; m < nr; m++)
        hwloc_distances_release(c->h, d[m]);
    free(d);
    return rc;
}

static int build(hwloc_topology_t h, struct jz_topo **out, struct jz_error *err)
{
    struct load_ctx c = {.h = h};
    int rc = jz_topo_create(&c.t, err);
    if (rc)
        return rc;
    if ((rc = load_cores(&c, err)) != 0)
        goto fail;
    hwloc_obj_t pci = NULL;
    while ((pci = hwloc_get_next_pcidev(h, pci)) != NULL)
        if ((rc = load_gpus_of(&c, pci, err)) != 0)
            goto fail;
    if ((rc = load_links(&c, err)) != 0)
        goto fail;
    if ((rc = jz_topo_finish(c.t, err)) != 0)
        goto fail;
    free(c.map);
    free(c.pcimap);
    *out = c.t;
    return 0;
fail:
    free(c.map);
    free(c.pcimap);
    jz_topo_destroy(c.t);
    return rc;
}

static int open_topology(hwloc_topology_t *h, struct jz_error *err)
{
    if (hwloc_topology_init(h) != 0)
        return jz_error_set(err, JZ_ENOMEM, "hwloc_topology_init failed");
    /* Keep every bridge and PCI device: switches and host bridges are the distance signal, and
     * PCI-only GPUs are found by class. */
    hwloc_topology_set_io_types_filter(*h, HWLOC_TYPE_FILTER_KEEP_ALL);
    return 0;
}

static int finish_load(hwloc_topology_t h, const char *what, struct jz_topo **out,
                       struct jz_error *err)
{
    if (hwloc_topology_load(h) != 0) {
        hwloc_topology_destroy(h);
        return jz_error_set(err, JZ_ECORRUPT, "hwloc could not load %s", what);
    }
    int rc = build(h, out, err);
    hwloc_topology_destroy(h);
    return rc;
}

/* hwloc 2.9 (Debian 12) crashes on some malformed XML documents: an object without all of its
 * sets (fixed upstream in hwloc PR #783), a machine without a NUMA node, and more that fuzz_topo
 * finds in seconds. A topology comes from an agent's hello, so the import is tried first in a
 * child process (bounded by an alarm): a document that kills or hangs the child is refused
 * instead of taking jazarid down. Only the child runs hwloc's import on unchecked input. */
static int trial_import(const char *xml, size_t len, struct jz_error *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return jz_error_set(err, JZ_EIO, "cannot fork to check a topology: %s", strerror(errno));
    if (pid == 0) {
        /* Die by the signal, without a sanitizer's report or core, when hwloc faults. */
        int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
            signal(sigs[i], SIG_DFL);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        alarm(10);
        hwloc_topology_t h;
        if (hwloc_topology_init(&h) != 0)
            _exit(2);
        hwloc_topology_set_io_types_filter(h, HWLOC_TYPE_FILTER_KEEP_ALL);
        _exit(hwloc_topology_set_xmlbuffer(h, xml, (int)len) == 0 && hwloc_topology_load(h) == 0
                  ? 0
                  : 1);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return jz_error_set(err, JZ_EIO, "cannot wait for the topology check: %s",
                                strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFSIGNALED(status))
        return jz_error_set(err, JZ_ECORRUPT, "not a usable hwloc XML topology (hwloc's import "
                                              "died of signal %d on it)", WTERMSIG(status));
    return jz_error_set(err, JZ_ECORRUPT, "not an hwloc XML topology");
}

int jz_topo_hwloc_load_xml_buffer(const char *xml, size_t len, struct jz_topo **out,
                                  struct jz_error *err)
{
    if (!xml || !out)
        return jz_error_set(err, JZ_EINVAL, "no XML given");
    if (len > JZ_TOPO_XML_MAX_BYTES)
        return jz_error_set(err, JZ_ELIMIT, "topology XML is larger than %u bytes",
                            JZ_TOPO_XML_MAX_BYTES);
    hwloc_topology_t h;
    int rc = open_topology(&h, err);
    if (rc)
        return rc;
    /* hwloc wants the terminating NUL counted in size. */
    char *copy = malloc(len + 1);
    if (!copy) {
        hwloc_topology_destroy(h);
        return jz_error_set(err, JZ_ENOMEM, "out of memory copying topology XML");
    }
    memcpy(copy, xml, len);
    copy[len] = '\0';
    if ((rc = trial_import(copy, len + 1, err)) != 0) {
        free(copy);
        hwloc_topology_destroy(h);
        return rc;
    }
    if (hwloc_topology_set_xmlbuffer(h, copy, (int)len + 1) != 0) {
        free(copy);
        hwloc_topology_destroy(h);
        return jz_error_set(err, JZ_ECORRUPT, "not an hwloc XML topology");
    }
    rc = finish_load(h, "the XML topology", out, err);
    free(copy);
    return rc;
}

int jz_topo_hwloc_load_xml(const char *path, struct jz_topo **out, struct jz_error *err)
{
    if (!path || !out)
        return jz_error_set(err, JZ_EINVAL, "no topology path given");
    FILE *f = fopen(path, "rb");
    if (!f)
        return jz_error_set(err, JZ_ENOENT, "cannot open topology file %s", path);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= JZ_TOPO_XML_MAX_BYTES) {
                rc = jz_error_set(err, JZ_ELIMIT, "%s is larger than %u bytes", path,
                                  JZ_TOPO_XML_MAX_BYTES);
                break;
            }
            size_t nc = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, nc);
            if (!nb) {
                rc = jz_error_set(err, JZ_ENOMEM, "out of memory reading %s", path);
                break;
            }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) {
            if (ferror(f))
                rc = jz_error_set(err, JZ_EIO, "error reading %s", path);
            break;
        }
    }
    fclose(f);
    if (rc == 0) {
        rc = jz_topo_hwloc_load_xml_buffer(buf, len, out, err);
        if (rc && err && err->code != JZ_ENOMEM) {
            char msg[JZ_ERROR_MSG_MAX];
            memcpy(msg, err->msg, sizeof(msg));
            msg[sizeof(msg) - 1] = '\0';
            jz_error_set(err, rc, "%s: %s", path, msg);
        }
    }
    free(buf);
    return rc;
}

int jz_topo_hwloc_load_live(struct jz_topo **out, struct jz_error *err)
{
    if (!out)
        return jz_error_set(err, JZ_EINVAL, "no output given");
    hwloc_topology_t h;
    int rc = open_topology(&h, err);
    if (rc)
        return rc;
    return finish_load(h, "this machine's topology", out, err);
}
