/* The node registry and the server side of the agent protocol (see nodes.h). */
#include "server/nodes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/time.h"
#include "node/agent.h"
#include "scheduler/sched.h"
#include "scheduler/topo_hwloc.h"
#include "server/auth.h"
#include "server/front.h"
#include "server/reservations.h"

#define HELLO_TIMEOUT_S 10
#define MAX_LABEL_LEN 128
#define MAX_UNKNOWN_CONNS 256 /* connections that have not said hello yet (each may buffer 8 MiB) */
#define AGENT_ACCEPT_PAUSE_MS 500

enum link { LINK_CONNECTING, LINK_UP, LINK_DOWN };

struct conn;

/* A topology shared by every node that sent the same XML (a hub has many nodes of a few kinds):
 * parsed once, stored once, and the scheduler exploits nodes sharing one topology. */
struct shared_topo {
    struct shared_topo *next;
    char hash[65];
    char *xml;
    struct jz_topo *topo;
    size_t refs;
};

struct entry {
    char name[64], site[64], address[256], description[256], source[300];
    json_t *labels;
    struct shared_topo *shared; /* a reference; the scheduler borrows the topology */
    const char *xml;            /* shared->xml */
    struct jz_topo *topo;       /* shared->topo */
    char cred_hash[65];
    bool local;    /* the in-process agent: messages through queues, folders shared */
    bool attached; /* jazarid's own agent process (privsep.h): trusted, never removed */
    bool drained, revoked, removed;
    char drain_reason[257];
    enum link link;
    int64_t last_seen_mono, last_seen_ms;
    struct conn *conn;
};

struct conn {
    struct jz_nodes *nodes;
    struct bufferevent *bev; /* NULL for the local agent */
    ssize_t node;            /* -1 until its hello is accepted */
    struct event *hello_timer;
    struct jz_proto_reader reader;
    char peer[64];
    bool closing;
    bool attached; /* the socket pair to jazarid's own local agent process */
};

/* Messages between jazarid and its local agent go through these queues and are delivered from
 * the loop, so that neither side is re-entered while it is still handling a message. */
struct qmsg {
    struct qmsg *next;
    struct jz_msg m;
};
struct queue {
    struct qmsg *head, **tail;
    struct event *ev;
};

struct jz_nodes {
    struct jz_server *srv;
    struct shared_topo *topos;
    json_t *stored_topos; /* while loading: hash -> XML */
    /* Asked at every submission: recounted only when nodes come, go or are revoked. */
    bool counts_stale;
    size_t listed;
    unsigned max_gpus;
    struct entry **e; /* index = the scheduler's node index */
    size_t n, cap;
    json_t *tokens;   /* join token hash -> {"site", "expires_ms"} */
    struct evconnlistener *listener;
    int agent_port;
    size_t unknown_conns; /* connected, no hello accepted yet */
    struct event *check_timer;
    struct jz_nodes_handler h;
    void *harg;
    bool started;
    /* the embedded local node */
    struct jz_agent *agent;
    struct conn local;
    struct queue to_agent, from_agent;
    /* or jazarid's own agent process, confining jobs (privsep.h) */
    struct conn *attached;
};

/* --- entries -------------------------------------------------------------------------------- */

static void topo_unref(struct jz_nodes *n, struct shared_topo *t)
{
    if (!t || --t->refs > 0)
        return;
    for (struct shared_topo **pp = &n->topos; *pp; pp = &(*pp)->next)
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    free(t->xml);
    jz_topo_destroy(t->topo);
    free(t);
}

