/* Single-node placement on real topologies: closest GPU sets, fragmentation tie-breaks, local
 * cores, NUMA memory, constraints and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/place.h"
#include "scheduler/topo_hwloc.h"

#define FIX(name) JZ_TEST_FIXTURES "/topologies/" name

static struct jz_topo *load(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/topologies/%s", JZ_TEST_FIXTURES, name);
    struct jz_error err = {0};
    struct jz_topo *t = NULL;
    assert_int_equal(jz_topo_hwloc_load_xml(path, &t, &err), 0);
    return t;
}

static size_t by_name(const struct jz_topo *t, const char *name)
{
    char want[40];
    snprintf(want, sizeof(want), ",%s,", name);
    for (size_t i = 0; i < jz_topo_gpu_count(t); i++) {
        char list[JZ_TOPO_OS_NAMES_LEN + 2];
        snprintf(list, sizeof(list), ",%s,", jz_topo_gpu_at(t, i)->os_names);
        if (strstr(list, want))
            return i;
    }
    fail_msg("no GPU %s", name);
    return 0;
}

static struct jz_place_result place(const struct jz_topo *t, uint64_t gbusy, const uint64_t *cbusy,
                                    struct jz_place_request req)
{
    struct jz_place_usage u = {.gpu_busy = &gbusy, .core_busy = cbusy};
    struct jz_place_result r;
    struct jz_error err = {0};
    assert_int_equal(jz_place(t, &u, &req, &r, &err), 0);
    return r;
}

static uint64_t mask_of(const struct jz_place_result *r)
{
    uint64_t m = 0;
    for (size_t i = 0; i < r->gpu_count; i++)
        m |= 1ull << r->gpus[i];
    return m;
}

static void test_g4dn_pairs(void **state)
{
    struct jz_topo *t = load("aws-g4dn-metal-8xT4.xml");
    size_t n0 = by_name(t, "nvml0"), n1 = by_name(t, "nvml1"), n2 = by_name(t, "nvml2");
    struct jz_place_result r = place(t, 0, NULL, (struct jz_place_request){.gpus = 2});
    assert_true(r.fits);
    assert_int_equal(r.worst_link, JZ_TOPO_LINK_HOST_BRIDGE);
    assert_int_equal(mask_of(&r), (1ull << n0) | (1ull << n1));
    jz_place_result_free(&r);
    /* One GPU with nvml0 busy: take its partner and keep the other pairs whole. */
    r = place(t, 1ull << n0, NULL, (struct jz_place_request){.gpus = 1});
    assert_int_equal(mask_of(&r), 1ull << n1);
    assert_non_null(strstr(r.reason, "larger free groups whole"));
    jz_place_result_free(&r);
    /* Two GPUs with nvml0 busy: a whole pair, not the broken one plus a stranger. */
    r = place(t, 1ull << n0, NULL, (struct jz_place_request){.gpus = 2});
    assert_int_equal(mask_of(&r), (1ull << n2) | (1ull << by_name(t, "nvml3")));
    jz_place_result_free(&r);
    /* Four: one socket. */
    r = place(t, 0, NULL, (struct jz_place_request){.gpus = 4, .cpus_per_gpu = 3});
    assert_int_equal(r.worst_link, JZ_TOPO_LINK_NUMA);
    assert_int_equal(r.numa_count, 1);
    assert_int_equal(r.numa[0], 0);
    assert_int_equal(r.core_count, 12);
    assert_int_equal(r.cpu_count, 24); /* SMT2: every hardware thread of each core */
    for (size_t i = 0; i < r.cpu_count; i++)
        assert_true(r.cpus[i] < 24 || (r.cpus[i] >= 48 && r.cpus[i] < 72));
    jz_place_result_free(&r);
    /* Constraints. */
    r = place(t, 0, NULL, (struct jz_place_request){.gpus = 1, .model = "h100"});
    assert_false(r.fits);
    assert_non_null(strstr(r.reason, "model"));
    jz_place_result_free(&r);
    r = place(t, 0, NULL,
              (struct jz_place_request){.gpus = 1, .model = "t4", .min_memory_bytes = 14ull << 30});
    assert_true(r.fits);
    jz_place_result_free(&r);
    r = place(t, 0, NULL, (struct jz_place_request){.gpus = 1, .min_memory_bytes = 32ull << 30});
    assert_false(r.fits);
    jz_place_result_free(&r);
    r = place(t, 0xff, NULL, (struct jz_place_request){.gpus = 1});
    assert_false(r.fits);
    assert_string_equal(r.reason, "needs 1 GPU but only 0 of 8 are free");
    jz_place_result_free(&r);
    jz_topo_destroy(t);
}

