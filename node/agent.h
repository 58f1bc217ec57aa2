/* The node agent: runs the job parts that jazarid gives this node. It builds each part's folder
 * and worker spec, starts and stops workers (through node.h), classifies how each part ended
 * (once, here), and, for a remote node, ships logs, outputs and checkpoints to jazarid.
 *
 * The agent does not know how it talks to jazarid: messages (proto.h) come in through
 * jz_agent_receive and go out through the send callback. jazari-node carries them over TCP;
 * jazarid's embedded local agent hands them over in memory. One code path for jobs either way.
 * Everything runs on the caller's event loop thread. */
#ifndef JZ_NODE_AGENT_H
#define JZ_NODE_AGENT_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>

#include <jazari/error.h>

#include "node/proto.h"
#include "scheduler/topo.h"

struct jz_agent;

struct jz_agent_config {
    const char *name;             /* node name, [A-Za-z0-9._-]{1,63} */
    const char *state_dir;        /* job folders (STATE/jobs/ID) and running records */
    const char *topology_path;    /* NULL: discover this machine with hwloc */
    const char *worker_path;      /* the jazari-worker executable */
    const char *plugin_dirs;      /* ':'-separated folders searched for a job's plugin file */
    const char *site;             /* NULL: "default" */
    const json_t *labels;         /* object of string values, or NULL (copied) */
    const char *fallback_backend; /* backend for declared GPUs: "cpu" or "opencl" */
    const char *address;          /* how other nodes reach this one (MASTER_ADDR), or NULL */
    bool ship_files;              /* logs, outputs and checkpoints go to jazarid (remote) */
    bool server_copies;           /* the local node: runs jazarid's private plugin copies
                                     (plugin_sha256 of a launch); a remote one its own folders */
    /* With server_copies: the folder of those copies, jazarid's STATE/plugins (NULL: this
     * agent's STATE_DIR/plugins, as for jazarid's in-process agent). The agent builds a copy's
     * path itself from it and the launch's SHA-256, and runs only a regular file (no link)
     * owned by the folder's owner, within the plugin size limit. */
    const char *server_copies_dir;
    /* Jobs run as their users' Unix accounts, in cgroups (the agent must run as root). Off:
     * jobs run as the agent's own user, unconfined (a development set-up). */
    bool confine;
    /* The agent's cgroup folder name, unique among agents on this machine (NULL: derived from
     * the node name and state folder). */
    const char *cgroup_name;
    /* Free bytes the state folder's file system keeps: below them, the running part that
     * wrote most since the last check fails with "disk full". 0: no check. */
    int64_t min_free_bytes;
    /* Confining: the service account's uid, which jobs never run as ((uid_t)-1: none). */
    uid_t deny_uid;
};

/* Called for every outgoing message: hdr is borrowed for the call; data (len bytes) too. */
typedef void (*jz_agent_send_fn)(void *arg, json_t *hdr, const void *data, size_t len);

/* Sends the file open on fd (borrowed) as "file" frames with hdr (borrowed) as their header,
 * without reading it into memory (a transport over a socket can). */
typedef void (*jz_agent_send_file_fn)(void *arg, json_t *hdr, int fd);
/* Optional: set when the transport can send files from disk; otherwise files are read and sent
 * through the send callback chunk by chunk. */
void jz_agent_set_file_sender(struct jz_agent *a, jz_agent_send_file_fn fn);

/* Creates the agent: loads the topology, kills what earlier runs of this agent left behind (their
 * parts are reported as lost in the next hello). *out is owned by the caller. */
int jz_agent_create(struct event_base *base, const struct jz_agent_config *cfg,
                    jz_agent_send_fn send, void *arg, struct jz_agent **out,
                    struct jz_error *err);
/* Kills every worker and frees the agent; NULL is accepted. */
void jz_agent_destroy(struct jz_agent *a);

/* The hello message (new reference) for a new connection: version, name, site, labels,
 * topology XML, and the parts running or ended here. credential or join_token are added by
 * the transport. */
json_t *jz_agent_hello(struct jz_agent *a);
/* The server accepted the hello: from now on messages are sent, and parts that ended while
 * disconnected report their outputs and outcome. */
void jz_agent_connected(struct jz_agent *a);
/* The connection is gone: messages are held back (logs keep their offset, outcomes are kept)
 * until the next jz_agent_connected. */
void jz_agent_disconnected(struct jz_agent *a);
/* Handles one message from jazarid (borrowed). Malformed messages are logged and ignored. */
void jz_agent_receive(struct jz_agent *a, const struct jz_msg *m);

const char *jz_agent_name(const struct jz_agent *a);
/* Parts running now. */
size_t jz_agent_running(const struct jz_agent *a);

#endif
