/* Test plugin "moody": describes fine, but its process misbehaves as $JAZARI_TEST_MOODY says,
 * so that tests can make describing it slow, fail or end badly without changing its bytes:
 *   "sleep:S"       the constructor sleeps S seconds (a slow or hanging constructor);
 *   "fail-if:PATH"  the constructor exits 1 while PATH exists (a passing failure);
 *   "exit"          the process exits 3 at its end, after the description was printed;
 *   "signal"        the process is killed by SIGABRT at its end, likewise. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jazari/plugin.h>

static const char *mood(void)
{
    const char *m = getenv("JAZARI_TEST_MOODY");
    return m ? m : "";
}

__attribute__((constructor)) static void moody_start(void)
{
    const char *m = mood();
    if (strncmp(m, "sleep:", 6) == 0)
        sleep((unsigned)atoi(m + 6));
    else if (strncmp(m, "fail-if:", 8) == 0 && access(m + 8, F_OK) == 0)
        _exit(1);
}

__attribute__((destructor)) static void moody_end(void)
{
    if (strcmp(mood(), "exit") == 0)
        _exit(3);
    if (strcmp(mood(), "signal") == 0) {
        signal(SIGABRT, SIG_DFL);
        raise(SIGABRT);
    }
}

static int moody_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    host->log(ctx, JZ_LOG_INFO, "moody: ran");
    return 0;
}

static const struct jz_plugin_ops moody_ops = {.struct_size = sizeof moody_ops, .run = moody_run};

JZ_PLUGIN_DEFINE(.name = "moody", .version = "0.1.0",
                 .description = "Test: a process that misbehaves as JAZARI_TEST_MOODY says",
                 .ops = &moody_ops);