static void test_dgx2_planes(void **state)
{
    struct jz_topo *t = load("nvidia-dgx2-16xV100-nvswitch.xml");
    size_t n0 = by_name(t, "nvml0"), n1 = by_name(t, "nvml1");
    struct jz_place_result r = place(t, 0, NULL, (struct jz_place_request){.gpus = 8});
    assert_int_equal(r.worst_link, JZ_TOPO_LINK_NVLINK);
    assert_int_equal(r.numa_count, 1);
    jz_place_result_free(&r);
    /* nvml0 busy: 8 GPUs only fit whole on the other plane. */
    r = place(t, 1ull << n0, NULL, (struct jz_place_request){.gpus = 8});
    assert_int_equal(r.worst_link, JZ_TOPO_LINK_NVLINK);
    assert_false(mask_of(&r) & (1ull << n1));
    assert_int_equal(r.numa[0], 1);
    jz_place_result_free(&r);
    /* 1 GPU with nvml0 busy: its PCIe pair partner. */
    r = place(t, 1ull << n0, NULL, (struct jz_place_request){.gpus = 1});
    assert_int_equal(mask_of(&r), 1ull << n1);
    jz_place_result_free(&r);
    /* 16 GPUs: the whole box, across packages. */
    r = place(t, 0, NULL, (struct jz_place_request){.gpus = 16});
    assert_int_equal(r.worst_link, JZ_TOPO_LINK_SYSTEM);
    jz_place_result_free(&r);
    jz_topo_destroy(t);
}

static void test_cpx_devices(void **state)
{
    struct jz_topo *t = load("hpe-ex255a-tuolumne-4xMI300A-cpx.xml");
    struct jz_place_result r = place(t, 0, NULL, (struct jz_place_request){.gpus = 6});
    assert_int_equal(r.worst_link, JZ_TOPO_LINK_SAME_DEVICE);
    jz_place_result_free(&r);
    /* Device 0 half used: 3 GPUs come from its free half, not from an untouched APU. */
    r = place(t, 0x7, NULL, (struct jz_place_request){.gpus = 3, .cpus_per_gpu = 4});
    assert_int_equal(mask_of(&r), 0x38);
    assert_int_equal(r.core_count, 12);
    assert_int_equal(r.numa[0], 0);
    jz_place_result_free(&r);
    /* 12 of 24: the greedy path (too many subsets to enumerate) still finds 2 whole devices. */
    r = place(t, 0, NULL, (struct jz_place_request){.gpus = 12});
    assert_true(r.fits);
    assert_int_equal(r.worst_link, JZ_TOPO_LINK_NVLINK);
    jz_place_result_free(&r);
    jz_topo_destroy(t);
}

static void test_cores(void **state)
{
    struct jz_topo *t = load("dell-xe8640-4xH100-snc4.xml");
    size_t n1 = by_name(t, "nvml1");
    /* Each H100 has 14 local cores: 14 per GPU fit, 15 do not. */
    struct jz_place_result r =
        place(t, 0, NULL, (struct jz_place_request){.gpus = 4, .cpus_per_gpu = 14});
    assert_true(r.fits);
    assert_int_equal(r.core_count, 56);
    assert_int_equal(r.numa_count, 4);
    jz_place_result_free(&r);
    r = place(t, 0, NULL, (struct jz_place_request){.gpus = 1, .cpus_per_gpu = 15});
    assert_false(r.fits);
    assert_non_null(strstr(r.reason, "local"));
    jz_place_result_free(&r);
    /* With nvml1's cores all busy, a 1-GPU job avoids nvml1. */
    uint64_t cbusy[2] = {0};
    const struct jz_topo_gpu *g = jz_topo_gpu_at(t, n1);
    for (size_t i = 0; i < g->local_core_count; i++)
        cbusy[g->local_cores[i] / 64] |= 1ull << (g->local_cores[i] % 64);
    r = place(t, 0xf & ~(1ull << n1), cbusy,
              (struct jz_place_request){.gpus = 1, .cpus_per_gpu = 2});
    assert_false(r.fits); /* only nvml1 free, and its cores are taken */
    jz_place_result_free(&r);
    r = place(t, 0, cbusy, (struct jz_place_request){.gpus = 1, .cpus_per_gpu = 2});
    assert_true(r.fits);
    assert_int_not_equal(r.gpus[0], n1);
    jz_place_result_free(&r);
    jz_topo_destroy(t);
}

