/* Reading SPEC.json, the job description jazarid writes for each worker. */
#include "worker/worker.h"

#include <stdlib.h>
#include <string.h>

#include "common/cpulist.h"
#include "common/json.h"
#include "common/strutil.h"

/* A string member: required or optional, bounded, absolute when it is a path. */
static int get_str(json_t *root, const char *key, bool required, bool is_path, const char **out,
                   struct jz_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required)
            return jz_error_set(err, JZ_EINVAL, "spec: '%s' is missing", key);
        *out = NULL;
        return 0;
    }
    if (!json_is_string(v))
        return jz_error_set(err, JZ_EINVAL, "spec: '%s' is not a string", key);
    const char *s = json_string_value(v);
    if (json_string_length(v) > JZ_WORKER_MAX_PATH || strlen(s) != json_string_length(v))
        return jz_error_set(err, JZ_ELIMIT, "spec: '%s' is longer than %d bytes or holds NUL", key,
                            JZ_WORKER_MAX_PATH);
    if (is_path && s[0] != '/')
        return jz_error_set(err, JZ_EINVAL, "spec: '%s' must be an absolute path", key);
    *out = s;
    return 0;
}

static int get_int(json_t *root, const char *key, int64_t fallback, int64_t lo, int64_t hi,
                   int64_t *out, struct jz_error *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = fallback;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return jz_error_set(err, JZ_EINVAL, "spec: '%s' must be an integer in [%lld, %lld]", key,
                            (long long)lo, (long long)hi);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int copy_field(json_t *dev, const char *key, char *dst, size_t len, size_t i,
                      struct jz_error *err)
{
    json_t *v = json_object_get(dev, key);
    if (!v || json_is_null(v)) {
        dst[0] = '\0';
        return 0;
    }
    if (!json_is_string(v) || !jz_strlcpy(dst, json_string_value(v), len))
        return jz_error_set(err, JZ_EINVAL, "spec: devices[%zu].%s is not a string of < %zu bytes",
                            i, key, len);
    return 0;
}

static int parse_devices(json_t *arr, struct jz_device_info **out, size_t *n, struct jz_error *err)
{
    *out = NULL;
    *n = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > JZ_WORKER_MAX_DEVICES)
        return jz_error_set(err, JZ_EINVAL, "spec: 'devices' is not an array of at most %d",
                            JZ_WORKER_MAX_DEVICES);
    size_t count = json_array_size(arr);
    struct jz_device_info *devs = calloc(count ? count : 1, sizeof *devs);
    if (!devs)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        json_t *d = json_array_get(arr, i);
        struct jz_device_info *o = &devs[i];
        int rc;
        if (!json_is_object(d)) {
            rc = jz_error_set(err, JZ_EINVAL, "spec: devices[%zu] is not an object", i);
            goto fail;
        }
        o->struct_size = sizeof *o;
        if ((rc = copy_field(d, "backend", o->backend, sizeof o->backend, i, err)) ||
            (rc = copy_field(d, "pci_bus_id", o->pci_bus_id, sizeof o->pci_bus_id, i, err)) ||
            (rc = copy_field(d, "model", o->model, sizeof o->model, i, err)))
            goto fail;
        if (strcmp(o->backend, "cuda") != 0 && strcmp(o->backend, "opencl") != 0 &&
            strcmp(o->backend, "cpu") != 0) {
            rc = jz_error_set(err, JZ_EINVAL,
                              "spec: devices[%zu].backend must be cuda, opencl or cpu", i);
            goto fail;
        }
        int64_t v = 0; /* set on success; -O2 cannot see that */
        if ((rc = get_int(d, "ordinal", (int64_t)i, 0, 1 << 20, &v, err)))
            goto fail;
        o->ordinal = (int)v;
        if ((rc = get_int(d, "node_index", (int64_t)i, 0, 1 << 20, &v, err)))
            goto fail;
        o->node_index = (int)v;
        if ((rc = get_int(d, "numa_node", -1, -1, 1 << 20, &v, err)))
            goto fail;
        o->numa_node = (int)v;
        if ((rc = get_int(d, "memory_bytes", 0, 0, INT64_MAX, &v, err)))
            goto fail;
        o->memory_bytes = (uint64_t)v;
        continue;
    fail:
        free(devs);
        return rc;
    }
    *out = devs;
    *n = count;
    return 0;
}

