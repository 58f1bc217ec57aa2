/* The plugin ABI is these numbers: a plugin built against any 1.x header must find every field
 * where this host puts it. A change that moves a field or shrinks a struct fails here; a field
 * added at the end of a struct (a new minor) adds a row and changes only that struct's size.
 * Values are for x86-64 (LP64), the platform Jazari ships for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <jazari/plugin.h>

struct layout {
    const char *what;
    size_t have, want;
};

#define FIELD(s, f, off) {#s "." #f, offsetof(struct s, f), off}
#define SIZE(s, n) {"sizeof " #s, sizeof(struct s), n}

static const struct layout layouts[] = {
    SIZE(jz_param_spec, 56),
    FIELD(jz_param_spec, name, 0),
    FIELD(jz_param_spec, type, 8),
    FIELD(jz_param_spec, required, 12),
    FIELD(jz_param_spec, default_json, 16),
    FIELD(jz_param_spec, min, 24),
    FIELD(jz_param_spec, max, 32),
    FIELD(jz_param_spec, choices, 40),
    FIELD(jz_param_spec, help, 48),
    SIZE(jz_device_info, 144),
    FIELD(jz_device_info, struct_size, 0),
    FIELD(jz_device_info, backend, 4),
    FIELD(jz_device_info, ordinal, 20),
    FIELD(jz_device_info, node_index, 24),
    FIELD(jz_device_info, pci_bus_id, 28),
    FIELD(jz_device_info, model, 60),
    FIELD(jz_device_info, memory_bytes, 128),
    FIELD(jz_device_info, numa_node, 136),
    SIZE(jz_host, 240),
    FIELD(jz_host, struct_size, 0),
    FIELD(jz_host, abi_major, 4),
    FIELD(jz_host, abi_minor, 8),
    FIELD(jz_host, param_present, 16),
    FIELD(jz_host, param_string, 24),
    FIELD(jz_host, param_int, 32),
    FIELD(jz_host, param_float, 40),
    FIELD(jz_host, param_bool, 48),
    FIELD(jz_host, param_list_len, 56),
    FIELD(jz_host, param_list_string, 64),
    FIELD(jz_host, param_list_int, 72),
    FIELD(jz_host, params_json, 80),
    FIELD(jz_host, job_id, 88),
    FIELD(jz_host, device_count, 96),
    FIELD(jz_host, device_get, 104),
    FIELD(jz_host, cpu_list, 112),
    FIELD(jz_host, cpu_count, 120),
    FIELD(jz_host, output_dir, 128),
    FIELD(jz_host, submit_dir, 136),
    FIELD(jz_host, log, 144),
    FIELD(jz_host, progress, 152),
    FIELD(jz_host, metric, 160),
    FIELD(jz_host, cancelled, 168),
    FIELD(jz_host, checkpoint_requested, 176),
    FIELD(jz_host, artifact_path, 184),
    FIELD(jz_host, checkpoint_restore_path, 192),
    FIELD(jz_host, checkpoint_begin, 200),
    FIELD(jz_host, checkpoint_commit, 208),
    FIELD(jz_host, set_error, 216),
    FIELD(jz_host, vlog, 224),
    FIELD(jz_host, vset_error, 232),
    SIZE(jz_plugin_ops, 40),
    FIELD(jz_plugin_ops, struct_size, 0),
    FIELD(jz_plugin_ops, run, 8),
    FIELD(jz_plugin_ops, init, 16),
    FIELD(jz_plugin_ops, fini, 24),
    FIELD(jz_plugin_ops, validate, 32),
    SIZE(jz_plugin, 72),
    FIELD(jz_plugin, struct_size, 0),
    FIELD(jz_plugin, abi_major, 4),
    FIELD(jz_plugin, abi_minor, 8),
    FIELD(jz_plugin, name, 16),
    FIELD(jz_plugin, version, 24),
    FIELD(jz_plugin, description, 32),
    FIELD(jz_plugin, caps, 40),
    FIELD(jz_plugin, params, 48),
    FIELD(jz_plugin, n_params, 56),
    FIELD(jz_plugin, ops, 64),
};

static void test_layouts(void **state)
{
    (void)state;
#if !defined(__x86_64__) || !defined(__LP64__)
    skip(); /* the literal values are x86-64's */
#endif
    int bad = 0;
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (layouts[i].have != layouts[i].want) {
            print_error("%s is %zu, the ABI says %zu\n", layouts[i].what, layouts[i].have,
                        layouts[i].want);
            bad++;
        }
    assert_int_equal(bad, 0);
}

/* The 1.0 layouts a 1.0 plugin carries in struct_size (what the worker's loader accepts). */
static void test_v10_sizes(void **state)
{
    (void)state;
    assert_int_equal(offsetof(struct jz_plugin, ops) + sizeof(void *), 72);
    assert_int_equal(offsetof(struct jz_plugin_ops, run) + sizeof(void *), 16);
    assert_int_equal(offsetof(struct jz_host, set_error) + sizeof(void *), 224);
}

static void test_constants(void **state)
{
    (void)state;
    assert_int_equal(JZ_PLUGIN_ABI_MAJOR, 1);
    assert_int_equal(JZ_PLUGIN_ABI_MINOR, 1);
    assert_string_equal(JZ_PLUGIN_SYMBOL, "jazari_plugin");
    assert_int_equal(JZ_CAP_NEEDS_GPU, 1);
    assert_int_equal(JZ_CAP_USES_GPU, 2);
    assert_int_equal(JZ_CAP_CHECKPOINT, 4);
    assert_int_equal(JZ_CAP_MULTI_NODE, 8);
    assert_int_equal(JZ_CAP_RUNS_COMMAND, 16);
    assert_int_equal(JZ_PARAM_STRING, 1);
    assert_int_equal(JZ_PARAM_INT, 2);
    assert_int_equal(JZ_PARAM_FLOAT, 3);
    assert_int_equal(JZ_PARAM_BOOL, 4);
    assert_int_equal(JZ_PARAM_STRING_LIST, 5);
    assert_int_equal(JZ_PARAM_INT_LIST, 6);
    assert_int_equal(JZ_LOG_ERROR, 0);
    assert_int_equal(JZ_LOG_WARN, 1);
    assert_int_equal(JZ_LOG_INFO, 2);
    assert_int_equal(JZ_LOG_DEBUG, 3);
    assert_int_equal(sizeof(enum jz_param_type), 4);
    assert_int_equal(sizeof(enum jz_log_level), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_v10_sizes),
        cmocka_unit_test(test_constants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
