/* Runs a plugin .so in this process, without the service: parameters from text, a work folder
 * for output and checkpoints, metrics recorded. Used by the plugin unit tests and the train
 * benchmark. The host the plugin sees is jazari-worker's own (worker/host.c, through
 * jz_worker_run_plugin): the same parameter checks, defaults, lifetimes and ABI 1.1 hooks as in
 * the service. Not thread-safe; one run at a time. */
#ifndef JZ_PLUGIN_RUNHOST_H
#define JZ_PLUGIN_RUNHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/plugin.h>

#define JZ_RUNHOST_MAX_PARAMS 64
#define JZ_RUNHOST_MAX_METRICS 4096

struct jz_runhost_metric {
    char name[65];
    double value;
    int64_t step;
};

struct jz_runhost {
    void *dl;
    const struct jz_plugin *plugin; /* &desc */
    struct jz_plugin desc;          /* checked copies, as the worker makes them */
    struct jz_plugin_ops ops;
    char path[4096];         /* the plugin, absolute */
    char dir[4096];          /* work folder (absolute): out/ and checkpoint.bin live here */
    size_t n_params;
    char *names[JZ_RUNHOST_MAX_PARAMS], *values[JZ_RUNHOST_MAX_PARAMS];
    char backend[16];        /* backend of the declared devices */
    size_t n_devices;        /* 0: the plugin gets no device (cpu fallback) */
    const char *restore;     /* checkpoint to restore from, or NULL */
    /* Cancellation for tests: once metric `cancel_metric` has been reported with
     * step >= cancel_step, cancelled() returns true. */
    const char *cancel_metric;
    int64_t cancel_step;
    bool cancel;
    bool quiet;              /* do not echo log lines to stderr */
    size_t n_metrics;
    struct jz_runhost_metric metrics[JZ_RUNHOST_MAX_METRICS];
    char error[1024];
    bool checkpoint_written;
};

/* Loads and checks the plugin (as the worker does: a plugin the service would refuse is
 * refused) and makes dir (created if missing). Returns 0 or -1 with a message on stderr. */
int jz_runhost_init(struct jz_runhost *h, const char *plugin_path, const char *dir);
/* Sets a parameter from text: numbers as written, strings raw, lists as "256,128" (a string
 * list is split at commas). The schema checks and converts them when run starts. */
void jz_runhost_set(struct jz_runhost *h, const char *name, const char *value);
/* Runs the plugin once (init, validate, run, fini); returns run's return value, or 2 when the
 * parameters, init or validate refused (the reason is in error). Metrics and error are reset
 * first. */
int jz_runhost_run(struct jz_runhost *h);
/* Latest value of a metric, or NAN when never reported. */
double jz_runhost_metric(const struct jz_runhost *h, const char *name);
/* Value of a metric at a step, or NAN. */
double jz_runhost_metric_at(const struct jz_runhost *h, const char *name, int64_t step);
/* Path of the checkpoint file (dir/checkpoint.bin) and of an artifact (dir/out/NAME), into
 * buf. */
void jz_runhost_checkpoint_path(const struct jz_runhost *h, char *buf, size_t len);
void jz_runhost_artifact_path(const struct jz_runhost *h, const char *name, char *buf, size_t len);
void jz_runhost_destroy(struct jz_runhost *h);

#endif