static bool sha256_hex_ok(const char *s)
{
    if (strlen(s) != JZ_WORKER_SHA256_HEX)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* What the node adds about the plugin: an open descriptor of the file to load (the node opened
 * it, possibly a copy the job's account could not open by path), the SHA-256 it must have, and
 * the plugin's site configuration for init. All optional: a hand-written spec names a path. */
static int plugin_fields(struct jz_worker_spec *s, struct jz_error *err)
{
    int64_t fd = -1; /* set on success; -O3 cannot see that */
    int rc;
    s->plugin_fd = -1;
    if ((rc = get_int(s->root, "plugin_fd", -1, -1, INT32_MAX, &fd, err)))
        return rc;
    s->plugin_fd = (int)fd;
    if ((rc = get_str(s->root, "plugin_sha256", false, false, &s->plugin_sha256, err)))
        return rc;
    if (s->plugin_sha256 && !sha256_hex_ok(s->plugin_sha256))
        return jz_error_set(err, JZ_EINVAL, "spec: 'plugin_sha256' is not 64 lower-case hex digits");
    s->plugin_config = json_object_get(s->root, "plugin_config");
    if (!s->plugin_config) {
        s->plugin_config = json_object();
        json_object_set_new(s->root, "plugin_config", s->plugin_config);
    }
    if (!json_is_object(s->plugin_config))
        return jz_error_set(err, JZ_EINVAL, "spec: 'plugin_config' is not an object");
    char *text = json_dumps(s->plugin_config, JSON_COMPACT);
    size_t len = text ? strlen(text) : 0;
    free(text);
    if (len > JZ_WORKER_SITE_CONFIG_MAX_BYTES)
        return jz_error_set(err, JZ_ELIMIT, "spec: 'plugin_config' is larger than %d bytes",
                            JZ_WORKER_SITE_CONFIG_MAX_BYTES);
    return 0;
}

/* Checks a parsed spec (root is stolen); path only names it in messages. */
static int spec_from_root(json_t *root, const char *path, struct jz_worker_spec *spec,
                          struct jz_error *err)
{
    struct jz_worker_spec s = {.root = root};
    int rc;
    if (!json_is_object(s.root)) {
        rc = jz_error_set(err, JZ_EINVAL, "spec: %s is not a JSON object", path);
        goto fail;
    }
    if ((rc = get_str(s.root, "job_id", true, false, &s.job_id, err)) ||
        (rc = get_str(s.root, "plugin_path", true, true, &s.plugin_path, err)) ||
        (rc = get_str(s.root, "cpus", false, false, &s.cpus, err)) ||
        (rc = get_str(s.root, "numa_nodes", false, false, &s.numa_nodes, err)) ||
        (rc = get_str(s.root, "output_dir", true, true, &s.output_dir, err)) ||
        (rc = get_str(s.root, "log_path", false, true, &s.log_path, err)) ||
        (rc = get_str(s.root, "checkpoint_dir", false, true, &s.checkpoint_dir, err)) ||
        (rc = get_str(s.root, "submit_dir", false, false, &s.submit_dir, err)))
        goto fail;
    if (!jz_name_is_safe(s.job_id, 64)) {
        rc = jz_error_set(err, JZ_EINVAL, "spec: job_id must be [A-Za-z0-9._-]{1,64}");
        goto fail;
    }
    if (!s.cpus)
        s.cpus = "";
    if (!s.numa_nodes)
        s.numa_nodes = "";
    if (!s.submit_dir)
        s.submit_dir = "";
    int *cpus = NULL;
    size_t ncpus;
    if (s.cpus[0] && (rc = jz_cpulist_parse(s.cpus, &cpus, &ncpus, err)))
        goto fail;
    free(cpus);
    if (s.numa_nodes[0] && (rc = jz_cpulist_parse(s.numa_nodes, &cpus, &ncpus, err)))
        goto fail;
    if (s.numa_nodes[0])
        free(cpus);
    s.params = json_object_get(s.root, "params");
    if (!s.params) {
        s.params = json_object();
        json_object_set_new(s.root, "params", s.params);
    }
    if (!json_is_object(s.params)) {
        rc = jz_error_set(err, JZ_EINVAL, "spec: 'params' is not an object");
        goto fail;
    }
    json_t *bind = json_object_get(s.root, "bind");
    if (bind && !json_is_boolean(bind)) {
        rc = jz_error_set(err, JZ_EINVAL, "spec: 'bind' is not a bool");
        goto fail;
    }
    s.bind = json_is_true(bind);
    if ((rc = get_int(s.root, "time_limit_s", 0, 0, INT32_MAX, &s.time_limit_s, err)) ||
        (rc = get_int(s.root, "kill_grace_s", 10, 0, 3600, &s.kill_grace_s, err)) ||
        (rc = get_int(s.root, "log_max_bytes", 0, 0, INT64_MAX, &s.log_max_bytes, err)) ||
        (rc = get_int(s.root, "min_free_bytes", 0, 0, INT64_MAX, &s.min_free_bytes, err)) ||
        (rc = parse_devices(json_object_get(s.root, "devices"), &s.devices, &s.n_devices, err)))
        goto fail;
    s.env = json_object_get(s.root, "env");
    if (s.env && !json_is_object(s.env)) {
        rc = jz_error_set(err, JZ_EINVAL, "spec: 'env' is not an object");
        goto fail;
    }
    if ((rc = plugin_fields(&s, err)))
        goto fail;
    *spec = s;
    return 0;
fail:
    json_decref(s.root);
    return rc;
}

int jz_worker_spec_load(const char *path, struct jz_worker_spec *spec, struct jz_error *err)
{
    json_t *root = jz_json_load_file(path, JZ_WORKER_SPEC_MAX_BYTES, err);
    if (!root)
        return err ? err->code : JZ_EINVAL;
    return spec_from_root(root, path, spec, err);
}

int jz_worker_spec_load_buffer(const char *text, size_t len, struct jz_worker_spec *spec,
                               struct jz_error *err)
{
    if (len > JZ_WORKER_SPEC_MAX_BYTES)
        return jz_error_set(err, JZ_ELIMIT, "spec: larger than %u bytes",
                            JZ_WORKER_SPEC_MAX_BYTES);
    json_t *root = jz_json_parse(text, len, 64, err); /* jz_json_load_file's depth */
    if (!root)
        return err ? err->code : JZ_EINVAL;
    return spec_from_root(root, "spec", spec, err);
}

void jz_worker_spec_free(struct jz_worker_spec *spec)
{
    if (!spec)
        return;
    free(spec->devices);
    json_decref(spec->root);
    memset(spec, 0, sizeof *spec);
}
