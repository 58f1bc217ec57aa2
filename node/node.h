/* A node's hardware and processes: its topology, and the jazari-worker processes that run job
 * parts on it. The agent (agent.h) is its only user: it builds the specs and decides nothing
 * about what runs where. */
#ifndef JZ_NODE_NODE_H
#define JZ_NODE_NODE_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include <jazari/error.h>

#include "scheduler/topo.h"

struct jz_node;

struct jz_node_config {
    const char *name;             /* "local" */
    const char *topology_path;    /* NULL: discover this machine with hwloc */
    const char *worker_path;      /* the jazari-worker executable */
};

/* What a running worker reports. Both callbacks run on the event loop thread. */
struct jz_node_worker_cbs {
    /* One event line from the worker (borrowed for the call). */
    void (*on_event)(void *arg, json_t *event);
    /* The worker has exited and its event stream is drained; wait_status as from waitpid. */
    void (*on_exit)(void *arg, int wait_status);
};

/* Creates the node: loads the topology (XML file or live). *out is owned by the caller. */
int jz_node_create(struct event_base *base, const struct jz_node_config *cfg,
                   struct jz_node **out, struct jz_error *err);
/* Kills every worker's process group (SIGKILL) and frees the node; NULL is accepted. */
void jz_node_destroy(struct jz_node *n);

const char *jz_node_name(const struct jz_node *n);
/* "live" or "xml:PATH". */
const char *jz_node_source(const struct jz_node *n);
/* True when the GPUs were declared from an XML file (they are not this machine's devices). */
bool jz_node_declared(const struct jz_node *n);
/* The topology as an hwloc XML document (the declared file, or this machine exported), for
 * jazarid. *xml is NUL-terminated and the caller frees it. */
int jz_node_topology_xml(const struct jz_node *n, char **xml, size_t *len, struct jz_error *err);
/* The topology, owned by the node. */
const struct jz_topo *jz_node_topo(const struct jz_node *n);
/* The backend a job runs on for GPU i: "cuda" when the device is this machine's CUDA GPU,
 * "opencl" for a live OpenCL device, else fallback. */
const char *jz_node_gpu_backend(const struct jz_node *n, size_t gpu, const char *fallback);

/* Who a worker runs as and what holds it, applied in the child between fork and exec. */
struct jz_node_launch_opts {
    bool set_ids;              /* switch to uid/gid/groups (the agent runs as root) */
    uid_t uid;
    gid_t gid;
    const gid_t *groups;       /* supplementary groups, borrowed */
    size_t ngroups;
    const int *cgroup_fds;     /* open cgroup.procs/tasks files the child joins, borrowed */
    size_t ncgroup_fds;
    int64_t file_size_max;     /* RLIMIT_FSIZE in bytes; <= 0: unchanged */
    int64_t nproc_max;         /* RLIMIT_NPROC (per uid, a backstop to the pids cgroup); <= 0 */
    bool pass_plugin_fd;       /* give plugin_fd (borrowed) to the worker as its fd 5: the agent
                                  opens the plugin, which the job's account may not (a private
                                  copy in jazarid's state folder) */
    int plugin_fd;
};

/* Starts `jazari-worker --spec /dev/fd/4 --events-fd 3` with spec_fd (a file or memfd holding
 * the spec, borrowed) as its fd 4, confined as opts says (NULL: as this process). The worker
 * dies with this process (PR_SET_PDEATHSIG). cbs/arg are kept until on_exit has been called. */
int jz_node_launch(struct jz_node *n, int spec_fd, const struct jz_node_launch_opts *opts,
                   const struct jz_node_worker_cbs *cbs, void *arg, pid_t *pid_out,
                   struct jz_error *err);
/* Sends sig to a worker (the supervisor process, which forwards TERM/USR1 to the job). */
int jz_node_signal(struct jz_node *n, pid_t pid, int sig);
/* Sends SIGKILL to a worker, its process group and the job's own process group (a backstop
 * when the worker hangs, or a descendant of the job outlives it holding the event pipe). */
int jz_node_kill_group(struct jz_node *n, pid_t pid);

#endif
