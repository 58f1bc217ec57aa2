/* Test plugin "crash": dies by SIGSEGV inside run, to check that only its worker goes down
 * and that the job records signal 11. */
#include <signal.h>

#include <jazari/plugin.h>

static int crash_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    host->log(ctx, JZ_LOG_INFO, "crash: about to crash");
    /* Sanitizer builds of the worker catch SIGSEGV and exit(1); the default action is what
     * the test is about: the kernel killing the job process by signal 11. */
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
    return 0;
}

static const struct jz_plugin_ops crash_ops = {.struct_size = sizeof crash_ops, .run = crash_run};

JZ_PLUGIN_DEFINE(.name = "crash", .version = "0.0.1", .description = "Test: raises SIGSEGV",
                 .ops = &crash_ops);