/* The parsed topology of xml, shared with nodes that sent the same document. */
static int topo_get(struct jz_nodes *n, const char *xml, struct entry *e, struct jz_error *err)
{
    char hash[65];
    jz_auth_hash(xml, hash);
    for (struct shared_topo *t = n->topos; t; t = t->next)
        if (strcmp(t->hash, hash) == 0 && strcmp(t->xml, xml) == 0) {
            t->refs++;
            e->shared = t;
            e->xml = t->xml;
            e->topo = t->topo;
            return 0;
        }
    struct shared_topo *t = calloc(1, sizeof *t);
    if (!t || !(t->xml = strdup(xml))) {
        free(t);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    int rc = jz_topo_hwloc_load_xml_buffer(xml, strlen(xml), &t->topo, err);
    if (rc) {
        free(t->xml);
        free(t);
        return rc;
    }
    memcpy(t->hash, hash, sizeof hash);
    t->refs = 1;
    t->next = n->topos;
    n->topos = t;
    /* Stored once per kind of machine; nodes refer to it by hash. */
    json_t *v = json_pack("{s:s}", "xml", xml);
    struct jz_error serr = {0};
    if (!v || n->srv->store->ops->object_put(n->srv->store, "topology", hash, v, &serr))
        jz_log_error("nodes", "cannot store a topology: %s", v ? serr.msg : "out of memory");
    json_decref(v);
    e->shared = t;
    e->xml = t->xml;
    e->topo = t->topo;
    return 0;
}

static void entry_free(struct jz_nodes *n, struct entry *e)
{
    if (!e)
        return;
    json_decref(e->labels);
    topo_unref(n, e->shared);
    free(e);
}

static struct entry *entry_at(const struct jz_nodes *n, size_t node)
{
    return node < n->n ? n->e[node] : NULL;
}

static int find_entry(const struct jz_nodes *n, const char *name, size_t *out)
{
    for (size_t i = 0; i < n->n; i++)
        if (n->e[i] && !n->e[i]->removed && strcmp(n->e[i]->name, name) == 0) {
            *out = i;
            return 0;
        }
    return JZ_ENOENT;
}

static void persist(struct jz_nodes *n, const struct entry *e)
{
    if (e->local)
        return; /* the local node is made anew at every start */
    struct jz_store *st = n->srv->store;
    struct jz_error err = {0};
    json_t *v = json_pack("{s:s, s:O, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:b}", "site", e->site,
                          "labels", e->labels, "address", e->address, "description",
                          e->description, "source", e->source, "topology", e->shared->hash,
                          "cred_hash", e->cred_hash, "drained", e->drained, "drain_reason",
                          e->drain_reason, "revoked", e->revoked);
    if (!v || st->ops->object_put(st, "node", e->name, e->removed ? NULL : v, &err))
        jz_log_error("nodes", "node %s: cannot store: %s", e->name, v ? err.msg : "out of memory");
    json_decref(v);
    jz_server_request_commit(n->srv);
}

/* Whether the scheduler may place new work there. */
static void sync_sched(struct jz_nodes *n, size_t node)
{
    struct entry *e = n->e[node];
    struct jz_error err = {0};
    bool up = e->link == LINK_UP && !e->drained && !e->revoked && !e->removed;
    if (!e->removed && jz_sched_node_set_up(n->srv->sched, node, up, &err))
        jz_log_warn("nodes", "node %s: scheduler: %s", e->name, err.msg);
    jz_server_request_commit(n->srv); /* a node in service: schedule again */
}

/* Adds e to the scheduler; on success the registry owns e at the returned index. */
static int entry_add(struct jz_nodes *n, struct entry *e, size_t *out, struct jz_error *err)
{
    const char *sw = jz_json_str(e->labels, "switch", NULL);
    struct jz_sched_node_spec spec = {.name = e->name, .topo = e->topo, .site = e->site,
                                      .switch_name = sw};
    size_t idx;
    int rc = jz_sched_node_add(n->srv->sched, &spec, &idx, err);
    if (rc)
        return rc;
    jz_reservations_resync(n->srv->reservations); /* bookings that wait for this node */
    if (idx >= n->cap) {
        size_t cap = n->cap ? n->cap : 16;
        while (cap <= idx)
            cap *= 2;
        struct entry **grown = realloc(n->e, cap * sizeof *grown);
        if (!grown)
            return jz_error_set(err, JZ_ENOMEM, "out of memory");
        memset(grown + n->cap, 0, (cap - n->cap) * sizeof *grown);
        n->e = grown;
        n->cap = cap;
    }
    n->e[idx] = e;
    n->counts_stale = true;
    if (idx >= n->n)
        n->n = idx + 1;
    *out = idx;
    /* Not in service until its agent has said hello. */
    jz_sched_node_set_up(n->srv->sched, idx, false, NULL);
    return 0;
}

/* --- sending -------------------------------------------------------------------------------- */

static void queue_push(struct jz_nodes *n, struct queue *q, json_t *hdr, const void *data,
                       size_t len)
{
    struct qmsg *qm = calloc(1, sizeof *qm);
    unsigned char *copy = len ? malloc(len) : NULL;
    if (!qm || (len && !copy)) {
        free(qm);
        free(copy);
        jz_log_error("nodes", "out of memory: a local agent message was dropped");
        return;
    }
    if (len)
        memcpy(copy, data, len);
    qm->m.hdr = json_deep_copy(hdr); /* the sender may change its header afterwards */
    qm->m.data = copy;
    qm->m.len = len;
    *q->tail = qm;
    q->tail = &qm->next;
    event_active(q->ev, EV_TIMEOUT, 0);
    (void)n;
}

int jz_nodes_send(struct jz_nodes *n, size_t node, json_t *hdr, const void *data, size_t len)
{
    struct entry *e = entry_at(n, node);
    if (!e || !e->conn || e->link != LINK_UP)
        return JZ_EAGAIN;
    if (e->local) {
        queue_push(n, &n->to_agent, hdr, data, len);
        return 0;
    }
    struct jz_error err = {0};
    if (jz_proto_write(bufferevent_get_output(e->conn->bev), hdr, data, len, &err)) {
        jz_log_error("nodes", "node %s: %s", e->name, err.msg);
        return err.code;
    }
    return 0;
}

int jz_nodes_send_file(struct jz_nodes *n, size_t node, int64_t job, int part, const char *name,
                       const char *path, struct jz_error *err)
{
    struct entry *e = entry_at(n, node);
    if (!e || !e->conn || e->link != LINK_UP || !e->conn->bev)
        return jz_error_set(err, JZ_EAGAIN, "node %s is not connected", jz_nodes_name(n, node));
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) /* out of descriptors or memory may pass; a missing or unreadable file won't */
        return jz_error_set(err,
                            errno == EMFILE || errno == ENFILE || errno == ENOMEM ? JZ_EAGAIN
                                                                                  : JZ_EIO,
                            "cannot read %s: %s", path, strerror(errno));
    /* Sent from the file as the connection drains: a large checkpoint is not read into memory,
     * nor does it hold up the loop. */
    json_t *h = json_pack("{s:s, s:I, s:i, s:s}", "t", "file", "job", (json_int_t)job, "part",
                          part, "name", name);
    int rc = h ? jz_proto_write_file(bufferevent_get_output(e->conn->bev), h, fd, err)
               : jz_error_set(err, JZ_ENOMEM, "out of memory");
    json_decref(h);
    close(fd);
    return rc;
}

/* --- connections ---------------------------------------------------------------------------- */

static void unknown_done(struct jz_nodes *n)
{
    if (n->unknown_conns-- >= MAX_UNKNOWN_CONNS && n->listener)
        evconnlistener_enable(n->listener);
}

static void conn_free(struct conn *c)
{
    if (c == &c->nodes->local)
        return; /* part of the registry, freed with it */
    if (c->hello_timer) /* still waiting for its hello */
        unknown_done(c->nodes);
    jz_proto_reader_clear(&c->reader);
    if (c->hello_timer)
        event_free(c->hello_timer);
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
}

/* Detaches a connection from its node; the node stays up until it has been silent past the
 * timeout, so that a brief loss of the connection does not fail its jobs. */
static void conn_close(struct conn *c)
{
    struct jz_nodes *n = c->nodes;
    if (c->node >= 0) {
        struct entry *e = n->e[c->node];
        if (e && e->conn == c) {
            e->conn = NULL;
            if (e->link == LINK_UP) {
                e->link = LINK_CONNECTING;
                sync_sched(n, (size_t)c->node);
            }
        }
    }
    conn_free(c);
}

static void on_conn_flushed(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_close(c);
}

