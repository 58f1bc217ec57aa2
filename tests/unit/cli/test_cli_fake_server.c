/* Runs the real `jazari` binary against a fake jazarid: a libevent HTTP server on 127.0.0.1,
 * port 0, in a forked child, answering canned JSON. Checks output and exit codes. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define TOKEN "testtoken-s3cret"

/* ---- the fake server (runs in the child) --------------------------------------------------- */

static int polls_job9, polls_job11;
static bool job13_ended; /* set once /v1/events has told that job 13 ended */

static void reply_json(struct evhttp_request *req, int code, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, code < 300 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static void reply_obj(struct evhttp_request *req, int code, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT);
    reply_json(req, code, text);
    free(text);
    json_decref(obj);
}

static void reply_error(struct evhttp_request *req, int code, const char *ecode, const char *msg,
                        const char *field)
{
    reply_obj(
        req, code,
        json_pack("{s:{s:s,s:s,s:s?}}", "error", "code", ecode, "message", msg, "field", field));
}

static json_t *job_obj(int id, const char *state, json_t *exit_code, json_t *sig)
{
    return json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:n,s:s,s:o,s:o,s:{s:i},s:[]}", "id", id, "name",
                     "job", "user", "alice", "tenant", "physics", "plugin", "batch", "state", state,
                     "reason", "submit_time", "2026-11-25T19:00:00.000Z", "exit_code", exit_code,
                     "signal", sig, "resources", "gpus", 1, "gpus");
}

/* Cuts the connection under a streaming reply once its first chunk has been written. */
static void drop_connection(struct evhttp_connection *conn, void *arg)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(conn);
    shutdown(bufferevent_getfd(bev), SHUT_RDWR);
}

static void on_log(struct evhttp_request *req, struct evkeyvalq *q)
{
    const char *off = evhttp_find_header(q, "offset");
    const char *follow = evhttp_find_header(q, "follow");
    long offset = off ? atol(off) : 0;
    struct evbuffer *b = evbuffer_new();
    if (follow && offset == 0) {
        /* First connection: "hello " and then the connection drops mid-stream. */
        evhttp_send_reply_start(req, 200, "OK");
        evbuffer_add(b, "hello ", 6);
        evhttp_send_reply_chunk_with_cb(req, b, drop_connection, NULL);
    } else if (follow && offset == 6) {
        evhttp_send_reply_start(req, 200, "OK");
        evbuffer_add(b, "world\n", 6);
        evhttp_send_reply_chunk(req, b);
        evhttp_send_reply_end(req);
    } else if (!follow && (offset == 0 || offset == 6 || offset == 12)) {
        /* Plain reads come in slices (the real server caps each reply): 6 bytes here. */
        evbuffer_add(b, "hello world\n" + offset, offset == 12 ? 0 : 6);
        evhttp_send_reply(req, 200, "OK", b);
    } else {
        reply_error(req, 400, "bad_offset", "unexpected offset", "offset");
    }
    evbuffer_free(b);
}

static json_t *read_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    return json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0, NULL);
}

static json_t *node_obj(const char *name, const char *state, const char *reason)
{
    return json_pack("{s:s,s:s,s:s,s:{},s:s,s:i,s:i,s:s,s:i,s:s,s:s?,s:[]}", "name", name, "site",
                     "rabat", "state", state, "labels", "source", "live", "gpus_total", 8,
                     "gpus_free", 6, "gpu_model", "Tesla T4", "running_jobs", 3, "last_heartbeat",
                     "2000-01-01T00:00:00.000Z", "drain_reason", reason, "gpus");
}

/* The node routes: GET /v1/nodes, POST .../drain|resume|revoke, DELETE /v1/nodes/{name}.
 * Paths arrive still URL-encoded, which lets the tests see the client's encoding. */
