/* `jazari place`: answers where a job would go on a node, with the scheduler's own placement code
 * (scheduler/place.h) on a topology file or this machine. Needs jz_sched and jz_sched_hwloc. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

#include "common/cpulist.h"
#include "scheduler/place.h"
#include "scheduler/topo_hwloc.h"

int jz_cli_place(int argc, char **argv);

#define PLACE_MAX_BUSY 256 /* entries in --busy */

static void usage(FILE *f)
{
    fprintf(f, "usage: jazari place [--topology FILE.xml] --gpus N [--cpus-per-gpu N] [--cpus N]\n"
               "                    [--busy ID,...] [--busy-cores N,...] [--model TEXT]\n"
               "                    [--min-memory-gib N] [--json]\n"
               "Shows where the scheduler would place a job on one node. Without --topology it\n"
               "reads this machine. --busy marks GPUs in use, by PCI bus id (DDDD:BB:DD.F, all\n"
               "logical GPUs of that device), OS device name (nvml3) or index; --busy-cores marks\n"
               "topology core indexes in use. --cpus asks for cores for a job without GPUs.\n"
               "Exit status: 0 fits, 2 does not fit now, 1 error.\n");
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max || s[0] == '-')
        return -1;
    *out = (unsigned)v;
    return 0;
}

static bool has_os_name(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        if (l == n && strncmp(p, name, n) == 0)
            return true;
        p += l;
        if (*p == ',')
            p++;
    }
    return false;
}

/* Marks GPUs named in a comma list busy; returns the number of unknown names (reported). */
static int mark_busy(const struct jz_topo *t, const char *list, uint64_t *busy)
{
    char *copy = strdup(list);
    if (!copy)
        return -1;
    int bad = 0, count = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (++count > PLACE_MAX_BUSY) {
            fprintf(stderr, "jazari place: at most %d --busy entries\n", PLACE_MAX_BUSY);
            bad++;
            break;
        }
        bool found = false;
        unsigned idx;
        for (size_t g = 0; g < jz_topo_gpu_count(t); g++) {
            const struct jz_topo_gpu *gpu = jz_topo_gpu_at(t, g);
            if (strcasecmp(gpu->pci_bus_id, tok) == 0 ||
                /* "BB:DD.F" without the domain is how lspci and nvidia-smi often print it */
                (strlen(tok) == 7 && strcasecmp(gpu->pci_bus_id + 5, tok) == 0) ||
                has_os_name(gpu->os_names, tok)) {
                busy[0] |= 1ull << g;
                found = true;
            }
        }
        if (!found && parse_uint(tok, JZ_TOPO_MAX_GPUS - 1, &idx) == 0 &&
            idx < jz_topo_gpu_count(t)) {
            busy[0] |= 1ull << idx;
            found = true;
        }
        if (!found) {
            fprintf(stderr, "jazari place: no GPU \"%s\" on this topology\n", tok);
            bad++;
        }
    }
    free(copy);
    return bad;
}

static int mark_busy_cores(const struct jz_topo *t, const char *list, uint64_t *busy)
{
    char *copy = strdup(list);
    if (!copy)
        return -1;
    int bad = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        unsigned idx;
        if (parse_uint(tok, JZ_TOPO_MAX_CORES - 1, &idx) != 0 || idx >= jz_topo_core_count(t)) {
            fprintf(stderr, "jazari place: no core %s on this topology\n", tok);
            bad++;
            continue;
        }
        busy[idx / 64] |= 1ull << (idx % 64);
    }
    free(copy);
    return bad;
}

static json_t *int_array(const int *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_integer(v[i]));
    return a;
}

static json_t *string_array_from_list(const char *list)
{
    json_t *a = json_array();
    for (const char *p = list; a && *p;) {
        size_t l = strcspn(p, ",");
        json_array_append_new(a, json_stringn(p, l));
        p += l;
        if (*p == ',')
            p++;
    }
    return a;
}

static int print_json(const struct jz_topo *t, const struct jz_place_result *r)
{
    json_t *o = json_object(), *gpus = json_array();
    if (!o || !gpus)
        goto fail;
    for (size_t i = 0; i < r->gpu_count; i++) {
        const struct jz_topo_gpu *g = jz_topo_gpu_at(t, r->gpus[i]);
        json_t *jg =
            json_pack("{s:I, s:s, s:o, s:i, s:s, s:I}", "index", (json_int_t)g->index, "pci_bus_id",
                      g->pci_bus_id, "os_names", string_array_from_list(g->os_names), "numa",
                      g->numa_os, "model", g->model, "memory_bytes", (json_int_t)g->memory_bytes);
        if (!jg)
            goto fail;
        json_array_append_new(gpus, jg);
    }
    json_object_set_new(o, "fits", json_boolean(r->fits));
    json_object_set_new(o, "gpus", gpus);
    gpus = NULL;
    json_object_set_new(o, "cpus", int_array(r->cpus, r->cpu_count));
    json_object_set_new(o, "numa_nodes", int_array(r->numa, r->numa_count));
    if (r->fits && r->gpu_count > 1)
        json_object_set_new(o, "worst_link", json_string(jz_topo_link_name(r->worst_link)));
    json_object_set_new(o, "reason", json_string(r->reason));
    char *text = json_dumps(o, JSON_INDENT(2));
    if (!text)
        goto fail;
    puts(text);
    free(text);
    json_decref(o);
    return 0;
fail:
    json_decref(gpus);
    json_decref(o);
    fprintf(stderr, "jazari place: out of memory\n");
    return -1;
}

