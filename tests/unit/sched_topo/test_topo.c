/* Loads every real topology fixture through the hwloc adapter and checks the facts their README
 * records (GPU counts, NUMA placement, local CPUs, links), plus the builder's own rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler/topo_hwloc.h"

#define FIX(name) JZ_TEST_FIXTURES "/topologies/" name

static struct jz_topo *load(const char *path)
{
    struct jz_error err = {0};
    struct jz_topo *t = NULL;
    int rc = jz_topo_hwloc_load_xml(path, &t, &err);
    if (rc)
        print_error("%s: %s\n", path, err.msg);
    assert_int_equal(rc, 0);
    return t;
}

static bool has_name(const struct jz_topo_gpu *g, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = g->os_names; *p;) {
        size_t l = strcspn(p, ",");
        if (l == n && strncmp(p, name, n) == 0)
            return true;
        p += l + (p[l] == ',');
    }
    return false;
}

/* Index of the GPU that has OS device name, or fails the test. */
static size_t by_name(const struct jz_topo *t, const char *name)
{
    for (size_t i = 0; i < jz_topo_gpu_count(t); i++)
        if (has_name(jz_topo_gpu_at(t, i), name))
            return i;
    fail_msg("no GPU named %s", name);
    return 0;
}

static bool gpu_has_pu(const struct jz_topo *t, size_t g, int pu)
{
    const struct jz_topo_gpu *gpu = jz_topo_gpu_at(t, g);
    for (size_t i = 0; i < gpu->local_core_count; i++) {
        const struct jz_topo_core *c = jz_topo_core_at(t, gpu->local_cores[i]);
        for (size_t k = 0; k < c->pu_count; k++)
            if (c->pus[k] == pu)
                return true;
    }
    return false;
}

