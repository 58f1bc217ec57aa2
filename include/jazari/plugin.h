/* Jazari workload plugin ABI, version 1.1.
 *
 * A plugin is a shared object that exports exactly one constant descriptor, `jazari_plugin`
 * (use JZ_PLUGIN_EXPORT). The service reads the descriptor in a worker process, never in jazarid;
 * it validates job parameters against the descriptor's schema at submit time; and a worker
 * process calls `ops->run` once per job with a host context.
 *
 * Versioning: a plugin built against ABI major M, minor m loads in a host with the same major M
 * and host minor >= m. Structures carry their size in their first field and only grow at the end,
 * so a newer host can read an older plugin's descriptor and an older plugin can use a newer host's
 * function table (it simply does not know the later entries).
 *
 * Threading: a worker runs one job; `run` is called on the worker's main thread. Host functions
 * may be called from any thread the plugin creates unless stated otherwise; they are internally
 * serialised.
 *
 * Lifetimes: every string the host returns (param_string, params_json, job_id, cpu_list, paths...)
 * is borrowed and stays valid until `run` returns (and, for calls made from `init`, until `fini`
 * returns); the plugin never frees one. Strings the plugin gives the host (descriptor, schema,
 * messages) are copied before the call returns, except the descriptor's and schema's, which are
 * static for the life of the library.
 *
 * Per worker process (one job), the host calls: init (if set) -> validate (if set) -> run ->
 * fini (if set; also when init or validate failed after init succeeded). `--describe` reads the
 * static descriptor only and calls none of them.
 *
 * C++ and CUDA: this header is C; JZ_PLUGIN_DEFINE gives the descriptor C linkage and default
 * visibility in C++ too. In C++ the fields given to JZ_PLUGIN_DEFINE must follow the declaration
 * order of struct jz_plugin (C++20 designated initializers).
 */
#ifndef JAZARI_PLUGIN_H
#define JAZARI_PLUGIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JZ_PLUGIN_ABI_MAJOR 1
#define JZ_PLUGIN_ABI_MINOR 1

/* The symbol name the worker looks up with dlsym. */
#define JZ_PLUGIN_SYMBOL "jazari_plugin"

/* Capability flags (jz_plugin.caps). */
#define JZ_CAP_NEEDS_GPU (1u << 0)   /* refuses to run without at least one device */
#define JZ_CAP_USES_GPU (1u << 1)    /* uses devices when given some, runs without */
#define JZ_CAP_CHECKPOINT (1u << 2)  /* saves checkpoints and resumes from them */
#define JZ_CAP_MULTI_NODE (1u << 3)  /* may span several nodes */
#define JZ_CAP_RUNS_COMMAND (1u << 4) /* runs a user command (batch-like) */

enum jz_param_type {
    JZ_PARAM_STRING = 1,
    JZ_PARAM_INT = 2,         /* int64 */
    JZ_PARAM_FLOAT = 3,       /* double */
    JZ_PARAM_BOOL = 4,
    JZ_PARAM_STRING_LIST = 5, /* JSON array of strings */
    JZ_PARAM_INT_LIST = 6,    /* JSON array of integers, or a string "256,128" */
};

/* One parameter of the schema. All strings are static and owned by the plugin.
 * The plugin passes an array of these, so this structure has no size field and is frozen for
 * ABI major 1: a later minor that needs more per-parameter data adds a new array to the end of
 * struct jz_plugin instead. Names are [A-Za-z_][A-Za-z0-9_]{0,63} and unique; a default must
 * itself pass the bounds and choices; choices apply to STRING and STRING_LIST only.
 * Bounds: for INT and FLOAT, the value must lie in [min, max]; for STRING, the length in bytes;
 * for lists, the number of elements (min == max == 0 means "no bound beyond the host's limits").
 * `choices` is NULL or a '|'-separated list of allowed STRING values ("relu|gelu").
 * `default_json` is NULL (no default) or the default as JSON text ("0.01", "\"relu\"", "[]"). */
struct jz_param_spec {
    const char *name;
    enum jz_param_type type;
    bool required;
    const char *default_json;
    double min;
    double max;
    const char *choices;
    const char *help;
};

struct jz_ctx; /* opaque: one job's context, owned by the host */
typedef struct jz_ctx jz_ctx_t;

enum jz_log_level { JZ_LOG_ERROR = 0, JZ_LOG_WARN = 1, JZ_LOG_INFO = 2, JZ_LOG_DEBUG = 3 };

/* One device of the job, as the scheduler assigned it.
 * `backend` is the backend the worker chose to run it on: "cuda", "opencl" or "cpu" (a GPU
 * declared from a topology file on a node without that GPU runs on a fallback backend).
 * `ordinal` is the device's index within that backend (after CUDA_VISIBLE_DEVICES remapping). */
