/* jazari-node: the agent of one GPU node. It joins jazarid with a join token (then with the
 * credential jazarid gave it, kept in its state folder), reports its hwloc topology, heartbeats,
 * and runs the job parts jazarid gives it (agent.h). Its jobs keep running while jazarid is away:
 * it reconnects, and jazarid reconciles. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/http.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pwd.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/strutil.h"
#include "common/version.h"
#include "common/tls.h"
#include "node/agent.h"
#include "node/proto.h"

#define RETRY_MIN_MS 200
#define RETRY_MAX_MS 5000

struct node_main {
    struct event_base *base;
    struct evdns_base *dns;
    char host[256];
    int http_port;
    char state_dir[1024];
    char join_token[128];
    char credential[128];
    struct jz_agent *agent;
    struct bufferevent *bev;
    struct jz_proto_reader reader;
    bool welcomed;
    int retry_ms;
    int heartbeat_s;
    struct event *retry_ev, *hb_ev, *sigterm_ev, *sigint_ev, *sigusr1_ev, *sighup_ev;
    struct evhttp_connection *http;
    SSL_CTX *tls;            /* https:// --server: discovery and the agent connection use TLS */
    char tls_error[256];     /* the last TLS failure logged (each new one is logged once) */
    int exit_code;
    bool attached; /* --attach-fd: jazarid's own local agent, over a socket pair it made */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: jazari-node --server URL [options]\n"
            "  --server URL           jazarid's API, e.g. https://head:8600 (or http:// on a\n"
            "                         loopback or trusted network)\n"
            "  --ca FILE              CA certificate(s) that jazarid's TLS certificate is\n"
            "                         checked against (default: the system's)\n"
            "  --join-token TOKEN     from 'jazari admin node token' (needed to join once; the\n"
            "                         credential jazarid then gives is kept in --state-dir)\n"
            "  --join-token-file FILE read the join token from FILE\n"
            "  --name NAME            node name (default: the host name)\n"
            "  --topology FILE.xml    declare the GPUs from an hwloc XML file (default: discover)\n"
            "  --site SITE            site (default: the join token's)\n"
            "  --label KEY=VALUE      a label (repeatable; 'switch' groups nodes for gangs)\n"
            "  --address ADDR         how other nodes reach this one (default: as jazarid sees it)\n"
            "  --state-dir DIR        job folders and the credential (default ./jazari-node-state)\n"
            "  --plugin-dir DIRS      ':'-separated plugin folders (default: the built-in ones)\n"
            "  --worker PATH          the jazari-worker executable (default: next to jazari-node)\n"
            "  --fallback-backend B   backend for declared GPUs: cpu or opencl (default cpu)\n"
            "  --no-confine           run jobs as this agent's user, without cgroups (the\n"
            "                         default when not root; for development only)\n"
            "  --deny-user ACCOUNT    jobs never run as ACCOUNT (jazarid's own, on its node)\n"
            "  --server-copies DIR    jazarid's private plugin copies (STATE/plugins; its own\n"
            "                         node, with --attach-fd): jobs run the copy of their version\n"
            "  --min-free-mb N        free disk the state folder keeps; below it the job that\n"
            "                         writes most fails with 'disk full' (default 256)\n"
            "  --log-level LEVEL      error, warn, info (default) or debug\n"
            "  --log-file DEST        a file (SIGUSR1 or SIGHUP reopens it), 'journal' or\n"
            "                         'journal:SOCKET' (default: standard error)\n"
            "  --version              print the version\n");
}

static void schedule_connect(struct node_main *m);
static bool log_tls_error(struct node_main *m, struct bufferevent *bev);

static void agent_send(void *arg, json_t *hdr, const void *data, size_t len)
{
    struct node_main *m = arg;
    if (!m->bev || !m->welcomed)
        return;
    struct jz_error err = {0};
    if (jz_proto_write(bufferevent_get_output(m->bev), hdr, data, len, &err))
        jz_log_error("node", "%s", err.msg);
}

