/* Running a plugin in process for tests and benchmarks (see runhost.h): a job spec made from
 * the folder and the text parameters, run by the worker's own host. */
#define _GNU_SOURCE
#include "runhost.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include <jazari/error.h>

#include "worker/worker.h"

int jz_runhost_init(struct jz_runhost *h, const char *plugin_path, const char *dir)
{
    memset(h, 0, sizeof *h);
    snprintf(h->backend, sizeof h->backend, "cpu");
    char out[4200];
    snprintf(out, sizeof out, "%s/out", dir);
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || (mkdir(out, 0755) != 0 && errno != EEXIST)) {
        fprintf(stderr, "runhost: cannot create %s: %s\n", out, strerror(errno));
        return -1;
    }
    /* The spec takes absolute paths only (the worker runs in another folder). */
    if (!realpath(dir, h->dir) || !realpath(plugin_path, h->path)) {
        fprintf(stderr, "runhost: %s: %s\n", plugin_path, strerror(errno));
        return -1;
    }
    struct jz_error err;
    char sha[JZ_WORKER_SHA256_HEX + 1];
    if (jz_worker_plugin_load(h->path, -1, NULL, &h->dl, &h->desc, &h->ops, sha, &err) != 0) {
        fprintf(stderr, "runhost: %s\n", err.msg);
        return -1;
    }
    h->plugin = &h->desc;
    return 0;
}

void jz_runhost_set(struct jz_runhost *h, const char *name, const char *value)
{
    for (size_t i = 0; i < h->n_params; i++)
        if (strcmp(h->names[i], name) == 0) {
            free(h->values[i]);
            h->values[i] = strdup(value);
            return;
        }
    if (h->n_params < JZ_RUNHOST_MAX_PARAMS) {
        h->names[h->n_params] = strdup(name);
        h->values[h->n_params++] = strdup(value);
    }
}

/* "a, \"b\",c" as ["a", "b", "c"]: the schema keeps one string as a one-element list, so the
 * text form of a string list is split here. */
static json_t *string_list(const char *text)
{
    json_t *arr = json_array();
    for (const char *p = text; arr && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *q = p;
        while (len > 0 && (*q == ' ' || *q == '"'))
            q++, len--;
        while (len > 0 && (q[len - 1] == ' ' || q[len - 1] == '"'))
            len--;
        json_array_append_new(arr, json_stringn(q, len));
        p = e ? e + 1 : p + strlen(p);
    }
    return arr;
}

/* The job spec of one run: parameters as text (the schema converts "0.01", "true", "256,128"),
 * the declared devices, the work folder as output, checkpoint and submit folder. */
static json_t *make_spec(const struct jz_runhost *h)
{
    json_t *params = json_object();
    for (size_t i = 0; params && i < h->n_params; i++) {
        enum jz_param_type type = 0;
        for (size_t k = 0; k < h->desc.n_params; k++)
            if (strcmp(h->desc.params[k].name, h->names[i]) == 0)
                type = h->desc.params[k].type;
        json_object_set_new(params, h->names[i],
                            type == JZ_PARAM_STRING_LIST ? string_list(h->values[i])
                                                         : json_string(h->values[i]));
    }
    json_t *devices = json_array();
    for (size_t i = 0; devices && i < h->n_devices; i++) {
        char model[64];
        snprintf(model, sizeof model, "test device %zu", i);
        json_array_append_new(devices, json_pack("{s:s, s:i, s:i, s:s, s:i}", "backend",
                                                 h->backend, "ordinal", (int)i, "node_index",
                                                 (int)i, "model", model, "numa_node", -1));
    }
    char out[4200];
    snprintf(out, sizeof out, "%s/out", h->dir);
    return json_pack("{s:s, s:s, s:o*, s:o*, s:s, s:s, s:s}", "job_id", "0", "plugin_path",
                     h->path, "params", params, "devices", devices, "output_dir", out,
                     "checkpoint_dir", h->dir, "submit_dir", h->dir);
}

static void on_metric(void *arg, const char *name, double value, int64_t step)
{
    struct jz_runhost *h = arg;
    if (h->n_metrics < JZ_RUNHOST_MAX_METRICS) {
        struct jz_runhost_metric *m = &h->metrics[h->n_metrics++];
        snprintf(m->name, sizeof m->name, "%s", name);
        m->value = value;
        m->step = step;
    }
    if (h->cancel_metric && strcmp(name, h->cancel_metric) == 0 && step >= h->cancel_step)
        h->cancel = true;
}

static bool on_cancelled(void *arg)
{
    return ((struct jz_runhost *)arg)->cancel;
}

static void on_checkpoint(void *arg)
{
    ((struct jz_runhost *)arg)->checkpoint_written = true;
}

int jz_runhost_run(struct jz_runhost *h)
{
    h->n_metrics = 0;
    h->error[0] = '\0';
    h->cancel = false;
    h->checkpoint_written = false;
    json_t *spec_json = make_spec(h);
    char *text = spec_json ? json_dumps(spec_json, JSON_COMPACT) : NULL;
    json_decref(spec_json);
    struct jz_worker_spec spec = {0};
    struct jz_error err = {0};
    if (!text || jz_worker_spec_load_buffer(text, strlen(text), &spec, &err) != 0) {
        snprintf(h->error, sizeof h->error, "runhost: %s", text ? err.msg : "out of memory");
        free(text);
        return 2;
    }
    free(text);
    struct jz_worker_shared shared = {0};
    struct jz_worker_inproc ip = {.restore_path = h->restore,
                                  .log_level = h->quiet ? JZ_LOG_WARN : JZ_LOG_DEBUG,
                                  .arg = h,
                                  .metric = on_metric,
                                  .cancelled = on_cancelled,
                                  .checkpoint = on_checkpoint};
    int rc = jz_worker_run_plugin(&spec, &h->desc, &h->ops, -1, &shared, &ip);
    snprintf(h->error, sizeof h->error, "%s", shared.error);
    jz_worker_spec_free(&spec);
    return rc;
}

double jz_runhost_metric(const struct jz_runhost *h, const char *name)
{
    for (size_t i = h->n_metrics; i-- > 0;)
        if (strcmp(h->metrics[i].name, name) == 0)
            return h->metrics[i].value;
    return NAN;
}

double jz_runhost_metric_at(const struct jz_runhost *h, const char *name, int64_t step)
{
    for (size_t i = h->n_metrics; i-- > 0;)
        if (strcmp(h->metrics[i].name, name) == 0 && h->metrics[i].step == step)
            return h->metrics[i].value;
    return NAN;
}

void jz_runhost_checkpoint_path(const struct jz_runhost *h, char *buf, size_t len)
{
    snprintf(buf, len, "%s/checkpoint.bin", h->dir);
}

void jz_runhost_artifact_path(const struct jz_runhost *h, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/out/%s", h->dir, name);
}

void jz_runhost_destroy(struct jz_runhost *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n_params; i++) {
        free(h->names[i]);
        free(h->values[i]);
    }
    /* The library stays loaded (the worker never unloads a plugin either): unloading would
     * take jz_kernels, OpenBLAS and libgomp with it while their threads still run. */
    memset(h, 0, sizeof *h);
}