static void test_dgx2(void **state)
{
    struct jz_topo *t = load(FIX("nvidia-dgx2-16xV100-nvswitch.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 16);
    assert_int_equal(jz_topo_cpu_count(t), 4);
    size_t g0 = by_name(t, "nvml0"), g1 = by_name(t, "nvml1"), g7 = by_name(t, "nvml7"),
           g8 = by_name(t, "nvml8"), g15 = by_name(t, "nvml15");
    assert_int_equal(jz_topo_gpu_at(t, g0)->numa_os, 0);
    assert_int_equal(jz_topo_gpu_at(t, g8)->numa_os, 1);
    assert_string_equal(jz_topo_gpu_at(t, g0)->model, "Tesla V100-SXM3-32GB-H");
    /* One NVSwitch plane per 8 GPUs, no trunk between the planes. */
    assert_int_equal(jz_topo_gpu_link(t, g0, g7), JZ_TOPO_LINK_NVLINK);
    assert_int_equal(jz_topo_gpu_link(t, g8, g15), JZ_TOPO_LINK_NVLINK);
    assert_int_equal(jz_topo_gpu_link(t, g0, g8), JZ_TOPO_LINK_SYSTEM);
    assert_true(jz_topo_gpu_distance(t, g0, g1) < jz_topo_gpu_distance(t, g0, g8));
    assert_true(gpu_has_pu(t, g0, 0) && gpu_has_pu(t, g0, 1) && !gpu_has_pu(t, g0, 24));
    assert_true(gpu_has_pu(t, g15, 24));
    /* The PCI path goes through the two switch levels. */
    assert_non_null(strstr(jz_topo_gpu_at(t, g0)->pci_path, "0000:[2b-3b]/0000:2b:00.0/"));
    jz_topo_destroy(t);
}

static void test_xe8640(void **state)
{
    struct jz_topo *t = load(FIX("dell-xe8640-4xH100-snc4.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 4);
    assert_int_equal(jz_topo_core_count(t), 112);
    assert_int_equal(jz_topo_cpu_count(t), 224);
    assert_int_equal(jz_topo_numa_count(t), 8);
    size_t n0 = by_name(t, "nvml0"), n1 = by_name(t, "nvml1"), n2 = by_name(t, "nvml2"),
           n3 = by_name(t, "nvml3");
    assert_int_equal(jz_topo_gpu_at(t, n1)->numa_os, 1);
    assert_int_equal(jz_topo_gpu_at(t, n0)->numa_os, 3);
    assert_int_equal(jz_topo_gpu_at(t, n3)->numa_os, 5);
    assert_int_equal(jz_topo_gpu_at(t, n2)->numa_os, 7);
    assert_true(has_name(jz_topo_gpu_at(t, n0), "cuda0") ||
                has_name(jz_topo_gpu_at(t, n0), "cuda1"));
    assert_true(jz_topo_gpu_at(t, n0)->memory_bytes >= 79ull << 30);
    assert_true(gpu_has_pu(t, n1, 14) && gpu_has_pu(t, n1, 139) && !gpu_has_pu(t, n1, 42));
    assert_int_equal(jz_topo_gpu_at(t, n1)->local_core_count, 14);
    /* NVLink everywhere; same package is still the closer pair. */
    assert_int_equal(jz_topo_gpu_link(t, n0, n2), JZ_TOPO_LINK_NVLINK);
    assert_true(jz_topo_gpu_distance(t, n0, n1) < jz_topo_gpu_distance(t, n0, n2));
    jz_topo_destroy(t);
}

static void test_mi300a_cpx(void **state)
{
    struct jz_topo *t = load(FIX("hpe-ex255a-tuolumne-4xMI300A-cpx.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 24);
    size_t r0 = by_name(t, "rsmi0"), r5 = by_name(t, "rsmi5"), r6 = by_name(t, "rsmi6"),
           r23 = by_name(t, "rsmi23");
    assert_string_equal(jz_topo_gpu_at(t, r0)->pci_bus_id, jz_topo_gpu_at(t, r5)->pci_bus_id);
    assert_string_not_equal(jz_topo_gpu_at(t, r0)->pci_bus_id, jz_topo_gpu_at(t, r6)->pci_bus_id);
    assert_int_equal(jz_topo_gpu_link(t, r0, r5), JZ_TOPO_LINK_SAME_DEVICE);
    assert_int_equal(jz_topo_gpu_link(t, r0, r6), JZ_TOPO_LINK_NVLINK);
    assert_int_equal(jz_topo_gpu_at(t, r0)->package, 0);
    assert_int_equal(jz_topo_gpu_at(t, r23)->package, 3);
    assert_int_equal(jz_topo_gpu_at(t, r23)->numa_os, 3);
    assert_true(gpu_has_pu(t, r23, 72) && gpu_has_pu(t, r23, 191));
    jz_topo_destroy(t);
}

static void test_mi300a_spx(void **state)
{
    struct jz_topo *t = load(FIX("hpe-ex255a-tuolumne-4xMI300A-spx.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 4);
    assert_int_equal(jz_topo_cpu_count(t), 192);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(jz_topo_gpu_at(t, i)->numa_os, (int)i); /* one domain per APU */
        assert_int_equal(jz_topo_gpu_link(t, 0, i ? i : 1), JZ_TOPO_LINK_NVLINK);
    }
    jz_topo_destroy(t);
}

static void test_lassen(void **state)
{
    struct jz_topo *t = load(FIX("ibm-ac922-lassen-4xV100.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 4);
    assert_int_equal(jz_topo_cpu_count(t), 160); /* 16 PUs missing from the export */
    assert_int_equal(jz_topo_core_count(t), 40);
    assert_int_equal(jz_topo_numa_count(t), 2);
    assert_int_equal(jz_topo_numa_at(t, 0), 0);
    assert_int_equal(jz_topo_numa_at(t, 1), 8); /* numbering with a gap */
    size_t n0 = by_name(t, "nvml0"), n1 = by_name(t, "nvml1"), n2 = by_name(t, "nvml2");
    assert_int_equal(jz_topo_gpu_at(t, n2)->numa_os, 8);
    assert_int_equal(jz_topo_gpu_link(t, n0, n1), JZ_TOPO_LINK_PCI_SWITCH);
    assert_int_equal(jz_topo_gpu_link(t, n0, n2), JZ_TOPO_LINK_SYSTEM);
    assert_true(gpu_has_pu(t, n0, 8) && !gpu_has_pu(t, n0, 0));
    assert_int_equal(jz_topo_gpu_at(t, n0)->local_core_count, 20);
    jz_topo_destroy(t);
}

static void test_g4dn(void **state)
{
    struct jz_topo *t = load(FIX("aws-g4dn-metal-8xT4.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 8);
    size_t n[8];
    char name[16];
    for (int i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "nvml%d", i);
        n[i] = by_name(t, name);
        assert_int_equal(jz_topo_gpu_at(t, n[i])->numa_os, i < 4 ? 0 : 1);
        assert_string_equal(jz_topo_gpu_at(t, n[i])->model, "Tesla T4");
    }
    assert_int_equal(jz_topo_gpu_link(t, n[0], n[1]), JZ_TOPO_LINK_HOST_BRIDGE);
    assert_int_equal(jz_topo_gpu_link(t, n[0], n[2]), JZ_TOPO_LINK_NUMA);
    assert_int_equal(jz_topo_gpu_link(t, n[6], n[7]), JZ_TOPO_LINK_HOST_BRIDGE);
    assert_int_equal(jz_topo_gpu_link(t, n[0], n[4]), JZ_TOPO_LINK_SYSTEM);
    assert_true(has_name(jz_topo_gpu_at(t, n[0]), "cuda0"));
    jz_topo_destroy(t);
}

static void test_juwels_pci_only(void **state)
{
    struct jz_topo *t = load(FIX("juwels-booster-4xA100-nps4.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 4);
    const char *ids[4] = {"0000:03:00.0", "0000:44:00.0", "0000:84:00.0", "0000:c4:00.0"};
    int numa[4] = {3, 1, 7, 5};
    for (size_t i = 0; i < 4; i++) {
        const struct jz_topo_gpu *g = jz_topo_gpu_at(t, i);
        assert_string_equal(g->pci_bus_id, ids[i]);
        assert_string_equal(g->os_names, "");
        assert_int_equal(g->numa_os, numa[i]);
        assert_int_equal(g->local_core_count, 6);
    }
    assert_int_equal(jz_topo_gpu_link(t, 0, 1), JZ_TOPO_LINK_PACKAGE);
    assert_int_equal(jz_topo_gpu_link(t, 0, 2), JZ_TOPO_LINK_SYSTEM);
    jz_topo_destroy(t);
}

static void test_corona(void **state)
{
    struct jz_topo *t = load(FIX("llnl-corona-8xMI50.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 8);
    assert_true(has_name(jz_topo_gpu_at(t, 0), "rsmi2")); /* rsmi order is not PCI order */
    assert_string_equal(jz_topo_gpu_at(t, 0)->pci_bus_id, "0000:03:00.0");
    assert_int_equal(jz_topo_gpu_at(t, by_name(t, "rsmi3"))->numa_os, 0);
    assert_int_equal(jz_topo_gpu_at(t, by_name(t, "rsmi4"))->numa_os, 1);
    assert_int_equal(jz_topo_gpu_link(t, by_name(t, "rsmi0"), by_name(t, "rsmi1")),
                     JZ_TOPO_LINK_NUMA);
    jz_topo_destroy(t);
}

static void test_pascal(void **state)
{
    struct jz_topo *t = load(FIX("llnl-pascal-2xP100-pcie.xml"));
    assert_int_equal(jz_topo_gpu_count(t), 2);
    assert_int_equal(jz_topo_cpu_count(t), 72);
    assert_int_equal(jz_topo_gpu_link(t, 0, 1), JZ_TOPO_LINK_PCI_SWITCH);
    assert_int_equal(jz_topo_gpu_at(t, 1)->numa_os, 0);
    assert_true(gpu_has_pu(t, 0, 53) && !gpu_has_pu(t, 0, 18));
    jz_topo_destroy(t);
}

static void test_live(void **state)
{
    struct jz_error err = {0};
    struct jz_topo *t = NULL;
    assert_int_equal(jz_topo_hwloc_load_live(&t, &err), 0);
    assert_true(jz_topo_cpu_count(t) >= 1);
    assert_true(jz_topo_core_count(t) >= 1);
    char buf[256];
    assert_int_equal(jz_topo_describe(t, buf, sizeof(buf)), 0);
    jz_topo_destroy(t);
}

static void test_bad_files(void **state)
{
    struct jz_error err = {0};
    struct jz_topo *t = NULL;
    assert_int_equal(jz_topo_hwloc_load_xml("/nonexistent/x.xml", &t, &err), JZ_ENOENT);
    assert_null(t);
    assert_int_not_equal(jz_topo_hwloc_load_xml_buffer("<topology>", 10, &t, &err), 0);
    assert_null(t);
}

static void test_builder(void **state)
{
    struct jz_error err = {0};
    struct jz_topo *t;
    assert_int_equal(jz_topo_create(&t, &err), 0);
    int p0[] = {0, 4}, p1[] = {1, 5}, dup[] = {4};
    assert_int_equal(jz_topo_add_core(t, 0, 0, p0, 2, &err), 0);
    assert_int_equal(jz_topo_add_core(t, 2, 0, p1, 2, &err), 0);
    assert_int_equal(jz_topo_add_core(t, 0, 0, dup, 0, &err), JZ_EINVAL);
    struct jz_topo_gpu g = {.numa_os = 2, .package = 0};
    strcpy(g.pci_bus_id, "0000:02:00.0");
    strcpy(g.pci_path, "0000:[00-0f]/0000:00:01.0");
    assert_int_equal(jz_topo_add_gpu(t, &g, p1, 2, &err), 0);
    strcpy(g.pci_bus_id, "0000:01:00.0");
    strcpy(g.pci_path, "0000:[00-0f]/0000:00:02.0");
    g.numa_os = 0;
    assert_int_equal(jz_topo_add_gpu(t, &g, NULL, 0, &err), 0);
    assert_int_equal(jz_topo_add_link(t, 0, 7, &err), JZ_EINVAL);
    assert_int_equal(jz_topo_finish(t, &err), 0);
    assert_int_equal(jz_topo_add_core(t, 0, 0, dup, 1, &err), JZ_EINVAL);
    /* Sorted by PCI id: the second one added is GPU 0, local to every core. */
    assert_string_equal(jz_topo_gpu_at(t, 0)->pci_bus_id, "0000:01:00.0");
    assert_int_equal(jz_topo_gpu_at(t, 0)->local_core_count, 2);
    assert_int_equal(jz_topo_gpu_at(t, 1)->local_core_count, 1);
    assert_int_equal(jz_topo_gpu_link(t, 0, 1), JZ_TOPO_LINK_HOST_BRIDGE);
    assert_int_equal(jz_topo_numa_count(t), 2);
    assert_int_equal(jz_topo_numa_at(t, 1), 2);
    assert_null(jz_topo_gpu_at(t, 2));
    jz_topo_destroy(t);

    /* A processor in two cores is refused. */
    assert_int_equal(jz_topo_create(&t, &err), 0);
    assert_int_equal(jz_topo_add_core(t, 0, 0, p0, 2, &err), 0);
    assert_int_equal(jz_topo_add_core(t, 0, 0, dup, 1, &err), 0);
    assert_int_equal(jz_topo_finish(t, &err), JZ_EINVAL);
    jz_topo_destroy(t);
    jz_topo_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dgx2),
        cmocka_unit_test(test_xe8640),
        cmocka_unit_test(test_mi300a_cpx),
        cmocka_unit_test(test_mi300a_spx),
        cmocka_unit_test(test_lassen),
        cmocka_unit_test(test_g4dn),
        cmocka_unit_test(test_juwels_pci_only),
        cmocka_unit_test(test_corona),
        cmocka_unit_test(test_pascal),
        cmocka_unit_test(test_live),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_builder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
