/* jansson helpers: bounded parsing, atomic saves, typed getters. */
#include "common/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int json_depth(const json_t *v, int limit)
{
    if (limit < 0)
        return -1;
    int deepest = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *child;
        json_object_foreach((json_t *)v, k, child) {
            int d = json_depth(child, limit - 1);
            if (d < 0)
                return -1;
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) {
            int d = json_depth(child, limit - 1);
            if (d < 0)
                return -1;
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    return 0;
}

json_t *jz_json_parse(const char *text, size_t len, int max_depth, struct jz_error *err)
{
    json_error_t jerr;
    /* jansson itself refuses nesting deeper than JSON_PARSER_MAX_DEPTH (2048); the explicit
     * check below enforces the caller's much smaller bound. */
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        if (json_error_code(&jerr) == json_error_stack_overflow)
            jz_error_set(err, JZ_ELIMIT, "JSON nested deeper than %d levels", max_depth);
        else
            jz_error_set(err, JZ_EINVAL, "invalid JSON at line %d column %d: %s", jerr.line,
                         jerr.column, jerr.text);
        return NULL;
    }
    if (json_depth(v, max_depth) < 0) {
        json_decref(v);
        jz_error_set(err, JZ_ELIMIT, "JSON nested deeper than %d levels", max_depth);
        return NULL;
    }
    return v;
}

json_t *jz_json_load_file(const char *path, size_t max_bytes, struct jz_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        jz_error_set(err, JZ_EIO, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(max_bytes + 1);
    if (!buf) {
        fclose(f);
        jz_error_set(err, JZ_ENOMEM, "out of memory");
        return NULL;
    }
    size_t n = fread(buf, 1, max_bytes + 1, f);
    fclose(f);
    if (n > max_bytes) {
        free(buf);
        jz_error_set(err, JZ_ELIMIT, "%s is larger than %zu bytes", path, max_bytes);
        return NULL;
    }
    json_t *v = jz_json_parse(buf, n, 64, err);
    free(buf);
    return v;
}

const char *jz_json_str(const json_t *obj, const char *key, const char *fallback)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : fallback;
}

int64_t jz_json_int(const json_t *obj, const char *key, int64_t fallback)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : fallback;
}

double jz_json_num(const json_t *obj, const char *key, double fallback)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : fallback;
}

bool jz_json_bool(const json_t *obj, const char *key, bool fallback)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : fallback;
}

int jz_json_dump_fd(const json_t *v, int fd, size_t flags)
{
    char *text = json_dumps(v, flags);
    if (!text) {
        errno = ENOMEM;
        return -1;
    }
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int saved = n < 0 ? errno : EIO;
            free(text);
            errno = saved;
            return -1;
        }
        done += (size_t)n;
    }
    free(text);
    return 0;
}