struct jz_device_info {
    uint32_t struct_size;
    char backend[16];
    int ordinal;
    int node_index;       /* index of the GPU on its node (what CUDA_VISIBLE_DEVICES lists) */
    char pci_bus_id[32];  /* "0000:3b:00.0", or "" for CPU-only jobs */
    char model[64];
    uint64_t memory_bytes; /* 0 when unknown */
    int numa_node;         /* OS index, -1 when unknown */
};

/* The host function table. Every function takes the job context first. Strings returned are
 * borrowed: valid until `run` returns (see "Lifetimes" above). The table only grows at the end;
 * a plugin built for a later minor than the host's is refused, so a plugin may use every entry
 * of its own minor; a plugin that wants to run on older hosts checks `struct_size` (e.g.
 * `host->struct_size > offsetof(struct jz_host, vlog)`) before using an entry added later. */
struct jz_host {
    uint32_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;

    /* --- parameters (already validated against the schema; defaults applied) --- */
    bool (*param_present)(jz_ctx_t *ctx, const char *name);
    const char *(*param_string)(jz_ctx_t *ctx, const char *name);  /* NULL if absent */
    int64_t (*param_int)(jz_ctx_t *ctx, const char *name);         /* 0 if absent */
    double (*param_float)(jz_ctx_t *ctx, const char *name);        /* 0 if absent */
    bool (*param_bool)(jz_ctx_t *ctx, const char *name);           /* false if absent */
    size_t (*param_list_len)(jz_ctx_t *ctx, const char *name);
    const char *(*param_list_string)(jz_ctx_t *ctx, const char *name, size_t i);
    int64_t (*param_list_int)(jz_ctx_t *ctx, const char *name, size_t i);
    /* The whole parameter object as compact JSON text. */
    const char *(*params_json)(jz_ctx_t *ctx);

    /* --- the job and its resources --- */
    const char *(*job_id)(jz_ctx_t *ctx);
    size_t (*device_count)(jz_ctx_t *ctx);
    /* Copies device i into *out (out->struct_size must be set by the caller). 0 or JZ_ERANGE. */
    int (*device_get)(jz_ctx_t *ctx, size_t i, struct jz_device_info *out);
    /* The CPUs the worker is bound to, as an OS processor list ("0-3,8"). */
    const char *(*cpu_list)(jz_ctx_t *ctx);
    size_t (*cpu_count)(jz_ctx_t *ctx);
    /* The job's output directory (exists, writable, private to the job). */
    const char *(*output_dir)(jz_ctx_t *ctx);
    /* The directory the job was submitted from (may be "" when unknown). */
    const char *(*submit_dir)(jz_ctx_t *ctx);

    /* --- logging: one line per call, written to the job log as "[LEVEL] message"; lines are
     * cut at 4 KiB and control characters (newlines included) become spaces --- */
    void (*log)(jz_ctx_t *ctx, enum jz_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* --- progress and metrics, forwarded to the service (visible in `jazari show`) --- */
    /* fraction in [0,1] (clamped); message may be NULL; messages are cut at 1 KiB. */
    void (*progress)(jz_ctx_t *ctx, double fraction, const char *message);
    /* A named scalar, latest value wins; `step` orders values (e.g. the epoch), -1 for none.
     * Names are [A-Za-z0-9_.-]{1,64}; a bad name or a non-finite value is dropped with a
     * warning in the job log. */
    void (*metric)(jz_ctx_t *ctx, const char *name, double value, int64_t step);

    /* --- cooperative cancellation --- */
    /* True once the job is cancelled, preempted or past its time limit: return soon. */
    bool (*cancelled)(jz_ctx_t *ctx);
    /* True when the service asks for a checkpoint now (preemption); cleared by checkpoint_commit. */
    bool (*checkpoint_requested)(jz_ctx_t *ctx);

    /* --- artifacts --- */
    /* Writes into buf the path where artifact `name` should be written, and registers it.
     * Names are [A-Za-z0-9._-]{1,64}, not starting with '.'. Returns 0, JZ_EINVAL or JZ_ERANGE. */
    int (*artifact_path)(jz_ctx_t *ctx, const char *name, char *buf, size_t len);

    /* --- checkpoints: one file per job, replaced atomically --- */
    /* Path of the checkpoint to restore from, or NULL when the job starts fresh. Decided when
     * the job starts: a checkpoint committed during this run does not change it. */
    const char *(*checkpoint_restore_path)(jz_ctx_t *ctx);
    /* Path of a temporary file to write the next checkpoint into (into buf). 0, JZ_ERANGE
     * (buf too small) or JZ_ENOTSUP (the job has no checkpoint directory). */
    int (*checkpoint_begin)(jz_ctx_t *ctx, char *buf, size_t len);
    /* Atomically makes the file written since checkpoint_begin the job's checkpoint (fsync,
     * rename). 0, JZ_ENOENT (nothing was written), JZ_EIO or JZ_ENOTSUP. */
    int (*checkpoint_commit)(jz_ctx_t *ctx);

    /* --- failure --- */
    /* Sets the message the job record shows when run returns non-zero (cut at 1 KiB; the
     * last call wins). Also written to the job log. */
    void (*set_error)(jz_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

    /* --- ABI 1.1 --- */
    /* va_list forms of log and set_error, for plugins that wrap them in their own variadic
     * functions. ap is consumed (va_end remains the caller's). */
    void (*vlog)(jz_ctx_t *ctx, enum jz_log_level level, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));
    void (*vset_error)(jz_ctx_t *ctx, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));
};

