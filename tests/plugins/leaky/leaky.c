/* Test plugin "leaky": leaves behind a process that escaped the job's process group (setsid)
 * and, being forked without exec, still holds the worker's event pipe. The job must still end
 * soon after the plugin returns. The leftover's pid is written to the artifact "leftover". */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <jazari/plugin.h>

static int leaky_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    char path[4096];
    if (host->artifact_path(ctx, "leftover", path, sizeof path) != 0)
        return 1;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        setsid();
        signal(SIGTERM, SIG_IGN);
        sleep(60); /* holds every descriptor of the job process, the event pipe included */
        _exit(0);
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fprintf(f, "%d\n", (int)pid);
    fclose(f);
    host->log(ctx, JZ_LOG_INFO, "leaky: left process %d behind", (int)pid);
    return 0;
}

static const struct jz_plugin_ops leaky_ops = {.struct_size = sizeof leaky_ops, .run = leaky_run};

JZ_PLUGIN_DEFINE(.name = "leaky", .version = "0.0.1",
                 .description = "Test: leaves a process holding the event pipe", .ops = &leaky_ops);
