/* The job request: a submission body, as jazarid's HTTP layer parses it, checked by
 * jz_job_request_parse against the built-in plugins' descriptions. */
#include "fuzz.h"

#include <jazari/plugin.h>

#include "common/json.h"
#include "server/job_request.h"
#include "server/server.h"

static json_t *descs[FUZZ_N_PLUGINS];
static unsigned caps[FUZZ_N_PLUGINS];

static unsigned caps_of(const json_t *desc)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"needs_gpu", JZ_CAP_NEEDS_GPU},
                 {"uses_gpu", JZ_CAP_USES_GPU},
                 {"checkpoint", JZ_CAP_CHECKPOINT},
                 {"multi_node", JZ_CAP_MULTI_NODE},
                 {"runs_command", JZ_CAP_RUNS_COMMAND}};
    unsigned bits = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(desc, "caps"), i, c) {
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            if (json_is_string(c) && strcmp(json_string_value(c), names[k].name) == 0)
                bits |= names[k].bit;
    }
    return bits;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_load_schemas(descs);
    for (int i = 0; i < FUZZ_N_PLUGINS; i++)
        caps[i] = caps_of(descs[i]);
    return 0;
}

/* A cluster of nodes with 8 GPUs and 128 cores: enough to reach both answers. */
static bool fits(void *arg, const struct jz_job_request *req, char *why, size_t len)
{
    if (req->gpus_per_node <= 8 && req->cpus <= 128 &&
        req->cpus_per_gpu * req->gpus_per_node <= 128)
        return true;
    snprintf(why, len, "no node has %lld GPUs and %lld cores", (long long)req->gpus_per_node,
             (long long)req->cpus);
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = jz_json_parse((const char *)data, size, JZ_MAX_JSON_DEPTH, NULL);
    if (!json_is_object(body)) { /* the HTTP layer answers that itself */
        json_decref(body);
        return 0;
    }
    struct jz_job_request_env env = {
        .node_max_gpus = 8, .params_max_bytes = 4096, .could_fit = fits};
    const char *plugin = jz_job_request_plugin(body);
    for (int i = 0; plugin && i < FUZZ_N_PLUGINS; i++)
        if (strcmp(plugin, fuzz_plugin_names[i]) == 0) {
            env.plugin_desc = descs[i];
            env.plugin_caps = caps[i];
        }
    if (plugin && strcmp(plugin, "refused") == 0)
        env.plugin_refused = "its ABI is too new";

    struct jz_job_request req;
    memset(&req, 0xa5, sizeof req); /* to see that a failure leaves it alone */
    struct jz_job_request before = req;
    char field[160] = "";
    struct jz_error err = {0};
    int rc = jz_job_request_parse(body, &env, &req, field, sizeof field, &err);
    if (rc) {
        FUZZ_CHECK(rc < 0 && rc == err.code);
        FUZZ_CHECK(field[0] != '\0');
        /* Every message starts with the field it names (either may have been cut short). */
        size_t n = strlen(field) < strlen(err.msg) ? strlen(field) : strlen(err.msg);
        FUZZ_CHECK(strncmp(err.msg, field, n) == 0);
        FUZZ_CHECK(memcmp(&req, &before, sizeof req) == 0);
    } else {
        FUZZ_CHECK(field[0] == '\0');
        FUZZ_CHECK(req.nodes >= 1 && req.nodes <= 1024);
        FUZZ_CHECK(req.gpus_per_node >= 0 && req.gpus_per_node <= 64);
        FUZZ_CHECK(req.gpus == req.gpus_per_node * req.nodes);
        FUZZ_CHECK(req.time_limit_s >= 1 && req.time_limit_s <= JZ_MAX_TIME_LIMIT_S);
        FUZZ_CHECK(req.cpus >= 1 && req.cpus_per_gpu >= 1);
        FUZZ_CHECK(req.name && req.name[0] && strlen(req.name) <= JZ_MAX_NAME_LEN);
        FUZZ_CHECK(json_is_object(req.params));
        FUZZ_CHECK(json_dumpb(req.params, NULL, 0, JSON_COMPACT) <= 4096);
        if ((env.plugin_caps & JZ_CAP_NEEDS_GPU))
            FUZZ_CHECK(req.gpus > 0);
        jz_job_request_clear(&req);
    }
    json_decref(body);
    return 0;
}