/* Refuses a hello: the reason goes to the agent and to jazarid's log. */
static void refuse(struct conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(struct conn *c, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    jz_log_warn("nodes", "node agent from %s refused (%d): %s", c->peer, status, msg);
    if (!c->bev)
        return; /* the local agent: nothing to tell, nothing to close */
    json_t *h = json_pack("{s:s, s:i, s:s}", "t", "refuse", "status", status, "error", msg);
    jz_proto_write(bufferevent_get_output(c->bev), h, NULL, 0, NULL);
    json_decref(h);
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setcb(c->bev, NULL, on_conn_flushed, NULL, c);
    bufferevent_enable(c->bev, EV_WRITE);
}

static bool labels_ok(const json_t *labels, char *why, size_t len)
{
    if (!json_is_object(labels) || json_object_size(labels) > JZ_NODE_MAX_LABELS) {
        snprintf(why, len, "labels must be an object of at most %d strings", JZ_NODE_MAX_LABELS);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v) {
        if (!jz_name_is_safe(k, 63) || !json_is_string(v) ||
            !jz_name_is_safe(json_string_value(v), MAX_LABEL_LEN)) {
            snprintf(why, len, "label '%.63s' is not KEY=VALUE of [A-Za-z0-9._-]", k);
            return false;
        }
    }
    return true;
}

/* Checks the join token or credential of a hello for node name. On success *node is the node's
 * index, or -1 for a new node, and *site the site its token binds (new nodes). */
static int check_identity(struct jz_nodes *n, struct conn *c, const json_t *hello,
                          const char *name, ssize_t *node, const char **token_site)
{
    size_t idx;
    bool known = find_entry(n, name, &idx) == 0;
    const char *cred = jz_json_str(hello, "credential", NULL);
    const char *tok = jz_json_str(hello, "join_token", NULL);
    char hash[65];
    if (cred) {
        jz_auth_hash(cred, hash);
        if (!known || n->e[idx]->local || strcmp(hash, n->e[idx]->cred_hash) != 0) {
            refuse(c, 401, "node '%s': credential not accepted", name);
            return JZ_EPERM;
        }
        if (n->e[idx]->revoked) {
            refuse(c, 401, "node '%s' was revoked", name);
            return JZ_EPERM;
        }
        *node = (ssize_t)idx;
        return 0;
    }
    if (!tok) {
        refuse(c, 401, "a join token or credential is required");
        return JZ_EPERM;
    }
    jz_auth_hash(tok, hash);
    json_t *t = json_object_get(n->tokens, hash);
    if (!t || jz_json_int(t, "expires_ms", 0) < jz_time_now_ms()) {
        refuse(c, 401, "join token not accepted (unknown, forged or expired)");
        return JZ_EPERM;
    }
    if (known) {
        refuse(c, 409, "node name '%s' is taken (remove it with 'jazari node rm %s' first, or "
                       "start the agent with the state folder that holds its credential)",
               name, name);
        return JZ_EEXIST;
    }
    *token_site = jz_json_str(t, "site", "default");
    *node = -1;
    return 0;
}

static void deliver(struct jz_nodes *n, struct conn *c, const struct jz_msg *m);

/* A host name, IPv4 or IPv6 address: what MASTER_ADDR may hold. */
static bool address_ok(const char *a)
{
    size_t len = strlen(a);
    if (len == 0 || len > 255)
        return false;
    for (const char *c = a; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '-' || *c == ':' || *c == '_'))
            return false;
    return true;
}