static void on_nodes(struct evhttp_request *req, enum evhttp_cmd_type cmd, const char *path,
                     const char *query)
{
    char name[128] = "", verb[32] = "";
    if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/nodes") == 0) {
        if (query && strcmp(query, "site=rabat%20west") == 0)
            reply_obj(req, 200, json_pack("{s:[]}", "nodes"));
        else if (query)
            reply_error(req, 400, "bad_site", "unexpected query", "site");
        else
            reply_obj(req, 200,
                      json_pack("{s:[o,o]}", "nodes", node_obj("gpu-a1", "up", NULL),
                                node_obj("gpu-a2", "drained", "disk\nfull")));
        return;
    }
    int k = sscanf(path, "/v1/nodes/%127[^/]/%31s", name, verb);
    if (k < 1) {
        reply_error(req, 404, "not_found", "no such route", NULL);
    } else if (strcmp(name, "gpu-x9") == 0) {
        reply_error(req, 404, "not_found", "no node named gpu-x9", NULL);
    } else if (cmd == EVHTTP_REQ_DELETE && k == 1) {
        if (strcmp(name, "busy") == 0)
            reply_error(req, 409, "conflict", "2 jobs still run on node busy", NULL);
        else
            reply_obj(req, 200,
                      json_pack("{s:s}", "removed", strcmp(name, "a%20b") == 0 ? "a b" : name));
    } else if (cmd == EVHTTP_REQ_POST && k == 2 && strcmp(verb, "drain") == 0) {
        json_t *body = read_body(req);
        const char *reason = json_string_value(json_object_get(body, "reason"));
        if (!reason || json_object_size(body) != 1)
            reply_error(req, 400, "invalid", "reason is required", "reason");
        else
            reply_obj(req, 200, node_obj(name, "draining", reason));
        json_decref(body);
    } else if (cmd == EVHTTP_REQ_POST && k == 2 && strcmp(verb, "resume") == 0) {
        json_t *body = read_body(req);
        if (!json_is_object(body) || json_object_size(body) != 0)
            reply_error(req, 400, "invalid", "expected {}", NULL);
        else
            reply_obj(req, 200, node_obj(name, "up", NULL));
        json_decref(body);
    } else if (cmd == EVHTTP_REQ_POST && k == 2 && strcmp(verb, "revoke") == 0) {
        reply_obj(req, 200, node_obj(name, "revoked", NULL));
    } else {
        reply_error(req, 405, "method", "method not allowed", NULL);
    }
}

