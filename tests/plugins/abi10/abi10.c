/* Test plugin "abi10": what a plugin built against ABI 1.0 looks like to a newer host. Its
 * descriptor says 1.0 and its ops table ends after `run` (the 1.0 layout), so the host must not
 * read init/fini/validate from it; it uses only the 1.0 host functions. */
#include <stddef.h>

#include <jazari/plugin.h>

static const struct jz_param_spec abi10_params[] = {
    {.name = "n", .type = JZ_PARAM_INT, .default_json = "2", .min = 0, .max = 100},
};

static int abi10_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    /* A 1.0 plugin knows the table up to set_error. */
    size_t v10_end = offsetof(struct jz_host, set_error) + sizeof(void *);
    host->log(ctx, JZ_LOG_INFO, "abi10: host %u.%u table_ok=%d n=%lld", host->abi_major,
              host->abi_minor, host->struct_size >= v10_end, (long long)host->param_int(ctx, "n"));
    return 0;
}

/* The 1.0 ops layout: struct_size covers run only; what follows in this host's struct is
 * never read (the host copies struct_size bytes and zero-fills the rest). */
static const struct jz_plugin_ops abi10_ops = {
    .struct_size = offsetof(struct jz_plugin_ops, run) + sizeof(void *),
    .run = abi10_run,
};

JZ_PLUGIN_EXPORT const struct jz_plugin jazari_plugin = {
    .struct_size = offsetof(struct jz_plugin, ops) + sizeof(void *),
    .abi_major = 1,
    .abi_minor = 0,
    .name = "abi10",
    .version = "1.0.0",
    .description = "Test: a plugin built against ABI 1.0",
    .params = abi10_params,
    .n_params = JZ_ARRAY_LEN(abi10_params),
    .ops = &abi10_ops,
};
