/* Loading a plugin .so and checking its descriptor against this host's ABI; the --describe
 * JSON; and the one-line event writer shared by the supervisor and the job process. */
#include "worker/worker.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/params.h"
#include "common/paths.h"
#include "common/sha256.h"

/* The ABI 1.0 layouts: anything smaller cannot be a 1.x descriptor. */
#define DESC_MIN_SIZE (offsetof(struct jz_plugin, ops) + sizeof(void *))
#define OPS_MIN_SIZE (offsetof(struct jz_plugin_ops, run) + sizeof(void *))
#define DESC_HEAD_SIZE (3 * sizeof(uint32_t)) /* struct_size, abi_major, abi_minor */

static const struct {
    uint32_t bit;
    const char *name;
} cap_names[] = {
    {JZ_CAP_NEEDS_GPU, "needs_gpu"},       {JZ_CAP_USES_GPU, "uses_gpu"},
    {JZ_CAP_CHECKPOINT, "checkpoint"},     {JZ_CAP_MULTI_NODE, "multi_node"},
    {JZ_CAP_RUNS_COMMAND, "runs_command"},
};

static bool plugin_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-'))
            return false;
    return true;
}

/* A printable UTF-8 string of at most max bytes (JSON-safe, one line). */
static bool text_ok(const char *s, size_t max)
{
    if (!s || strlen(s) > max)
        return false;
    char copy[1024];
    jz_worker_text(s, sizeof copy - 1, copy);
    return strcmp(copy, s) == 0;
}

static int check_desc(const struct jz_plugin *raw, struct jz_plugin *desc,
                      struct jz_plugin_ops *ops, struct jz_error *err)
{
    if (raw->struct_size < DESC_HEAD_SIZE)
        return jz_error_set(err, JZ_EABI, "descriptor struct_size %u is too small",
                            raw->struct_size);
    if (raw->abi_major != JZ_PLUGIN_ABI_MAJOR)
        return jz_error_set(err, JZ_EABI,
                            "plugin ABI %u.%u is not supported by this worker (ABI %d.%d); "
                            "rebuild the plugin against this Jazari's include/jazari",
                            raw->abi_major, raw->abi_minor, JZ_PLUGIN_ABI_MAJOR,
                            JZ_PLUGIN_ABI_MINOR);
    if (raw->abi_minor > JZ_PLUGIN_ABI_MINOR)
        return jz_error_set(err, JZ_EABI,
                            "plugin needs ABI %u.%u but this worker provides %d.%d; "
                            "upgrade Jazari or rebuild the plugin",
                            raw->abi_major, raw->abi_minor, JZ_PLUGIN_ABI_MAJOR,
                            JZ_PLUGIN_ABI_MINOR);
    if (raw->struct_size < DESC_MIN_SIZE)
        return jz_error_set(err, JZ_EABI,
                            "descriptor struct_size %u is smaller than ABI %d.0's %zu",
                            raw->struct_size, JZ_PLUGIN_ABI_MAJOR, (size_t)DESC_MIN_SIZE);
    /* A newer minor's descriptor may be larger; only the part this host knows is read. */
    memset(desc, 0, sizeof *desc);
    memcpy(desc, raw, raw->struct_size < sizeof *desc ? raw->struct_size : sizeof *desc);
    if (!plugin_name_ok(desc->name))
        return jz_error_set(err, JZ_EINVAL, "plugin name is missing or not [a-z0-9_-]{1,32}");
    if (!text_ok(desc->version, 64))
        return jz_error_set(err, JZ_EINVAL,
                            "plugin '%s': version is missing, longer than 64 bytes or not text",
                            desc->name);
    if (desc->description && !text_ok(desc->description, 512))
        return jz_error_set(err, JZ_EINVAL,
                            "plugin '%s': description is longer than 512 bytes or not text",
                            desc->name);
    if (!desc->ops)
        return jz_error_set(err, JZ_EINVAL, "plugin '%s': ops is NULL", desc->name);
    if (desc->ops->struct_size < OPS_MIN_SIZE)
        return jz_error_set(err, JZ_EABI, "plugin '%s': ops struct_size %u is too small",
                            desc->name, desc->ops->struct_size);
    memset(ops, 0, sizeof *ops);
    memcpy(ops, desc->ops,
           desc->ops->struct_size < sizeof *ops ? desc->ops->struct_size : sizeof *ops);
    if (!ops->run)
        return jz_error_set(err, JZ_EINVAL, "plugin '%s': ops->run is NULL", desc->name);
    struct jz_error perr;
    if (jz_params_specs_check(desc->params, desc->n_params, &perr) != 0)
        return jz_error_set(err, JZ_EINVAL, "plugin '%s': %s", desc->name, perr.msg);
    return 0;
}

