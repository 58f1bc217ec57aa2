/* The simulate plugin: `heat` (explicit 2D/3D diffusion of a Gaussian pulse, the grid split into
 * slabs across the job's devices with halo exchange, checked against the analytic solution) and
 * `nbody` (Plummer sphere, kick-drift-kick leapfrog, each device computing the forces on its
 * slice of bodies, assembled by an all-reduce; energy drift reported). Parameters, metrics and
 * snapshot formats: docs/workloads.md. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jazari/kernels.h>
#include <jazari/plugin.h>

#include "devices.h"
#include "image.h"
#include "model.h"

#define MAX_CELLS ((size_t)1 << 28)
#define MAX_BODIES 262144
#define MAX_SNAPSHOTS 100
#define ENERGY_MAX_BODIES 20000 /* the host O(n^2) potential above this is too slow */

static const struct jz_param_spec sim_params[] = {
    {.name = "model", .type = JZ_PARAM_STRING, .default_json = "\"heat\"", .choices = "heat|nbody",
     .help = "heat diffusion or gravitational N-body"},
    {.name = "dims", .type = JZ_PARAM_INT, .default_json = "2", .min = 2, .max = 3,
     .help = "heat: 2 or 3 dimensions"},
    {.name = "nx", .type = JZ_PARAM_INT, .default_json = "256", .min = 3, .max = 65536,
     .help = "heat: grid cells along x (boundary included)"},
    {.name = "ny", .type = JZ_PARAM_INT, .default_json = "256", .min = 3, .max = 65536,
     .help = "heat: grid cells along y"},
    {.name = "nz", .type = JZ_PARAM_INT, .default_json = "64", .min = 3, .max = 65536,
     .help = "heat: grid cells along z (3D only)"},
    {.name = "alpha", .type = JZ_PARAM_FLOAT, .default_json = "0.2", .min = 1e-6, .max = 0.25,
     .help = "heat: diffusion number D dt / dx^2 (at most 1/4 in 2D, 1/6 in 3D)"},
    {.name = "boundary", .type = JZ_PARAM_STRING, .default_json = "\"dirichlet\"",
     .choices = "dirichlet|neumann|periodic",
     .help = "heat: fixed temperature, zero flux, or periodic (the outer cells are ghosts)"},
    {.name = "boundary_value", .type = JZ_PARAM_FLOAT, .default_json = "0", .min = -1e6,
     .max = 1e6, .help = "heat: temperature held on the boundary (dirichlet), the background"},
    {.name = "sigma", .type = JZ_PARAM_FLOAT, .default_json = "8", .min = 0.5, .max = 1e5,
     .help = "heat: width of the initial Gaussian pulse, in cells"},
    {.name = "amplitude", .type = JZ_PARAM_FLOAT, .default_json = "1", .min = -1e6, .max = 1e6,
     .help = "heat: peak of the initial pulse above the boundary value"},
    {.name = "bodies", .type = JZ_PARAM_INT, .default_json = "1024", .min = 2, .max = MAX_BODIES,
     .help = "nbody: number of bodies (total mass 1, G = 1)"},
    {.name = "dt", .type = JZ_PARAM_FLOAT, .default_json = "0.001", .min = 1e-9, .max = 1,
     .help = "nbody: time step (N-body units; crossing time about 2.8)"},
    {.name = "softening", .type = JZ_PARAM_FLOAT, .default_json = "0.02", .min = 1e-6, .max = 10,
     .help = "nbody: Plummer softening length"},
    {.name = "energy_every", .type = JZ_PARAM_INT, .default_json = "100", .min = 0, .max = 100000000,
     .help = "nbody: steps between energy measurements (0: start and end only)"},
    {.name = "steps", .type = JZ_PARAM_INT, .default_json = "1000", .min = 1, .max = 100000000,
     .help = "time steps"},
    {.name = "snapshots", .type = JZ_PARAM_INT, .default_json = "4", .min = 0, .max = MAX_SNAPSHOTS,
     .help = "snapshots written, evenly spaced (the last at the final step)"},
    {.name = "seed", .type = JZ_PARAM_INT, .default_json = "1", .min = 0, .max = 9007199254740991.0,
     .help = "nbody: seed of the initial conditions"},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Whether step s (1-based) of `steps` gets one of `count` evenly spaced snapshots. */
static bool snapshot_due(int64_t s, int64_t steps, int64_t count)
{
    if (count <= 0)
        return false;
    for (int64_t k = 1; k <= count; k++)
        if (s == steps * k / count)
            return true;
    return false;
}

/* Snapshot files: magic[8], u32 kind-specific header words, then float32 data, then CRC-32. */
static int write_snapshot(jz_ctx_t *ctx, const struct jz_host *host, const char *name,
                          const char magic[8], const uint32_t *words, size_t nwords,
                          uint64_t step, double time, const float *data, size_t n,
                          struct jz_error *err)
{
    char path[4096];
    int rc = host->artifact_path(ctx, name, path, sizeof path);
    if (rc)
        return jz_error_set(err, rc, "cannot name artifact %s", name);
    struct jz_bytes b = {0};
    jz_bytes_put(&b, magic, 8);
    for (size_t i = 0; i < nwords; i++)
        jz_bytes_u32(&b, words[i]);
    jz_bytes_u64(&b, step);
    jz_bytes_f64(&b, time);
    jz_bytes_put(&b, data, n * sizeof(float));
    if (!b.failed)
        jz_bytes_u32(&b, jz_crc32(b.data, b.len));
    if (b.failed) {
        free(b.data);
        return jz_error_set(err, JZ_ENOMEM, "out of memory for a snapshot");
    }
    rc = jz_file_write_atomic(path, b.data, b.len, err);
    free(b.data);
    return rc;
}

/* ---- heat -------------------------------------------------------------------------------- */

struct slab {
    size_t r0, r1;   /* owned planes [r0, r1) of the global grid */
    size_t lo, hi;   /* planes held, halos included: [lo, hi) */
    jz_kbuf_t *a, *b; /* current and next */
};

enum heat_bc { BC_DIRICHLET, BC_NEUMANN, BC_PERIODIC };

struct heat {
    enum heat_bc bc;
    size_t dims, nx, ny, nz, plane, planes, cells;
    double alpha, sigma, amp, bval;
    struct jz_pdevs devs;
    struct slab s[JZ_KCOMM_MAX_DEVICES];
    size_t k;
    float *field; /* host copy of the whole grid */
};

static double heat_analytic(const struct heat *h, size_t x, size_t y, size_t z, double t)
{
    double cx = (double)(h->nx - 1) / 2, cy = (double)(h->ny - 1) / 2;
    double cz = h->dims == 3 ? (double)(h->nz - 1) / 2 : 0;
    double dx = (double)x - cx, dy = (double)y - cy, dz = h->dims == 3 ? (double)z - cz : 0;
    double s2 = h->sigma * h->sigma, st2 = s2 + 2 * h->alpha * t;
    return h->bval + h->amp * pow(s2 / st2, (double)h->dims / 2) *
                         exp(-(dx * dx + dy * dy + dz * dz) / (2 * st2));
}

static int heat_gather(struct heat *h, struct jz_error *err)
{
    for (size_t d = 0; d < h->k; d++) {
        struct slab *s = &h->s[d];
        int rc = jz_kbuf_read(s->a, (s->r0 - s->lo) * h->plane * sizeof(float),
                              h->field + s->r0 * h->plane, (s->r1 - s->r0) * h->plane * sizeof(float), err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Copies each slab's edge planes into its neighbours' halos through host memory. With a periodic
 * boundary across several slabs the ends are neighbours too: the first slab's outer plane (global
 * plane 0, a ghost) takes the last slab's plane P-2, the last slab's outer plane (P-1) the first
 * slab's plane 1. */
static int heat_exchange(struct heat *h, float *stage, struct jz_error *err)
{
    size_t pb = h->plane * sizeof(float);
    if (h->k > 1 && h->bc == BC_PERIODIC) {
        struct slab *first = &h->s[0], *last = &h->s[h->k - 1];
        size_t P = h->planes;
        int rc;
        if ((rc = jz_kbuf_read(last->a, (P - 2 - last->lo) * pb, stage, pb, err)) ||
            (rc = jz_kbuf_write(first->a, 0, stage, pb, err)) ||
            (rc = jz_kbuf_read(first->a, 1 * pb, stage, pb, err)) ||
            (rc = jz_kbuf_write(last->a, (P - 1 - last->lo) * pb, stage, pb, err)))
            return rc;
    }
    for (size_t d = 0; d + 1 < h->k; d++) {
        struct slab *lo = &h->s[d], *up = &h->s[d + 1];
        int rc;
        /* my last owned plane -> the upper slab's lower halo (its local plane 0) */
        if ((rc = jz_kbuf_read(lo->a, (lo->r1 - 1 - lo->lo) * pb, stage, pb, err)) ||
            (rc = jz_kbuf_write(up->a, 0, stage, pb, err)))
            return rc;
        /* its first owned plane -> my upper halo (my last local plane) */
        if ((rc = jz_kbuf_read(up->a, (up->r0 - up->lo) * pb, stage, pb, err)) ||
            (rc = jz_kbuf_write(lo->a, (lo->hi - 1 - lo->lo) * pb, stage, pb, err)))
            return rc;
    }
    return 0;
}

/* Faces of slab d that are cuts between slabs, not domain boundaries (the slab axis is y in 2D,
 * z in 3D); with a periodic boundary and several slabs the domain's own faces on that axis are
 * cuts too (heat_exchange wraps around). The kernels apply the boundary condition on all other
 * faces themselves. */
static unsigned heat_halo(const struct heat *h, size_t d)
{
    unsigned lo = h->dims == 3 ? JZ_KFACE_ZLO : JZ_KFACE_YLO;
    unsigned hi = h->dims == 3 ? JZ_KFACE_ZHI : JZ_KFACE_YHI;
    if (h->k > 1 && h->bc == BC_PERIODIC)
        return lo | hi;
    return (d > 0 ? lo : 0u) | (d + 1 < h->k ? hi : 0u);
}

static int heat_errors(struct heat *h, double t, double *rel_l2, double *max_abs, double *total)
{
    double num = 0, den = 0, mx = 0, sum = 0;
    /* interior cells only: the outer ring is the boundary (or ghosts) */
    size_t z0 = h->dims == 3 ? 1 : 0, z1 = h->dims == 3 ? h->nz - 1 : 1;
    for (size_t z = z0; z < z1; z++)
        for (size_t y = 1; y + 1 < h->ny; y++)
            for (size_t x = 1; x + 1 < h->nx; x++) {
                double u = h->field[(z * h->ny + y) * h->nx + x];
                double e = heat_analytic(h, x, y, z, t);
                num += (u - e) * (u - e);
                den += (e - h->bval) * (e - h->bval);
                mx = fmax(mx, fabs(u - e));
                sum += u - h->bval;
            }
    *rel_l2 = den > 0 ? sqrt(num / den) : 0;
    *max_abs = mx;
    *total = sum;
    return 0;
}

static int run_heat(jz_ctx_t *ctx, const struct jz_host *host, struct jz_error *err)
{
    struct heat h = {0};
    int rc = 0;
    float *stage = NULL;
    h.dims = (size_t)host->param_int(ctx, "dims");
    h.nx = (size_t)host->param_int(ctx, "nx");
    h.ny = (size_t)host->param_int(ctx, "ny");
    h.nz = h.dims == 3 ? (size_t)host->param_int(ctx, "nz") : 1;
    h.alpha = host->param_float(ctx, "alpha");
    h.sigma = host->param_float(ctx, "sigma");
    h.amp = host->param_float(ctx, "amplitude");
    h.bval = host->param_float(ctx, "boundary_value");
    const char *bc = host->param_string(ctx, "boundary");
    h.bc = bc && strcmp(bc, "neumann") == 0    ? BC_NEUMANN
           : bc && strcmp(bc, "periodic") == 0 ? BC_PERIODIC
                                               : BC_DIRICHLET;
    int64_t steps = host->param_int(ctx, "steps"), nsnap = host->param_int(ctx, "snapshots");
    if (h.dims == 3 && h.alpha > 1.0 / 6)
        return jz_error_set(err, JZ_EINVAL, "alpha %g is unstable in 3D (at most 1/6)", h.alpha);
    if (h.nx * h.ny > MAX_CELLS || h.nx * h.ny * h.nz > MAX_CELLS)
        return jz_error_set(err, JZ_ELIMIT, "grid of %zu x %zu x %zu cells exceeds %zu", h.nx, h.ny,
                       h.nz, MAX_CELLS);
    h.plane = h.dims == 3 ? h.nx * h.ny : h.nx;
    h.planes = h.dims == 3 ? h.nz : h.ny;
    h.cells = h.plane * h.planes;
    if ((rc = jz_pdevs_open(ctx, host, JZ_KCOMM_MAX_DEVICES, &h.devs, err)))
        return rc;
    /* Slabs along the slowest axis; every slab owns at least 2 planes so it has >= 3 with halos. */
    h.k = h.devs.n < h.planes / 2 ? h.devs.n : h.planes / 2;
    h.field = malloc(h.cells * sizeof(float));
    stage = malloc(h.plane * sizeof(float));
    if (!h.field || !stage) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory for %zu cells", h.cells);
        goto done;
    }
    for (size_t z = 0; z < h.nz; z++)
        for (size_t y = 0; y < h.ny; y++)
            for (size_t x = 0; x < h.nx; x++) {
                bool edge = x == 0 || x == h.nx - 1 || y == 0 || y == h.ny - 1 ||
                            (h.dims == 3 && (z == 0 || z == h.nz - 1));
                h.field[(z * h.ny + y) * h.nx + x] =
                    edge ? (float)h.bval : (float)heat_analytic(&h, x, y, z, 0);
            }
    double r0_err, m0_err, heat0;
    heat_errors(&h, 0, &r0_err, &m0_err, &heat0); /* the grid's own initial heat */
    for (size_t d = 0; d < h.k; d++) {
        struct slab *s = &h.s[d];
        s->r0 = h.planes * d / h.k;
        s->r1 = h.planes * (d + 1) / h.k;
        s->lo = s->r0 > 0 ? s->r0 - 1 : 0;
        s->hi = s->r1 < h.planes ? s->r1 + 1 : h.planes;
        size_t bytes = (s->hi - s->lo) * h.plane * sizeof(float);
        if ((rc = jz_kbuf_alloc(h.devs.dev[d], bytes, &s->a, err)) ||
            (rc = jz_kbuf_alloc(h.devs.dev[d], bytes, &s->b, err)) ||
            (rc = jz_kbuf_write(s->a, 0, h.field + s->lo * h.plane, bytes, err)))
            goto done;
    }
    host->log(ctx, JZ_LOG_INFO, "simulate heat: %zuD %zu x %zu x %zu, alpha %g, %s boundary, %lld steps on %zu slab(s), devices %s",
              h.dims, h.nx, h.ny, h.nz, h.alpha, bc ? bc : "dirichlet", (long long)steps, h.k,
              h.devs.summary);
    if (h.k > 1 && (rc = heat_exchange(&h, stage, err)))
        goto done;
    enum jz_kbc kbc = h.bc == BC_NEUMANN    ? JZ_KBC_NEUMANN
                      : h.bc == BC_PERIODIC ? JZ_KBC_PERIODIC
                                            : JZ_KBC_DIRICHLET;
    double t0 = now_s(), last_progress = t0;
    for (int64_t step = 1; step <= steps; step++) {
        if (host->cancelled(ctx)) {
            rc = jz_error_set(err, JZ_ECANCELED, "cancelled at step %lld", (long long)step);
            goto done;
        }
        for (size_t d = 0; d < h.k; d++) {
            struct slab *s = &h.s[d];
            size_t n = s->hi - s->lo;
            unsigned halo = heat_halo(&h, d);
            rc = h.dims == 3 ? jz_k_heat3d_step_bc(h.devs.dev[d], h.nx, h.ny, n, (float)h.alpha,
                                                   kbc, halo, s->a, s->b, err)
                             : jz_k_heat2d_step_bc(h.devs.dev[d], h.nx, n, (float)h.alpha, kbc,
                                                   halo, s->a, s->b, err);
            if (rc)
                goto done;
            jz_kbuf_t *t = s->a;
            s->a = s->b;
            s->b = t;
        }
        if (h.k > 1 && (rc = heat_exchange(&h, stage, err)))
            goto done;
        if (snapshot_due(step, steps, nsnap)) {
            char name[64];
            snprintf(name, sizeof name, "heat_%08lld.f32", (long long)step);
            uint32_t words[4] = {(uint32_t)h.dims, (uint32_t)h.nx, (uint32_t)h.ny, (uint32_t)h.nz};
            if ((rc = heat_gather(&h, err)) ||
                (rc = write_snapshot(ctx, host, name, "JZFIELD1", words, 4, (uint64_t)step,
                                     (double)step, h.field, h.cells, err)))
                goto done;
        }
        if (now_s() - last_progress > 0.5) {
            host->progress(ctx, (double)step / (double)steps, NULL);
            last_progress = now_s();
        }
    }
    for (size_t d = 0; d < h.k; d++)
        if ((rc = jz_kdev_sync(h.devs.dev[d], err)))
            goto done;
    double secs = now_s() - t0;
    if ((rc = heat_gather(&h, err)))
        goto done;
    double rel, mx, total;
    heat_errors(&h, (double)steps, &rel, &mx, &total);
    double initial_heat = h.amp * pow(2 * M_PI * h.sigma * h.sigma, (double)h.dims / 2);
    host->metric(ctx, "steps", (double)steps, steps);
    host->metric(ctx, "rel_l2_error", rel, steps);
    host->metric(ctx, "max_abs_error", mx, steps);
    host->metric(ctx, "total_heat", total, steps);
    host->metric(ctx, "initial_heat", initial_heat, steps);
    host->metric(ctx, "total_heat_initial", heat0, steps);
    host->metric(ctx, "cells_per_s", secs > 0 ? (double)h.cells * (double)steps / secs : 0, steps);
    host->log(ctx, JZ_LOG_INFO, "simulate heat: %.3f s, relative L2 error vs analytic %.3g, max %.3g",
              secs, rel, mx);
    /* The PNG: the field (2D) or its middle z plane (3D). */
    char path[4096];
    if ((rc = host->artifact_path(ctx, "heat.png", path, sizeof path)) != 0) {
        jz_error_set(err, rc, "cannot name heat.png");
        goto done;
    }
    size_t zmid = h.dims == 3 ? h.nz / 2 : 0;
    float lo = (float)(h.bval - fabs(h.amp)), hi = (float)(h.bval + fabs(h.amp));
    if (h.nx <= JZ_PNG_MAX_SIDE && h.ny <= JZ_PNG_MAX_SIDE)
        rc = jz_png_write_field(path, h.field + zmid * h.nx * h.ny, h.nx, h.ny, lo, hi, err);
    else
        host->log(ctx, JZ_LOG_WARN, "simulate heat: grid too large for a PNG, none written");
    host->progress(ctx, 1.0, NULL);
done:
    for (size_t d = 0; d < JZ_KCOMM_MAX_DEVICES; d++) {
        jz_kbuf_free(h.s[d].a);
        jz_kbuf_free(h.s[d].b);
    }
    jz_pdevs_close(&h.devs);
    free(h.field);
    free(stage);
    return rc;
}

/* ---- nbody -------------------------------------------------------------------------------- */

static double urand(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static void iso(uint64_t *s, double r, double *v)
{
    double cz = 2 * urand(s) - 1, ph = 2 * M_PI * urand(s), sz = sqrt(1 - cz * cz);
    v[0] = r * sz * cos(ph);
    v[1] = r * sz * sin(ph);
    v[2] = r * cz;
}

/* Plummer sphere (Aarseth, Henon & Wielen 1974) in standard N-body units: M = G = 1,
 * E = -1/4; pos and vel are float4 (mass in pos.w, vel.w = 0), centre of mass at rest. */
static void plummer(size_t n, uint64_t seed, float *pos, float *vel)
{
    uint64_t s = seed * 0x2545F4914F6CDD1Dull + 1;
    double scale_r = 3 * M_PI / 16, scale_v = sqrt(16 / (3 * M_PI));
    double cm[6] = {0};
    for (size_t i = 0; i < n; i++) {
        double r;
        do {
            double x1 = urand(&s);
            r = x1 > 0 ? 1 / sqrt(pow(x1, -2.0 / 3) - 1) : 1e9;
        } while (r > 10);
        double p[3], v[3], q, g;
        iso(&s, r, p);
        do {
            q = urand(&s);
            g = 0.1 * urand(&s);
        } while (g > q * q * pow(1 - q * q, 3.5));
        iso(&s, q * sqrt(2.0) * pow(1 + r * r, -0.25), v);
        for (int c = 0; c < 3; c++) {
            pos[4 * i + c] = (float)(p[c] * scale_r);
            vel[4 * i + c] = (float)(v[c] * scale_v);
            cm[c] += pos[4 * i + c];
            cm[3 + c] += vel[4 * i + c];
        }
        pos[4 * i + 3] = (float)(1.0 / (double)n);
        vel[4 * i + 3] = 0;
    }
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            pos[4 * i + c] -= (float)(cm[c] / (double)n);
            vel[4 * i + c] -= (float)(cm[3 + c] / (double)n);
        }
}

/* Total energy with the softened potential the force kernel integrates. */
static double energy(size_t n, const float *pos, const float *vel, double eps)
{
    double ke = 0, pe = 0, e2 = eps * eps;
    for (size_t i = 0; i < n; i++) {
        double m = pos[4 * i + 3];
        ke += 0.5 * m * ((double)vel[4 * i] * vel[4 * i] + (double)vel[4 * i + 1] * vel[4 * i + 1] +
                         (double)vel[4 * i + 2] * vel[4 * i + 2]);
        for (size_t j = i + 1; j < n; j++) {
            double dx = (double)pos[4 * j] - pos[4 * i], dy = (double)pos[4 * j + 1] - pos[4 * i + 1];
            double dz = (double)pos[4 * j + 2] - pos[4 * i + 2];
            pe -= m * pos[4 * j + 3] / sqrt(dx * dx + dy * dy + dz * dz + e2);
        }
    }
    return ke + pe;
}

struct nbody {
    size_t n, k;
    float eps, dt;
    struct jz_pdevs devs;
    jz_kbuf_t *pos[JZ_KCOMM_MAX_DEVICES], *vel[JZ_KCOMM_MAX_DEVICES], *acc[JZ_KCOMM_MAX_DEVICES];
    float *hpos, *hvel, *hacc;
};

/* Each rank computes the accelerations of its own slice of bodies (from all of them) into a
 * zeroed buffer, and the all-reduce sum assembles the whole on every rank: the O(n^2) work is
 * split k ways, and each body's force is summed exactly as on one device (adding zeros is
 * exact), so the run does not depend on the number of devices. */
static int nbody_forces(struct nbody *b, struct jz_error *err)
{
    if (b->k == 1)
        return jz_k_nbody_forces(b->devs.dev[0], b->n, b->eps, b->pos[0], b->acc[0], err);
    for (size_t d = 0; d < b->k; d++) {
        size_t lo = b->n * d / b->k, hi = b->n * (d + 1) / b->k;
        int rc;
        if ((rc = jz_k_fill(b->devs.dev[d], 4 * b->n, 0.0f, b->acc[d], err)) ||
            (hi > lo && (rc = jz_k_nbody_forces_range(b->devs.dev[d], b->n, lo, hi - lo, b->eps,
                                                      b->pos[d], b->acc[d], err))))
            return rc;
    }
    return jz_kcomm_allreduce_sum(b->devs.comm, b->acc, 4 * b->n, err);
}

static int nbody_kick(struct nbody *b, float h, struct jz_error *err)
{
    for (size_t d = 0; d < b->k; d++) {
        int rc = jz_k_axpy(b->devs.dev[d], 4 * b->n, h, b->acc[d], b->vel[d], err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Reads rank 0's state (every rank holds the same). */
static int nbody_read(struct nbody *b, struct jz_error *err)
{
    int rc;
    if ((rc = jz_kbuf_read(b->pos[0], 0, b->hpos, 16 * b->n, err)) ||
        (rc = jz_kbuf_read(b->vel[0], 0, b->hvel, 16 * b->n, err)))
        return rc;
    return 0;
}

static int run_nbody(jz_ctx_t *ctx, const struct jz_host *host, struct jz_error *err)
{
    struct nbody b = {0};
    int rc = 0;
    b.n = (size_t)host->param_int(ctx, "bodies");
    b.dt = (float)host->param_float(ctx, "dt");
    b.eps = (float)host->param_float(ctx, "softening");
    int64_t steps = host->param_int(ctx, "steps"), nsnap = host->param_int(ctx, "snapshots");
    int64_t every = host->param_int(ctx, "energy_every");
    bool measure = b.n <= ENERGY_MAX_BODIES;
    if ((rc = jz_pdevs_open(ctx, host, JZ_KCOMM_MAX_DEVICES, &b.devs, err)))
        return rc;
    b.k = b.devs.n; /* every device takes part in the all-reduce; some slices may be empty */
    b.hpos = malloc(16 * b.n);
    b.hvel = malloc(16 * b.n);
    b.hacc = malloc(16 * b.n);
    if (!b.hpos || !b.hvel || !b.hacc) {
        rc = jz_error_set(err, JZ_ENOMEM, "out of memory for %zu bodies", b.n);
        goto done;
    }
    plummer(b.n, (uint64_t)host->param_int(ctx, "seed"), b.hpos, b.hvel);
    for (size_t d = 0; d < b.k; d++) {
        if ((rc = jz_kbuf_alloc(b.devs.dev[d], 16 * b.n, &b.pos[d], err)) ||
            (rc = jz_kbuf_alloc(b.devs.dev[d], 16 * b.n, &b.vel[d], err)) ||
            (rc = jz_kbuf_alloc(b.devs.dev[d], 16 * b.n, &b.acc[d], err)) ||
            (rc = jz_kbuf_write(b.pos[d], 0, b.hpos, 16 * b.n, err)) ||
            (rc = jz_kbuf_write(b.vel[d], 0, b.hvel, 16 * b.n, err)))
            goto done;
    }
    host->log(ctx, JZ_LOG_INFO, "simulate nbody: %zu bodies (Plummer), dt %g, softening %g, %lld steps, devices %s",
              b.n, (double)b.dt, (double)b.eps, (long long)steps, b.devs.summary);
    if (!measure)
        host->log(ctx, JZ_LOG_WARN, "simulate nbody: more than %d bodies, energy not measured",
                  ENERGY_MAX_BODIES);
    double e0 = measure ? energy(b.n, b.hpos, b.hvel, b.eps) : NAN, e = e0, drift = 0;
    if (measure)
        host->metric(ctx, "energy", e0, 0);
    double t0 = now_s(), last_progress = t0;
    /* Kick-drift-kick: a_0, then per step v += dt/2 a; x += dt v; a = F(x); v += dt/2 a. */
    if ((rc = nbody_forces(&b, err)))
        goto done;
    for (int64_t step = 1; step <= steps; step++) {
        if (host->cancelled(ctx)) {
            rc = jz_error_set(err, JZ_ECANCELED, "cancelled at step %lld", (long long)step);
            goto done;
        }
        if ((rc = nbody_kick(&b, 0.5f * b.dt, err)))
            goto done;
        for (size_t d = 0; d < b.k; d++)
            if ((rc = jz_k_axpy(b.devs.dev[d], 4 * b.n, b.dt, b.vel[d], b.pos[d], err)))
                goto done;
        if ((rc = nbody_forces(&b, err)) || (rc = nbody_kick(&b, 0.5f * b.dt, err)))
            goto done;
        bool last = step == steps;
        if (measure && (last || (every > 0 && step % every == 0))) {
            if ((rc = nbody_read(&b, err)))
                goto done;
            e = energy(b.n, b.hpos, b.hvel, b.eps);
            drift = fmax(drift, fabs((e - e0) / e0));
            host->metric(ctx, "energy", e, step);
        }
        if (snapshot_due(step, steps, nsnap)) {
            char name[64];
            snprintf(name, sizeof name, "nbody_%08lld.f32", (long long)step);
            if ((rc = nbody_read(&b, err)))
                goto done;
            /* positions (x, y, z, mass) then velocities (x, y, z, 0) */
            float *both = malloc(32 * b.n);
            if (!both) {
                rc = jz_error_set(err, JZ_ENOMEM, "out of memory");
                goto done;
            }
            memcpy(both, b.hpos, 16 * b.n);
            memcpy(both + 4 * b.n, b.hvel, 16 * b.n);
            uint32_t words[1] = {(uint32_t)b.n};
            rc = write_snapshot(ctx, host, name, "JZBODIES", words, 1, (uint64_t)step,
                                (double)step * b.dt, both, 8 * b.n, err);
            free(both);
            if (rc)
                goto done;
        }
        if (now_s() - last_progress > 0.5) {
            host->progress(ctx, (double)step / (double)steps, NULL);
            last_progress = now_s();
        }
    }
    for (size_t d = 0; d < b.k; d++)
        if ((rc = jz_kdev_sync(b.devs.dev[d], err)))
            goto done;
    double secs = now_s() - t0;
    host->metric(ctx, "steps", (double)steps, steps);
    host->metric(ctx, "interactions_per_s",
                 secs > 0 ? (double)b.n * (double)b.n * (double)(steps + 1) / secs : 0, steps);
    if (measure) {
        host->metric(ctx, "energy_initial", e0, steps);
        host->metric(ctx, "energy_final", e, steps);
        host->metric(ctx, "energy_drift", drift, steps);
    }
    host->log(ctx, JZ_LOG_INFO, "simulate nbody: %.3f s, energy %.6g -> %.6g (max relative drift %.3g)",
              secs, e0, e, drift);
    host->progress(ctx, 1.0, NULL);
done:
    for (size_t d = 0; d < JZ_KCOMM_MAX_DEVICES; d++) {
        jz_kbuf_free(b.pos[d]);
        jz_kbuf_free(b.vel[d]);
        jz_kbuf_free(b.acc[d]);
    }
    jz_pdevs_close(&b.devs);
    free(b.hpos);
    free(b.hvel);
    free(b.hacc);
    return rc;
}

static int sim_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    struct jz_error err = {0};
    const char *model = host->param_string(ctx, "model");
    int rc = model && strcmp(model, "nbody") == 0 ? run_nbody(ctx, host, &err)
                                                   : run_heat(ctx, host, &err);
    if (rc) {
        host->set_error(ctx, "simulate: %s", err.msg[0] ? err.msg : "failed");
        return 1;
    }
    return 0;
}

static const struct jz_plugin_ops sim_ops = {
    .struct_size = sizeof(struct jz_plugin_ops),
    .run = sim_run,
};

JZ_PLUGIN_DEFINE(.name = "simulate", .version = "1.0.0",
                 .description = "Heat diffusion (2D/3D, halo exchange) or Plummer-sphere N-body on the job's devices",
                 .caps = JZ_CAP_USES_GPU, .params = sim_params,
                 .n_params = JZ_ARRAY_LEN(sim_params), .ops = &sim_ops);