static void accept_hello(struct jz_nodes *n, struct conn *c, const struct jz_msg *m)
{
    const json_t *h = m->hdr;
    const char *name = jz_json_str(h, "name", "");
    const char *site = jz_json_str(h, "site", "");
    const char *xml = jz_json_str(h, "topology", NULL);
    const json_t *labels = json_object_get(h, "labels");
    const char *address = jz_json_str(h, "address", NULL);
    char why[200];
    if (strcmp(jz_msg_type(m), "hello") != 0 || jz_json_int(h, "v", 0) != JZ_PROTO_VERSION) {
        refuse(c, 400, "expected a hello of protocol version %d", JZ_PROTO_VERSION);
        return;
    }
    if (!jz_name_is_safe(name, 63) || (*site && !jz_name_is_safe(site, 63))) {
        refuse(c, 400, "node and site names are 1-63 of [A-Za-z0-9._-]");
        return;
    }
    if (labels && !labels_ok(labels, why, sizeof why)) {
        refuse(c, 400, "%s", why);
        return;
    }
    if (address && !address_ok(address)) {
        refuse(c, 400, "address must be a host name or an IP address");
        return;
    }
    if (c->bev && !c->attached && strcmp(name, JZ_NODE_LOCAL_NAME) == 0 &&
        (n->agent || n->attached)) {
        refuse(c, 409, "node name '%s' is the embedded local node's", name);
        return;
    }
    ssize_t node = -1;
    const char *token_site = NULL;
    bool trusted = !c->bev || c->attached; /* jazarid's own agent, in-process or not */
    if (!trusted && check_identity(n, c, h, name, &node, &token_site))
        return;
    size_t known;
    if (trusted && find_entry(n, name, &known) == 0)
        node = (ssize_t)known;
    if (token_site && *site && strcmp(site, token_site) != 0) {
        refuse(c, 400, "the join token is for site '%s', the agent says '%s'", token_site, site);
        return;
    }
    if (token_site)
        site = token_site;
    if (!*site)
        site = "default";
    if (!xml) {
        refuse(c, 400, "the hello has no topology");
        return;
    }
    struct entry *old = node >= 0 ? n->e[node] : NULL;
    /* The node's agent is connected and was heard from just now: a second agent with the same
     * credential (a copied state folder) must not take over and back, over and over. A
     * restarted agent gets in once the old connection has closed or gone quiet. */
    if (old && old->conn && old->conn != c && old->link == LINK_UP &&
        jz_time_mono_ms() - old->last_seen_mono < 2 * JZ_NODE_HEARTBEAT_S * 1000) {
        refuse(c, 503, "node '%s' is connected from %s already (another agent with its "
                       "credential?); retry later", name, old->conn->peer);
        return;
    }
    bool same_topo = old && strcmp(old->xml, xml) == 0;
    bool same_place = old && strcmp(old->site, site) == 0 &&
                      strcmp(jz_json_str(old->labels, "switch", ""),
                             jz_json_str(labels, "switch", "")) == 0;
    struct entry *e = NULL;
    struct jz_error err = {0};
    if (old && same_topo && same_place) {
        e = old;
    } else {
        if (old) {
            struct jz_sched_node_info info;
            if (jz_sched_node_info(n->srv->sched, (size_t)node, &info, NULL) == 0 &&
                info.running > 0) {
                /* Retryable: once the node has been silent past the timeout its old parts
                 * are lost, and the new hardware can join. */
                refuse(c, 503, "node '%s' has jobs running but its topology, site or switch "
                               "changed; it can join again once they are over", name);
                return;
            }
        }
        e = calloc(1, sizeof *e);
        if (!e) {
            refuse(c, 500, "out of memory");
            return;
        }
        if (topo_get(n, xml, e, &err)) {
            refuse(c, 400, "malformed topology: %s", err.msg);
            entry_free(n, e);
            return;
        }
        jz_strlcpy(e->name, name, sizeof e->name);
        if (old) { /* the same node with new hardware: keep what the operator set */
            memcpy(e->cred_hash, old->cred_hash, sizeof e->cred_hash);
            e->drained = old->drained;
            memcpy(e->drain_reason, old->drain_reason, sizeof e->drain_reason);
            if (old->conn) {
                old->conn->node = -1;
                conn_close(old->conn);
                old->conn = NULL;
            }
            jz_sched_node_remove(n->srv->sched, (size_t)node, NULL);
            old->removed = true;
            n->counts_stale = true;
        }
        size_t idx;
        if (entry_add(n, e, &idx, &err)) {
            refuse(c, 400, "cannot add node '%s': %s", name, err.msg);
            entry_free(n, e);
            return;
        }
        node = (ssize_t)idx;
    }
    e->local = !c->bev;
    e->attached = c->attached;
    jz_strlcpy(e->site, site, sizeof e->site);
    json_decref(e->labels);
    e->labels = labels ? json_deep_copy(labels) : json_object();
    jz_strlcpy(e->address, address ? address : c->peer, sizeof e->address);
    jz_strlcpy(e->description, jz_json_str(h, "description", ""), sizeof e->description);
    jz_strlcpy(e->source, jz_json_str(h, "source", ""), sizeof e->source);
    char credential[JZ_NODE_TOKEN_LEN + 1] = "";
    if (!trusted && !jz_json_str(h, "credential", NULL)) {
        if (jz_auth_new_secret("jzc_", credential, sizeof credential, &err)) {
            refuse(c, 500, "%s", err.msg);
            return;
        }
        jz_auth_hash(credential, e->cred_hash);
    }
    if (e->conn && e->conn != c) { /* the agent reconnected before its old connection died */
        e->conn->node = -1;
        conn_close(e->conn);
    }
    e->conn = c;
    c->node = node;
    e->link = LINK_UP;
    e->last_seen_mono = jz_time_mono_ms();
    e->last_seen_ms = jz_time_now_ms();
    if (c->hello_timer) {
        event_free(c->hello_timer);
        c->hello_timer = NULL;
        unknown_done(n);
    }
    persist(n, e);
    json_t *w = json_pack("{s:s, s:s, s:i}", "t", "welcome", "name", e->name, "heartbeat_s",
                          JZ_NODE_HEARTBEAT_S);
    if (credential[0])
        json_object_set_new(w, "credential", json_string(credential));
    jz_nodes_send(n, (size_t)node, w, NULL, 0);
    json_decref(w);
    jz_log_info("nodes", "node %s (site %s, %s) %s from %s", e->name, e->site, e->description,
                old ? "reconnected" : "joined",
                c->attached ? "jazarid's local agent process" : c->bev ? c->peer : "this process");
    if (n->h.node_hello)
        n->h.node_hello(n->harg, (size_t)node, json_object_get(h, "running"),
                        json_object_get(h, "ended"));
    /* Reconciled: the node may now report what ended while it was away. */
    json_t *synced = json_pack("{s:s}", "t", "synced");
    jz_nodes_send(n, (size_t)node, synced, NULL, 0);
    json_decref(synced);
    sync_sched(n, (size_t)node);
}

/* One message from a node's agent. */
static void deliver(struct jz_nodes *n, struct conn *c, const struct jz_msg *m)
{
    if (c->node < 0) {
        accept_hello(n, c, m);
        return;
    }
    struct entry *e = n->e[c->node];
    e->last_seen_mono = jz_time_mono_ms();
    e->last_seen_ms = jz_time_now_ms();
    if (e->link != LINK_UP) /* back before the timeout: nothing was lost */
        return;
    const char *t = jz_msg_type(m);
    if (strcmp(t, "hb") == 0)
        return;
    int64_t job = jz_json_int(m->hdr, "job", 0);
    int64_t part = jz_json_int(m->hdr, "part", -1);
    if (job <= 0 || part < 0 || part > 1024) {
        jz_log_warn("nodes", "node %s sent a '%.40s' message without a job part", e->name, t);
        return;
    }
    if (n->h.part_msg)
        n->h.part_msg(n->harg, (size_t)c->node, job, (int)part, m);
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct jz_nodes *n = c->nodes;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (!c->closing) {
        struct jz_msg m = {0};
        struct jz_error err = {0};
        /* Until the agent is known, a header is the hello; after, a few KiB at most. */
        int rc = jz_proto_read(&c->reader, in, c->node < 0 ? JZ_PROTO_MAX_HEADER : 256 * 1024,
                               &m, &err);
        if (rc == 0)
            return;
        if (rc < 0) {
            jz_log_warn("nodes", "node agent %s (%s): %s; closing", c->peer,
                        c->node >= 0 ? n->e[c->node]->name : "before hello", err.msg);
            if (c->node < 0) {
                refuse(c, 400, "%s", err.msg);
                return;
            }
            conn_close(c);
            return;
        }
        deliver(n, c, &m);
        jz_msg_clear(&m);
    }
}

