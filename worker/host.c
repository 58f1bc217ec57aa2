/* The plugin host: the host context (struct jz_host + jz_ctx) a plugin runs with, and the job
 * process that loads the plugin and runs it. Everything a plugin can reach of the worker is in
 * this file. It is also the host of plugins/common/runhost (plugin tests and benchmarks run
 * plugins in process through jz_worker_run_plugin): one implementation of the ABI. */
#define _GNU_SOURCE
#include "worker/worker.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/cpulist.h"
#include "common/params.h"
#include "common/strutil.h"

#define MAX_ARTIFACTS 1024

struct jz_ctx {
    const struct jz_worker_spec *spec;
    int events_fd;
    struct jz_worker_shared *shared;
    pthread_mutex_t lock; /* host functions may be called from plugin threads */
    json_t *params;       /* normalized, owned */
    char *params_text;    /* lazily built, owned */
    char cpu_list[1024];
    size_t cpu_count;
    bool has_restore;
    char ckpt_path[PATH_MAX];
    char ckpt_tmp[PATH_MAX];
    char (*artifacts)[65];
    size_t n_artifacts;
    char *site_text; /* the site configuration given to init, freed after fini */
    const struct jz_worker_inproc *inproc; /* NULL in the job process */
};

/* Lines above this level are not written (an in-process caller may ask for quiet). */
static enum jz_log_level g_log_level = JZ_LOG_DEBUG;

/* Set from signal handlers; read by host->cancelled and host->checkpoint_requested. */
static volatile sig_atomic_t g_cancelled;
static volatile sig_atomic_t g_checkpoint;

static void on_term(int sig)
{
    (void)sig;
    g_cancelled = 1;
}

static void on_usr1(int sig)
{
    (void)sig;
    g_checkpoint = 1;
}

static json_t *param(jz_ctx_t *ctx, const char *name)
{
    return name ? json_object_get(ctx->params, name) : NULL;
}

static bool h_param_present(jz_ctx_t *ctx, const char *name)
{
    return param(ctx, name) != NULL;
}

static const char *h_param_string(jz_ctx_t *ctx, const char *name)
{
    return json_string_value(param(ctx, name));
}

