/* Device opening for plugins (see devices.h). */
#include "devices.h"

#include <stdio.h>
#include <string.h>

void jz_pdevs_close(struct jz_pdevs *d)
{
    if (!d)
        return;
    jz_kcomm_destroy(d->comm);
    for (size_t i = 0; i < d->n; i++)
        jz_kdev_close(d->dev[i]);
    memset(d, 0, sizeof *d);
}

int jz_pdevs_open(jz_ctx_t *ctx, const struct jz_host *host, size_t max, struct jz_pdevs *out,
                  struct jz_error *err)
{
    struct jz_pdevs d = {0};
    /* Before the first kernels call: a mismatched libjz_kernels fails the job with both
     * versions named instead of misbehaving. */
    int rc = jz_kernels_check_version(err);
    if (rc != 0)
        return rc;
    size_t want = host->device_count(ctx);
    if (max < 1)
        max = 1;
    if (max > JZ_KCOMM_MAX_DEVICES)
        max = JZ_KCOMM_MAX_DEVICES;
    size_t use = want == 0 ? 1 : (want < max ? want : max);
    for (size_t i = 0; i < use; i++) {
        enum jz_kbackend b = JZ_KBACKEND_CPU;
        int ordinal = 0;
        if (want > 0) {
            struct jz_device_info info = {.struct_size = sizeof info};
            if ((rc = host->device_get(ctx, i, &info)) != 0) {
                jz_error_set(err, rc, "cannot read device %zu of the job", i);
                goto fail;
            }
            if ((rc = jz_kbackend_parse(info.backend, &b, err)) != 0)
                goto fail;
            ordinal = info.ordinal;
        }
        size_t count = 0;
        if ((rc = jz_kdev_count(b, &count, err)) != 0)
            goto fail;
        if (count == 0) {
            rc = jz_error_set(err, JZ_ENOENT, "device %zu: backend %s has no device here", i,
                         jz_kbackend_name(b));
            goto fail;
        }
        if (ordinal < 0 || (size_t)ordinal >= count) {
            /* A real GPU that is not there is an error; the fallback backends stand in for
             * declared GPUs and have fewer devices than the job lists. */
            if (b == JZ_KBACKEND_CUDA) {
                rc = jz_error_set(err, JZ_ENOENT, "device %zu: cuda ordinal %d, but %zu GPU(s) visible", i,
                             ordinal, count);
                goto fail;
            }
            ordinal = (int)((size_t)(ordinal < 0 ? 0 : ordinal) % count);
        }
        if ((rc = jz_kdev_open(b, ordinal, &d.dev[i], err)) != 0)
            goto fail;
        d.n = i + 1;
    }
    if ((rc = jz_kcomm_create(d.dev, d.n, &d.comm, err)) != 0)
        goto fail;
    snprintf(d.summary, sizeof d.summary, "%zu x %s (%s)%s", d.n,
             jz_kbackend_name(jz_kdev_backend(d.dev[0])), jz_kdev_name(d.dev[0]),
             want > use ? ", more devices given than used" : "");
    *out = d;
    return 0;
fail:
    jz_pdevs_close(&d);
    return rc;
}
