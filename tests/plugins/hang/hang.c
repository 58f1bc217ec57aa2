/* Test plugin "hang": sleeps forever and ignores host->cancelled, so that only the time limit's
 * SIGKILL after the grace period can end it. */
#include <unistd.h>

#include <jazari/plugin.h>

static int hang_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    host->log(ctx, JZ_LOG_INFO, "hang: sleeping forever");
    for (;;)
        pause(); /* the worker's SIGTERM handler only sets a flag, so this survives it */
    return 0;
}

static const struct jz_plugin_ops hang_ops = {.struct_size = sizeof hang_ops, .run = hang_run};

JZ_PLUGIN_DEFINE(.name = "hang", .version = "0.0.1",
                 .description = "Test: never returns, ignores cancellation", .ops = &hang_ops);
