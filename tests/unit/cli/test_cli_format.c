/* Tests of the jazari client's output helpers: times, ages, durations, exit codes, error lines,
 * tables (the nodes table from canned GET /v1/nodes answers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "clients/cli.h"
#include "common/time.h"

static void test_time(void **state)
{
    setenv("TZ", "UTC", 1);
    char buf[32];
    jz_cli_time_local("2026-11-25T19:00:00.123Z", buf, sizeof buf);
    assert_string_equal(buf, "2026-11-25T19:00:00+00:00");
    setenv("TZ", "Europe/Paris", 1);
    jz_cli_time_local("2026-11-25T19:00:00.123Z", buf, sizeof buf);
    assert_string_equal(buf, "2026-11-25T20:00:00+01:00");
    setenv("TZ", "America/St_Johns", 1); /* a zone half an hour off, west of Greenwich */
    jz_cli_time_local("2026-11-25T19:00:00Z", buf, sizeof buf);
    assert_string_equal(buf, "2026-11-25T15:30:00-03:30");
    setenv("TZ", "UTC", 1);
    jz_cli_time_local(NULL, buf, sizeof buf);
    assert_string_equal(buf, "-");
    jz_cli_time_local("garbage", buf, sizeof buf);
    assert_string_equal(buf, "-");
}

/* The durations the client accepts (--time, --timeout) and prints (TIME column). */
static void test_durations(void **state)
{
    int64_t s = 0;
    struct jz_error err = {0};
    assert_int_equal(jz_duration_parse("10m", &s, &err), 0);
    assert_int_equal(s, 600);
    assert_int_equal(jz_duration_parse("1h30m", &s, &err), 0);
    assert_int_equal(s, 5400);
    assert_int_equal(jz_duration_parse("01:00:05", &s, &err), 0);
    assert_int_equal(s, 3605);
    assert_int_equal(jz_duration_parse("1-00:00:00", &s, &err), 0); /* Slurm's forms */
    assert_int_equal(s, 86400);
    assert_int_equal(jz_duration_parse("90:00", &s, &err), 0);
    assert_int_equal(s, 5400);
    assert_int_equal(jz_duration_parse("1-25", &s, &err), JZ_EINVAL);
    assert_non_null(strstr(err.msg, "hours after 'D-' are 0-23"));
    assert_int_not_equal(jz_duration_parse("ten", &s, &err), 0);
    char buf[32];
    jz_duration_format(3725, buf, sizeof buf);
    assert_string_equal(buf, "1h2m5s");
}

