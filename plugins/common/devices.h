/* Opens a job's devices (from the host's device list) with the kernels API, and a communicator
 * over them, for the workload plugins. */
#ifndef JZ_PLUGIN_DEVICES_H
#define JZ_PLUGIN_DEVICES_H

#include <stddef.h>

#include <jazari/kernels.h>
#include <jazari/plugin.h>

struct jz_pdevs {
    size_t n;
    jz_kdev_t *dev[JZ_KCOMM_MAX_DEVICES]; /* owned */
    jz_kcomm_t *comm;                     /* owned; over dev[0..n) */
    char summary[512];                    /* "2 x cpu (host CPU (2 threads))" for the log */
};

/* Opens every device of the job (at most `max`; extra ones are left unused and said so in the
 * summary), or one cpu device when the job has none, and a communicator over them.
 * The cpu backend is a single device: each cpu entry of the job opens its own handle on it,
 * so data-parallel code runs the same way on 1 or k cpu "devices". A fallback backend with
 * fewer devices than the job declares (PoCL has one) maps ordinals modulo its count; a missing
 * cuda ordinal is an error (JZ_ENOENT).
 * On failure nothing stays open. Release with jz_pdevs_close. */
int jz_pdevs_open(jz_ctx_t *ctx, const struct jz_host *host, size_t max, struct jz_pdevs *out,
                  struct jz_error *err);
void jz_pdevs_close(struct jz_pdevs *d); /* accepts NULL and a zeroed struct */

#endif