static void print_text(const struct jz_topo *t, const struct jz_place_result *r)
{
    if (!r->fits) {
        printf("does not fit now: %s\n", r->reason);
        return;
    }
    for (size_t i = 0; i < r->gpu_count; i++) {
        const struct jz_topo_gpu *g = jz_topo_gpu_at(t, r->gpus[i]);
        printf("gpu %zu  %s  %-24s numa %d  %s\n", g->index, g->pci_bus_id,
               g->os_names[0] ? g->os_names : "(no OS device)", g->numa_os, g->model);
    }
    char buf[4096];
    if (jz_cpulist_format(r->cpus, r->cpu_count, buf, sizeof(buf)) != 0)
        snprintf(buf, sizeof(buf), "(%zu CPUs)", r->cpu_count);
    printf("cpus  %s\n", r->cpu_count ? buf : "(none)");
    printf("numa  ");
    for (size_t i = 0; i < r->numa_count; i++)
        printf("%s%d", i ? "," : "", r->numa[i]);
    printf("%s\nwhy   %s\n", r->numa_count ? "" : "(unknown)", r->reason);
}

int jz_cli_place(int argc, char **argv)
{
    const char *topo_path = NULL, *busy = NULL, *busy_cores = NULL, *model = NULL;
    unsigned gpus = 0, cpg = 0, cpus = 0, min_gib = 0;
    bool json = false, have_gpus = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        int bad = 0;
        if (strcmp(a, "--topology") == 0 && v)
            topo_path = v;
        else if (strcmp(a, "--gpus") == 0 && v)
            bad = parse_uint(v, JZ_TOPO_MAX_GPUS, &gpus), have_gpus = true;
        else if (strcmp(a, "--cpus-per-gpu") == 0 && v)
            bad = parse_uint(v, JZ_TOPO_MAX_CORES, &cpg);
        else if (strcmp(a, "--cpus") == 0 && v)
            bad = parse_uint(v, JZ_TOPO_MAX_CORES, &cpus);
        else if (strcmp(a, "--busy") == 0 && v)
            busy = v;
        else if (strcmp(a, "--busy-cores") == 0 && v)
            busy_cores = v;
        else if (strcmp(a, "--model") == 0 && v)
            model = v;
        else if (strcmp(a, "--min-memory-gib") == 0 && v)
            bad = parse_uint(v, 1u << 20, &min_gib);
        else if (strcmp(a, "--json") == 0)
            json = true, takes = false;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "jazari place: unknown or incomplete option %s\n", a);
            usage(stderr);
            return 1;
        }
        if (bad) {
            fprintf(stderr, "jazari place: bad value for %s: %s\n", a, v);
            return 1;
        }
        if (takes)
            i++;
    }
    if (!have_gpus && cpus == 0) {
        fprintf(stderr, "jazari place: give --gpus N (or --cpus N for a job without GPUs)\n");
        usage(stderr);
        return 1;
    }
    struct jz_error err = {0};
    struct jz_topo *t = NULL;
    int rc =
        topo_path ? jz_topo_hwloc_load_xml(topo_path, &t, &err) : jz_topo_hwloc_load_live(&t, &err);
    if (rc) {
        fprintf(stderr, "jazari place: %s\n", err.msg);
        return 1;
    }
    int status = 1;
    uint64_t gbusy[1] = {0};
    uint64_t *cbusy = calloc(JZ_BITMAP_WORDS(jz_topo_core_count(t)) + 1, sizeof(uint64_t));
    if (!cbusy)
        goto out;
    if (busy && mark_busy(t, busy, gbusy) != 0)
        goto out;
    if (busy_cores && mark_busy_cores(t, busy_cores, cbusy) != 0)
        goto out;
    struct jz_place_request req = {.gpus = gpus,
                                   .cpus_per_gpu = cpg,
                                   .cpus = cpus,
                                   .model = model,
                                   .min_memory_bytes = (uint64_t)min_gib << 30};
    struct jz_place_usage use = {.gpu_busy = gbusy, .core_busy = cbusy};
    struct jz_place_result r;
    if (jz_place(t, &use, &req, &r, &err) != 0) {
        fprintf(stderr, "jazari place: %s\n", err.msg);
        goto out;
    }
    if (json) {
        if (print_json(t, &r) != 0) {
            jz_place_result_free(&r);
            goto out;
        }
    } else {
        print_text(t, &r);
    }
    status = r.fits ? 0 : 2;
    jz_place_result_free(&r);
out:
    free(cbusy);
    jz_topo_destroy(t);
    return status;
}
