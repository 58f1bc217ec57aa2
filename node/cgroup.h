/* Control groups for job parts: one cgroup per part, with memory, pids, cpuset and GPU device
 * limits, joined by the forked worker before exec, killed as a whole, and removed after.
 * Works on cgroup v2 (unified) and on v1 (one hierarchy per controller), detected at run time.
 *
 * Conventions for the whole module:
 * - Threading: none. A system and its cgroups belong to one thread (the agent's event loop).
 * - Errors: 0 or a negative JZ_E* code; err (may be NULL) is written only on failure; output
 *   parameters are written only on success.
 * - Ownership: strings passed in are borrowed for the call only; *out objects are owned by the
 *   caller and freed with their destroy/close function, which accept NULL. Every jz_cgroup must
 *   be destroyed before its system is closed.
 * - Layout: the agent's folder NAME is made under the root of every hierarchy used, and each
 *   job part's cgroup under it: v1 ROOT/<controller>/NAME/JOB, v2 ROOT/NAME/JOB. */
#ifndef JZ_NODE_CGROUP_H
#define JZ_NODE_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jazari/error.h>

#define JZ_CGROUP_ROOT_DEFAULT "/sys/fs/cgroup"
#define JZ_CGROUP_NAME_MAX 128      /* the agent's folder, "a/b/c" */
#define JZ_CGROUP_JOB_NAME_MAX 96   /* one job part's cgroup: [A-Za-z0-9._-], not starting '.' */
#define JZ_CGROUP_MAX_FDS 5         /* join fds a cgroup can have (one per v1 hierarchy) */
#define JZ_CGROUP_GPU_MINOR_MAX 253 /* NVIDIA GPU minors; 254 is nvidia-modeset, 255 nvidiactl */

/* What a system can limit (jz_cgroup_system_features). */
enum {
    JZ_CGROUP_MEMORY = 1 << 0,  /* memory limit (swap included), OOM detection, peak usage */
    JZ_CGROUP_PIDS = 1 << 1,    /* pids limit */
    JZ_CGROUP_CPUSET = 1 << 2,  /* cpus and mems */
    JZ_CGROUP_DEVICES = 1 << 3, /* GPU device access (v1 devices controller only: v2 needs an
                                   eBPF device program, which this module does not load) */
    JZ_CGROUP_FREEZE = 1 << 4,  /* killing cannot race with forks (v2 cgroup.kill or
                                   cgroup.freeze, v1 freezer); without it kill loops */
};

struct jz_cgroup_limits {
    int64_t memory_bytes; /* <= 0: no memory limit. Swap counts against it where it can. */
    int64_t pids_max;     /* <= 0: no pids limit */
    const char *cpus;     /* cpuset list like "0-3,8"; NULL or "": all of the parent's */
    const char *mems;     /* NUMA nodes list; NULL or "": all of the parent's */
    /* GPU device access. When limit_devices is set, the NVIDIA GPUs (char major 195, minors
     * 0..JZ_CGROUP_GPU_MINOR_MAX) other than gpu_minors are denied; nvidiactl, nvidia-modeset
     * and nvidia-uvm stay open. */
    bool limit_devices;
    const int *gpu_minors;
    size_t n_gpu_minors;
};

struct jz_cgroup_system;
struct jz_cgroup;

/* Finds the cgroup hierarchies under root (NULL: JZ_CGROUP_ROOT_DEFAULT) and makes the agent's
 * folder name ("jazari/node-local", components as job names) in each writable one. root is
 * cgroup2 (pure v2), or holds v1 controller mounts (v1, also on hybrid machines, whose
 * root/unified has no controllers); with no v1 controller mounted, a cgroup2 at root/unified
 * is used as v2. Fails with JZ_ENOTSUP (and why) when there is none, JZ_EPERM when nothing
 * is writable. */
int jz_cgroup_system_open(const char *root, const char *name, struct jz_cgroup_system **out,
                          struct jz_error *err);
