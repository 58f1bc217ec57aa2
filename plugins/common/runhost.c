/* The in-process plugin host for tests and benchmarks (see runhost.h). */
#define _GNU_SOURCE
#include "runhost.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jazari/error.h>
#include <jazari/plugin.h>

struct jz_ctx {
    struct jz_runhost *h;
    char buf[4][4096]; /* rotating scratch for returned strings */
    int next;
};

static struct jz_runhost *H(jz_ctx_t *c) { return c->h; }

/* The parameter's text: the value set, else the schema default with JSON quotes/brackets removed. */
static const char *raw_param(jz_ctx_t *c, const char *name)
{
    struct jz_runhost *h = H(c);
    for (size_t i = 0; i < h->n_params; i++)
        if (strcmp(h->names[i], name) == 0)
            return h->values[i];
    const struct jz_plugin *p = h->plugin;
    for (size_t i = 0; i < p->n_params; i++) {
        if (strcmp(p->params[i].name, name) != 0 || !p->params[i].default_json)
            continue;
        char *b = c->buf[c->next++ % 4];
        const char *d = p->params[i].default_json;
        size_t n = strlen(d);
        if (n >= 2 && ((d[0] == '"' && d[n - 1] == '"') || (d[0] == '[' && d[n - 1] == ']'))) {
            d++;
            n -= 2;
        }
        snprintf(b, 4096, "%.*s", (int)n, d);
        return b;
    }
    return NULL;
}

static bool h_present(jz_ctx_t *c, const char *n) { return raw_param(c, n) != NULL; }
static const char *h_string(jz_ctx_t *c, const char *n) { return raw_param(c, n); }
static int64_t h_int(jz_ctx_t *c, const char *n)
{
    const char *v = raw_param(c, n);
    return v ? strtoll(v, NULL, 10) : 0;
}
static double h_float(jz_ctx_t *c, const char *n)
{
    const char *v = raw_param(c, n);
    return v ? strtod(v, NULL) : 0;
}
static bool h_bool(jz_ctx_t *c, const char *n)
{
    const char *v = raw_param(c, n);
    return v && strcmp(v, "true") == 0;
}
/* Lists are "a,b,c" (optionally with quotes around string elements). */
static const char *list_elem(jz_ctx_t *c, const char *n, size_t i, size_t *count)
{
    const char *v = raw_param(c, n);
    size_t k = 0;
    if (!v || !*v) {
        *count = 0;
        return NULL;
    }
    const char *found = NULL;
    const char *p = v;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (k == i) {
            char *b = c->buf[c->next++ % 4];
            while (len > 0 && (*p == ' ' || *p == '"'))
                p++, len--;
            while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '"'))
                len--;
            snprintf(b, 4096, "%.*s", (int)len, p);
            found = b;
        }
        k++;
        if (!e)
            break;
        p = e + 1;
    }
    *count = k;
    return found;
}
static size_t h_list_len(jz_ctx_t *c, const char *n)
{
    size_t k;
    list_elem(c, n, (size_t)-1, &k);
    return k;
}
static const char *h_list_string(jz_ctx_t *c, const char *n, size_t i)
{
    size_t k;
    return list_elem(c, n, i, &k);
}
static int64_t h_list_int(jz_ctx_t *c, const char *n, size_t i)
{
    size_t k;
    const char *e = list_elem(c, n, i, &k);
    return e ? strtoll(e, NULL, 10) : 0;
}
static const char *h_params_json(jz_ctx_t *c) { return "{}"; }
static const char *h_job_id(jz_ctx_t *c) { return "0"; }
static size_t h_device_count(jz_ctx_t *c) { return H(c)->n_devices; }
static int h_device_get(jz_ctx_t *c, size_t i, struct jz_device_info *out)
{
    if (i >= H(c)->n_devices)
        return JZ_ERANGE;
    struct jz_device_info d = {.struct_size = sizeof d, .ordinal = (int)i, .node_index = (int)i,
                               .numa_node = -1};
    snprintf(d.backend, sizeof d.backend, "%s", H(c)->backend);
    snprintf(d.model, sizeof d.model, "test device %zu", i);
    memcpy(out, &d, out->struct_size < sizeof d ? out->struct_size : sizeof d);
    return 0;
}
static const char *h_cpu_list(jz_ctx_t *c) { return "0"; }
static size_t h_cpu_count(jz_ctx_t *c) { return (size_t)sysconf(_SC_NPROCESSORS_ONLN); }
static const char *h_output_dir(jz_ctx_t *c)
{
    char *b = c->buf[c->next++ % 4];
    snprintf(b, 4096, "%s/out", H(c)->dir);
    return b;
}
static const char *h_submit_dir(jz_ctx_t *c) { return H(c)->dir; }
static void h_log(jz_ctx_t *c, enum jz_log_level level, const char *fmt, ...)
{
    if (H(c)->quiet && level > JZ_LOG_WARN)
        return;
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%s] ", names[level & 3]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
static void h_progress(jz_ctx_t *c, double f, const char *msg) {}
static void h_metric(jz_ctx_t *c, const char *name, double value, int64_t step)
{
    struct jz_runhost *h = H(c);
    if (h->n_metrics < JZ_RUNHOST_MAX_METRICS) {
        struct jz_runhost_metric *m = &h->metrics[h->n_metrics++];
        snprintf(m->name, sizeof m->name, "%s", name);
        m->value = value;
        m->step = step;
    }
    if (h->cancel_metric && strcmp(name, h->cancel_metric) == 0 && step >= h->cancel_step)
        h->cancel = true;
    if (!h->quiet)
        fprintf(stderr, "[METRIC] %s = %g (step %lld)\n", name, value, (long long)step);
}
static bool h_cancelled(jz_ctx_t *c) { return H(c)->cancel; }
static bool h_ckpt_requested(jz_ctx_t *c) { return false; }
static int h_artifact_path(jz_ctx_t *c, const char *name, char *buf, size_t len)
{
    struct jz_runhost *h = H(c);
    if (!name[0] || name[0] == '.' || strlen(name) > 64 || strchr(name, '/'))
        return JZ_EINVAL;
    if ((size_t)snprintf(buf, len, "%s/out/%s", h->dir, name) >= len)
        return JZ_ERANGE;
    if (h->n_artifacts < 16)
        snprintf(h->artifacts[h->n_artifacts++], 80, "%s", name);
    return 0;
}
static const char *h_restore(jz_ctx_t *c) { return H(c)->restore; }
static int h_ckpt_begin(jz_ctx_t *c, char *buf, size_t len)
{
    if ((size_t)snprintf(buf, len, "%s/checkpoint.tmp", H(c)->dir) >= len)
        return JZ_ERANGE;
    return 0;
}
static int h_ckpt_commit(jz_ctx_t *c)
{
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/checkpoint.tmp", H(c)->dir);
    snprintf(b, sizeof b, "%s/checkpoint", H(c)->dir);
    if (rename(a, b) != 0)
        return errno == ENOENT ? JZ_ENOENT : JZ_EIO;
    H(c)->checkpoint_written = true;
    return 0;
}
static void h_set_error(jz_ctx_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(H(c)->error, sizeof H(c)->error, fmt, ap);
    va_end(ap);
    if (!H(c)->quiet)
        fprintf(stderr, "[ERROR] %s\n", H(c)->error);
}