static void on_request(struct evhttp_request *req, void *arg)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!auth || strcmp(auth, "Bearer " TOKEN) != 0) {
        reply_error(req, 401, "unauthorized", "missing or bad token", NULL);
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = evhttp_uri_get_path(uri);
    const char *query = evhttp_uri_get_query(uri);
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    if (query)
        evhttp_parse_query_str(query, &q);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    int id = 0;
    char tail[32] = "";
    if (cmd == EVHTTP_REQ_POST && strcmp(path, "/v1/jobs") == 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(in);
        json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
        json_t *params = json_object_get(body, "params");
        const char *lr = json_string_value(json_object_get(params, "lr"));
        if (lr && strcmp(lr, "bad") == 0) {
            reply_error(req, 400, "invalid_param", "params.lr: expected a number", "params.lr");
        } else {
            json_t *j = job_obj(42, "PENDING", json_null(), json_null());
            json_object_set(j, "received", body); /* lets the test see what was sent */
            reply_obj(req, 201, j);
        }
        json_decref(body);
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/jobs") == 0) {
        const char *after = evhttp_find_header(&q, "after");
        const char *state = evhttp_find_header(&q, "state");
        if (!state || strcmp(state, "PENDING,RUNNING") != 0)
            reply_error(req, 400, "bad_state", "expected the default state filter", "state");
        else if (!after)
            reply_obj(req, 200,
                      json_pack("{s:[o,o],s:i}", "jobs",
                                job_obj(1, "RUNNING", json_null(), json_null()),
                                job_obj(2, "PENDING", json_null(), json_null()), "next_after", 2));
        else if (strcmp(after, "2") == 0)
            reply_obj(req, 200,
                      json_pack("{s:[o],s:n}", "jobs",
                                job_obj(3, "PENDING", json_null(), json_null()), "next_after"));
        else
            reply_error(req, 400, "bad_after", "unexpected cursor", "after");
    } else if (cmd == EVHTTP_REQ_GET && sscanf(path, "/v1/jobs/%d%31s", &id, tail) == 2 &&
               strcmp(tail, "/log") == 0) {
        on_log(req, &q);
    } else if (cmd == EVHTTP_REQ_POST && sscanf(path, "/v1/jobs/%d%31s", &id, tail) == 2 &&
               strcmp(tail, "/cancel") == 0) {
        if (id == 5)
            reply_error(req, 409, "conflict", "job 5 has already ended", NULL);
        else if (id == 6)
            reply_obj(req, 200, job_obj(6, "CANCELLED", json_null(), json_integer(15)));
        else
            reply_error(req, 404, "not_found", "no such job", NULL);
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/events") == 0) {
        /* Only job 13 has events (the others test the fallback to polling on a 404): a
         * keep-alive, a progress-free state change and the end, in pieces. */
        const char *job = evhttp_find_header(&q, "job");
        if (!job || strcmp(job, "13") != 0) {
            reply_error(req, 404, "not_found", "no such route", NULL);
        } else {
            struct evbuffer *b = evbuffer_new();
            evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                              "text/event-stream");
            evhttp_send_reply_start(req, 200, "OK");
            evbuffer_add_printf(b, ": keep-alive\n\nid: 5\nevent: job\ndata: {\"job\": 13, ");
            evhttp_send_reply_chunk(req, b);
            evbuffer_add_printf(b, "\"state\": \"RUNNING\"}\n\nid: 6\nevent: job\ndata: "
                                   "{\"job\": 13, \"state\": \"SUCCEEDED\"}\n\n");
            job13_ended = true;
            evhttp_send_reply_chunk(req, b);
            evhttp_send_reply_end(req);
            evbuffer_free(b);
        }
    } else if (cmd == EVHTTP_REQ_GET && sscanf(path, "/v1/jobs/%d", &id) == 1) {
        json_t *j = NULL;
        switch (id) {
        case 7:
            j = job_obj(7, "FAILED", json_integer(3), json_null());
            json_object_set_new(j, "metrics", json_pack("{s:f,s:i}", "val_loss", 0.25, "epoch", 4));
            json_object_set_new(j, "progress",
                                json_pack("{s:f,s:s}", "fraction", 0.5, "message", "epoch 4/8"));
            break;
        case 8:
            j = job_obj(8, "FAILED", json_null(), json_integer(9));
            break;
        case 9:
            j = job_obj(9, ++polls_job9 < 3 ? "RUNNING" : "SUCCEEDED", json_null(), json_null());
            break;
        case 10:
            j = job_obj(10, "RUNNING", json_null(), json_null());
            break;
        case 11:
            j = job_obj(11, ++polls_job11 < 2 ? "RUNNING" : "SUCCEEDED", json_null(), json_null());
            break;
        case 13: /* ends as /v1/events says */
            j = job_obj(13, job13_ended ? "SUCCEEDED" : "RUNNING", json_null(), json_null());
            break;
        case 12: /* a job on two nodes */
            j = job_obj(12, "RUNNING", json_null(), json_null());
            json_object_set_new(
                j, "resources",
                json_pack("{s:i,s:i,s:i}", "nodes", 2, "gpus_per_node", 1, "time_limit_s", 3600));
            json_object_set_new(j, "node", json_string("gpu-a1"));
            json_object_set_new(j, "nodes", json_pack("[s,s]", "gpu-a1", "gpu-a2"));
            json_object_set_new(j, "requeue", json_true());
            json_object_set_new(j, "placement", json_string("1 GPU on each of 2 nodes"));
            json_object_set_new(j, "gpus",
                                json_pack("[{s:s,s:i,s:s,s:s},{s:s,s:i,s:s,s:s}]", "node", "gpu-a1",
                                          "index", 0, "pci_bus_id", "0000:3b:00.0", "model",
                                          "Tesla T4", "node", "gpu-a2", "index", 3, "pci_bus_id",
                                          "0000:af:00.0", "model", "Tesla T4"));
            break;
        default:
            break;
        }
        if (j)
            reply_obj(req, 200, j);
        else
            reply_error(req, 404, "not_found", "no such job", NULL);
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/plugins") == 0) {
        reply_json(req, 200,
                   "{\"plugins\": [{\"name\": \"train\", \"version\": \"1.2.0\", \"status\": "
                   "\"ok\", \"reason\": null, \"caps\": [\"uses_gpu\", \"checkpoint\"], "
                   "\"default\": true, \"sha256\": "
                   "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\", "
                   "\"description\": \"Trains an MLP\", \"params\": [{\"name\": \"lr\", "
                   "\"type\": \"float\", \"required\": false, \"default\": 0.01, \"min\": 0, "
                   "\"max\": 1, \"help\": \"learning rate\"}, {\"name\": \"act\", \"type\": "
                   "\"string\", \"required\": true, \"choices\": [\"relu\", \"gelu\"]}]}, "
                   "{\"name\": \"old\", \"version\": \"0.1.0\", \"status\": \"refused\", "
                   "\"reason\": \"ABI major 0, host 1\", \"caps\": [], \"params\": []}]}");
    } else if (cmd == EVHTTP_REQ_POST && strcmp(path, "/v1/admin/users") == 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        json_t *body =
            json_loadb((const char *)evbuffer_pullup(in, -1), evbuffer_get_length(in), 0, NULL);
        json_object_set_new(body, "token", json_string("jz_newusertoken"));
        reply_obj(req, 201, body);
    } else if (strncmp(path, "/v1/nodes", 9) == 0 && (path[9] == '\0' || path[9] == '/')) {
        on_nodes(req, cmd, path, query);
    } else if (cmd == EVHTTP_REQ_POST && strcmp(path, "/v1/admin/node-tokens") == 0) {
        json_t *body = read_body(req);
        const char *site = json_string_value(json_object_get(body, "site"));
        reply_obj(req, 201,
                  json_pack("{s:s,s:s,s:s,s:O}", "token", "jzn_nodetoken", "site",
                            site ? site : "default", "expires", "2026-12-03T17:00:00.000Z",
                            "received", body));
        json_decref(body);
    } else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/v1/whoami") == 0) {
        reply_json(req, 200, "{\"name\": \"alice\", \"tenant\": \"physics\", \"role\": \"user\"}");
    } else {
        reply_error(req, 404, "not_found", "no such route", NULL);
    }
    evhttp_clear_headers(&q);
}

