/* Where an installed or built Jazari keeps the parts its programs find at run time, computed from
 * the running executable's own location so that one build works from any prefix. */
#ifndef JZ_COMMON_PATHS_H
#define JZ_COMMON_PATHS_H

#include <stddef.h>

/* The built-in plugin folder of the program running: in a build tree (bin/ beside plugins/) the
 * build's plugins/; installed, <bindir>/<path from bindir to the plugin folder>, the path CMake
 * derived from GNUInstallDirs ("../lib/x86_64-linux-gnu/jazari/plugins" under /usr on Debian).
 * Writes a NUL-terminated path to buf (caller-owned, len bytes) and returns 0; JZ_EIO when the
 * executable's folder cannot be read, JZ_ERANGE when buf is too small (buf is then unchanged).
 * The folder is not required to exist. */
int jz_builtin_plugin_dir(char *buf, size_t len);

/* The compute library (libjz_kernels.so.N, N its API version) of the program running: the build
 * tree's lib/, else <bindir>/<path from bindir to the library folder>. Plugins link it, but the
 * worker loads them through /proc/self/fd (a hashed descriptor), where their $ORIGIN RUNPATH
 * leads nowhere; the worker loads this file first for them (worker/loader.c). Writes the path
 * to buf and returns 0; JZ_EIO without the executable's folder, JZ_ERANGE when buf is too
 * small (buf unchanged). The file is not required to exist. */
int jz_kernels_library_path(char *buf, size_t len);

/* The plugin folders to scan: the built-in one first, then each of extra (a ':'-separated list,
 * may be NULL or ""), skipping a folder already listed (compared by real path where it exists).
 * Given folders add to the built-in one rather than replace it. Writes a ':'-separated list to
 * buf and returns 0; JZ_ERANGE when it does not fit (buf is then unchanged). Without a readable
 * executable folder the built-in one is left out, so extra alone is used. */
int jz_plugin_dirs_compose(const char *extra, char *buf, size_t len);

#endif
