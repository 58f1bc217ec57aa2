/* jazari-bench-train: runs one workload plugin in-process with parameters from the command line
 * and prints its metrics (latest value of each, and per-step history) as one JSON object.
 * Usage: jazari-bench-train PLUGIN WORKDIR [name=value ...]   (PLUGIN: train, infer or a path)
 * devices=N declares N devices of backend=cpu|opencl|cuda (default cpu) to the plugin.
 * runs=N (1..100) runs the plugin N times one after the other in this process, as a service's
 * worker that has already run a job would: "metrics" and "history" are the last run's, and
 * "runs" lists every run's metrics (latest values), so a benchmark can tell the first run in a
 * fresh process from the warm ones after it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runhost.h"

/* The latest value of every metric, in first-seen order, as a JSON object. */
static void print_metrics(const struct jz_runhost *h)
{
    printf("{");
    int first = 1;
    for (size_t i = 0; i < h->n_metrics; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(h->metrics[j].name, h->metrics[i].name) == 0;
        if (seen)
            continue;
        double v = jz_runhost_metric(h, h->metrics[i].name);
        printf("%s\"%s\": %.9g", first ? "" : ", ", h->metrics[i].name, isfinite(v) ? v : -1.0);
        first = 0;
    }
    printf("}");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s PLUGIN WORKDIR [name=value ...] [devices=N] "
                "[backend=cpu|opencl|cuda] [runs=N]\n",
                argv[0]);
        return 2;
    }
    char path[4096];
    if (strchr(argv[1], '/'))
        snprintf(path, sizeof path, "%s", argv[1]);
    else
        snprintf(path, sizeof path, "%s/%s.so", JZ_PLUGIN_DIR, argv[1]);
    static struct jz_runhost h;
    if (jz_runhost_init(&h, path, argv[2]) != 0)
        return 2;
    h.quiet = getenv("JZ_BENCH_VERBOSE") == NULL;
    int runs = 1;
    for (int i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq) {
            fprintf(stderr, "argument %s is not name=value\n", argv[i]);
            return 2;
        }
        *eq = '\0';
        if (strcmp(argv[i], "devices") == 0)
            h.n_devices = (size_t)atoi(eq + 1);
        else if (strcmp(argv[i], "backend") == 0) /* of the declared devices: cpu, opencl, cuda */
            snprintf(h.backend, sizeof h.backend, "%s", eq + 1);
        else if (strcmp(argv[i], "restore") == 0)
            h.restore = eq + 1;
        else if (strcmp(argv[i], "runs") == 0) {
            char *end;
            long n = strtol(eq + 1, &end, 10);
            if (*end || n < 1 || n > 100) {
                fprintf(stderr, "runs=%s: expected a whole number from 1 to 100\n", eq + 1);
                return 2;
            }
            runs = (int)n;
        } else
            jz_runhost_set(&h, argv[i], eq + 1);
    }
    /* Each run's latest values are printed as it ends; the last run's full record after. */
    printf("{\"runs\": [");
    int rc = 0;
    for (int r = 0; r < runs; r++) {
        rc = jz_runhost_run(&h);
        printf("%s", r ? ", " : "");
        print_metrics(&h);
        if (rc != 0)
            break;
    }
    printf("], \"rc\": %d, \"error\": \"", rc);
    for (const char *p = h.error; *p; p++)
        printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
    printf("\", \"metrics\": ");
    print_metrics(&h);
    printf(", \"history\": [");
    for (size_t i = 0; i < h.n_metrics; i++)
        printf("%s[\"%s\", %lld, %.9g]", i ? ", " : "", h.metrics[i].name,
               (long long)h.metrics[i].step, isfinite(h.metrics[i].value) ? h.metrics[i].value : -1.0);
    printf("]}\n");
    jz_runhost_destroy(&h);
    return rc == 0 ? 0 : 1;
}
