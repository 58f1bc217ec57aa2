/* The simulate plugin, loaded from its .so by the in-process host. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "runhost.h"

static char tmpdir[256];
static int run_no;

static void host_new(struct jz_runhost *h)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/run%d", tmpdir, run_no++);
    assert_int_equal(jz_runhost_init(h, JZ_SIMULATE_PLUGIN, dir), 0);
    h->quiet = true;
}

static uint8_t *artifact(struct jz_runhost *h, const char *name, size_t *len)
{
    char p[4300];
    jz_runhost_artifact_path(h, name, p, sizeof p);
    uint8_t *buf = NULL;
    if (jz_file_read_all(p, (size_t)1 << 30, &buf, len, NULL) != 0)
        fail_msg("artifact %s missing", name);
    return buf;
}

static void test_heat2d_analytic_and_split(void **state)
{
    static struct jz_runhost one, three;
    host_new(&one);
    host_new(&three);
    three.n_devices = 3;
    for (struct jz_runhost *h = &one; h; h = h == &one ? &three : NULL) {
        jz_runhost_set(h, "model", "heat");
        jz_runhost_set(h, "nx", "96");
        jz_runhost_set(h, "ny", "90");
        jz_runhost_set(h, "sigma", "5");
        jz_runhost_set(h, "alpha", "0.24");
        jz_runhost_set(h, "steps", "300");
        jz_runhost_set(h, "snapshots", "2");
        if (jz_runhost_run(h) != 0)
            fail_msg("heat failed: %s", h->error);
    }
    /* sigma_t^2 = 25 + 2 * 0.24 * 300 = 169: the pulse has spread to 13 cells, far from the
     * walls, so the discrete solution must follow the analytic one closely */
    double rel = jz_runhost_metric(&one, "rel_l2_error");
    if (!(rel < 0.01))
        fail_msg("relative L2 error vs analytic %g", rel);
    double heat = jz_runhost_metric(&one, "total_heat"), heat0 = jz_runhost_metric(&one, "initial_heat");
    assert_true(fabs(heat - heat0) < 1e-2 * heat0); /* a little leaks through the walls */
    /* the split field with halo exchange is the same field, cell for cell */
    size_t l1, l3;
    uint8_t *a = artifact(&one, "heat_00000300.f32", &l1), *b = artifact(&three, "heat_00000300.f32", &l3);
    assert_int_equal(l1, 8 + 16 + 16 + 96 * 90 * 4 + 4);
    assert_int_equal(l1, l3);
    assert_memory_equal(a, "JZFIELD1", 8);
    assert_memory_equal(a, b, l1);
    uint32_t crc;
    memcpy(&crc, a + l1 - 4, 4);
    assert_int_equal(crc, jz_crc32(a, l1 - 4));
    free(a);
    free(b);
    size_t lm;
    free(artifact(&one, "heat_00000150.f32", &lm));
    uint8_t *png = artifact(&three, "heat.png", &lm);
    assert_memory_equal(png, "\x89PNG", 4);
    free(png);
    jz_runhost_destroy(&one);
    jz_runhost_destroy(&three);
}

static void test_heat3d(void **state)
{
    static struct jz_runhost h;
    host_new(&h);
    h.n_devices = 2;
    jz_runhost_set(&h, "model", "heat");
    jz_runhost_set(&h, "dims", "3");
    jz_runhost_set(&h, "nx", "32");
    jz_runhost_set(&h, "ny", "32");
    jz_runhost_set(&h, "nz", "32");
    jz_runhost_set(&h, "sigma", "2.5");
    jz_runhost_set(&h, "alpha", "0.15");
    jz_runhost_set(&h, "steps", "60");
    jz_runhost_set(&h, "snapshots", "1");
    if (jz_runhost_run(&h) != 0)
        fail_msg("heat 3d failed: %s", h.error);
    double rel = jz_runhost_metric(&h, "rel_l2_error");
    if (!(rel < 0.02))
        fail_msg("3D relative L2 error vs analytic %g", rel);
    jz_runhost_set(&h, "alpha", "0.2"); /* above 1/6: unstable in 3D */
    assert_int_not_equal(jz_runhost_run(&h), 0);
    assert_non_null(strstr(h.error, "unstable"));
    jz_runhost_destroy(&h);
}

