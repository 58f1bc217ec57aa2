/* String helpers that C lacks. */
#ifndef JZ_COMMON_STRUTIL_H
#define JZ_COMMON_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Copies src into dst (size len), always NUL-terminated; returns false when truncated. */
bool jz_strlcpy(char *dst, const char *src, size_t len);
/* True when s is a safe single path component: [A-Za-z0-9._-]{1,max}, not starting with '.'. */
bool jz_name_is_safe(const char *s, size_t max);
/* Makes a directory and its parents (mode for new ones); 0 or a JZ_E* code. */
int jz_mkdir_p(const char *path, unsigned mode);
/* Removes path and everything under it, links not followed (by path: only for trees the
 * caller's own user controls). 0 (also when it does not exist) or -1 with errno. */
int jz_remove_tree(const char *path);
/* The Levenshtein distance between a and b (insertions, deletions, substitutions), for
 * "did you mean" hints; strings over 64 bytes are never near anything (returns SIZE_MAX). */
size_t jz_str_distance(const char *a, const char *b);
/* The candidate nearest to s when it is a plausible typo of it (distance at most 2, and less
 * than half of s's length, so that "x" suggests nothing), else NULL. candidates: n strings,
 * NULL entries skipped; the one returned is borrowed from them. */
const char *jz_str_nearest(const char *s, const char *const *candidates, size_t n);
/* A decimal id as a query or header gives it: digits only (no sign, no spaces), at least min,
 * at most 19 digits. True with *out set, else false and *out untouched. */
bool jz_parse_id(const char *s, int64_t min, int64_t *out);
/* The directory holding the running executable (from /proc/self/exe), into buf. */
int jz_exe_dir(char *buf, size_t len);

#endif
