/* The node's event lines: what a worker (and the job, which can write to the same pipe) sends
 * jazari-node, one JSON object per line. node.c parses each with jz_json_parse at depth 8 and
 * reads a few fields (node.c deliver_line; agent.c on_worker_event and classify); those reads are
 * repeated here. Lines are split as node.c splits them, at most WORKER_LINE_MAX bytes. */
#define _GNU_SOURCE /* sigabbrev_np, as node/agent.c */
#include "fuzz.h"

#include "common/json.h"

#define LINE_MAX_BYTES 8192 /* node.c's WORKER_LINE_MAX */

static void deliver(const char *line, size_t len)
{
    if (len == 0)
        return;
    json_t *ev = jz_json_parse(line, len, 8, NULL);
    if (ev && json_is_object(ev)) {
        const char *type = jz_json_str(ev, "type", "");
        json_int_t pid = jz_json_int(ev, "pid", 0);
        const char *status = jz_json_str(ev, "status", NULL);
        json_t *code = json_object_get(ev, "exit_code");
        json_t *sig = json_object_get(ev, "signal");
        char reason[1300];
        snprintf(reason, sizeof reason, "%s %lld %s %lld %s", type, (long long)pid,
                 status ? status : "",
                 json_is_integer(code) ? (long long)json_integer_value(code) : -1LL,
                 jz_json_str(ev, "message", ""));
        if (json_is_integer(sig)) {
            const char *abbrev = sigabbrev_np((int)json_integer_value(sig));
            snprintf(reason, sizeof reason, "killed by signal %s", abbrev ? abbrev : "?");
        }
        /* The agent forwards the event inside a header: it must serialise. */
        char *text = json_dumps(ev, JSON_COMPACT);
        FUZZ_CHECK(text != NULL);
        free(text);
    }
    json_decref(ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(LINE_MAX_BYTES);
    if (!line)
        abort();
    size_t len = 0;
    int overflow = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] == '\n') {
            if (!overflow)
                deliver(line, len);
            len = 0;
            overflow = 0;
        } else if (len < LINE_MAX_BYTES) {
            line[len++] = (char)data[i];
        } else {
            overflow = 1;
        }
    }
    if (len && !overflow)
        deliver(line, len);
    free(line);
    return 0;
}