static void serve(int port_pipe)
{
    /* cmocka's handlers would jump back into the parent's tests: crash plainly instead. */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    signal(SIGILL, SIG_DFL);
    signal(SIGFPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    struct event_base *base = event_base_new();
    struct evhttp *http = evhttp_new(base);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(http, on_request, NULL);
    struct evhttp_bound_socket *s = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    if (!s)
        _exit(3);
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&sa, &sl);
    int port = ntohs(sa.sin_port);
    if (write(port_pipe, &port, sizeof port) != sizeof port)
        _exit(4);
    close(port_pipe);
    event_base_dispatch(base);
    _exit(0);
}

/* ---- the tests (parent) ---------------------------------------------------------------------- */

static pid_t server_pid;
static char url[64];

static int start_server(void **state)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        close(p[0]);
        serve(p[1]);
    }
    close(p[1]);
    int port = 0;
    ssize_t n = read(p[0], &port, sizeof port);
    close(p[0]);
    if (n != sizeof port)
        return -1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    return 0;
}

static int stop_server(void **state)
{
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
    return 0;
}

struct run {
    int code;
    char *out, *err;
};

static char *slurp(FILE *f)
{
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

/* Runs jazari with the fake server's URL and token in the environment. */
static struct run run_cli(const char *first, ...)
{
    char *argv[32] = {"jazari"};
    int argc = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    FILE *out = tmpfile(), *err = tmpfile();
    assert_non_null(out);
    assert_non_null(err);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fileno(out), 1);
        dup2(fileno(err), 2);
        setenv("JAZARI_URL", url, 1);
        setenv("JAZARI_TOKEN", TOKEN, 1);
        unsetenv("JAZARI_CONFIG");
        unsetenv("JAZARI_TOKEN_FILE");
        setenv("HOME", "/nonexistent", 1);
        setenv("TZ", "UTC", 1);
        execv(JZ_CLI_BIN, argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    struct run r = {.code = WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status)};
    r.out = slurp(out);
    r.err = slurp(err);
    /* The token never appears in anything the client prints. */
    assert_null(strstr(r.out, TOKEN));
    assert_null(strstr(r.err, TOKEN));
    return r;
}

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