static void node_down(struct jz_nodes *n, size_t node, const char *why);

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        struct jz_nodes *n = c->nodes;
        if (c->attached) {
            /* It cannot come back: starting it again needs root, which jazarid gave up. */
            jz_log_error("nodes", "the local node agent (pid %d) exited; the local node is down "
                                  "until jazarid restarts", (int)n->srv->local_agent_pid);
            n->attached = NULL;
            ssize_t node = c->node;
            if (node >= 0) {
                n->e[node]->conn = NULL;
                c->node = -1;
                node_down(n, (size_t)node, "node lost: the local node agent exited");
            }
            conn_free(c);
            return;
        }
        if (c->node >= 0)
            jz_log_info("nodes", "node %s: connection closed", n->e[c->node]->name);
        conn_close(c);
    }
}

static void on_hello_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    jz_log_warn("nodes", "node agent %s sent no hello in %ds; closing", c->peer,
                HELLO_TIMEOUT_S);
    conn_close(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct jz_nodes *n = arg;
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->nodes = n;
    c->node = -1;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof c->peer);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof c->peer);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL_CTX *tls = jz_front_tls(n->srv);
    if (tls) {
        /* The handshake happens before any byte reaches on_conn_read; the hello timer bounds
         * a peer that never completes it. */
        SSL *ssl = SSL_new(tls);
        c->bev = ssl ? bufferevent_openssl_socket_new(n->srv->base, fd, ssl,
                                                      BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        if (!c->bev && ssl)
            SSL_free(ssl);
    } else {
        c->bev = bufferevent_socket_new(n->srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    c->hello_timer = evtimer_new(n->srv->base, on_hello_timeout, c);
    if (!c->bev || !c->hello_timer) {
        if (!c->bev)
            close(fd);
        if (c->hello_timer)
            event_free(c->hello_timer);
        c->hello_timer = NULL;
        conn_free(c);
        return;
    }
    /* Until it says hello a connection may hold a large header: past a bound, new connections
     * wait in the kernel's backlog (agents retry) until some of these are done. */
    if (++n->unknown_conns >= MAX_UNKNOWN_CONNS)
        evconnlistener_disable(n->listener);
    bufferevent_setcb(c->bev, on_conn_read, NULL, on_conn_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    struct timeval tv = {.tv_sec = HELLO_TIMEOUT_S};
    evtimer_add(c->hello_timer, &tv);
    (void)l;
    (void)socklen;
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct jz_nodes *n = arg;
    if (n->listener && n->unknown_conns < MAX_UNKNOWN_CONNS)
        evconnlistener_enable(n->listener);
}

/* accept() failed for want of descriptors (or memory): the connection stays in the backlog and
 * would wake the listener at once, so accepting pauses a moment instead of spinning. The timer
 * is a one-shot of the loop's; jz_nodes_close runs after the loop, so it never fires late. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct jz_nodes *n = arg;
    jz_log_warn("nodes", "cannot accept node agents: %s; pausing accepts for %d ms",
                evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), AGENT_ACCEPT_PAUSE_MS);
    evconnlistener_disable(l);
    struct timeval tv = {.tv_sec = 0, .tv_usec = AGENT_ACCEPT_PAUSE_MS * 1000};
    event_base_once(n->srv->base, -1, EV_TIMEOUT, on_accept_resume, n, &tv);
}

/* --- the local agent ------------------------------------------------------------------------ */

static void local_agent_send(void *arg, json_t *hdr, const void *data, size_t len)
{
    struct jz_nodes *n = arg;
    queue_push(n, &n->from_agent, hdr, data, len);
}

static struct qmsg *queue_take(struct queue *q)
{
    struct qmsg *list = q->head;
    q->head = NULL;
    q->tail = &q->head;
    return list;
}

static void on_from_agent(evutil_socket_t fd, short what, void *arg)
{
    struct jz_nodes *n = arg;
    for (struct qmsg *qm = queue_take(&n->from_agent), *next; qm; qm = next) {
        next = qm->next;
        deliver(n, &n->local, &qm->m);
        jz_msg_clear(&qm->m);
        free(qm);
    }
}

static void on_to_agent(evutil_socket_t fd, short what, void *arg)
{
    struct jz_nodes *n = arg;
    for (struct qmsg *qm = queue_take(&n->to_agent), *next; qm; qm = next) {
        next = qm->next;
        if (strcmp(jz_msg_type(&qm->m), "welcome") == 0)
            jz_agent_connected(n->agent);
        else
            jz_agent_receive(n->agent, &qm->m);
        jz_msg_clear(&qm->m);
        free(qm);
    }
}

static void queue_drop(struct queue *q)
{
    for (struct qmsg *qm = queue_take(q), *next; qm; qm = next) {
        next = qm->next;
        jz_msg_clear(&qm->m);
        free(qm);
    }
    if (q->ev)
        event_free(q->ev);
}

/* The local agent runs as a process of its own (jazarid gave up root): its socket pair is a
 * connection like an agent's, trusted without a credential. */
static int attached_open(struct jz_nodes *n, struct jz_error *err)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    c->nodes = n;
    c->node = -1;
    c->attached = true;
    snprintf(c->peer, sizeof c->peer, "local agent");
    evutil_make_socket_nonblocking(n->srv->local_agent_fd);
    c->bev = bufferevent_socket_new(n->srv->base, n->srv->local_agent_fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        free(c);
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    n->srv->local_agent_fd = -1; /* the connection owns it */
    bufferevent_setcb(c->bev, on_conn_read, NULL, on_conn_event, c);
    n->attached = c;
    return 0;
}

static int local_open(struct jz_nodes *n, struct jz_error *err)
{
    struct jz_server_config *cfg = &n->srv->cfg;
    n->to_agent.tail = &n->to_agent.head;
    n->from_agent.tail = &n->from_agent.head;
    n->to_agent.ev = event_new(n->srv->base, -1, 0, on_to_agent, n);
    n->from_agent.ev = event_new(n->srv->base, -1, 0, on_from_agent, n);
    n->local.nodes = n;
    n->local.node = -1;
    snprintf(n->local.peer, sizeof n->local.peer, "127.0.0.1");
    /* How the other nodes of a gang reach the local one: by this host's name (a single-node job
     * uses loopback anyway). */
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !address_ok(host))
        snprintf(host, sizeof host, "127.0.0.1");
    struct jz_agent_config acfg = {
        .name = JZ_NODE_LOCAL_NAME,
        .state_dir = cfg->state_dir,
        .topology_path = cfg->topology_path[0] ? cfg->topology_path : NULL,
        .worker_path = cfg->worker_path,
        .plugin_dirs = cfg->plugin_dir,
        .site = cfg->local_site[0] ? cfg->local_site : NULL,
        .fallback_backend = cfg->fallback_backend,
        .address = host,
        .ship_files = false, /* its job folders are jazarid's own */
        .server_copies = true, /* and so are the plugin copies */
        .min_free_bytes = cfg->min_free_bytes,
    };
    if (!n->to_agent.ev || !n->from_agent.ev)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    return jz_agent_create(n->srv->base, &acfg, local_agent_send, n, &n->agent, err);
}

/* --- silence ---------------------------------------------------------------------------------- */

static void node_down(struct jz_nodes *n, size_t node, const char *why)
{
    struct entry *e = n->e[node];
    e->link = LINK_DOWN;
    if (e->conn && e->conn != &n->local) {
        e->conn->node = -1;
        conn_close(e->conn);
    }
    e->conn = NULL;
    sync_sched(n, node);
    jz_log_warn("nodes", "node %s is down: %s", e->name, why);
    if (n->h.node_down)
        n->h.node_down(n->harg, node, why);
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
    struct jz_nodes *n = arg;
    int64_t now = jz_time_mono_ms();
    int64_t timeout_ms = n->srv->cfg.node_timeout_s * 1000;
    for (size_t i = 0; i < n->n; i++) {
        struct entry *e = n->e[i];
        if (!e || e->removed || e->local || e->link == LINK_DOWN || e->revoked)
            continue;
        if (now - e->last_seen_mono > timeout_ms) {
            char why[200];
            snprintf(why, sizeof why, "node lost: %s was silent for %llds", e->name,
                     (long long)((now - e->last_seen_mono) / 1000));
            node_down(n, i, why);
        }
    }
}

/* --- opening ---------------------------------------------------------------------------------- */

static int load_token(void *arg, const char *key, json_t *value)
{
    struct jz_nodes *n = arg;
    if (jz_json_int(value, "expires_ms", 0) > jz_time_now_ms())
        json_object_set(n->tokens, key, value);
    return 0;
}

static int load_topology(void *arg, const char *key, json_t *v)
{
    json_object_set(arg, key, json_object_get(v, "xml"));
    return 0;
}

static int load_node(void *arg, const char *key, json_t *v)
{
    struct jz_nodes *n = arg;
    struct jz_error err = {0};
    struct entry *e = calloc(1, sizeof *e);
    const char *xml = json_string_value(
        json_object_get(n->stored_topos, jz_json_str(v, "topology", "")));
    if (!e || !xml || topo_get(n, xml, e, &err)) {
        jz_log_error("nodes", "node %s: stored topology unreadable (%s); skipped", key,
                     e && xml ? err.msg : "missing");
        entry_free(n, e);
        return 0;
    }
    jz_strlcpy(e->name, key, sizeof e->name);
    jz_strlcpy(e->site, jz_json_str(v, "site", "default"), sizeof e->site);
    e->labels = json_deep_copy(json_object_get(v, "labels"));
    if (!json_is_object(e->labels)) {
        json_decref(e->labels);
        e->labels = json_object();
    }
    jz_strlcpy(e->address, jz_json_str(v, "address", ""), sizeof e->address);
    jz_strlcpy(e->description, jz_json_str(v, "description", ""), sizeof e->description);
    jz_strlcpy(e->source, jz_json_str(v, "source", ""), sizeof e->source);
    jz_strlcpy(e->cred_hash, jz_json_str(v, "cred_hash", ""), sizeof e->cred_hash);
    e->drained = jz_json_bool(v, "drained", false);
    jz_strlcpy(e->drain_reason, jz_json_str(v, "drain_reason", ""), sizeof e->drain_reason);
    e->revoked = jz_json_bool(v, "revoked", false);
    /* Its agent has the timeout from now to reconnect before its jobs count as lost. */
    e->link = LINK_CONNECTING;
    e->last_seen_mono = jz_time_mono_ms();
    e->last_seen_ms = 0;
    size_t idx;
    if (entry_add(n, e, &idx, &err)) {
        jz_log_error("nodes", "node %s: %s; skipped", key, err.msg);
        entry_free(n, e);
    }
    return 0;
}

static int listen_agents(struct jz_nodes *n, struct jz_error *err)
{
    struct jz_server_config *cfg = &n->srv->cfg;
    char host[256];
    int port = 0;
    const char *spec = cfg->agent_listen[0] ? cfg->agent_listen : NULL;
    if (spec) {
        const char *colon = strrchr(spec, ':');
        snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
        port = atoi(colon + 1);
    } else {
        jz_strlcpy(host, cfg->listen_host, sizeof host); /* next to the API, any free port */
    }
    if (strcmp(host, "localhost") == 0)
        jz_strlcpy(host, "127.0.0.1", sizeof host);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int sslen;
    char addr[300];
    snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (port < 0 || port > 65535)
        return jz_error_set(err, JZ_EINVAL, "--agent-listen: bad port in '%s'", addr);
    if (evutil_inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        sslen = sizeof *in4;
    } else if (evutil_inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        sslen = sizeof *in6;
    } else {
        return jz_error_set(err, JZ_EINVAL, "--agent-listen: '%s' is not an IP address", host);
    }
    /* Agents get TLS when the API has it; plain only on loopback unless allowed. */
    int rc = jz_front_open(n->srv, err);
    if (rc || (rc = jz_front_check_plain(n->srv, (struct sockaddr *)&ss, addr, "node agents",
                                         err)))
        return rc;
    n->listener = evconnlistener_new_bind(n->srv->base, on_accept, n,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                              LEV_OPT_CLOSE_ON_EXEC,
                                          128, (struct sockaddr *)&ss, sslen);
    if (!n->listener)
        return jz_error_set(err, JZ_EIO, "cannot listen for node agents on %s: %s", addr,
                            strerror(errno));
    evconnlistener_set_error_cb(n->listener, on_accept_error);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(evconnlistener_get_fd(n->listener), (struct sockaddr *)&bound, &blen);
    n->agent_port = ntohs(bound.ss_family == AF_INET6
                              ? ((struct sockaddr_in6 *)&bound)->sin6_port
                              : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

int jz_nodes_open(struct jz_server *srv, struct jz_nodes **out, struct jz_error *err)
{
    struct jz_nodes *n = calloc(1, sizeof *n);
    if (!n)
        return jz_error_set(err, JZ_ENOMEM, "out of memory");
    n->srv = srv;
    n->tokens = json_object();
    int rc;
    n->stored_topos = json_object();
    if ((rc = srv->store->ops->objects_each(srv->store, "join_token", load_token, n, err)) ||
        (rc = srv->store->ops->objects_each(srv->store, "topology", load_topology,
                                            n->stored_topos, err)) ||
        (rc = srv->store->ops->objects_each(srv->store, "node", load_node, n, err)))
        goto fail;
    json_decref(n->stored_topos); /* parsed now, or not needed */
    n->stored_topos = NULL;
    if (srv->local_agent_fd >= 0)
        rc = attached_open(n, err);
    else if (!srv->cfg.no_local_node)
        rc = local_open(n, err);
    if (rc)
        goto fail;
    if ((rc = listen_agents(n, err)))
        goto fail;
    n->check_timer = event_new(srv->base, -1, EV_PERSIST, on_check, n);
    *out = n;
    return 0;
fail:
    jz_nodes_close(n);
    return rc;
}

void jz_nodes_start(struct jz_nodes *n, const struct jz_nodes_handler *h, void *arg)
{
    n->h = *h;
    n->harg = arg;
    n->started = true;
    struct timeval tv = {.tv_sec = 1};
    evtimer_add(n->check_timer, &tv);
    if (n->attached) /* its hello is waiting in the socket */
        bufferevent_enable(n->attached->bev, EV_READ | EV_WRITE);
    if (n->agent) {
        json_t *hello = jz_agent_hello(n->agent);
        struct jz_msg m = {.hdr = hello};
        accept_hello(n, &n->local, &m);
        json_decref(hello);
    }
}

void jz_nodes_close(struct jz_nodes *n)
{
    if (!n)
        return;
    if (n->listener)
        evconnlistener_free(n->listener);
    if (n->attached && n->attached->node < 0) /* else closed with its node below */
        conn_free(n->attached);
    n->attached = NULL;
    for (size_t i = 0; i < n->n; i++) {
        struct entry *e = n->e[i];
        if (e && e->conn && e->conn != &n->local) {
            e->conn->node = -1;
            conn_close(e->conn);
        }
    }
    /* The local agent process sees its socket close, kills its jobs and exits: wait for it
     * (a while), so that a restart right after finds nothing of them. */
    pid_t agent = n->srv->local_agent_pid;
    for (int i = 0; agent > 0 && i < 1000; i++) {
        if (waitpid(agent, NULL, WNOHANG) != 0)
            break;
        usleep(10 * 1000);
    }
    jz_agent_destroy(n->agent);
    queue_drop(&n->to_agent);
    queue_drop(&n->from_agent);
    if (n->local.hello_timer)
        event_free(n->local.hello_timer);
    if (n->check_timer)
        event_free(n->check_timer);
    /* Topologies last: the scheduler (destroyed before) borrowed them. */
    for (size_t i = 0; i < n->n; i++)
        entry_free(n, n->e[i]);
    free(n->e);
    json_decref(n->tokens);
    json_decref(n->stored_topos);
    free(n);
}

/* --- queries ------------------------------------------------------------------------------- */

int jz_nodes_find(const struct jz_nodes *n, const char *name, size_t *node)
{
    return find_entry(n, name, node);
}

const char *jz_nodes_name(const struct jz_nodes *n, size_t node)
{
    struct entry *e = entry_at(n, node);
    return e ? e->name : "?";
}

const char *jz_nodes_address(const struct jz_nodes *n, size_t node)
{
    struct entry *e = entry_at(n, node);
    return e && e->address[0] ? e->address : "127.0.0.1";
}

bool jz_nodes_is_local(const struct jz_nodes *n, size_t node)
{
    struct entry *e = entry_at(n, node);
    return e && e->local;
}

const struct jz_topo *jz_nodes_topo(const struct jz_nodes *n, size_t node)
{
    struct entry *e = entry_at(n, node);
    return e ? e->topo : NULL;
}

static void recount(struct jz_nodes *n)
{
    if (!n->counts_stale)
        return;
    n->listed = 0;
    n->max_gpus = 0;
    for (size_t i = 0; i < n->n; i++) {
        const struct entry *e = n->e[i];
        if (!e || e->removed)
            continue;
        n->listed++;
        if (!e->revoked && jz_topo_gpu_count(e->topo) > n->max_gpus)
            n->max_gpus = (unsigned)jz_topo_gpu_count(e->topo);
    }
    n->counts_stale = false;
}

unsigned jz_nodes_max_gpus(struct jz_nodes *n)
{
    recount(n);
    return n->max_gpus;
}

size_t jz_nodes_listed(struct jz_nodes *n)
{
    recount(n);
    return n->listed;
}

int jz_nodes_agent_port(const struct jz_nodes *n)
{
    return n->agent_port;
}

static const char *state_name(const struct entry *e, size_t running)
{
    if (e->revoked)
        return "revoked";
    if (e->link != LINK_UP)
        return "down";
    if (e->drained)
        return running ? "draining" : "drained";
    return "up";
}

/* One node's object (new reference). */
static json_t *node_json(struct jz_nodes *n, size_t node)
{
    struct entry *e = entry_at(n, node);
    if (!e)
        return NULL;
    struct jz_sched_node_info info = {0};
    jz_sched_node_info(n->srv->sched, node, &info, NULL);
    const struct jz_topo *topo = e->topo;
    size_t ng = jz_topo_gpu_count(topo);
    json_t *gpus = json_array(), *models = json_object();
    const char *top_model = NULL;
    json_int_t top = 0;
    for (size_t i = 0; i < ng; i++) {
        const struct jz_topo_gpu *g = jz_topo_gpu_at(topo, i);
        json_array_append_new(
            gpus, json_pack("{s:i, s:s, s:s, s:I, s:i, s:s, s:n}", "index", (int)i, "pci_bus_id",
                            g->pci_bus_id, "model", g->model, "memory_bytes",
                            (json_int_t)g->memory_bytes, "numa", g->numa_os, "os_names",
                            g->os_names, "job"));
        json_int_t c = jz_json_int(models, g->model, 0) + 1;
        json_object_set_new(models, g->model, json_integer(c));
        if (c > top) {
            top = c;
            top_model = g->model;
        }
    }
    char hb[40] = "";
    if (e->last_seen_ms)
        jz_time_format_iso(e->last_seen_ms, hb, sizeof hb);
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:O, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s?, s:I, s:s?, s:s?, "
        "s:o}",
        "name", e->name, "site", e->site, "state", state_name(e, info.running), "labels",
        e->labels, "source", e->source, "description", e->description, "address", e->address,
        "cpus", (json_int_t)jz_topo_cpu_count(topo), "cores",
        (json_int_t)jz_topo_core_count(topo), "cores_free", (json_int_t)info.free_cores,
        "gpus_total", (json_int_t)ng, "gpus_free", (json_int_t)info.free_gpus, "gpu_model",
        top_model, "running_jobs", (json_int_t)info.running, "last_heartbeat", hb[0] ? hb : NULL,
        "drain_reason", e->drained ? e->drain_reason : NULL, "gpus", gpus);
    json_decref(models);
    return j;
}

json_t *jz_nodes_json(struct jz_nodes *n, const char *site)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n->n; i++) {
        struct entry *e = n->e[i];
        if (e && !e->removed && (!site || strcmp(site, e->site) == 0))
            json_array_append_new(arr, node_json(n, i));
    }
    return json_pack("{s:o}", "nodes", arr);
}

/* --- administration ---------------------------------------------------------------------------- */

int jz_nodes_token_new(struct jz_nodes *n, const char *site, int64_t ttl_s, char *token,
                       int64_t *expires_ms, struct jz_error *err)
{
    char hash[65];
    int rc = jz_auth_new_secret("jzn_", token, JZ_NODE_TOKEN_LEN + 1, err);
    if (rc)
        return rc;
    jz_auth_hash(token, hash);
    int64_t exp = jz_time_now_ms() + ttl_s * 1000;
    json_t *v = json_pack("{s:s, s:I, s:I}", "site", site, "expires_ms", (json_int_t)exp,
                          "created_ms", (json_int_t)jz_time_now_ms());
    if (!v || (rc = n->srv->store->ops->object_put(n->srv->store, "join_token", hash, v, err))) {
        json_decref(v);
        return rc ? rc : jz_error_set(err, JZ_ENOMEM, "out of memory");
    }
    json_object_set_new(n->tokens, hash, v);
    jz_server_request_commit(n->srv);
    *expires_ms = exp;
    return 0;
}

int jz_nodes_drain(struct jz_nodes *n, size_t node, const char *reason, struct jz_error *err)
{
    struct entry *e = entry_at(n, node);
    if (!e || e->removed)
        return jz_error_set(err, JZ_ENOENT, "no such node");
    e->drained = true;
    jz_strlcpy(e->drain_reason, reason, sizeof e->drain_reason);
    persist(n, e);
    sync_sched(n, node);
    jz_log_info("nodes", "node %s drained: %s", e->name, reason);
    return 0;
}

int jz_nodes_resume(struct jz_nodes *n, size_t node, struct jz_error *err)
{
    struct entry *e = entry_at(n, node);
    if (!e || e->removed)
        return jz_error_set(err, JZ_ENOENT, "no such node");
    e->drained = false;
    e->drain_reason[0] = '\0';
    persist(n, e);
    sync_sched(n, node);
    jz_log_info("nodes", "node %s resumed", e->name);
    return 0;
}

int jz_nodes_revoke(struct jz_nodes *n, size_t node, struct jz_error *err)
{
    struct entry *e = entry_at(n, node);
    if (!e || e->removed)
        return jz_error_set(err, JZ_ENOENT, "no such node");
    if (e->local || e->attached)
        return jz_error_set(err, JZ_EPERM, "the embedded local node cannot be revoked; drain it");
    e->revoked = true;
    n->counts_stale = true;
    persist(n, e);
    jz_log_warn("nodes", "node %s revoked", e->name);
    node_down(n, node, "node lost: its agent was revoked");
    return 0;
}

int jz_nodes_remove(struct jz_nodes *n, size_t node, struct jz_error *err)
{
    struct entry *e = entry_at(n, node);
    if (!e || e->removed)
        return jz_error_set(err, JZ_ENOENT, "no such node");
    if (e->local || e->attached)
        return jz_error_set(err, JZ_EPERM, "the embedded local node cannot be removed; drain it");
    int rc = jz_sched_node_remove(n->srv->sched, node, err);
    if (rc == JZ_EBUSY)
        return jz_error_set(err, JZ_EBUSY, "jobs still run on node %s; drain it and let them "
                                           "end first", e->name);
    if (rc)
        return rc;
    if (e->conn) {
        e->conn->node = -1;
        conn_close(e->conn);
        e->conn = NULL;
    }
    e->removed = true;
    n->counts_stale = true;
    persist(n, e);
    jz_log_info("nodes", "node %s removed", e->name);
    return 0;
}