/* Zero-flux and periodic boundaries conserve the heat exactly even once the pulse reaches the
 * walls (Dirichlet walls absorb it), and the slab split gives the same field. */
static void test_heat_boundaries(void **state)
{
    const char *bcs[] = {"dirichlet", "neumann", "periodic"};
    for (int dims = 2; dims <= 3; dims++)
        for (int b = 0; b < 3; b++) {
            static struct jz_runhost one, two;
            host_new(&one);
            host_new(&two);
            two.n_devices = 2;
            for (struct jz_runhost *h = &one; h; h = h == &one ? &two : NULL) {
                jz_runhost_set(h, "model", "heat");
                jz_runhost_set(h, "boundary", bcs[b]);
                jz_runhost_set(h, "dims", dims == 2 ? "2" : "3");
                jz_runhost_set(h, "nx", "24");
                jz_runhost_set(h, "ny", "20");
                jz_runhost_set(h, "nz", "18");
                jz_runhost_set(h, "sigma", "3");
                jz_runhost_set(h, "alpha", "0.15");
                jz_runhost_set(h, "steps", "300");
                jz_runhost_set(h, "snapshots", "1");
                if (jz_runhost_run(h) != 0)
                    fail_msg("heat %s failed: %s", bcs[b], h->error);
            }
            double heat = jz_runhost_metric(&one, "total_heat");
            double heat0 = jz_runhost_metric(&one, "total_heat_initial");
            if (b == 0 ? !(heat < 0.9 * heat0) : !(fabs(heat - heat0) < 1e-4 * heat0))
                fail_msg("%dD %s: heat %g from %g", dims, bcs[b], heat, heat0);
            size_t l1, l2;
            uint8_t *a = artifact(&one, "heat_00000300.f32", &l1);
            uint8_t *c = artifact(&two, "heat_00000300.f32", &l2);
            assert_int_equal(l1, l2);
            assert_memory_equal(a, c, l1);
            free(a);
            free(c);
            jz_runhost_destroy(&one);
            jz_runhost_destroy(&two);
        }
}

static void test_nbody_energy(void **state)
{
    static struct jz_runhost one, two;
    host_new(&one);
    host_new(&two);
    two.n_devices = 2;
    for (struct jz_runhost *h = &one; h; h = h == &one ? &two : NULL) {
        jz_runhost_set(h, "model", "nbody");
        jz_runhost_set(h, "bodies", "256");
        jz_runhost_set(h, "dt", "0.004");
        jz_runhost_set(h, "softening", "0.05");
        jz_runhost_set(h, "steps", "250");
        jz_runhost_set(h, "energy_every", "50");
        jz_runhost_set(h, "snapshots", "1");
        if (jz_runhost_run(h) != 0)
            fail_msg("nbody failed: %s", h->error);
    }
    double e0 = jz_runhost_metric(&one, "energy_initial");
    assert_true(e0 < -0.2 && e0 > -0.3); /* Plummer in N-body units: E = -1/4 */
    double drift = jz_runhost_metric(&one, "energy_drift");
    if (!(drift < 1e-3))
        fail_msg("energy drift %g over 250 steps", drift);
    /* each device computes its half of the bodies' forces, assembled by an all-reduce: every
     * body's force is summed as on one device, so the run is the same, bit for bit */
    double e1 = jz_runhost_metric(&one, "energy_final"), e2 = jz_runhost_metric(&two, "energy_final");
    if (!(e1 == e2))
        fail_msg("1 device %.17g vs 2 devices %.17g", e1, e2);
    size_t len, len1;
    uint8_t *snap = artifact(&two, "nbody_00000250.f32", &len);
    uint8_t *snap1 = artifact(&one, "nbody_00000250.f32", &len1);
    assert_int_equal(len, 8 + 4 + 16 + 256 * 32 + 4);
    assert_int_equal(len, len1);
    assert_memory_equal(snap, "JZBODIES", 8);
    assert_memory_equal(snap, snap1, len);
    free(snap);
    free(snap1);
    jz_runhost_destroy(&one);
    jz_runhost_destroy(&two);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jz-sim-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heat2d_analytic_and_split),
        cmocka_unit_test(test_heat3d),
        cmocka_unit_test(test_heat_boundaries),
        cmocka_unit_test(test_nbody_energy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
