/* The node registry: every node that runs jobs, the embedded local one and the jazari-node agents
 * that joined over the network. It authenticates agents (join tokens, then a per-node credential),
 * keeps each node's topology, site, labels and state, notices silent nodes, and carries the agent
 * protocol (node/proto.h) to and from them. What runs where is the scheduler's (srv->sched); what
 * a job part does is the job table's, which the registry tells through a handler. */
#ifndef JZ_SERVER_NODES_H
#define JZ_SERVER_NODES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node/proto.h"
#include "scheduler/topo.h"
#include "server/server.h"

#define JZ_NODE_HEARTBEAT_S 2          /* agents send a heartbeat this often */
#define JZ_NODE_DEFAULT_TIMEOUT_S 10   /* silent this long: the node is down */
#define JZ_NODE_MAX_LABELS 32
#define JZ_NODE_TOKEN_LEN 52           /* "jzn_" + 48 hex digits */
#define JZ_NODE_LOCAL_NAME "local"

/* What the job table is told. Called on the loop thread; the message is borrowed. */
struct jz_nodes_handler {
    /* A message about one job part, from the node the part was launched on: "started", "ev",
     * "exit", "log" or "file". */
    void (*part_msg)(void *arg, size_t node, int64_t job, int part, const struct jz_msg *m);
    /* A node said hello: arrays of {"job", "part"} it runs, and it holds ended (their "exit"
     * messages follow). */
    void (*node_hello)(void *arg, size_t node, const json_t *running, const json_t *ended);
    /* A node's jobs can no longer be reached: silent past the timeout, or revoked. */
    void (*node_down)(void *arg, size_t node, const char *why);
};

struct jz_nodes;

/* Loads the nodes known from earlier runs (down until their agents reconnect), starts the agent
 * listener and, unless disabled, the embedded local agent. Nodes are added to srv->sched. */
int jz_nodes_open(struct jz_server *srv, struct jz_nodes **out, struct jz_error *err);
/* Starts serving agents (the local one says hello now); call once the job table is loaded. */
void jz_nodes_start(struct jz_nodes *n, const struct jz_nodes_handler *h, void *arg);
/* Closes every connection and kills the local agent's workers; NULL is accepted. */
void jz_nodes_close(struct jz_nodes *n);

/* Sends a message to a node: hdr is borrowed. JZ_EAGAIN when the node is not connected. */
int jz_nodes_send(struct jz_nodes *n, size_t node, json_t *hdr, const void *data, size_t len);
/* Sends a file of jazarid's (path) into a job part's folder on the node, as NAME. */
int jz_nodes_send_file(struct jz_nodes *n, size_t node, int64_t job, int part, const char *name,
                       const char *path, struct jz_error *err);

/* The node index of name; JZ_ENOENT when unknown or removed. */
int jz_nodes_find(const struct jz_nodes *n, const char *name, size_t *node);
const char *jz_nodes_name(const struct jz_nodes *n, size_t node);
/* The address other nodes reach it by (for MASTER_ADDR). */
const char *jz_nodes_address(const struct jz_nodes *n, size_t node);
/* True for the embedded local node, whose job folders are jazarid's own. */
bool jz_nodes_is_local(const struct jz_nodes *n, size_t node);
const struct jz_topo *jz_nodes_topo(const struct jz_nodes *n, size_t node);
/* The largest GPU count of a node in service (for splitting --gpus over whole nodes). */
unsigned jz_nodes_max_gpus(struct jz_nodes *n);
/* Nodes that are not removed. */
size_t jz_nodes_listed(struct jz_nodes *n);
/* The TCP port agents connect to. */
int jz_nodes_agent_port(const struct jz_nodes *n);

/* GET /v1/nodes: every node (of site, when not NULL) as in docs/rest-api.md (new reference). */
json_t *jz_nodes_json(struct jz_nodes *n, const char *site);

/* Administration. Each is durable with the current group commit. */
int jz_nodes_token_new(struct jz_nodes *n, const char *site, int64_t ttl_s, char *token,
                       int64_t *expires_ms, struct jz_error *err);
int jz_nodes_drain(struct jz_nodes *n, size_t node, const char *reason, struct jz_error *err);
int jz_nodes_resume(struct jz_nodes *n, size_t node, struct jz_error *err);
int jz_nodes_revoke(struct jz_nodes *n, size_t node, struct jz_error *err);
/* JZ_EBUSY while jobs run there; JZ_EPERM for the local node. */
int jz_nodes_remove(struct jz_nodes *n, size_t node, struct jz_error *err);

#endif
