/* The release of this build: one place for `--version`, GET /v1/version and
 * jazari_build_info. The number is the CMake project's version; the commit is what `git
 * describe` said when the build was configured ("unknown" outside a git checkout). */
#ifndef JZ_COMMON_VERSION_H
#define JZ_COMMON_VERSION_H

#include <stdio.h>

/* "0.3.0": the project's version (static storage). */
const char *jz_version(void);
/* "v0.3.0-12-gabc1234" or "unknown" (static storage). */
const char *jz_version_commit(void);
/* Writes "PROGRAM (Jazari) VERSION\ncommit ..., plugin ABI M.m, kernels API N\n" to out: what
 * every program's --version prints. */
void jz_version_print(FILE *out, const char *program);

#endif