static void test_submit(void **state)
{
    struct run r = run_cli("submit", "--gpus", "1", "--", "echo", "hi", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "42\n");
    assert_string_equal(r.err, "");
    run_free(&r);

    r = run_cli("submit", "--json", "--param", "lr=0.1", "--", "echo", "hi", NULL);
    assert_int_equal(r.code, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    json_t *sent = json_object_get(j, "received");
    assert_string_equal(json_string_value(json_object_get(sent, "plugin")), "batch");
    json_t *params = json_object_get(sent, "params");
    assert_string_equal(json_string_value(json_object_get(params, "lr")), "0.1");
    json_t *argv = json_object_get(params, "argv");
    assert_int_equal(json_array_size(argv), 2);
    assert_string_equal(json_string_value(json_array_get(argv, 1)), "hi");
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_string_equal(json_string_value(json_object_get(sent, "submit_dir")), cwd);
    json_decref(j);
    run_free(&r);
}

static void test_errors(void **state)
{
    struct run r = run_cli("submit", "--plugin", "train", "--param", "lr=bad", NULL);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "jazari: submit: params.lr: expected a number (400)\n");
    run_free(&r);

    r = run_cli("--token", "wrong", "whoami", NULL);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.err, "jazari: whoami: missing or bad token (401)\n");
    run_free(&r);

    r = run_cli("show", "12345", NULL);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.err, "jazari: show: no such job (404)\n");
    run_free(&r);

    r = run_cli("show", "abc", NULL);
    assert_int_equal(r.code, 2);
    run_free(&r);

    r = run_cli("--url", "http://127.0.0.1:1", "whoami", NULL);
    assert_int_equal(r.code, 1);
    assert_non_null(strstr(r.err, "jazari: whoami: cannot reach http://127.0.0.1:1"));
    run_free(&r);
}

static void test_wait(void **state)
{
    struct run r = run_cli("wait", "7", NULL);
    assert_int_equal(r.code, 3);
    run_free(&r);
    r = run_cli("wait", "8", NULL);
    assert_int_equal(r.code, 128 + 9);
    run_free(&r);
    r = run_cli("wait", "9", NULL); /* RUNNING twice, then SUCCEEDED */
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "job 9 SUCCEEDED\n");
    run_free(&r);
    /* 124 for --timeout, as timeout(1); not a job's exit status (TIMEOUT is 152). */
    r = run_cli("wait", "--timeout", "1", "10", NULL);
    assert_int_equal(r.code, 124);
    assert_string_equal(r.err, "jazari: wait: timed out after 1 s; job 10 is still RUNNING\n");
    run_free(&r);
    r = run_cli("wait", "-t", "1", "10", NULL); /* -t is submit's --time only */
    assert_int_equal(r.code, 2);
    run_free(&r);
    /* Job 13 through the events stream (the others: polling after its 404). */
    r = run_cli("wait", "13", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "job 13 SUCCEEDED\n");
    assert_string_equal(r.err, ""); /* no progress line: stderr is not a terminal */
    run_free(&r);
}

static void test_cancel(void **state)
{
    struct run r = run_cli("cancel", "5", NULL);
    assert_int_equal(r.code, 1); /* every job had already ended */
    assert_string_equal(r.err, "jazari: cancel: job 5: job 5 has already ended (409)\n");
    run_free(&r);
    r = run_cli("cancel", "5", "6", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "cancelled job 6\n");
    run_free(&r);
    r = run_cli("cancel", "6", "99", NULL);
    assert_int_equal(r.code, 1);
    run_free(&r);
}

static void test_queue_and_show(void **state)
{
    struct run r = run_cli("queue", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "ID  NAME  USER   TENANT   PLUGIN  STATE    GPUS  TIME  REASON\n"
                               " 1  job   alice  physics  batch   RUNNING     1  -     -\n"
                               " 2  job   alice  physics  batch   PENDING     1  -     -\n"
                               " 3  job   alice  physics  batch   PENDING     1  -     -\n");
    run_free(&r);
    /* squeue's habits: -n is the name (filtered here), columns, order, no header. */
    r = run_cli("queue", "-n", "job,other", "-O", "id,state", "--sort=-id", "--noheader", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "3  PENDING\n2  PENDING\n1  RUNNING\n");
    run_free(&r);
    r = run_cli("queue", "-n", "nope", "--noheader", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "");
    run_free(&r);
    r = run_cli("queue", "--json", "--limit", "2", NULL);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "jobs")), 2);
    json_decref(j);
    run_free(&r);
    r = run_cli("show", "7", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "Job 7 (job)\n"));
    assert_non_null(strstr(r.out, "  State:          FAILED\n"));
    assert_non_null(strstr(r.out, "  Exit code:      3\n"));
    assert_non_null(strstr(r.out, "  Progress:       50%  epoch 4/8\n"
                                  "  Metrics:        epoch = 4\n"
                                  "                  val_loss = 0.25\n"));
    assert_non_null(strstr(r.out, "  Submitted:      2026-11-25T19:00:00+00:00\n"));
    run_free(&r);
}