static void agent_send_file(void *arg, json_t *hdr, int fd)
{
    struct node_main *m = arg;
    if (!m->bev || !m->welcomed)
        return;
    struct jz_error err = {0};
    if (jz_proto_write_file(bufferevent_get_output(m->bev), hdr, fd, &err))
        jz_log_error("node", "%s", err.msg);
}

static void drop_connection(struct node_main *m)
{
    if (m->bev) {
        bufferevent_free(m->bev);
        m->bev = NULL;
    }
    jz_proto_reader_clear(&m->reader);
    if (m->welcomed)
        jz_agent_disconnected(m->agent);
    m->welcomed = false;
    event_del(m->hb_ev);
}

static void save_credential(struct node_main *m, const char *cred)
{
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/credential", m->state_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f) {
        fchmod(fileno(f), 0600);
        fprintf(f, "%s\n", cred);
        if (fclose(f) == 0 && rename(tmp, path) == 0) {
            jz_strlcpy(m->credential, cred, sizeof m->credential);
            return;
        }
    }
    jz_log_error("node", "cannot save the credential in %s: %s", path, strerror(errno));
    jz_strlcpy(m->credential, cred, sizeof m->credential);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct node_main *m = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        struct jz_msg msg = {0};
        struct jz_error err = {0};
        int rc = jz_proto_read(&m->reader, in, JZ_PROTO_MAX_HEADER, &msg, &err);
        if (rc == 0)
            return;
        if (rc < 0) {
            jz_log_error("node", "jazarid sent a malformed message: %s; reconnecting", err.msg);
            drop_connection(m);
            schedule_connect(m);
            return;
        }
        const char *t = jz_msg_type(&msg);
        if (strcmp(t, "welcome") == 0) {
            const char *cred = jz_json_str(msg.hdr, "credential", NULL);
            if (cred)
                save_credential(m, cred);
            m->heartbeat_s = (int)jz_json_int(msg.hdr, "heartbeat_s", 2);
            if (m->heartbeat_s < 1 || m->heartbeat_s > 60)
                m->heartbeat_s = 2;
            struct timeval tv = {.tv_sec = m->heartbeat_s};
            event_add(m->hb_ev, &tv);
            m->welcomed = true;
            m->retry_ms = RETRY_MIN_MS;
            jz_log_info("node", "joined jazarid at %s as %s", m->host, jz_agent_name(m->agent));
            jz_agent_connected(m->agent);
        } else if (strcmp(t, "refuse") == 0) {
            int status = (int)jz_json_int(msg.hdr, "status", 400);
            jz_log_error("node", "jazarid refused this node: %s",
                         jz_json_str(msg.hdr, "error", "?"));
            jz_msg_clear(&msg);
            drop_connection(m);
            if (status >= 500) {
                schedule_connect(m);
            } else if (status == 401 && m->credential[0] && m->join_token[0]) {
                /* jazarid may have lost our registration (a crash before it was durable):
                 * join again with the token. */
                jz_log_warn("node", "credential refused; joining again with the join token");
                m->credential[0] = '\0';
                schedule_connect(m);
            } else {
                /* A refusal of who we are does not change by retrying. */
                m->exit_code = 1;
                event_base_loopexit(m->base, NULL);
            }
            return;
        } else if (m->welcomed) {
            jz_agent_receive(m->agent, &msg);
        }
        jz_msg_clear(&msg);
        if (!m->bev)
            return;
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct node_main *m = arg;
    if (what & BEV_EVENT_CONNECTED) {
        int fd = (int)bufferevent_getfd(bev);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        json_t *hello = jz_agent_hello(m->agent);
        if (m->credential[0])
            json_object_set_new(hello, "credential", json_string(m->credential));
        else if (m->join_token[0])
            json_object_set_new(hello, "join_token", json_string(m->join_token));
        jz_proto_write(bufferevent_get_output(bev), hello, NULL, 0, NULL);
        json_decref(hello);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (m->welcomed && !m->attached)
            jz_log_warn("node", "lost the connection to jazarid; reconnecting");
        else
            log_tls_error(m, bev);
        drop_connection(m);
        schedule_connect(m);
    }
}

