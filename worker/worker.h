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
#define JZ_WORKER_SHA256_HEX 64 /* hex digits of a SHA-256 */
#define JZ_WORKER_PLUGIN_MAX_BYTES (1ll << 31) /* a plugin file larger than 2 GiB is refused */
#define JZ_WORKER_SITE_CONFIG_MAX_BYTES (64 * 1024) /* a plugin's site configuration, as JSON */

/* The job as jazarid described it in SPEC.json. Strings are borrowed from `root`. */
struct jz_worker_spec {
    json_t *root;
    const char *job_id;
    const char *plugin_path;
    int plugin_fd;               /* the plugin opened by the node (read from it); -1: open path */
    const char *plugin_sha256;   /* expected SHA-256 (hex) of the plugin file, or NULL: any */
    json_t *plugin_config;       /* the plugin's site configuration (object, borrowed) */
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

/* Opens path (or uses fd when >= 0; borrowed, path then only names it in messages), hashes the
 * file's bytes (SHA-256, hex into sha_out) and refuses it when expected_sha256 is given and
 * differs; then dlopen()s those same bytes (through /proc/self/fd, RTLD_NOW|RTLD_LOCAL), finds
 * JZ_PLUGIN_SYMBOL and checks it against this host's ABI. On success *handle owns the library
 * (dlclose it, or keep it for the process' life), and *desc and *ops are copies of the plugin's
 * descriptor and ops table, zero-filled past the plugin's struct_size; their pointers point into
 * the library. On failure err says why, in one line; sha_out is written whenever the file could
 * be read (also when the descriptor is refused). */
int jz_worker_plugin_load(const char *path, int fd, const char *expected_sha256, void **handle,
                          struct jz_plugin *desc, struct jz_plugin_ops *ops,
                          char sha_out[JZ_WORKER_SHA256_HEX + 1], struct jz_error *err);
/* The --describe JSON object of a checked descriptor (new reference), NULL on out of memory. */
json_t *jz_worker_plugin_describe(const struct jz_plugin *desc);

/* Copies in into out (capacity max + 1) as valid UTF-8 without control characters, cut on a
 * character boundary at max bytes, so that it can go into an event line. */
void jz_worker_text(const char *in, size_t max, char *out);
/* Writes one log line (ending in a newline) to stderr, the job's log. When the log is a file
 * whose last byte is not a newline (a job's output that ended without one), a newline goes
 * first, so that the line is not joined onto the job's. The check and the write are not one
 * step: output the job writes in between can still meet the line (cosmetic, as before). */
void jz_worker_log_write(const char *line, size_t len);
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

/* What a caller that runs a plugin in its own process (plugins/common/runhost: plugin tests and
 * benchmarks) adds to the job host. Callbacks run on the thread that made the host call. */
struct jz_worker_inproc {
    const char *restore_path; /* what checkpoint_restore_path returns (NULL: a fresh start) */
    enum jz_log_level log_level; /* log lines above it are not written */
    void *arg;
    void (*metric)(void *arg, const char *name, double value, int64_t step); /* may be NULL */
    bool (*cancelled)(void *arg);  /* polled by host->cancelled; may be NULL */
    void (*checkpoint)(void *arg); /* after a committed checkpoint; may be NULL */
};

/* Runs a loaded plugin (desc and ops from jz_worker_plugin_load) once with spec's host
 * context: checks and normalizes the parameters, then init, validate, run, fini. Returns run's
 * return value, or 2 when the parameters, init or validate refused (the reason is then in
 * shared->error and the log). inproc is NULL in the job process; otherwise the context is
 * freed before returning, and the call may be repeated. Not reentrant. */
int jz_worker_run_plugin(const struct jz_worker_spec *spec, const struct jz_plugin *desc,
                         const struct jz_plugin_ops *ops, int events_fd,
                         struct jz_worker_shared *shared, const struct jz_worker_inproc *inproc);

#endif