static int64_t h_param_int(jz_ctx_t *ctx, const char *name)
{
    json_t *v = param(ctx, name);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static double h_param_float(jz_ctx_t *ctx, const char *name)
{
    return json_number_value(param(ctx, name));
}

static bool h_param_bool(jz_ctx_t *ctx, const char *name)
{
    return json_is_true(param(ctx, name));
}

static size_t h_param_list_len(jz_ctx_t *ctx, const char *name)
{
    return json_array_size(param(ctx, name));
}

static const char *h_param_list_string(jz_ctx_t *ctx, const char *name, size_t i)
{
    return json_string_value(json_array_get(param(ctx, name), i));
}

static int64_t h_param_list_int(jz_ctx_t *ctx, const char *name, size_t i)
{
    json_t *v = json_array_get(param(ctx, name), i);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static const char *h_params_json(jz_ctx_t *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    if (!ctx->params_text)
        ctx->params_text = json_dumps(ctx->params, JSON_COMPACT | JSON_SORT_KEYS);
    pthread_mutex_unlock(&ctx->lock);
    return ctx->params_text ? ctx->params_text : "{}";
}

static const char *h_job_id(jz_ctx_t *ctx)
{
    return ctx->spec->job_id;
}

static size_t h_device_count(jz_ctx_t *ctx)
{
    return ctx->spec->n_devices;
}

static int h_device_get(jz_ctx_t *ctx, size_t i, struct jz_device_info *out)
{
    if (!out || i >= ctx->spec->n_devices)
        return JZ_ERANGE;
    uint32_t size = out->struct_size;
    if (size < sizeof(uint32_t))
        return JZ_EINVAL;
    /* A plugin built for an older minor passes a smaller struct: copy only what it has. */
    memcpy(out, &ctx->spec->devices[i], size < sizeof *out ? size : sizeof *out);
    out->struct_size = size;
    return 0;
}

static const char *h_cpu_list(jz_ctx_t *ctx)
{
    return ctx->cpu_list;
}

static size_t h_cpu_count(jz_ctx_t *ctx)
{
    return ctx->cpu_count;
}

static const char *h_output_dir(jz_ctx_t *ctx)
{
    return ctx->spec->output_dir;
}

static const char *h_submit_dir(jz_ctx_t *ctx)
{
    return ctx->spec->submit_dir;
}

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

static void write_log_line(enum jz_log_level level, const char *fmt, va_list ap)
{
    if ((unsigned)level > (unsigned)g_log_level)
        return;
    char raw[JZ_WORKER_LOG_LINE];
    vsnprintf(raw, sizeof raw, fmt, ap);
    char line[JZ_WORKER_LOG_LINE];
    const char *lname = (unsigned)level < 4 ? level_names[level] : "INFO";
    int head = snprintf(line, sizeof line, "[%s] ", lname);
    /* Keep room for the newline; control characters become spaces so one call is one line. */
    jz_worker_text(raw, sizeof line - (size_t)head - 2, line + head);
    size_t n = strlen(line);
    line[n++] = '\n';
    jz_worker_log_write(line, n);
}

void jz_worker_log_write(const char *line, size_t len)
{
    struct stat st;
    char last = '\n';
    if (fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        pread(STDERR_FILENO, &last, 1, st.st_size - 1) != 1)
        last = '\n';
    /* One write, the newline with the line, as the log is appended to by others too. */
    struct iovec v[2] = {{.iov_base = "\n", .iov_len = last != '\n'},
                         {.iov_base = (void *)line, .iov_len = len}};
    ssize_t w;
    do
        w = writev(STDERR_FILENO, v, 2);
    while (w < 0 && errno == EINTR);
}

static void h_log(jz_ctx_t *ctx, enum jz_log_level level, const char *fmt, ...)
{
    (void)ctx;
    va_list ap;
    va_start(ap, fmt);
    write_log_line(level, fmt, ap);
    va_end(ap);
}

static void h_vlog(jz_ctx_t *ctx, enum jz_log_level level, const char *fmt, va_list ap)
{
    (void)ctx;
    write_log_line(level, fmt, ap);
}

static void worker_log(enum jz_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void worker_log(enum jz_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    write_log_line(level, fmt, ap);
    va_end(ap);
}

static void h_progress(jz_ctx_t *ctx, double fraction, const char *message)
{
    if (!isfinite(fraction))
        return;
    fraction = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
    json_t *ev = json_pack("{s:s, s:f}", "type", "progress", "fraction", fraction);
    if (ev && message) {
        char text[JZ_WORKER_MSG_MAX + 1];
        jz_worker_text(message, JZ_WORKER_MSG_MAX, text);
        json_object_set_new(ev, "message", json_string(text));
    }
    jz_worker_emit(ctx->events_fd, ev);
}

static bool metric_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

static void h_metric(jz_ctx_t *ctx, const char *name, double value, int64_t step)
{
    if (!metric_name_ok(name)) {
        worker_log(JZ_LOG_WARN, "worker: metric dropped: name is not [A-Za-z0-9_.-]{1,64}");
        return;
    }
    if (!isfinite(value)) {
        worker_log(JZ_LOG_WARN, "worker: metric %s dropped: value is not finite", name);
        return;
    }
    json_t *ev = json_pack("{s:s, s:s, s:f}", "type", "metric", "name", name, "value", value);
    if (ev)
        json_object_set_new(ev, "step", step >= 0 ? json_integer(step) : json_null());
    jz_worker_emit(ctx->events_fd, ev);
    if (ctx->inproc && ctx->inproc->metric)
        ctx->inproc->metric(ctx->inproc->arg, name, value, step);
}

static bool h_cancelled(jz_ctx_t *ctx)
{
    return g_cancelled != 0 ||
           (ctx->inproc && ctx->inproc->cancelled && ctx->inproc->cancelled(ctx->inproc->arg));
}

static bool h_checkpoint_requested(jz_ctx_t *ctx)
{
    (void)ctx;
    return g_checkpoint != 0;
}

static int h_artifact_path(jz_ctx_t *ctx, const char *name, char *buf, size_t len)
{
    if (!name || !buf || !jz_name_is_safe(name, 64))
        return JZ_EINVAL;
    int w = snprintf(buf, len, "%s/%s", ctx->spec->output_dir, name);
    if (w < 0 || (size_t)w >= len)
        return JZ_ERANGE;
    pthread_mutex_lock(&ctx->lock);
    bool known = false;
    for (size_t i = 0; i < ctx->n_artifacts && !known; i++)
        known = strcmp(ctx->artifacts[i], name) == 0;
    int rc = 0;
    if (!known) {
        if (ctx->n_artifacts == MAX_ARTIFACTS) {
            rc = JZ_ELIMIT;
        } else {
            jz_strlcpy(ctx->artifacts[ctx->n_artifacts++], name, 65);
            jz_worker_emit(ctx->events_fd, json_pack("{s:s, s:s, s:s}", "type", "artifact", "name",
                                                     name, "path", buf));
        }
    }
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

static const char *h_checkpoint_restore_path(jz_ctx_t *ctx)
{
    if (ctx->inproc)
        return ctx->inproc->restore_path;
    return ctx->has_restore ? ctx->ckpt_path : NULL;
}

static int h_checkpoint_begin(jz_ctx_t *ctx, char *buf, size_t len)
{
    if (!ctx->spec->checkpoint_dir)
        return JZ_ENOTSUP;
    /* Made on the first checkpoint, not for every job (a directory costs an inode). */
    if (jz_mkdir_p(ctx->spec->checkpoint_dir, 0750) != 0)
        return JZ_EIO;
    if (!buf || !jz_strlcpy(buf, ctx->ckpt_tmp, len))
        return JZ_ERANGE;
    return 0;
}

static int h_checkpoint_commit(jz_ctx_t *ctx)
{
    if (!ctx->spec->checkpoint_dir)
        return JZ_ENOTSUP;
    pthread_mutex_lock(&ctx->lock);
    int rc = 0;
    int fd = open(ctx->ckpt_tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = errno == ENOENT ? JZ_ENOENT : JZ_EIO;
        goto out;
    }
    /* Data first, then the name: a crash leaves the old checkpoint or the whole new one. */
    if (fsync(fd) != 0) {
        close(fd);
        rc = JZ_EIO;
        goto out;
    }
    close(fd);
    if (rename(ctx->ckpt_tmp, ctx->ckpt_path) != 0) {
        rc = JZ_EIO;
        goto out;
    }
    int dfd = open(ctx->spec->checkpoint_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    g_checkpoint = 0;
    jz_worker_emit(ctx->events_fd,
                   json_pack("{s:s, s:s}", "type", "checkpoint", "path", ctx->ckpt_path));
    if (ctx->inproc && ctx->inproc->checkpoint)
        ctx->inproc->checkpoint(ctx->inproc->arg);
out:
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

static void set_error_text(jz_ctx_t *ctx, const char *text)
{
    pthread_mutex_lock(&ctx->lock);
    jz_strlcpy(ctx->shared->error, text, sizeof ctx->shared->error);
    pthread_mutex_unlock(&ctx->lock);
    jz_worker_emit(ctx->events_fd, json_pack("{s:s, s:s}", "type", "error", "message", text));
}

static void h_vset_error(jz_ctx_t *ctx, const char *fmt, va_list ap)
{
    char raw[JZ_WORKER_MSG_MAX * 2];
    vsnprintf(raw, sizeof raw, fmt, ap);
    char text[JZ_WORKER_MSG_MAX + 1];
    jz_worker_text(raw, JZ_WORKER_MSG_MAX, text);
    worker_log(JZ_LOG_ERROR, "%s", text);
    set_error_text(ctx, text);
}

static void h_set_error(jz_ctx_t *ctx, const char *fmt, ...)
{
    char raw[JZ_WORKER_MSG_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    char text[JZ_WORKER_MSG_MAX + 1];
    jz_worker_text(raw, JZ_WORKER_MSG_MAX, text);
    worker_log(JZ_LOG_ERROR, "%s", text);
    set_error_text(ctx, text);
}

static const struct jz_host host_table = {
    .struct_size = sizeof(struct jz_host),
    .abi_major = JZ_PLUGIN_ABI_MAJOR,
    .abi_minor = JZ_PLUGIN_ABI_MINOR,
    .param_present = h_param_present,
    .param_string = h_param_string,
    .param_int = h_param_int,
    .param_float = h_param_float,
    .param_bool = h_param_bool,
    .param_list_len = h_param_list_len,
    .param_list_string = h_param_list_string,
    .param_list_int = h_param_list_int,
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
    .checkpoint_requested = h_checkpoint_requested,
    .artifact_path = h_artifact_path,
    .checkpoint_restore_path = h_checkpoint_restore_path,
    .checkpoint_begin = h_checkpoint_begin,
    .checkpoint_commit = h_checkpoint_commit,
    .set_error = h_set_error,
    .vlog = h_vlog,
    .vset_error = h_vset_error,
};

/* The CPUs the process may run on, from the spec or (unbound) from the kernel. */
static void fill_cpus(jz_ctx_t *ctx)
{
    int *cpus = NULL;
    size_t n = 0;
    if (ctx->spec->cpus[0] && ctx->spec->bind &&
        jz_cpulist_parse(ctx->spec->cpus, &cpus, &n, NULL) == 0) {
        jz_strlcpy(ctx->cpu_list, ctx->spec->cpus, sizeof ctx->cpu_list);
        ctx->cpu_count = n;
        free(cpus);
        return;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    ctx->cpu_list[0] = '\0';
    ctx->cpu_count = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    cpus = malloc(CPU_SETSIZE * sizeof *cpus);
    if (!cpus)
        return;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    if (jz_cpulist_format(cpus, n, ctx->cpu_list, sizeof ctx->cpu_list) == 0)
        ctx->cpu_count = n;
    free(cpus);
}

static void fail_text(struct jz_worker_shared *shared, int events_fd, const char *text)
{
    char clean[JZ_WORKER_MSG_MAX + 1];
    jz_worker_text(text, JZ_WORKER_MSG_MAX, clean);
    worker_log(JZ_LOG_ERROR, "%s", clean);
    jz_strlcpy(shared->error, clean, sizeof shared->error);
    jz_worker_emit(events_fd, json_pack("{s:s, s:s}", "type", "error", "message", clean));
}

/* The ABI 1.1 hooks around run: init with the site configuration, the plugin's cross-field
 * validate, run, fini. A failing hook fails the job with its reason, prefixed by the hook. */
static int run_with_hooks(jz_ctx_t *ctx, const struct jz_worker_spec *spec,
                          const struct jz_plugin_ops *ops, struct jz_worker_shared *shared,
                          int events_fd)
{
    char why[JZ_WORKER_MSG_MAX / 2] = "";
    char msg[JZ_WORKER_MSG_MAX];
    if (ops->init) {
        char *site = json_dumps(spec->plugin_config, JSON_COMPACT | JSON_SORT_KEYS);
        int rc = ops->init(ctx, &host_table, site ? site : "{}", why, sizeof why);
        why[sizeof why - 1] = '\0';
        /* The site text stays valid until fini (the documented lifetime), so it is freed
         * after fini, or now when init failed. */
        if (rc != 0) {
            free(site);
            snprintf(msg, sizeof msg, "init: %s", why[0] ? why : "failed without a reason");
            fail_text(shared, events_fd, msg);
            return 2;
        }
        ctx->site_text = site;
    }
    int rc;
    if (ops->validate &&
        ops->validate(h_params_json(ctx), why, sizeof why) != 0) {
        why[sizeof why - 1] = '\0';
        snprintf(msg, sizeof msg, "invalid parameters: %s",
                 why[0] ? why : "refused by the plugin's validate");
        fail_text(shared, events_fd, msg);
        rc = 2;
    } else {
        rc = ops->run(ctx, &host_table);
    }
    if (ops->fini)
        ops->fini(ctx, &host_table);
    free(ctx->site_text);
    ctx->site_text = NULL;
    return rc;
}

int jz_worker_job_main(const struct jz_worker_spec *spec, int events_fd,
                       struct jz_worker_shared *shared)
{
    struct sigaction sa = {0};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    void *handle;
    struct jz_plugin desc;
    struct jz_plugin_ops ops;
    struct jz_error err;
    char sha[JZ_WORKER_SHA256_HEX + 1];
    if (jz_worker_plugin_load(spec->plugin_path, spec->plugin_fd, spec->plugin_sha256, &handle,
                              &desc, &ops, sha, &err) != 0) {
        char msg[JZ_WORKER_MSG_MAX];
        snprintf(msg, sizeof msg, "plugin refused: %s", err.msg);
        fail_text(shared, events_fd, msg);
        return 2;
    }
    worker_log(JZ_LOG_INFO, "worker: job %s: running plugin %s %s (sha256 %s, pid %d)",
               spec->job_id, desc.name, desc.version, sha, (int)getpid());
    int rc = jz_worker_run_plugin(spec, &desc, &ops, events_fd, shared, NULL);
    fflush(NULL);
    if (rc == 0)
        return 0;
    return rc < 1 ? 1 : rc > 255 ? 255 : rc;
}

int jz_worker_run_plugin(const struct jz_worker_spec *spec, const struct jz_plugin *desc,
                         const struct jz_plugin_ops *ops, int events_fd,
                         struct jz_worker_shared *shared, const struct jz_worker_inproc *inproc)
{
    /* jazarid validated already; validating again applies defaults for hand-written specs
     * and protects the plugin from a spec that was edited or written by an older jazarid. */
    struct jz_error err;
    json_t *schema = jz_params_schema_to_json(desc->params, desc->n_params);
    json_t *params = NULL;
    if (!schema || jz_params_validate(schema, spec->params, &params, NULL, &err) != 0) {
        char msg[JZ_WORKER_MSG_MAX];
        snprintf(msg, sizeof msg, "invalid parameters: %s", schema ? err.msg : "out of memory");
        fail_text(shared, events_fd, msg);
        json_decref(schema);
        return 2;
    }
    json_decref(schema);

    /* In the job process the context is static and lives until exit: plugin threads may
     * outlast run. An in-process caller gets a fresh one per run. */
    static jz_ctx_t job_ctx;
    jz_ctx_t *ctx = inproc ? calloc(1, sizeof *ctx) : &job_ctx;
    char (*artifacts)[65] = calloc(MAX_ARTIFACTS, sizeof *artifacts);
    if (!ctx || !artifacts) {
        if (inproc)
            free(ctx);
        free(artifacts);
        json_decref(params);
        fail_text(shared, events_fd, "out of memory");
        return 2;
    }
    ctx->spec = spec;
    ctx->events_fd = events_fd;
    ctx->shared = shared;
    ctx->inproc = inproc;
    pthread_mutex_init(&ctx->lock, NULL);
    ctx->params = params;
    ctx->artifacts = artifacts;
    fill_cpus(ctx);
    if (spec->checkpoint_dir) {
        snprintf(ctx->ckpt_path, sizeof ctx->ckpt_path, "%s/checkpoint.bin",
                 spec->checkpoint_dir);
        snprintf(ctx->ckpt_tmp, sizeof ctx->ckpt_tmp, "%s/checkpoint.bin.tmp",
                 spec->checkpoint_dir);
        struct stat st;
        ctx->has_restore = stat(ctx->ckpt_path, &st) == 0 && S_ISREG(st.st_mode);
    }
    enum jz_log_level level = g_log_level;
    if (inproc)
        g_log_level = inproc->log_level;
    int rc = run_with_hooks(ctx, spec, ops, shared, events_fd);
    g_log_level = level;
    if (inproc) {
        json_decref(ctx->params);
        free(ctx->params_text);
        free(ctx->artifacts);
        pthread_mutex_destroy(&ctx->lock);
        free(ctx);
    }
    return rc;
}
