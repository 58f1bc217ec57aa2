/* Handlers for nodes: listing, operators' drain/resume/remove/revoke, join tokens, and the
 * agent endpoint discovery that jazari-node uses. */
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/strutil.h"
#include "common/time.h"
#include "server/api.h"
#include "server/http.h"
#include "server/jobs.h"
#include "server/nodes.h"

#define MAX_TOKEN_TTL_S (366LL * 86400)
#define DEFAULT_TOKEN_TTL_S 86400

void jz_api_nodes(struct jz_req *r)
{
    const char *site = jz_req_query(r, "site");
    if (site && !jz_name_is_safe(site, 63)) {
        jz_http_reply_error(r, 400, "invalid", "site", "site: 1-63 of [A-Za-z0-9._-]");
        return;
    }
    jz_http_reply_json(r, 200, jz_jobs_nodes_json(r->srv->jobs, site));
}

/* The node named by the path's third segment, or NULL after a 404. */
static bool node_from_path(struct jz_req *r, size_t *node)
{
    const char *name = r->seg[2];
    if (!jz_name_is_safe(name, 63) || jz_nodes_find(r->srv->nodes, name, node) != 0) {
        char clean[64];
        jz_strlcpy(clean, name, sizeof clean);
        for (char *c = clean; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                *c = '?';
        jz_http_reply_error(r, 404, "not_found", "name", "no node '%s'", clean);
        return false;
    }
    return true;
}

static void reply_node(struct jz_req *r, size_t node, int status)
{
    json_t *all = jz_jobs_nodes_json(r->srv->jobs, NULL);
    json_t *found = NULL;
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(all, "nodes"), i, n) {
        if (strcmp(jz_json_str(n, "name", ""), jz_nodes_name(r->srv->nodes, node)) == 0)
            found = json_incref(n);
    }
    json_decref(all);
    jz_http_reply_json(r, status, found ? found : json_object());
}

void jz_api_node_drain(struct jz_req *r)
{
    size_t node;
    if (!node_from_path(r, &node))
        return;
    json_t *jr = json_object_get(r->body, "reason");
    const char *reason = json_string_value(jr);
    if (!reason || !*reason || strlen(reason) > 256) {
        jz_http_reply_error(r, 400, "invalid", "reason", "reason: required, 1-256 bytes");
        return;
    }
    for (const char *c = reason; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            jz_http_reply_error(r, 400, "invalid", "reason",
                                "reason: control characters are not allowed");
            return;
        }
    struct jz_error err = {0};
    if (jz_nodes_drain(r->srv->nodes, node, reason, &err)) {
        jz_http_reply_jz_error(r, &err, "name");
        return;
    }
    jz_api_audit(r, "node.drain", jz_nodes_name(r->srv->nodes, node),
                 json_pack("{s:s}", "reason", reason));
    reply_node(r, node, 200);
}

/* An operation on the node named in the path, answered with the node as it is now. */
static void node_op(struct jz_req *r, int (*op)(struct jz_nodes *, size_t, struct jz_error *),
                    const char *action)
{
    size_t node;
    struct jz_error err = {0};
    if (!node_from_path(r, &node))
        return;
    if (op(r->srv->nodes, node, &err)) {
        jz_http_reply_jz_error(r, &err, "name");
        return;
    }
    jz_api_audit(r, action, jz_nodes_name(r->srv->nodes, node), NULL);
    reply_node(r, node, 200);
}

void jz_api_node_resume(struct jz_req *r)
{
    node_op(r, jz_nodes_resume, "node.resume");
}

void jz_api_node_revoke(struct jz_req *r)
{
    node_op(r, jz_nodes_revoke, "node.revoke");
}

void jz_api_node_delete(struct jz_req *r)
{
    size_t node;
    struct jz_error err = {0};
    if (!node_from_path(r, &node))
        return;
    char name[64];
    jz_strlcpy(name, jz_nodes_name(r->srv->nodes, node), sizeof name);
    if (jz_nodes_remove(r->srv->nodes, node, &err)) {
        jz_http_reply_jz_error(r, &err, "name"); /* 409 while jobs run there */
        return;
    }
    jz_api_audit(r, "node.rm", name, NULL);
    jz_http_reply_json(r, 200, json_pack("{s:s}", "removed", name));
}

void jz_api_admin_node_tokens(struct jz_req *r)
{
    static const char *const keys[] = {"site", "ttl_s", NULL};
    if (!jz_http_body_only(r, keys))
        return;
    json_t *jsite = json_object_get(r->body, "site"), *jttl = json_object_get(r->body, "ttl_s");
    const char *site = "default";
    if (jsite && !json_is_null(jsite)) {
        if (!json_is_string(jsite) || !jz_name_is_safe(json_string_value(jsite), 63)) {
            jz_http_reply_error(r, 400, "invalid", "site", "site: 1-63 of [A-Za-z0-9._-]");
            return;
        }
        site = json_string_value(jsite);
    }
    int64_t ttl = DEFAULT_TOKEN_TTL_S;
    if (jttl && !json_is_null(jttl)) {
        if (!json_is_integer(jttl) || json_integer_value(jttl) < 1 ||
            json_integer_value(jttl) > MAX_TOKEN_TTL_S) {
            jz_http_reply_error(r, 400, "invalid", "ttl_s",
                                "ttl_s: an integer between 1 and %lld", MAX_TOKEN_TTL_S);
            return;
        }
        ttl = json_integer_value(jttl);
    }
    char token[JZ_NODE_TOKEN_LEN + 1];
    int64_t expires = 0;
    struct jz_error err = {0};
    if (jz_nodes_token_new(r->srv->nodes, site, ttl, token, &expires, &err)) {
        jz_http_reply_jz_error(r, &err, NULL);
        return;
    }
    char ts[40];
    jz_time_format_iso(expires, ts, sizeof ts);
    /* Never the token itself. */
    jz_api_audit(r, "node_token.create", site,
                 json_pack("{s:s, s:I}", "expires", ts, "ttl_s", (json_int_t)ttl));
    jz_http_reply_json(r, 201, json_pack("{s:s, s:s, s:s}", "token", token, "site", site,
                                         "expires", ts));
}

void jz_api_agent(struct jz_req *r)
{
    jz_http_reply_json(r, 200, json_pack("{s:i, s:i}", "port",
                                         jz_nodes_agent_port(r->srv->nodes), "protocol", 1));
}
