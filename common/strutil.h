/* String helpers that C lacks. */
#ifndef JZ_COMMON_STRUTIL_H
#define JZ_COMMON_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Copies src into dst (size len), always NUL-terminated; returns false when truncated. */
bool jz_strlcpy(char *dst, const char *src, size_t len);
/* True when s is a safe single path component: [A-Za-z0-9._-]{1,max}, not starting with '.'. */
bool jz_name_is_safe(const char *s, size_t max);
/* Makes a directory and its parents (mode for new ones); 0 or a JZ_E* code. */
int jz_mkdir_p(const char *path, unsigned mode);
/* Removes path and everything under it, links not followed (by path: only for trees the
 * caller's own user controls). 0 (also when it does not exist) or -1 with errno. */
int jz_remove_tree(const char *path);
/* The directory holding the running executable (from /proc/self/exe), into buf. */
int jz_exe_dir(char *buf, size_t len);

#endif