/* Logs a TLS failure with jazarid (certificate refused, handshake failed) once, not at every
 * retry; returns false when bev had none to tell. */
static bool log_tls_error(struct node_main *m, struct bufferevent *bev)
{
    if (!m->tls || !bev)
        return false;
    char why[256] = "";
    unsigned long code = bufferevent_get_openssl_error(bev);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (!code && (!ssl || SSL_get_verify_result(ssl) == X509_V_OK))
        return false;
    jz_tls_error_text(ssl, code, why, sizeof why);
    while (bufferevent_get_openssl_error(bev))
        ;
    if (!why[0] || strcmp(why, m->tls_error) == 0)
        return why[0] != 0;
    jz_log_error("node", "TLS with jazarid at %s failed: %s%s", m->host, why,
                 strstr(why, "certificate") ? " (is --ca jazarid's CA?)" : "");
    jz_strlcpy(m->tls_error, why, sizeof m->tls_error);
    return true;
}

/* A bufferevent to jazarid: plain, or TLS that checks jazarid's certificate names m->host. */
static struct bufferevent *new_bev(struct node_main *m)
{
    if (!m->tls)
        return bufferevent_socket_new(m->base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct jz_error err = {0};
    SSL *ssl = jz_tls_client_ssl(m->tls, m->host, &err);
    if (!ssl) {
        jz_log_error("node", "%s", err.msg);
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        m->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev)
        SSL_free(ssl);
    return bev;
}

static void connect_agent_port(struct node_main *m, int port)
{
    m->bev = new_bev(m);
    if (!m->bev) {
        schedule_connect(m);
        return;
    }
    bufferevent_setcb(m->bev, on_read, NULL, on_event, m);
    bufferevent_enable(m->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect_hostname(m->bev, m->dns, AF_UNSPEC, m->host, port) != 0) {
        drop_connection(m);
        schedule_connect(m);
    }
}

/* jazarid publishes where agents connect at GET /v1/agent: a restarted jazarid may listen for
 * agents on another port, the API URL stays what operators configure. */
static void on_discovered(struct evhttp_request *req, void *arg)
{
    struct node_main *m = arg;
    int port = -1;
    if (req && evhttp_request_get_response_code(req) == 200) {
        struct evbuffer *b = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(b);
        if (len < 4096) {
            char text[4096];
            evbuffer_copyout(b, text, len);
            json_t *j = jz_json_parse(text, len, 4, NULL);
            port = (int)jz_json_int(j, "port", -1);
            json_decref(j);
        }
    }
    if (port <= 0 || port > 65535) {
        if (!log_tls_error(m, m->http ? evhttp_connection_get_bufferevent(m->http) : NULL))
            jz_log_debug("node", "jazarid at %s:%d does not answer yet", m->host, m->http_port);
        schedule_connect(m);
        return;
    }
    connect_agent_port(m, port);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct node_main *m = arg;
    if (m->http)
        evhttp_connection_free(m->http);
    m->http = NULL;
    struct bufferevent *bev = m->tls ? new_bev(m) : NULL;
    if (!m->tls || bev)
        m->http = evhttp_connection_base_bufferevent_new(m->base, m->dns, bev, m->host,
                                                         (unsigned short)m->http_port);
    struct evhttp_request *req = m->http ? evhttp_request_new(on_discovered, m) : NULL;
    if (!req) {
        schedule_connect(m);
        return;
    }
    evhttp_connection_set_timeout(m->http, 5);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Host", m->host);
    if (evhttp_make_request(m->http, req, EVHTTP_REQ_GET, "/v1/agent") != 0)
        schedule_connect(m);
}

static void schedule_connect(struct node_main *m)
{
    if (m->attached) { /* jazarid is gone (or refused us): its local agent ends with it */
        jz_log_info("node", "jazarid closed the local agent's socket: stopping");
        event_base_loopexit(m->base, NULL);
        return;
    }
    struct timeval tv = {.tv_sec = m->retry_ms / 1000, .tv_usec = (m->retry_ms % 1000) * 1000};
    event_add(m->retry_ev, &tv);
    m->retry_ms = m->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : m->retry_ms * 2;
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct node_main *m = arg;
    if (!m->bev || !m->welcomed)
        return;
    json_t *h = json_pack("{s:s, s:I}", "t", "hb", "running",
                          (json_int_t)jz_agent_running(m->agent));
    jz_proto_write(bufferevent_get_output(m->bev), h, NULL, 0, NULL);
    json_decref(h);
    struct timeval tv = {.tv_sec = m->heartbeat_s};
    event_add(m->hb_ev, &tv);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct node_main *m = arg;
    jz_log_info("node", "signal %d: stopping (running jobs are killed)", (int)sig);
    event_base_loopexit(m->base, NULL);
}

/* SIGUSR1 (logrotate) and SIGHUP (a reload, which an agent has nothing else to do for):
 * reopen the log file under its name. */
static void on_reopen(evutil_socket_t sig, short what, void *arg)
{
    struct jz_error err = {0};
    if (jz_log_reopen(&err))
        jz_log_error("node", "signal %d: log not reopened: %s", (int)sig, err.msg);
    else
        jz_log_info("node", "signal %d: log reopened", (int)sig);
}

static int parse_url(const char *url, char *host, size_t hlen, int *port, bool *tls)
{
    const char *p = url;
    *tls = strncmp(p, "https://", 8) == 0;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (*tls)
        p += 8;
    else if (strstr(p, "://"))
        return -1;
    const char *end = p + strcspn(p, "/");
    const char *colon = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return -1;
        colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
        snprintf(host, hlen, "%.*s", (int)(close - p - 1), p + 1);
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        snprintf(host, hlen, "%.*s", (int)((colon ? colon : end) - p), p);
    }
    *port = colon ? atoi(colon + 1) : *tls ? 443 : 80;
    return host[0] && *port > 0 && *port < 65536 ? 0 : -1;
}