/* SHA-256 of the whole file behind fd (read with pread: the offset is left alone), as hex. */
static int hash_fd(int fd, const char *path, char hex[JZ_WORKER_SHA256_HEX + 1],
                   struct jz_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return jz_error_set(err, JZ_EIO, "cannot read %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return jz_error_set(err, JZ_EINVAL, "%s is not a regular file", path);
    if (st.st_size > JZ_WORKER_PLUGIN_MAX_BYTES)
        return jz_error_set(err, JZ_ELIMIT, "%s is larger than %lld bytes", path,
                            (long long)JZ_WORKER_PLUGIN_MAX_BYTES);
    if (jz_sha256_fd(fd, hex) != 0)
        return jz_error_set(err, JZ_EIO, "cannot read %s: %s", path, strerror(errno));
    return 0;
}

/* dlopen of a plugin, its failure's text in why. A plugin that links libjz_kernels finds it
 * through its RUNPATH ($ORIGIN/../..) only where it is installed; loaded through /proc/self/fd
 * it has no such origin. When dlopen failed for want of the library, this installation's copy
 * (common/paths.h) is loaded and the retry finds it by its SONAME. Only then: plugins that do
 * not use it (batch) do not pay for OpenBLAS's start. That handle stays open for good. */
static void *open_plugin(const char *via, char *why, size_t why_len)
{
    void *h = dlopen(via, RTLD_NOW | RTLD_LOCAL);
    if (h)
        return h;
    const char *e = dlerror();
    snprintf(why, why_len, "%s", e ? e : "?");
    char lib[4400];
    if (!strstr(why, "libjz_kernels.so") || jz_kernels_library_path(lib, sizeof lib) != 0 ||
        !dlopen(lib, RTLD_NOW | RTLD_LOCAL))
        return NULL;
    if (!(h = dlopen(via, RTLD_NOW | RTLD_LOCAL))) {
        e = dlerror();
        snprintf(why, why_len, "%s", e ? e : "?");
    }
    return h;
}

int jz_worker_plugin_load(const char *path, int fd, const char *expected_sha256, void **handle,
                          struct jz_plugin *desc, struct jz_plugin_ops *ops,
                          char sha_out[JZ_WORKER_SHA256_HEX + 1], struct jz_error *err)
{
    sha_out[0] = '\0';
    int own = -1;
    /* The node hands the plugin over as an inherited descriptor, so without close-on-exec:
     * set it before any plugin code runs (its constructors included), so that no command a
     * plugin starts ('batch') inherits it. /proc/self/fd/N still opens it for dlopen. */
    if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
        return jz_error_set(err, JZ_EIO, "descriptor %d of %s: %s", fd, path, strerror(errno));
    if (fd < 0) {
        own = fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return jz_error_set(err, JZ_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    /* The bytes hashed are the bytes loaded: dlopen goes through this very descriptor, so a
     * file renamed over the path meanwhile changes neither. */
    int rc = hash_fd(fd, path, sha_out, err);
    if (rc == 0 && expected_sha256 && strcmp(expected_sha256, sha_out) != 0)
        rc = jz_error_set(err, JZ_EINVAL,
                          "%s has sha256 %.12s..., not the %.12s... the job was submitted with "
                          "(the plugin file changed; reinstall that version or resubmit)",
                          path, sha_out, expected_sha256);
    void *h = NULL;
    if (rc == 0) {
        char via[64];
        snprintf(via, sizeof via, "/proc/self/fd/%d", fd);
        char why[512];
        h = open_plugin(via, why, sizeof why);
        if (!h)
            rc = jz_error_set(err, JZ_EIO, "cannot load plugin %s: %s", path, why);
    }
    if (own >= 0)
        close(own);
    if (rc)
        return rc;
    dlerror();
    const struct jz_plugin *raw = dlsym(h, JZ_PLUGIN_SYMBOL);
    if (!raw) {
        dlclose(h);
        return jz_error_set(err, JZ_EINVAL,
                            "%s exports no '%s' symbol: not a Jazari plugin "
                            "(declare it with JZ_PLUGIN_DEFINE)",
                            path, JZ_PLUGIN_SYMBOL);
    }
    struct jz_plugin d;
    struct jz_plugin_ops o;
    rc = check_desc(raw, &d, &o, err);
    if (rc) {
        dlclose(h);
        return rc;
    }
    *handle = h;
    *desc = d;
    *ops = o;
    return 0;
}

/* Whether hook k (0 init, 1 fini, 2 validate) is set, reading only what the plugin's ops
 * struct_size covers. */
static bool ops_hook(const struct jz_plugin_ops *ops, int k)
{
    size_t off = k == 0   ? offsetof(struct jz_plugin_ops, init)
                 : k == 1 ? offsetof(struct jz_plugin_ops, fini)
                          : offsetof(struct jz_plugin_ops, validate);
    if (ops->struct_size < off + sizeof(void *))
        return false;
    return k == 0 ? ops->init != NULL : k == 1 ? ops->fini != NULL : ops->validate != NULL;
}

json_t *jz_worker_plugin_describe(const struct jz_plugin *desc)
{
    json_t *caps = json_array();
    for (size_t i = 0; caps && i < JZ_ARRAY_LEN(cap_names); i++)
        if (desc->caps & cap_names[i].bit)
            json_array_append_new(caps, json_string(cap_names[i].name));
    json_t *params = jz_params_schema_to_json(desc->params, desc->n_params);
    if (!caps || !params) {
        json_decref(caps);
        json_decref(params);
        return NULL;
    }
    /* What the ABI 1.1 hooks a plugin has: `jazari plugin check` shows them. */
    const struct jz_plugin_ops *ops = desc->ops;
    json_t *hooks = json_pack("{s:b, s:b, s:b}", "init", ops_hook(ops, 0), "fini",
                              ops_hook(ops, 1), "validate", ops_hook(ops, 2));
    return json_pack("{s:s, s:s, s:s, s:{s:i, s:i}, s:o, s:o, s:o}", "name", desc->name,
                     "version", desc->version, "description",
                     desc->description ? desc->description : "", "abi", "major",
                     (int)desc->abi_major, "minor", (int)desc->abi_minor, "caps", caps, "params",
                     params, "hooks", hooks);
}

/* Length of the valid UTF-8 sequence at p (as jansson accepts it), or 0. */
static size_t utf8_seq(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F; /* no UTF-16 surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

void jz_worker_text(const char *in, size_t max, char *out)
{
    const unsigned char *p = (const unsigned char *)(in ? in : "");
    size_t o = 0;
    while (*p) {
        size_t n = utf8_seq(p);
        if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
            /* Control characters would break the one-line log and event formats. */
            if (o + 1 > max)
                break;
            out[o++] = (*p == '\t' || *p == '\n' || *p == '\r') ? ' ' : '?';
            p++;
            continue;
        }
        if (o + n > max)
            break;
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
}

int jz_worker_emit(int fd, json_t *ev)
{
    if (!ev)
        return JZ_ENOMEM;
    if (fd < 0) {
        json_decref(ev);
        return 0;
    }
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (!text)
        return JZ_ENOMEM;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return JZ_ENOMEM;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    ssize_t w;
    do
        w = write(fd, line, n + 1);
    while (w < 0 && errno == EINTR);
    free(line);
    return w == (ssize_t)(n + 1) ? 0 : JZ_EIO;
}