/* Kills and removes every cgroup left under the agent's folder (by an earlier run of the
 * agent: call it at start, before creating any). *cgroups (may be NULL) gets how many were
 * removed, *procs (may be NULL) how many processes were in them. Blocks up to about a second.
 * Fails with JZ_EBUSY when one did not empty in that time (its processes stuck in the
 * kernel); the others are removed all the same. */
int jz_cgroup_system_reap(struct jz_cgroup_system *s, size_t *cgroups, size_t *procs,
                          struct jz_error *err);
/* Removes the agent's folders (those that are empty, and the parents that open made) and frees
 * s; NULL is accepted. */
void jz_cgroup_system_close(struct jz_cgroup_system *s);
/* "v1" or "v2". */
const char *jz_cgroup_system_version(const struct jz_cgroup_system *s);
/* JZ_CGROUP_* bits. */
unsigned jz_cgroup_system_features(const struct jz_cgroup_system *s);
/* For the agent's log: "v1 at /sys/fs/cgroup: memory pids cpuset devices freeze". Owned by s. */
const char *jz_cgroup_system_describe(const struct jz_cgroup_system *s);

/* Makes the cgroup job_name under the agent's folder with lim (NULL: no limits) applied.
 * A limit the system cannot apply fails with JZ_ENOTSUP and nothing is made (check
 * jz_cgroup_system_features first to run without it); an existing cgroup of that name fails
 * with JZ_EEXIST. */
int jz_cgroup_create(struct jz_cgroup_system *s, const char *job_name,
                     const struct jz_cgroup_limits *lim, struct jz_cgroup **out,
                     struct jz_error *err);
/* Copies into fds (at most max, JZ_CGROUP_MAX_FDS is enough) the descriptors a forked child
 * joins with, and returns how many. They are O_WRONLY|O_CLOEXEC, owned by cg, and stay open
 * until jz_cgroup_destroy. */
size_t jz_cgroup_join_fds(const struct jz_cgroup *cg, int *fds, size_t max);
/* In the forked child, before exec: moves the calling process into the cgroup through fds.
 * Async-signal-safe (write only). 0, or -1 with errno set (the child should _exit). */
int jz_cgroup_join_self(const int *fds, size_t n);
/* The parent's alternative: moves process pid into the cgroup. What pid forked before the
 * move stays where it was, so join_self before exec is the safe way. */
int jz_cgroup_attach(struct jz_cgroup *cg, pid_t pid, struct jz_error *err);
/* Sends SIGKILL to every process in the cgroup (v2: cgroup.kill where present; else with the
 * group frozen so that nothing forks past it; else in rounds 10 ms apart) and waits up to
 * wait_ms for them to be gone. 0 when the cgroup is empty; JZ_EBUSY when it is not yet, for
 * instance with wait_ms 0 on the event loop: poll jz_cgroup_empty (from a timer) and call
 * again. A freeze that does not settle (a task in uninterruptible sleep) adds up to 50 ms. */
int jz_cgroup_kill(struct jz_cgroup *cg, int wait_ms);
/* True when no process is left in the cgroup (zombies do not count). */
bool jz_cgroup_empty(const struct jz_cgroup *cg);
/* True when the kernel's OOM killer killed a process of the cgroup: at its memory limit, or
 * (rarely) when the whole machine ran out. False without a memory controller. */
bool jz_cgroup_oom_killed(const struct jz_cgroup *cg);
/* Highest memory use in bytes, or -1 when unknown (no memory controller; v2 before 5.19). */
int64_t jz_cgroup_memory_peak(const struct jz_cgroup *cg);
/* Kills what is left (waiting up to 500 ms), removes the cgroup's directories, closes its fds
 * and frees it; NULL is accepted. A cgroup that would not empty is left behind for
 * jz_cgroup_system_reap. */
void jz_cgroup_destroy(struct jz_cgroup *cg);

#endif
