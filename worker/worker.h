/* Internal interfaces of jazari-worker: the job spec, plugin loading and checking, the event
 * stream, and the host context given to a plugin. Not installed; plugins never see this. */
#ifndef JZ_WORKER_WORKER_H
#define JZ_WORKER_WORKER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jazari/error.h>
#include <jazari/plugin.h>

#define JZ_WORKER_SPEC_MAX_BYTES (32u * 1024 * 1024) /* params may hold big lists */
#define JZ_WORKER_MAX_DEVICES 64
#define JZ_WORKER_MAX_PATH 1024 /* bytes in any path of the spec, so events stay < PIPE_BUF */
#define JZ_WORKER_MSG_MAX 1024  /* bytes of a message in an event */
#define JZ_WORKER_LOG_LINE 4096 /* bytes of one log line, newline included */

/* The job as jazarid described it in SPEC.json. Strings are borrowed from `root`. */
struct jz_worker_spec {
    json_t *root;
    const char *job_id;
    const char *plugin_path;
    json_t *params; /* object, borrowed from root */
    struct jz_device_info *devices;
    size_t n_devices;
    const char *cpus;       /* "" when not given */
    const char *numa_nodes; /* "" when not given */
    bool bind;
    const char *output_dir;
    const char *log_path;       /* NULL: keep the inherited stdout/stderr */
    const char *checkpoint_dir; /* NULL: checkpoints unsupported for this job */
    const char *submit_dir;     /* "" when not given */
    int64_t time_limit_s;       /* <= 0: none */
    int64_t kill_grace_s;
    int64_t log_max_bytes;      /* <= 0: none; past it the job is stopped ("log limit") */
    int64_t min_free_bytes;     /* a job writing its log while its disk has less free is
                                   stopped ("disk full"); <= 0: not watched */
    json_t *env;                /* object of strings for the job's environment, or NULL */
};

/* Loads and checks SPEC.json into *spec (fields written only on success). Free with
 * jz_worker_spec_free, which accepts a zeroed spec. */
int jz_worker_spec_load(const char *path, struct jz_worker_spec *spec, struct jz_error *err);
/* The same from a JSON document in memory (len bytes, need not be NUL-terminated; borrowed). */
int jz_worker_spec_load_buffer(const char *text, size_t len, struct jz_worker_spec *spec,
                               struct jz_error *err);
void jz_worker_spec_free(struct jz_worker_spec *spec);

/* dlopen()s path (RTLD_NOW|RTLD_LOCAL), finds JZ_PLUGIN_SYMBOL and checks it against this host's
 * ABI. On success *handle owns the library (dlclose it, or keep it for the process' life), and
 * *desc and *ops are copies of the plugin's descriptor and ops table, zero-filled past the plugin's
 * struct_size; their pointers point into the library. On failure err says why, in one line. */
int jz_worker_plugin_load(const char *path, void **handle, struct jz_plugin *desc,
                          struct jz_plugin_ops *ops, struct jz_error *err);
/* The --describe JSON object of a checked descriptor (new reference), NULL on out of memory. */
json_t *jz_worker_plugin_describe(const struct jz_plugin *desc);

/* Copies in into out (capacity max + 1) as valid UTF-8 without control characters, cut on a
 * character boundary at max bytes, so that it can go into an event line. */
void jz_worker_text(const char *in, size_t max, char *out);
/* Writes ev (stolen) as one line to fd with a single write(2); a no-op when fd < 0.
 * Lines stay under PIPE_BUF, so the supervisor and the job process may both write. */
int jz_worker_emit(int fd, json_t *ev);

/* Memory shared between the supervisor and the job process (MAP_SHARED), so that the exit
 * event can carry the plugin's set_error text even when the job process is killed. */
struct jz_worker_shared {
    char error[JZ_WORKER_MSG_MAX + 1];
};

/* In the job process: loads the plugin, builds the host context and calls run. Returns the
 * process exit status (0 on success, 1..255 otherwise). */
int jz_worker_job_main(const struct jz_worker_spec *spec, int events_fd,
                       struct jz_worker_shared *shared);

#endif
