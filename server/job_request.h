/* A job submission's body checked field by field against a plugin's description and the
 * service's limits, with no server state: the pure half of jz_jobs_submit (jobs_submit.c adds
 * what needs the job table: artifact references, resume_from, the pending limit). Fuzzed by
 * tests/fuzz/fuzz_job_request.c. */
#ifndef JZ_SERVER_JOB_REQUEST_H
#define JZ_SERVER_JOB_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>

struct jz_job_request;

/* Whether a request could ever run on the cluster; on false, writes why into why (len bytes). */
typedef bool jz_job_request_fit_fn(void *arg, const struct jz_job_request *req, char *why,
                                   size_t len);

/* What the check needs to know beyond the body. Everything is borrowed. */
struct jz_job_request_env {
    const json_t *plugin_desc;  /* the named plugin's description; NULL: no such usable plugin */
    unsigned plugin_caps;       /* its JZ_CAP_* */
    const char *plugin_refused; /* with plugin_desc NULL: why the plugin was refused, or NULL */
    unsigned node_max_gpus;     /* GPUs on the largest node, 0 when no node is known */
    int64_t params_max_bytes;   /* normalized parameters' compact JSON size; <= 0: unbounded */
    jz_job_request_fit_fn *could_fit; /* NULL: not checked */
    void *fit_arg;
    bool admin; /* the submitter is an admin: a negative nice is allowed */
    const char *webhook_allow; /* --webhook-allow: a notify URL's IP literal is checked against
                                  the webhook address policy with it (NULL: the default) */
};

/* A checked request. Strings are borrowed from the body; params is owned. */
struct jz_job_request {
    const char *plugin;
    const char *name;       /* the plugin's name when not given */
    const char *submit_dir; /* "" when not given */
    const char *gpu_model;  /* NULL: any */
    const char *class_name; /* NULL: none */
    bool preemptible, requeue;
    int64_t gpus; /* gpus_per_node * nodes */
    int64_t nodes, gpus_per_node, cpus_per_gpu, cpus, memory_mb, time_limit_s, gpu_memory_min_mb;
    json_t *params; /* normalized: defaults applied, types converted (jz_params_validate) */
    /* The researcher's workflow: an array's indexes (owned, ascending, unique; NULL: not an
     * array) and throttle (0: none), dependencies (their jobs are checked by the caller), a
     * hold, a nice value, a webhook (borrowed strings). */
    int64_t *array_indexes;
    size_t array_count;
    unsigned array_throttle;
    struct {
        int type; /* enum jz_dep_type (jobs_internal.h): after, afterok, afternotok, afterany */
        int64_t job;
    } deps[16];
    size_t ndeps;
    bool hold;
    int64_t nice;
    const char *notify_url, *notify_secret;
    const json_t *reservation; /* a booking's id as given (borrowed), NULL: none */
};

/* The body's "plugin" when it is a string (borrowed), else NULL: the caller looks it up to fill
 * the env before calling jz_job_request_parse. */
const char *jz_job_request_plugin(const json_t *body);

/* Checks body (borrowed) in a fixed order, so that the first fault is the one reported. On
 * success fills *out (free with jz_job_request_clear). On failure writes the field at fault
 * ("resources.gpus", "params.lr") into field (field_len bytes) and the reason into err, and
 * returns err->code; *out is not written. */
int jz_job_request_parse(const json_t *body, const struct jz_job_request_env *env,
                         struct jz_job_request *out, char *field, size_t field_len,
                         struct jz_error *err);

/* Parses an array specification: "0-99", "0-99:2", "1,3,7-9", each with an optional "%N"
 * suffix (at most N elements queued or running at once). Indexes are 0..10,000,000, at most
 * 10,000 of them; *indexes (owned by the caller) is sorted, without repeats. On failure returns
 * JZ_EINVAL or JZ_ELIMIT and writes why into err. */
int jz_job_array_parse(const char *spec, int64_t **indexes, size_t *count, unsigned *throttle,
                       struct jz_error *err);

/* Releases what a parsed request owns; accepts NULL and a zeroed request. */
void jz_job_request_clear(struct jz_job_request *req);

#endif