static void test_cpu_only(void **state)
{
    struct jz_topo *t = load("llnl-pascal-2xP100-pcie.xml");
    /* Both GPUs sit on NUMA 0: a CPU-only job goes to NUMA 1 and leaves their cores alone. */
    struct jz_place_result r = place(t, 0, NULL, (struct jz_place_request){.cpus = 4});
    assert_true(r.fits);
    assert_int_equal(r.gpu_count, 0);
    assert_int_equal(r.numa_count, 1);
    assert_int_equal(r.numa[0], 1);
    assert_int_equal(r.cpu_count, 8);
    jz_place_result_free(&r);
    r = place(t, 0, NULL, (struct jz_place_request){.cpus = 37});
    assert_false(r.fits);
    jz_place_result_free(&r);
    struct jz_place_request bad = {0};
    struct jz_error err = {0};
    assert_int_equal(jz_place(t, NULL, &bad, &r, &err), JZ_EINVAL);
    bad.gpus = 65;
    assert_int_equal(jz_place(t, NULL, &bad, &r, &err), JZ_ELIMIT);
    jz_topo_destroy(t);
}

static void test_every_fixture_places(void **state)
{
    static const char *files[] = {"aws-g4dn-metal-8xT4.xml",
                                  "dell-xe8640-4xH100-snc4.xml",
                                  "hpe-ex255a-tuolumne-4xMI300A-cpx.xml",
                                  "hpe-ex255a-tuolumne-4xMI300A-spx.xml",
                                  "ibm-ac922-lassen-4xV100.xml",
                                  "juwels-booster-4xA100-nps4.xml",
                                  "llnl-corona-8xMI50.xml",
                                  "llnl-pascal-2xP100-pcie.xml",
                                  "nvidia-dgx2-16xV100-nvswitch.xml"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        struct jz_topo *t = load(files[f]);
        size_t n = jz_topo_gpu_count(t);
        /* Fill the node one GPU at a time: every placement is new GPUs, local cores. */
        uint64_t busy = 0;
        for (size_t k = 0; k < n; k++) {
            struct jz_place_result r = place(t, busy, NULL, (struct jz_place_request){.gpus = 1});
            assert_true(r.fits);
            assert_false(busy & mask_of(&r));
            busy |= mask_of(&r);
            jz_place_result_free(&r);
        }
        struct jz_place_result r = place(t, busy, NULL, (struct jz_place_request){.gpus = 1});
        assert_false(r.fits);
        jz_place_result_free(&r);
        /* The DGX-2 export keeps 2 cores per 8 GPUs: ask for cores only where they exist. */
        unsigned cpg = jz_topo_core_count(t) >= 2 * n ? 1 : 0;
        r = place(t, 0, NULL, (struct jz_place_request){.gpus = (unsigned)n, .cpus_per_gpu = cpg});
        assert_true(r.fits);
        for (size_t i = 0; i < r.gpu_count; i++) {
            /* the core given for GPU i is one of its local cores */
            const struct jz_topo_gpu *g = jz_topo_gpu_at(t, r.gpus[i]);
            bool any = false;
            for (size_t c = 0; c < r.core_count && !any; c++)
                for (size_t l = 0; l < g->local_core_count; l++)
                    any |= g->local_cores[l] == r.cores[c];
            assert_true(any || cpg == 0);
        }
        jz_place_result_free(&r);
        jz_topo_destroy(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_g4dn_pairs),  cmocka_unit_test(test_dgx2_planes),
        cmocka_unit_test(test_cpx_devices), cmocka_unit_test(test_cores),
        cmocka_unit_test(test_cpu_only),    cmocka_unit_test(test_every_fixture_places),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