static void test_logs_follow_reconnects(void **state)
{
    struct run r = run_cli("logs", "-f", "11", NULL);
    assert_string_equal(r.err, "");
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "hello world\n");
    run_free(&r);
    r = run_cli("logs", "11", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "hello world\n");
    run_free(&r);
    /* JSON lines, a line put together from the slices it came in. */
    r = run_cli("logs", "--json", "11", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "{\"job\":11,\"offset\":0,\"line\":\"hello world\"}\n");
    run_free(&r);
}

static void test_plugins_and_admin(void **state)
{
    struct run r = run_cli("plugins", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out,
                        "NAME   VERSION  STATUS   SHA256        CAPS                 DESCRIPTION\n"
                        "train  1.2.0    ok*      0123456789ab  uses_gpu,checkpoint  Trains an MLP\n"
                        "old    0.1.0    refused  -             -                    ABI major 0, host 1\n");
    run_free(&r);
    r = run_cli("plugins", "train", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out,
                           "PARAM  TYPE    REQUIRED  DEFAULT  RANGE  CHOICES    HELP\n"
                           "lr     float   no        0.01     0..1   -          learning rate\n"
                           "act    string  yes       -        -      relu|gelu  -\n"));
    run_free(&r);
    r = run_cli("plugins", "nope", NULL);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.err, "jazari: plugins: no plugin named 'nope'\n");
    run_free(&r);

    r = run_cli("admin", "user", "add", "bob", "--tenant", "bio", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "jz_newusertoken\n");
    run_free(&r);
    r = run_cli("admin", "user", "add", "bob", NULL);
    assert_int_equal(r.code, 2);
    run_free(&r);
    r = run_cli("admin", "user", "add", "bob", "--tenant", "bio", "--role", "root", NULL);
    assert_int_equal(r.code, 2);
    run_free(&r);
    r = run_cli("--json", "whoami", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "\"tenant\": \"physics\""));
    run_free(&r);
}

static void test_submit_multi_node(void **state)
{
    struct run r = run_cli("submit", "--json", "--nodes", "2", "--gpus-per-node", "4", "--requeue",
                           "--", "./train", NULL);
    assert_int_equal(r.code, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    json_t *sent = json_object_get(j, "received");
    json_t *res = json_object_get(sent, "resources");
    assert_int_equal(json_integer_value(json_object_get(res, "nodes")), 2);
    assert_int_equal(json_integer_value(json_object_get(res, "gpus_per_node")), 4);
    assert_null(json_object_get(res, "gpus"));
    assert_true(json_is_true(json_object_get(sent, "requeue")));
    json_decref(j);
    run_free(&r);

    /* Refused before anything is sent: usage errors exit 2. */
    r = run_cli("submit", "--nodes", "2", "--", "./train", NULL);
    assert_int_equal(r.code, 2);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "jazari: submit: --nodes 2: say how many GPUs"));
    run_free(&r);
}

static void test_show_multi_node(void **state)
{
    struct run r = run_cli("show", "12", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "  Resources:      2 nodes x 1 GPU, 1 CPU per GPU"));
    assert_non_null(strstr(r.out, "  Requeue:        yes (when its node is lost)\n"));
    assert_non_null(strstr(r.out, "  Nodes:          gpu-a1, gpu-a2\n"));
    assert_non_null(strstr(r.out, "  GPUs:           gpu-a1  0  0000:3b:00.0  Tesla T4\n"
                                  "                  gpu-a2  3  0000:af:00.0  Tesla T4\n"));
    assert_null(strstr(r.out, "  Node:"));
    run_free(&r);
    r = run_cli("why", "12", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "Job 12 is running on gpu-a1, gpu-a2: 1 GPU on each of 2 nodes\n");
    run_free(&r);
    /* A one-node job still says "Node:". */
    r = run_cli("show", "7", NULL);
    assert_int_equal(r.code, 0);
    assert_null(strstr(r.out, "Nodes:"));
    run_free(&r);
}

