/* String and path helpers. */
#define _GNU_SOURCE /* nftw */
#include "common/strutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <jazari/error.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool jz_strlcpy(char *dst, const char *src, size_t len)
{
    size_t n = strlen(src);
    if (len == 0)
        return false;
    if (n >= len) {
        memcpy(dst, src, len - 1);
        dst[len - 1] = '\0';
        return false;
    }
    memcpy(dst, src, n + 1);
    return true;
}

bool jz_name_is_safe(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int jz_mkdir_p(const char *path, unsigned mode)
{
    /* The usual case, a new folder in one that exists, in one call: a job's folders are made at
     * the job rate, and each mkdir of an existing ancestor takes that folder's lock for a
     * lookup. */
    if (strlen(path) >= PATH_MAX)
        return JZ_ERANGE;
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return JZ_EIO;
    char tmp[PATH_MAX];
    if (!jz_strlcpy(tmp, path, sizeof tmp))
        return JZ_ERANGE;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST)
            return JZ_EIO;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return JZ_EIO;
    return 0;
}

int jz_exe_dir(char *buf, size_t len)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return JZ_EIO;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    if (!slash)
        return JZ_EIO;
    *slash = '\0';
    return jz_strlcpy(buf, path, len) ? 0 : JZ_ERANGE;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int jz_remove_tree(const char *path)
{
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 || errno == ENOENT ? 0 : -1;
}

size_t jz_str_distance(const char *a, const char *b)
{
    /* One row of the dynamic programme. */
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *jz_str_nearest(const char *s, const char *const *candidates, size_t n)
{
    const char *best = NULL;
    size_t len = strlen(s), best_d = 3; /* at most 2 edits */
    for (size_t i = 0; i < n; i++) {
        if (!candidates[i])
            continue;
        size_t d = jz_str_distance(s, candidates[i]);
        if (d < best_d && d * 2 < len) {
            best_d = d;
            best = candidates[i];
        }
    }
    return best;
}

bool jz_parse_id(const char *s, int64_t min, int64_t *out)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 19 || strspn(s, "0123456789") != n)
        return false;
    errno = 0;
    long long x = strtoll(s, NULL, 10);
    if (errno || x < min)
        return false;
    *out = (int64_t)x;
    return true;
}
