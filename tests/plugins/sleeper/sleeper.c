/* Test plugin "sleeper": sleeps `seconds` in small steps, polling host->cancelled, reporting
 * progress and a metric; returns 3 when `fail` is true. Used by worker and service tests. */
#define _POSIX_C_SOURCE 200809L /* nanosleep, also under plain -std=c17 */
#include <time.h>

#include <jazari/plugin.h>

static const struct jz_param_spec sleeper_params[] = {
    {.name = "seconds",
     .type = JZ_PARAM_FLOAT,
     .default_json = "1",
     .min = 0,
     .max = 86400,
     .help = "how long to sleep"},
    {.name = "fail",
     .type = JZ_PARAM_BOOL,
     .default_json = "false",
     .help = "return 3 (failed) instead of 0 at the end"},
};

static int sleeper_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    const double step_s = 0.02;
    double total = host->param_float(ctx, "seconds");
    long steps = (long)(total / step_s + 0.5);
    struct timespec ts = {0, (long)(step_s * 1e9)};
    host->log(ctx, JZ_LOG_INFO, "sleeper: sleeping %.2fs", total);
    for (long i = 0; i < steps; i++) {
        if (host->cancelled(ctx)) {
            host->log(ctx, JZ_LOG_INFO, "sleeper: cancelled after %ld steps", i);
            host->set_error(ctx, "sleeper: cancelled");
            return 1;
        }
        nanosleep(&ts, NULL);
        if (i % 5 == 0) {
            host->progress(ctx, (double)(i + 1) / (double)steps, "sleeping");
            host->metric(ctx, "slept_s", (double)(i + 1) * step_s, i);
        }
    }
    host->progress(ctx, 1.0, "done");
    if (host->param_bool(ctx, "fail")) {
        host->set_error(ctx, "sleeper: failing as asked");
        return 3;
    }
    return 0;
}

static const struct jz_plugin_ops sleeper_ops = {.struct_size = sizeof sleeper_ops,
                                                 .run = sleeper_run};

JZ_PLUGIN_DEFINE(.name = "sleeper", .version = "0.0.1",
                 .description = "Test: sleeps, reports progress, honours cancellation",
                 .params = sleeper_params, .n_params = JZ_ARRAY_LEN(sleeper_params),
                 .ops = &sleeper_ops);
