/* Built with JZ_VERSION and JZ_VERSION_COMMIT from common/CMakeLists.txt; only this file is
 * recompiled when they change. */
#include "common/version.h"

#include <jazari/kernels.h>
#include <jazari/plugin.h>

#ifndef JZ_VERSION
#error "JZ_VERSION is defined by common/CMakeLists.txt"
#endif
#ifndef JZ_VERSION_COMMIT
#define JZ_VERSION_COMMIT "unknown"
#endif

const char *jz_version(void)
{
    return JZ_VERSION;
}

const char *jz_version_commit(void)
{
    return JZ_VERSION_COMMIT[0] ? JZ_VERSION_COMMIT : "unknown";
}

void jz_version_print(FILE *out, const char *program)
{
    fprintf(out, "%s (Jazari) %s\ncommit %s, plugin ABI %d.%d, kernels API %d\n", program,
            jz_version(), jz_version_commit(), JZ_PLUGIN_ABI_MAJOR, JZ_PLUGIN_ABI_MINOR,
            JZ_KERNELS_API_VERSION);
}