/* Operations. `run` is required; the others may be NULL (and read as NULL in a 1.0 plugin,
 * whose ops struct_size ends after run). */
struct jz_plugin_ops {
    uint32_t struct_size;
    /* Runs the job. Returns 0 on success; non-zero marks the job FAILED (with set_error's text).
     * A plugin that exits the process, crashes or hangs only ends its own worker. */
    int (*run)(jz_ctx_t *ctx, const struct jz_host *host);

    /* --- ABI 1.1 --- */
    /* Called once in the job's worker process before validate and run. site_config_json is the
     * plugin's site configuration as compact JSON text: the object under "plugins": {"NAME":
     * {...}} of the server's configuration file ("{}" when there is none); borrowed, valid until
     * fini returns. Returns 0, or non-zero with a one-line reason in err (errlen bytes, NUL-
     * terminated): the job fails with "init: REASON". Host functions may be called (with ctx). */
    int (*init)(jz_ctx_t *ctx, const struct jz_host *host, const char *site_config_json,
                char *err, size_t errlen);
    /* Called once after run (or after a failed validate), when init succeeded or is NULL. */
    void (*fini)(jz_ctx_t *ctx, const struct jz_host *host);
    /* Cross-field checks the schema cannot express ("batch must divide samples"). params_json
     * is the parameter object after the schema's checks and defaults. Returns 0, or non-zero
     * with a one-line reason in err: the job fails with "invalid parameters: REASON". Called in
     * the job's worker process before run (jazarid never runs plugin code, so a job with bad
     * parameters is accepted at submit and fails when it starts). */
    int (*validate)(const char *params_json, char *err, size_t errlen);
};

/* The one exported descriptor. The worker refuses it (and jazarid lists it as refused) when
 * abi_major differs from the host's, abi_minor is newer than the host's, struct_size is smaller
 * than the ABI 1.0 layout, the name is not [a-z0-9_-]{1,32}, ops or ops->run is NULL, or the
 * parameter schema is malformed. Fields past the plugin's struct_size read as zero/NULL. */
struct jz_plugin {
    uint32_t struct_size; /* sizeof(struct jz_plugin) as the plugin saw it */
    uint32_t abi_major;   /* JZ_PLUGIN_ABI_MAJOR */
    uint32_t abi_minor;   /* JZ_PLUGIN_ABI_MINOR */
    const char *name;     /* [a-z0-9_-]{1,32}; the name jobs use ("train") */
    const char *version;  /* the plugin's own version ("1.2.0") */
    const char *description; /* one line */
    uint32_t caps;        /* JZ_CAP_* */
    const struct jz_param_spec *params;
    size_t n_params;
    const struct jz_plugin_ops *ops;
};

#define JZ_PLUGIN_EXPORT __attribute__((visibility("default")))

/* C linkage for the descriptor: in C++ a namespace-scope const has internal linkage and a
 * mangled name, and dlsym would not find it. */
#ifdef __cplusplus
#define JZ_PLUGIN_LINKAGE extern "C"
#else
#define JZ_PLUGIN_LINKAGE
#endif

/* Declares the descriptor with the current ABI numbers filled in:
 *   JZ_PLUGIN_DEFINE(.name = "example", .version = "1.0.0", ...); */
#define JZ_PLUGIN_DEFINE(...)                                                                  \
    JZ_PLUGIN_LINKAGE JZ_PLUGIN_EXPORT const struct jz_plugin jazari_plugin = {               \
        .struct_size = sizeof(struct jz_plugin),                                               \
        .abi_major = JZ_PLUGIN_ABI_MAJOR,                                                      \
        .abi_minor = JZ_PLUGIN_ABI_MINOR,                                                      \
        __VA_ARGS__}

#define JZ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#ifdef __cplusplus
}
#endif
#endif