static int read_first_line(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int rc = fgets(out, (int)len, f) ? 0 : -1;
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return rc == 0 && out[0] ? 0 : -1;
}

/* The agent's life; labels (owned by main) collects the --label options. */
static int run(int argc, char **argv, json_t *labels)
{
    static struct node_main m;
    m.retry_ms = RETRY_MIN_MS;
    m.heartbeat_s = 2;
    const char *server = NULL, *name = NULL, *topology = NULL, *site = NULL, *address = NULL;
    const char *plugin_dir = NULL, *worker = NULL, *fallback = "cpu";
    const char *server_copies = NULL;
    const char *state_dir = "jazari-node-state";
    const char *log_file = NULL;
    int level = JZ_SEV_INFO;
    int attach_fd = -1;
    const char *ca = NULL;
    bool no_confine = false;
    uid_t deny_uid = (uid_t)-1;
    long long min_free_mb = 256;
    enum { O_SERVER = 256, O_TOKEN, O_TOKEN_FILE, O_NAME, O_TOPO, O_SITE, O_LABEL, O_ADDRESS,
           O_STATE, O_PLUGINS, O_WORKER, O_FALLBACK, O_LOGLEVEL, O_VERSION, O_ATTACH,
           O_NO_CONFINE, O_MIN_FREE, O_CA, O_DENY_USER, O_LOGFILE, O_SERVER_COPIES };
    static const struct option opts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"join-token", required_argument, NULL, O_TOKEN},
        {"join-token-file", required_argument, NULL, O_TOKEN_FILE},
        {"name", required_argument, NULL, O_NAME},
        {"topology", required_argument, NULL, O_TOPO},
        {"site", required_argument, NULL, O_SITE},
        {"label", required_argument, NULL, O_LABEL},
        {"address", required_argument, NULL, O_ADDRESS},
        {"state-dir", required_argument, NULL, O_STATE},
        {"plugin-dir", required_argument, NULL, O_PLUGINS},
        {"worker", required_argument, NULL, O_WORKER},
        {"fallback-backend", required_argument, NULL, O_FALLBACK},
        {"log-level", required_argument, NULL, O_LOGLEVEL},
        {"log-file", required_argument, NULL, O_LOGFILE},
        {"version", no_argument, NULL, O_VERSION},
        {"attach-fd", required_argument, NULL, O_ATTACH},
        {"no-confine", no_argument, NULL, O_NO_CONFINE},
        {"min-free-mb", required_argument, NULL, O_MIN_FREE},
        {"deny-user", required_argument, NULL, O_DENY_USER},
        {"server-copies", required_argument, NULL, O_SERVER_COPIES},
        {"ca", required_argument, NULL, O_CA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_SERVER: server = optarg; break;
        case O_TOKEN:
            if (!jz_strlcpy(m.join_token, optarg, sizeof m.join_token)) {
                fprintf(stderr, "jazari-node: --join-token is too long\n");
                return 2;
            }
            break;
        case O_TOKEN_FILE:
            if (read_first_line(optarg, m.join_token, sizeof m.join_token)) {
                fprintf(stderr, "jazari-node: cannot read a token from %s\n", optarg);
                return 2;
            }
            break;
        case O_NAME: name = optarg; break;
        case O_TOPO: topology = optarg; break;
        case O_SITE: site = optarg; break;
        case O_LABEL: {
            const char *eq = strchr(optarg, '=');
            char key[64];
            if (!eq || (size_t)(eq - optarg) >= sizeof key) {
                fprintf(stderr, "jazari-node: --label wants KEY=VALUE, not '%s'\n", optarg);
                return 2;
            }
            snprintf(key, sizeof key, "%.*s", (int)(eq - optarg), optarg);
            if (!jz_name_is_safe(key, 63) || !jz_name_is_safe(eq + 1, 128)) {
                fprintf(stderr, "jazari-node: --label %s: KEY and VALUE are [A-Za-z0-9._-]\n",
                        optarg);
                return 2;
            }
            json_object_set_new(labels, key, json_string(eq + 1));
            break;
        }
        case O_ADDRESS: address = optarg; break;
        case O_STATE: state_dir = optarg; break;
        case O_PLUGINS: plugin_dir = optarg; break;
        case O_SERVER_COPIES: server_copies = optarg; break;
        case O_WORKER: worker = optarg; break;
        case O_FALLBACK:
            fallback = optarg;
            if (strcmp(fallback, "cpu") != 0 && strcmp(fallback, "opencl") != 0) {
                fprintf(stderr, "jazari-node: --fallback-backend is cpu or opencl\n");
                return 2;
            }
            break;
        case O_LOGFILE: log_file = optarg; break;
        case O_LOGLEVEL:
            level = jz_log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr, "jazari-node: bad --log-level '%s'\n", optarg);
                return 2;
            }
            break;
        case O_ATTACH: {
            char *end;
            long fd = strtol(optarg, &end, 10);
            if (*end || fd < 3 || fd > 1000 || fcntl((int)fd, F_GETFD) < 0) {
                fprintf(stderr, "jazari-node: --attach-fd %s is not an open descriptor\n", optarg);
                return 2;
            }
            attach_fd = (int)fd;
            break;
        }
        case O_NO_CONFINE: no_confine = true; break;
        case O_DENY_USER: {
            struct passwd *pw = getpwnam(optarg);
            if (!pw) {
                fprintf(stderr, "jazari-node: --deny-user: no account '%s'\n", optarg);
                return 2;
            }
            deny_uid = pw->pw_uid;
            break;
        }
        case O_CA: ca = optarg; break;
        case O_MIN_FREE: {
            char *end;
            long long mb = strtoll(optarg, &end, 10);
            if (*end || mb < 0 || mb > (1LL << 30)) {
                fprintf(stderr, "jazari-node: --min-free-mb wants a number of MiB\n");
                return 2;
            }
            min_free_mb = mb;
            break;
        }
        case O_VERSION:
            jz_version_print(stdout, "jazari-node");
            printf("agent protocol %d\n", JZ_PROTO_VERSION);
            return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    m.attached = attach_fd >= 0;
    if (m.attached && !server)
        server = "attached"; /* not used: the socket is already jazarid's */
    if (optind < argc || !server) {
        fprintf(stderr, optind < argc ? "jazari-node: unexpected argument '%s'\n"
                                      : "jazari-node: --server is required%s\n",
                optind < argc ? argv[optind] : "");
        return 2;
    }
    bool tls = false;
    if (!m.attached && parse_url(server, m.host, sizeof m.host, &m.http_port, &tls)) {
        fprintf(stderr, "jazari-node: --server: cannot use '%s' (https://HOST:PORT or "
                        "http://HOST:PORT)\n", server);
        return 2;
    }
    if (ca && !tls) {
        fprintf(stderr, "jazari-node: --ca is for an https:// --server\n");
        return 2;
    }
    if (tls) {
        struct jz_error terr = {0};
        if (jz_tls_client_ctx(ca, &m.tls, &terr)) {
            fprintf(stderr, "jazari-node: --ca: %s\n", terr.msg);
            return 2;
        }
    }
    char hostname[256] = "";
    if (!name) {
        gethostname(hostname, sizeof hostname - 1);
        hostname[strcspn(hostname, ".")] = '\0';
        name = hostname;
    }
    if (!jz_name_is_safe(name, 63) || (site && !jz_name_is_safe(site, 63))) {
        fprintf(stderr, "jazari-node: node and site names are 1-63 of [A-Za-z0-9._-]\n");
        return 2;
    }
    struct jz_error lerr = {0};
    if (jz_log_open(log_file, "jazari-node", (enum jz_log_sev)level, &lerr)) {
        fprintf(stderr, "jazari-node: --log-file %s: %s\n", log_file, lerr.msg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* until the loop's handler; children reset signals (node.c) */
    signal(SIGUSR1, SIG_IGN);
    /* Workers' pipes, memfds and files being sent take descriptors: as many as allowed. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (jz_mkdir_p(state_dir, 0750) != 0 ||
        !realpath(state_dir, m.state_dir)) {
        fprintf(stderr, "jazari-node: cannot use state folder %s: %s\n", state_dir,
                strerror(errno));
        return 1;
    }
    char cred_path[1200];
    snprintf(cred_path, sizeof cred_path, "%s/credential", m.state_dir);
    read_first_line(cred_path, m.credential, sizeof m.credential);
    if (!m.credential[0] && !m.join_token[0] && !m.attached) {
        fprintf(stderr, "jazari-node: no credential in %s yet: give --join-token (from "
                        "'jazari admin node token')\n", m.state_dir);
        return 2;
    }
    char exe_dir[4096], worker_path[4200], plugins[4096];
    if (jz_exe_dir(exe_dir, sizeof exe_dir) != 0)
        snprintf(exe_dir, sizeof exe_dir, ".");
    snprintf(worker_path, sizeof worker_path, "%.4000s/jazari-worker", exe_dir);
    /* Folders given add to the built-in one, as for jazarid. */
    if (jz_plugin_dirs_compose(plugin_dir, plugins, sizeof plugins) != 0 || !plugins[0]) {
        fprintf(stderr, "jazari-node: cannot find the built-in plugin folder, or too many "
                        "--plugin-dir folders\n");
        return 2;
    }

    m.base = event_base_new();
    m.dns = m.base ? evdns_base_new(m.base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
    if (!m.base || !m.dns) {
        fprintf(stderr, "jazari-node: cannot create the event loop\n");
        return 1;
    }
    struct jz_agent_config acfg = {.name = name,
                                   .state_dir = m.state_dir,
                                   .topology_path = topology,
                                   .worker_path = worker ? worker : worker_path,
                                   .plugin_dirs = plugins,
                                   .site = site,
                                   .labels = labels,
                                   .fallback_backend = fallback,
                                   .address = address,
                                   .ship_files = true,
                                   /* jazarid's local node: the folder privsep passes */
                                   .server_copies = m.attached && server_copies,
                                   .server_copies_dir = server_copies,
                                   .confine = !no_confine && geteuid() == 0,
                                   .min_free_bytes = (int64_t)min_free_mb << 20,
                                   .deny_uid = deny_uid};
    if (no_confine || geteuid() != 0)
        jz_log_warn("node", "jobs run as uid %d, unconfined (%s)", (int)geteuid(),
                    no_confine ? "--no-confine" : "the agent is not root");
    struct jz_error err = {0};
    if (jz_agent_create(m.base, &acfg, agent_send, &m, &m.agent, &err)) {
        fprintf(stderr, "jazari-node: %s\n", err.msg);
        return 1;
    }
    jz_agent_set_file_sender(m.agent, agent_send_file);
    m.retry_ev = evtimer_new(m.base, on_retry, &m);
    m.hb_ev = evtimer_new(m.base, on_heartbeat, &m);
    m.sigterm_ev = evsignal_new(m.base, SIGTERM, on_stop, &m);
    m.sigint_ev = evsignal_new(m.base, SIGINT, on_stop, &m);
    m.sigusr1_ev = evsignal_new(m.base, SIGUSR1, on_reopen, &m);
    m.sighup_ev = evsignal_new(m.base, SIGHUP, on_reopen, &m);
    evsignal_add(m.sigterm_ev, NULL);
    evsignal_add(m.sigint_ev, NULL);
    evsignal_add(m.sigusr1_ev, NULL);
    evsignal_add(m.sighup_ev, NULL);
    if (m.attached) {
        /* jazarid's own local agent: no join, no credential, the socket pair is the trust. */
        fcntl(attach_fd, F_SETFD, FD_CLOEXEC);
        evutil_make_socket_nonblocking(attach_fd);
        m.bev = bufferevent_socket_new(m.base, attach_fd, BEV_OPT_CLOSE_ON_FREE);
        if (!m.bev) {
            fprintf(stderr, "jazari-node: cannot use --attach-fd\n");
            return 1;
        }
        bufferevent_setcb(m.bev, on_read, NULL, on_event, &m);
        bufferevent_enable(m.bev, EV_READ | EV_WRITE);
        json_t *hello = jz_agent_hello(m.agent);
        jz_proto_write(bufferevent_get_output(m.bev), hello, NULL, 0, NULL);
        json_decref(hello);
        jz_log_info("node", "node %s: jazarid's local agent (state %s)", name, m.state_dir);
    } else {
        jz_log_info("node", "node %s: joining jazarid at %s:%d (state %s)", name, m.host,
                    m.http_port, m.state_dir);
        event_active(m.retry_ev, EV_TIMEOUT, 0);
    }
    event_base_dispatch(m.base);
    drop_connection(&m);
    jz_agent_destroy(m.agent);
    if (m.http)
        evhttp_connection_free(m.http);
    SSL_CTX_free(m.tls);
    event_free(m.retry_ev);
    event_free(m.hb_ev);
    event_free(m.sigterm_ev);
    event_free(m.sigint_ev);
    event_free(m.sigusr1_ev);
    event_free(m.sighup_ev);
    evdns_base_free(m.dns, 0);
    event_base_free(m.base);
    return m.exit_code;
}

int main(int argc, char **argv)
{
    json_t *labels = json_object();
    int rc = labels ? run(argc, argv, labels) : 1;
    json_decref(labels);
    return rc;
}
