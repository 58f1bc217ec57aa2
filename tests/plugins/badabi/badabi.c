/* Test plugin "badabi": a descriptor built for plugin ABI 99, which every worker must refuse. */
#include <jazari/plugin.h>

static int badabi_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    return 0;
}

static const struct jz_plugin_ops badabi_ops = {.struct_size = sizeof badabi_ops,
                                                .run = badabi_run};

/* Written out by hand: JZ_PLUGIN_DEFINE would fill in the real ABI numbers. */
JZ_PLUGIN_EXPORT const struct jz_plugin jazari_plugin = {
    .struct_size = sizeof(struct jz_plugin),
    .abi_major = 99,
    .abi_minor = 0,
    .name = "badabi",
    .version = "0.0.1",
    .description = "Test: built for a future ABI",
    .ops = &badabi_ops,
};