static json_t *job(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_exit_codes(void **state)
{
    static const struct {
        const char *json;
        int code;
    } cases[] = {
        {"{\"state\": \"SUCCEEDED\", \"exit_code\": 0}", 0},
        {"{\"state\": \"FAILED\", \"exit_code\": 3, \"signal\": null}", 3},
        {"{\"state\": \"FAILED\", \"exit_code\": null, \"signal\": 9}", 137},
        {"{\"state\": \"FAILED\", \"exit_code\": null, \"signal\": null}", 1},
        {"{\"state\": \"FAILED\"}", 1},
        {"{\"state\": \"FAILED\", \"exit_code\": 0}", 1},
        {"{\"state\": \"FAILED\", \"exit_code\": 300}", 1},
        {"{\"state\": \"TIMEOUT\", \"signal\": 15}", 152},
        {"{\"state\": \"CANCELLED\", \"signal\": 15}", 130},
        {"{\"state\": \"RUNNING\"}", -1},
        {"{\"state\": \"PENDING\"}", -1},
        {"{}", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = job(cases[i].json);
        assert_int_equal(jz_cli_job_exit_code(j), cases[i].code);
        json_decref(j);
    }
    assert_true(jz_cli_state_is_final("TIMEOUT"));
    assert_false(jz_cli_state_is_final("RUNNING"));
    assert_false(jz_cli_state_is_final(NULL));
}

static void test_server_error(void **state)
{
    char buf[512];
    const char *b1 = "{\"error\": {\"code\": \"invalid_param\", \"message\": \"params.lr: expected "
                     "a number\", \"field\": \"params.lr\"}}";
    jz_cli_server_error(400, b1, strlen(b1), buf, sizeof buf);
    assert_string_equal(buf, "params.lr: expected a number (400)");
    const char *b2 =
        "{\"error\": {\"code\": \"invalid_param\", \"message\": \"expected a number\", "
        "\"field\": \"params.lr\"}}";
    jz_cli_server_error(400, b2, strlen(b2), buf, sizeof buf);
    assert_string_equal(buf, "params.lr: expected a number (400)");
    const char *b3 = "{\"error\": {\"code\": \"conflict\", \"message\": \"job already ended\", "
                     "\"field\": null}}";
    jz_cli_server_error(409, b3, strlen(b3), buf, sizeof buf);
    assert_string_equal(buf, "job already ended (409)");
    const char *b4 = "<html>Bad Gateway</html>\nmore";
    jz_cli_server_error(502, b4, strlen(b4), buf, sizeof buf);
    assert_string_equal(buf, "HTTP 502: <html>Bad Gateway</html>");
    jz_cli_server_error(500, "", 0, buf, sizeof buf);
    assert_string_equal(buf, "HTTP 500");
    /* Terminal control characters from the server are neutralised. */
    const char *b5 = "{\"error\": {\"message\": \"bad\\u001b[2Jname\"}}";
    jz_cli_server_error(400, b5, strlen(b5), buf, sizeof buf);
    assert_string_equal(buf, "bad\\u001b[2Jname (400)");
}

static void test_sanitize(void **state)
{
    char buf[128];
    /* Printable text, UTF-8 included, is kept as it is. */
    jz_cli_sanitize(
        "r\xc3\xa9sum\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a", buf,
        sizeof buf);
    assert_string_equal(
        buf, "r\xc3\xa9sum\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a");
    /* C0, DEL and C1 (U+0085, U+009B: CSI to an 8-bit terminal) controls. */
    jz_cli_sanitize("a\tb\rc\x1b[2J\x7f\xc2\x85\xc2\x9b", buf, sizeof buf);
    assert_string_equal(buf, "a\\u0009b\\u000dc\\u001b[2J\\u007f\\u0085\\u009b");
    /* Every bidirectional control: a right-to-left override makes "evil\u202etxt.exe" read
     * "evilexe.txt". */
    jz_cli_sanitize("evil\xe2\x80\xaetxt.exe", buf, sizeof buf);
    assert_string_equal(buf, "evil\\u202etxt.exe");
    static const struct {
        const char *utf8, *escaped;
    } bidi[] = {
        {"\xd8\x9c", "\\u061c"},     {"\xe2\x80\x8e", "\\u200e"}, {"\xe2\x80\x8f", "\\u200f"},
        {"\xe2\x80\xaa", "\\u202a"}, {"\xe2\x80\xab", "\\u202b"}, {"\xe2\x80\xac", "\\u202c"},
        {"\xe2\x80\xad", "\\u202d"}, {"\xe2\x81\xa6", "\\u2066"}, {"\xe2\x81\xa7", "\\u2067"},
        {"\xe2\x81\xa8", "\\u2068"}, {"\xe2\x81\xa9", "\\u2069"}};
    for (size_t i = 0; i < sizeof bidi / sizeof bidi[0]; i++) {
        jz_cli_sanitize(bidi[i].utf8, buf, sizeof buf);
        assert_string_equal(buf, bidi[i].escaped);
    }
    /* Neighbours of the bidi controls are ordinary characters (U+200D ZWJ, U+202F, U+2065). */
    jz_cli_sanitize("\xe2\x80\x8d\xe2\x80\xaf\xe2\x81\xa5", buf, sizeof buf);
    assert_string_equal(buf, "\xe2\x80\x8d\xe2\x80\xaf\xe2\x81\xa5");
    /* Not UTF-8 (a lone C1 byte, an overlong ESC, a cut sequence): '?' per byte. */
    jz_cli_sanitize("x\x9by\xc0\x9bz\xe2\x80", buf, sizeof buf);
    assert_string_equal(buf, "x?y??z??");
    /* Cut at a boundary: never half an escape or half a character. */
    char small[8];
    jz_cli_sanitize("ab\xe2\x80\xae" "cd", small, sizeof small);
    assert_string_equal(small, "ab");
    jz_cli_sanitize("abcd\xc3\xa9\xc3\xa9", small, sizeof small);
    assert_string_equal(small, "abcd\xc3\xa9");
    jz_cli_sanitize(NULL, small, sizeof small);
    assert_string_equal(small, "");
    /* The growth bound holds for the worst case, all controls. */
    char worst[3 * JZ_CLI_SANITIZE_GROWTH + 1];
    jz_cli_sanitize("\x01\x02\x03", worst, sizeof worst);
    assert_string_equal(worst, "\\u0001\\u0002\\u0003");
}

static char *print_table(struct jz_table *t)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    jz_table_print(t, f);
    fclose(f);
    return text;
}

static void test_table(void **state)
{
    static const char *const hdr[] = {"ID", "NAME", "STATE", "REASON"};
    struct jz_table *t = jz_table_new(4, hdr);
    assert_non_null(t);
    jz_table_align_right(t, 0);
    const char *r1[] = {"7", "train-résumé", "RUNNING", NULL};
    const char *r2[] = {"1234", "a\tb\nc", "PENDING", "waiting for 2 free GPUs"};
    assert_int_equal(jz_table_add(t, r1), 0);
    assert_int_equal(jz_table_add(t, r2), 0);
    char *text = print_table(t);
    assert_string_equal(text, "  ID  NAME             STATE    REASON\n"
                              "   7  train-résumé     RUNNING  -\n"
                              "1234  a\\u0009b\\u000ac  PENDING  waiting for 2 free GPUs\n");
    free(text);
    jz_table_free(t);
    jz_table_free(NULL);

    /* A header-only table prints just the header. */
    static const char *const h2[] = {"A", "B"};
    t = jz_table_new(2, h2);
    text = print_table(t);
    assert_string_equal(text, "A  B\n");
    free(text);
    jz_table_free(t);
}

static void test_age(void **state)
{
    /* now: 2026-12-02T17:00:00.000Z */
    int64_t now = 0;
    assert_int_equal(jz_time_parse_iso("2026-12-02T17:00:00.000Z", &now, NULL), 0);
    static const struct {
        const char *iso;
        const char *age;
    } cases[] = {
        {"2026-12-02T16:59:58.000Z", "2s ago"},
        {"2026-12-02T16:59:57.900Z", "2s ago"}, /* whole seconds, rounded down */
        {"2026-12-02T17:00:00.000Z", "0s ago"},
        {"2026-12-02T17:00:03.000Z", "0s ago"}, /* the server's clock is ahead of ours */
        {"2026-12-02T16:59:00.000Z", "1m ago"},
        {"2026-12-02T16:57:30.000Z", "2m30s ago"},
        {"2026-12-02T16:00:00.000Z", "1h ago"},
        {"2026-12-02T15:54:48.000Z", "1h5m ago"}, /* 1h5m12s: two units are enough */
        {"2026-12-01T17:00:00.000Z", "1d ago"},
        {"2026-11-29T14:00:00.000Z", "3d3h ago"},
        {"2026-12-02T16:59:01Z", "59s ago"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jz_cli_age_format(cases[i].iso, now, buf, sizeof buf);
        assert_string_equal(buf, cases[i].age);
    }
    jz_cli_age_format(NULL, now, buf, sizeof buf);
    assert_string_equal(buf, "-");
    jz_cli_age_format("yesterday", now, buf, sizeof buf);
    assert_string_equal(buf, "-");
    /* A small buffer truncates, it does not overflow. */
    char small[4];
    jz_cli_age_format("2026-12-02T16:57:30.000Z", now, small, sizeof small);
    assert_string_equal(small, "2m3");
}

static void test_job_gpus(void **state)
{
    static const struct {
        const char *json;
        const char *cell;
    } cases[] = {
        {"{\"resources\": {\"gpus\": 2}, \"gpus\": []}", "2"},
        {"{\"resources\": {\"gpus\": 2}, \"gpus\": [{\"index\": 0}, {\"index\": 1}]}", "2"},
        {"{\"resources\": {\"nodes\": 2, \"gpus_per_node\": 4}, \"gpus\": []}", "2x4"},
        {"{\"resources\": {\"nodes\": 2, \"gpus_per_node\": 1}, \"gpus\": [{\"node\": \"a\"}, "
         "{\"node\": \"b\"}]}",
         "2x1"},
        {"{\"resources\": {\"nodes\": 3, \"gpus\": 8}, \"gpus\": []}", "8"},
        {"{\"resources\": {\"nodes\": 1, \"gpus_per_node\": 4, \"gpus\": 4}}", "4"},
        {"{}", "0"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = job(cases[i].json);
        jz_cli_job_gpus(j, buf, sizeof buf);
        assert_string_equal(buf, cases[i].cell);
        json_decref(j);
    }
}

/* A canned answer of GET /v1/nodes, as the server documents it. */
static const char nodes_up[] =
    "{\"nodes\": ["
    "{\"name\": \"gpu-a1\", \"site\": \"rabat\", \"state\": \"up\", \"labels\": {\"switch\": "
    "\"sw1\"}, \"source\": \"live\", \"description\": \"rack 3\", \"address\": \"10.0.0.5\", "
    "\"cpus\": 64, \"cores\": 32, \"cores_free\": 20, \"gpus_total\": 8, \"gpus_free\": 6, "
    "\"gpu_model\": \"Tesla T4\", \"running_jobs\": 3, \"last_heartbeat\": "
    "\"2026-12-02T16:59:58.000Z\", \"drain_reason\": null, \"gpus\": [{\"index\": 0, "
    "\"pci_bus_id\": \"0000:3b:00.0\", \"model\": \"Tesla T4\", \"memory_bytes\": 0, \"numa\": 0, "
    "\"os_names\": \"nvidia0\", \"job\": 42}]},"
    "{\"name\": \"cpu-b7\", \"site\": \"casablanca\", \"state\": \"down\", \"labels\": {}, "
    "\"source\": \"xml:b7.xml\", \"cpus\": 16, \"cores\": 8, \"cores_free\": 8, \"gpus_total\": "
    "0, \"gpus_free\": 0, \"gpu_model\": null, \"running_jobs\": 0, \"last_heartbeat\": null, "
    "\"drain_reason\": null, \"gpus\": []}"
    "]}";

static const char nodes_draining[] =
    "{\"nodes\": ["
    "{\"name\": \"gpu-a1\", \"site\": \"rabat\", \"state\": \"draining\", \"gpus_total\": 8, "
    "\"gpus_free\": 6, \"gpu_model\": \"Tesla T4\", \"running_jobs\": 3, \"last_heartbeat\": "
    "\"2026-12-02T16:57:30.000Z\", \"drain_reason\": \"fan \\u001b[31mfailure\"},"
    "{\"name\": \"gpu-a2\", \"site\": \"rabat\", \"state\": \"up\", \"gpus_total\": 16, "
    "\"gpus_free\": 16, \"gpu_model\": \"NVIDIA H100 80GB HBM3\", \"running_jobs\": 0, "
    "\"last_heartbeat\": \"2026-12-02T15:54:48.000Z\", \"drain_reason\": null},"
    "{\"name\": \"gpu-a3\", \"site\": \"rabat\", \"state\": \"revoked\", \"gpus_total\": 4, "
    "\"gpus_free\": 0, \"gpu_model\": \"Tesla T4\", \"running_jobs\": 0, \"last_heartbeat\": "
    "\"2026-11-29T14:00:00.000Z\", \"drain_reason\": null}"
    "]}";

static char *nodes_text(const char *answer, int64_t now)
{
    json_t *j = job(answer);
    struct jz_table *t = jz_cli_nodes_table(json_object_get(j, "nodes"), now);
    assert_non_null(t);
    char *text = print_table(t);
    jz_table_free(t);
    json_decref(j);
    return text;
}

static void test_nodes_table(void **state)
{
    int64_t now = 0;
    assert_int_equal(jz_time_parse_iso("2026-12-02T17:00:00.000Z", &now, NULL), 0);
    char *text = nodes_text(nodes_up, now);
    /* No node is draining: no REASON column. */
    assert_string_equal(text, "NAME    SITE        STATE  GPUS  MODEL     JOBS  HEARTBEAT\n"
                              "gpu-a1  rabat       up      6/8  Tesla T4     3  2s ago\n"
                              "cpu-b7  casablanca  down    0/0  -            0  -\n");
    free(text);

    /* A draining node brings the REASON column; the server's text is sanitized. */
    text = nodes_text(nodes_draining, now);
    assert_string_equal(
        text, "NAME    SITE   STATE      GPUS  MODEL                  JOBS  HEARTBEAT  REASON\n"
              "gpu-a1  rabat  draining    6/8  Tesla T4                  3  2m30s ago  fan "
              "\\u001b[31mfailure\n"
              "gpu-a2  rabat  up        16/16  NVIDIA H100 80GB HBM3     0  1h5m ago   -\n"
              "gpu-a3  rabat  revoked     0/4  Tesla T4                  0  3d3h ago   -\n");
    free(text);

    /* No nodes (a site with none): the header alone. */
    text = nodes_text("{\"nodes\": []}", now);
    assert_string_equal(text, "NAME  SITE  STATE  GPUS  MODEL  JOBS  HEARTBEAT\n");
    free(text);
    /* An answer without "nodes" prints the same rather than failing. */
    struct jz_table *t = jz_cli_nodes_table(NULL, now);
    assert_non_null(t);
    jz_table_free(t);
}

/* Prints a table into a string (freed by the caller). */
static char *table_text(struct jz_table *t)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    jz_table_print(t, f);
    fclose(f);
    return buf;
}

static json_t *queue_jobs(void)
{
    json_t *j = json_loads(
        "["
        "{\"id\": 10, \"name\": \"solo\", \"user\": \"bob\", \"tenant\": \"phy\","
        " \"plugin\": \"batch\", \"state\": \"RUNNING\", \"resources\": {\"gpus\": 2},"
        " \"start_time\": \"2026-12-03T10:00:00Z\", \"reason\": null, \"array\": null},"
        "{\"id\": 12, \"name\": \"sweep\", \"user\": \"ann\", \"tenant\": \"bio\","
        " \"plugin\": \"train\", \"state\": \"RUNNING\", \"resources\": {\"gpus\": 1},"
        " \"start_time\": \"2026-12-03T10:59:00Z\","
        " \"array\": {\"id\": 12, \"index\": 0, \"count\": 4, \"throttle\": 2}},"
        "{\"id\": 13, \"name\": \"sweep\", \"user\": \"ann\", \"tenant\": \"bio\","
        " \"plugin\": \"train\", \"state\": \"RUNNING\", \"resources\": {\"gpus\": 1},"
        " \"start_time\": \"2026-12-03T10:59:30Z\","
        " \"array\": {\"id\": 12, \"index\": 1, \"count\": 4, \"throttle\": 2}},"
        "{\"id\": 14, \"name\": \"sweep\", \"user\": \"ann\", \"tenant\": \"bio\","
        " \"plugin\": \"train\", \"state\": \"PENDING\", \"resources\": {\"gpus\": 1},"
        " \"reason\": \"array throttle\","
        " \"array\": {\"id\": 12, \"index\": 2, \"count\": 4, \"throttle\": 2}},"
        "{\"id\": 15, \"name\": \"sweep\", \"user\": \"ann\", \"tenant\": \"bio\","
        " \"plugin\": \"train\", \"state\": \"PENDING\", \"resources\": {\"gpus\": 1},"
        " \"array\": {\"id\": 12, \"index\": 3, \"count\": 4, \"throttle\": 2}}"
        "]",
        0, NULL);
    assert_non_null(j);
    return j;
}

/* The queue: arrays on one line unless expanded, chosen columns, sorting, no header. */
static void test_queue_table(void **state)
{
    json_t *jobs = queue_jobs();
    int64_t now = 0;
    assert_int_equal(jz_time_parse_iso("2026-12-03T11:00:00Z", &now, NULL), 0);
    struct jz_cli_queue_args q = {.limit = 1000};
    struct jz_table *t = jz_cli_queue_table(jobs, &q, now);
    char *out = table_text(t);
    assert_string_equal(out,
                        "        ID  NAME   USER  TENANT  PLUGIN  STATE                GPUS  TIME  "
                        "REASON\n"
                        "        10  solo   bob   phy     batch   RUNNING                 2  1h    "
                        "-\n"
                        "12_[0-3%2]  sweep  ann   bio     train   RUNNING:2,PENDING:2     1  -     "
                        "array throttle\n");
    free(out);
    jz_table_free(t);

    q.expand = true;
    q.format = "id,state,time";
    q.sort = "-time";
    q.noheader = true;
    t = jz_cli_queue_table(jobs, &q, now);
    out = table_text(t);
    assert_string_equal(out, "  10  RUNNING  1h\n"
                             "12_0  RUNNING  1m\n"
                             "12_1  RUNNING  30s\n"
                             "12_2  PENDING  -\n"
                             "12_3  PENDING  -\n");
    free(out);
    jz_table_free(t);

    q.sort = "user";
    q.format = "user,id";
    q.expand = false;
    t = jz_cli_queue_table(jobs, &q, now);
    out = table_text(t);
    assert_string_equal(out, "ann  12_[0-3%2]\n"
                             "bob          10\n");
    free(out);
    jz_table_free(t);
    json_decref(jobs);
}

static int sse_count;
static char sse_seen[512];

static int on_sse(const char *event, const char *data, size_t len, void *ud)
{
    (void)ud;
    sse_count++;
    size_t n = strlen(sse_seen);
    snprintf(sse_seen + n, sizeof sse_seen - n, "[%s|%.*s]", event, (int)len, data);
    return strcmp(event, "stop") == 0 ? 7 : 0;
}

/* Server-sent events arrive cut anywhere; comments are seen, ids kept, "stop" stops. */
static void test_sse(void **state)
{
    const char *text = ": keep-alive\n\nid: 41\r\nevent: job\ndata: {\"a\":\n"
                       "data: 1}\n\ndata: plain\n\nevent: stop\ndata: x\n\nevent: job\ndata: y\n\n";
    for (size_t piece = 1; piece <= 7; piece += 3) {
        struct jz_cli_sse p = {0};
        sse_seen[0] = '\0';
        sse_count = 0;
        int rc = 0;
        for (size_t i = 0; i < strlen(text) && rc == 0; i += piece) {
            size_t n = strlen(text) - i < piece ? strlen(text) - i : piece;
            rc = jz_cli_sse_feed(&p, text + i, n, on_sse, NULL);
        }
        assert_int_equal(rc, 7);
        assert_string_equal(sse_seen, "[:| keep-alive][job|{\"a\":\n1}][message|plain][stop|x]");
        assert_string_equal(p.id, "41");
        jz_cli_sse_clear(&p);
    }
}

/* Colours only on a terminal, and never with NO_COLOR or TERM=dumb; the cell's colour
 * leaves the alignment alone. */
static void test_color(void **state)
{
    setenv("TERM", "xterm", 1);
    unsetenv("NO_COLOR");
    int fd = open("/dev/null", O_WRONLY);
    assert_false(jz_cli_use_color(fd)); /* not a terminal */
    close(fd);
    assert_string_equal(jz_cli_state_color("RUNNING:2,PENDING:1"), "\033[32m");
    assert_string_equal(jz_cli_state_color("RUNNINGX"), "");
    static const char *const hdr[] = {"A", "STATE", "B"};
    struct jz_table *t = jz_table_new(3, hdr);
    const char *row[] = {"1", "FAILED", "x"};
    jz_table_add(t, row);
    jz_table_color_states(t, 1);
    char *out = table_text(t);
    assert_string_equal(out, "A  STATE   B\n1  \033[31mFAILED\033[0m  x\n");
    free(out);
    jz_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time),       cmocka_unit_test(test_durations),
        cmocka_unit_test(test_exit_codes), cmocka_unit_test(test_server_error),
        cmocka_unit_test(test_table),      cmocka_unit_test(test_age),
        cmocka_unit_test(test_job_gpus),   cmocka_unit_test(test_nodes_table),
        cmocka_unit_test(test_sanitize),   cmocka_unit_test(test_queue_table),
        cmocka_unit_test(test_sse),        cmocka_unit_test(test_color),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