static void test_nodes(void **state)
{
    struct run r = run_cli("nodes", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.err, "");
    /* The heartbeats are years old: their age is in days, whatever today is. */
    assert_non_null(strstr(r.out, "NAME    SITE   STATE    GPUS  MODEL     JOBS  HEARTBEAT"));
    assert_non_null(strstr(r.out, "  REASON\n"));
    assert_non_null(strstr(r.out, "gpu-a1  rabat  up        6/8  Tesla T4     3  "));
    assert_non_null(strstr(r.out, "gpu-a2  rabat  drained   6/8  Tesla T4     3  "));
    assert_non_null(strstr(r.out, " ago  disk\\u000afull\n"));
    run_free(&r);

    r = run_cli("nodes", "--site", "rabat west", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "NAME  SITE  STATE  GPUS  MODEL  JOBS  HEARTBEAT\n");
    run_free(&r);

    r = run_cli("nodes", "--json", NULL);
    assert_int_equal(r.code, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "nodes")), 2);
    json_decref(j);
    run_free(&r);

    r = run_cli("nodes", "extra", NULL);
    assert_int_equal(r.code, 2);
    run_free(&r);
}

static void test_node_admin(void **state)
{
    struct run r = run_cli("node", "drain", "gpu-a1", "--reason", "fan failure", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "gpu-a1: draining (fan failure)\n");
    run_free(&r);
    r = run_cli("node", "resume", "gpu-a1", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "gpu-a1: up\n");
    run_free(&r);
    r = run_cli("node", "rm", "a b", NULL); /* sent as /v1/nodes/a%20b */
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "removed a b\n");
    run_free(&r);
    r = run_cli("node", "rm", "busy", NULL);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.out, "");
    assert_string_equal(r.err, "jazari: node: 2 jobs still run on node busy (409)\n");
    run_free(&r);
    r = run_cli("node", "resume", "gpu-x9", NULL);
    assert_int_equal(r.code, 1);
    assert_string_equal(r.err, "jazari: node: no node named gpu-x9 (404)\n");
    run_free(&r);
    r = run_cli("node", "drain", "gpu-a1", NULL);
    assert_int_equal(r.code, 2);
    run_free(&r);
    r = run_cli("node", "revoke", "gpu-a1", NULL);
    assert_int_equal(r.code, 2);
    assert_non_null(strstr(r.err, "admin node revoke"));
    run_free(&r);
    r = run_cli("--json", "node", "drain", "gpu-a1", "--reason", "x", NULL);
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "\"drain_reason\":\"x\""));
    run_free(&r);

    r = run_cli("admin", "node", "revoke", "gpu-a1", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "gpu-a1: revoked\n");
    run_free(&r);

    /* The token alone on stdout; what it is for on stderr. */
    r = run_cli("admin", "node", "token", "--site", "rabat", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.out, "jzn_nodetoken\n");
    assert_string_equal(
        r.err, "Node token for site rabat; it expires 2026-12-03T17:00:00+00:00.\n");
    run_free(&r);
    r = run_cli("admin", "node", "token", "--json", "--ttl", "2d", NULL);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.err, "");
    json_t *j = json_loads(r.out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "site")), "default");
    json_t *sent = json_object_get(j, "received");
    assert_int_equal(json_integer_value(json_object_get(sent, "ttl_s")), 172800);
    assert_null(json_object_get(sent, "site"));
    json_decref(j);
    run_free(&r);
    r = run_cli("admin", "node", "token", "--ttl", "forever", NULL);
    assert_int_equal(r.code, 2);
    assert_string_equal(r.out, "");
    run_free(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_wait),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_queue_and_show),
        cmocka_unit_test(test_logs_follow_reconnects),
        cmocka_unit_test(test_plugins_and_admin),
        cmocka_unit_test(test_submit_multi_node),
        cmocka_unit_test(test_show_multi_node),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_node_admin),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
