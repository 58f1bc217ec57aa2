/* Small jansson helpers shared by the daemons, the worker and the CLI. */
#ifndef JZ_COMMON_JSON_H
#define JZ_COMMON_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include <jazari/error.h>

/* Parses text (of len bytes) with a nesting depth limit; on failure fills err with the line,
 * column and jansson's message. Returns a new reference or NULL. */
json_t *jz_json_parse(const char *text, size_t len, int max_depth, struct jz_error *err);
/* Reads and parses a whole file (at most max_bytes). */
json_t *jz_json_load_file(const char *path, size_t max_bytes, struct jz_error *err);

/* Writes v to fd as one piece of text (jansson's json_dumpfd makes a write call per token,
 * hundreds for a job spec). Returns 0, or -1 with errno set. */
int jz_json_dump_fd(const json_t *v, int fd, size_t flags);

/* Typed getters returning a fallback when the key is absent or of another type. */
const char *jz_json_str(const json_t *obj, const char *key, const char *fallback);
int64_t jz_json_int(const json_t *obj, const char *key, int64_t fallback);
double jz_json_num(const json_t *obj, const char *key, double fallback);
bool jz_json_bool(const json_t *obj, const char *key, bool fallback);

#endif