static const struct jz_host host_table = {
    .struct_size = sizeof(struct jz_host),
    .abi_major = JZ_PLUGIN_ABI_MAJOR,
    .abi_minor = JZ_PLUGIN_ABI_MINOR,
    .param_present = h_present,
    .param_string = h_string,
    .param_int = h_int,
    .param_float = h_float,
    .param_bool = h_bool,
    .param_list_len = h_list_len,
    .param_list_string = h_list_string,
    .param_list_int = h_list_int,
    .params_json = h_params_json,
    .job_id = h_job_id,
    .device_count = h_device_count,
    .device_get = h_device_get,
    .cpu_list = h_cpu_list,
    .cpu_count = h_cpu_count,
    .output_dir = h_output_dir,
    .submit_dir = h_submit_dir,
    .log = h_log,
    .progress = h_progress,
    .metric = h_metric,
    .cancelled = h_cancelled,
    .checkpoint_requested = h_ckpt_requested,
    .artifact_path = h_artifact_path,
    .checkpoint_restore_path = h_restore,
    .checkpoint_begin = h_ckpt_begin,
    .checkpoint_commit = h_ckpt_commit,
    .set_error = h_set_error,
};

int jz_runhost_init(struct jz_runhost *h, const char *plugin_path, const char *dir)
{
    memset(h, 0, sizeof *h);
    snprintf(h->backend, sizeof h->backend, "cpu");
    /* NODELETE: unloading would take jz_kernels, OpenBLAS and libgomp with it while their
     * worker threads still run (the service's worker never unloads a plugin either). */
    h->dl = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!h->dl) {
        fprintf(stderr, "runhost: %s\n", dlerror());
        return -1;
    }
    h->plugin = dlsym(h->dl, JZ_PLUGIN_SYMBOL);
    if (!h->plugin) {
        fprintf(stderr, "runhost: %s has no %s\n", plugin_path, JZ_PLUGIN_SYMBOL);
        dlclose(h->dl);
        return -1;
    }
    snprintf(h->dir, sizeof h->dir, "%s", dir);
    char out[4200];
    snprintf(out, sizeof out, "%s/out", dir);
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || (mkdir(out, 0755) != 0 && errno != EEXIST)) {
        fprintf(stderr, "runhost: cannot create %s: %s\n", out, strerror(errno));
        dlclose(h->dl);
        return -1;
    }
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

int jz_runhost_run(struct jz_runhost *h)
{
    struct jz_ctx ctx = {.h = h};
    h->n_metrics = 0;
    h->error[0] = '\0';
    h->cancel = false;
    h->n_artifacts = 0;
    h->checkpoint_written = false;
    return h->plugin->ops->run(&ctx, &host_table);
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
    snprintf(buf, len, "%s/checkpoint", h->dir);
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
    if (h->dl)
        dlclose(h->dl);
    memset(h, 0, sizeof *h);
}
