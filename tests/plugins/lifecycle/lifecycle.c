/* Test plugin "lifecycle" (ABI 1.1): init keeps the site configuration and can refuse it,
 * validate checks a cross-field rule (lo < hi), run sleeps `seconds` and logs what it saw
 * through vlog, fini leaves a marker in the output folder. Built as 1.0.0 and as 1.1.0 (which
 * adds the `mode` parameter) for the version and upgrade tests. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jazari/plugin.h>

#ifndef LIFECYCLE_VERSION
#error "LIFECYCLE_VERSION comes from CMake"
#endif

static const struct jz_param_spec lifecycle_params[] = {
    {.name = "lo", .type = JZ_PARAM_INT, .default_json = "0", .min = -1000, .max = 1000},
    {.name = "hi", .type = JZ_PARAM_INT, .default_json = "1", .min = -1000, .max = 1000},
    {.name = "seconds", .type = JZ_PARAM_FLOAT, .default_json = "0", .min = 0, .max = 3600},
    {.name = "fail", .type = JZ_PARAM_BOOL, .default_json = "false"},
#ifdef LIFECYCLE_MODE_PARAM
    {.name = "mode", .type = JZ_PARAM_STRING, .default_json = "\"fast\"", .choices = "fast|slow"},
#endif
};

static char site[4096]; /* the site configuration init was given */
static bool init_done;

/* A plugin's own variadic logger: what vlog is for. */
static void say(jz_ctx_t *ctx, const struct jz_host *host, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(jz_ctx_t *ctx, const struct jz_host *host, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    host->vlog(ctx, JZ_LOG_INFO, fmt, ap);
    va_end(ap);
}

static void fail_with(jz_ctx_t *ctx, const struct jz_host *host, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_with(jz_ctx_t *ctx, const struct jz_host *host, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    host->vset_error(ctx, fmt, ap);
    va_end(ap);
}

static int lifecycle_init(jz_ctx_t *ctx, const struct jz_host *host, const char *site_json,
                          char *err, size_t errlen)
{
    if (strstr(site_json, "\"refuse\": true") || strstr(site_json, "\"refuse\":true")) {
        snprintf(err, errlen, "the site configuration asks to refuse (%s)", site_json);
        return 1;
    }
    snprintf(site, sizeof site, "%s", site_json);
    init_done = true;
    say(ctx, host, "lifecycle: init site=%s", site_json);
    return 0;
}

static int lifecycle_validate(const char *params_json, char *err, size_t errlen)
{
    /* The host gives the normalized object with sorted keys; a real plugin would parse it. */
    long lo = 0, hi = 0;
    const char *p = strstr(params_json, "\"lo\":");
    const char *q = strstr(params_json, "\"hi\":");
    if (!p || !q || sscanf(p + 5, "%ld", &lo) != 1 || sscanf(q + 5, "%ld", &hi) != 1) {
        snprintf(err, errlen, "cannot read lo and hi from %s", params_json);
        return 1;
    }
    if (lo >= hi) {
        snprintf(err, errlen, "lo (%ld) must be less than hi (%ld)", lo, hi);
        return 1;
    }
    return 0;
}

static int lifecycle_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    say(ctx, host, "lifecycle: run version=%s init=%d site=%s params=%s", LIFECYCLE_VERSION,
        init_done, site, host->params_json(ctx));
    double total = host->param_float(ctx, "seconds");
    struct timespec ts = {0, 20 * 1000 * 1000};
    for (double t = 0; t < total && !host->cancelled(ctx); t += 0.02)
        nanosleep(&ts, NULL);
    if (host->param_bool(ctx, "fail")) {
        fail_with(ctx, host, "lifecycle %s: failing as asked (lo=%lld)", LIFECYCLE_VERSION,
                  (long long)host->param_int(ctx, "lo"));
        return 3;
    }
    host->metric(ctx, "version_major_minor", LIFECYCLE_VERSION[2] == '1' ? 1.1 : 1.0, -1);
    return 0;
}

static void lifecycle_fini(jz_ctx_t *ctx, const struct jz_host *host)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/fini.txt", host->output_dir(ctx));
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "fini %s\n", LIFECYCLE_VERSION);
        fclose(f);
    }
    say(ctx, host, "lifecycle: fini");
}

static const struct jz_plugin_ops lifecycle_ops = {.struct_size = sizeof lifecycle_ops,
                                                   .run = lifecycle_run,
                                                   .init = lifecycle_init,
                                                   .fini = lifecycle_fini,
                                                   .validate = lifecycle_validate};

JZ_PLUGIN_DEFINE(.name = "lifecycle", .version = LIFECYCLE_VERSION,
                 .description = "Test: init/validate/run/fini, built as two versions",
                 .params = lifecycle_params, .n_params = JZ_ARRAY_LEN(lifecycle_params),
                 .ops = &lifecycle_ops);
