/* The copy-me example plugin: counts from 1 to `count`, sleeping `delay_ms` per step, and
 * writes the sum as an artifact. It shows params, progress, metrics, logs, artifacts,
 * checkpoint/resume and cancellation; see docs/plugin-guide.md. */
#define _POSIX_C_SOURCE 200809L /* nanosleep, also under plain -std=c17 */
#include <stdio.h>
#include <time.h>

#include <jazari/plugin.h>

static const struct jz_param_spec example_params[] = {
    {.name = "count",
     .type = JZ_PARAM_INT,
     .default_json = "10",
     .min = 1,
     .max = 1000000,
     .help = "count from 1 to this number"},
    {.name = "delay_ms",
     .type = JZ_PARAM_INT,
     .default_json = "100",
     .min = 0,
     .max = 60000,
     .help = "pause after each step"},
    {.name = "label",
     .type = JZ_PARAM_STRING,
     .default_json = "\"sum\"",
     .choices = "sum|total",
     .help = "name of the artifact file"},
};

/* The checkpoint is the next number to add and the sum so far, as text. */
static void restore(jz_ctx_t *ctx, const struct jz_host *host, long long *next, long long *sum)
{
    const char *path = host->checkpoint_restore_path(ctx);
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return;
    if (fscanf(f, "%lld %lld", next, sum) == 2)
        host->log(ctx, JZ_LOG_INFO, "example: resuming at %lld (sum %lld)", *next, *sum);
    else
        *next = 1, *sum = 0; /* unreadable: start over rather than fail */
    fclose(f);
}

static int save(jz_ctx_t *ctx, const struct jz_host *host, long long next, long long sum)
{
    char path[4096];
    if (host->checkpoint_begin(ctx, path, sizeof path) != 0)
        return -1;
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "%lld %lld\n", next, sum);
    if (fclose(f) != 0)
        return -1;
    return host->checkpoint_commit(ctx);
}

static int example_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    long long count = host->param_int(ctx, "count");
    long delay_ms = (long)host->param_int(ctx, "delay_ms");
    long long next = 1, sum = 0;
    restore(ctx, host, &next, &sum);
    host->log(ctx, JZ_LOG_INFO, "example: counting to %lld on %zu CPUs (%s), %zu devices", count,
              host->cpu_count(ctx), host->cpu_list(ctx), host->device_count(ctx));
    struct timespec pause = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    for (; next <= count; next++) {
        /* Cancellation is cooperative: check often, stop cleanly, keep what can be kept. */
        if (host->cancelled(ctx)) {
            save(ctx, host, next, sum);
            host->set_error(ctx, "example: cancelled at %lld", next);
            return 1;
        }
        if (host->checkpoint_requested(ctx) && save(ctx, host, next, sum) != 0)
            host->log(ctx, JZ_LOG_WARN, "example: checkpoint failed");
        sum += next;
        host->progress(ctx, (double)next / (double)count, NULL);
        host->metric(ctx, "sum", (double)sum, next);
        if (delay_ms > 0)
            nanosleep(&pause, NULL);
    }
    char path[4096];
    if (host->artifact_path(ctx, host->param_string(ctx, "label"), path, sizeof path) != 0) {
        host->set_error(ctx, "example: cannot name the artifact");
        return 1;
    }
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "%lld\n", sum) < 0 || fclose(f) != 0) {
        host->set_error(ctx, "example: cannot write %s", path);
        return 1;
    }
    host->log(ctx, JZ_LOG_INFO, "example: sum of 1..%lld is %lld", count, sum);
    return 0;
}

static const struct jz_plugin_ops example_ops = {
    .struct_size = sizeof(struct jz_plugin_ops),
    .run = example_run,
};

JZ_PLUGIN_DEFINE(.name = "example", .version = "1.0.0",
                 .description = "Counts to N and writes the sum: a template for new plugins",
                 .caps = JZ_CAP_CHECKPOINT, .params = example_params,
                 .n_params = JZ_ARRAY_LEN(example_params), .ops = &example_ops);
