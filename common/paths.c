/* Run-time locations of Jazari's parts (paths.h). */
#include "common/paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jazari/error.h>
#include <jazari/kernels.h>

#include "common/strutil.h"

#if !defined(JZ_REL_BIN_TO_PLUGINS) || !defined(JZ_REL_BIN_TO_LIB)
#error "JZ_REL_BIN_TO_PLUGINS and JZ_REL_BIN_TO_LIB come from CMake (cmake/JazariInstallDirs.cmake)"
#endif

int jz_builtin_plugin_dir(char *buf, size_t len)
{
    char exe_dir[4096], path[4400];
    if (jz_exe_dir(exe_dir, sizeof exe_dir) != 0)
        return JZ_EIO;
    /* A build tree first: build/bin/jazarid next to build/plugins. An installed bin/ has no
     * plugins/ sibling (it would be <prefix>/plugins, which no install layout makes). */
    struct stat st;
    snprintf(path, sizeof path, "%s/../plugins", exe_dir);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        snprintf(path, sizeof path, "%s/%s", exe_dir, JZ_REL_BIN_TO_PLUGINS);
    if (strlen(path) >= len)
        return JZ_ERANGE;
    memcpy(buf, path, strlen(path) + 1);
    return 0;
}

int jz_kernels_library_path(char *buf, size_t len)
{
    char exe_dir[4096], path[4400];
    if (jz_exe_dir(exe_dir, sizeof exe_dir) != 0)
        return JZ_EIO;
    struct stat st;
    snprintf(path, sizeof path, "%s/../lib/libjz_kernels.so.%d", exe_dir, JZ_KERNELS_API_VERSION);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        snprintf(path, sizeof path, "%s/%s/libjz_kernels.so.%d", exe_dir, JZ_REL_BIN_TO_LIB,
                 JZ_KERNELS_API_VERSION);
    if (strlen(path) >= len)
        return JZ_ERANGE;
    memcpy(buf, path, strlen(path) + 1);
    return 0;
}

/* Appends dir to list (len bytes) unless it is there already. false when it does not fit. */
static bool add_dir(char *list, size_t len, const char *dir, size_t dlen)
{
    char given[PATH_MAX], real[PATH_MAX];
    if (dlen == 0 || dlen >= sizeof given)
        return dlen == 0;
    memcpy(given, dir, dlen);
    given[dlen] = '\0';
    const char *key = realpath(given, real) ? real : given;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char have[PATH_MAX], have_real[PATH_MAX];
        if (n < sizeof have) {
            memcpy(have, p, n);
            have[n] = '\0';
            if (strcmp(realpath(have, have_real) ? have_real : have, key) == 0)
                return true;
        }
        p += n + (end ? 1 : 0);
    }
    size_t used = strlen(list);
    if (used + (used ? 1 : 0) + dlen + 1 > len)
        return false;
    if (used)
        list[used++] = ':';
    memcpy(list + used, given, dlen + 1);
    return true;
}

int jz_plugin_dirs_compose(const char *extra, char *buf, size_t len)
{
    char list[8192] = "", builtin[4400];
    if (jz_builtin_plugin_dir(builtin, sizeof builtin) == 0 &&
        !add_dir(list, sizeof list, builtin, strlen(builtin)))
        return JZ_ERANGE;
    for (const char *p = extra ? extra : ""; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (!add_dir(list, sizeof list, p, n))
            return JZ_ERANGE;
        p += n + (end ? 1 : 0);
    }
    if (strlen(list) >= len)
        return JZ_ERANGE;
    memcpy(buf, list, strlen(list) + 1);
    return 0;
}
