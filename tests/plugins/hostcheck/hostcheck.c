/* Test plugin "hostcheck": calls every host function, including with bad arguments, and logs
 * what it got as "check KEY=VALUE" lines that tests/unit/worker compares with expectations. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <jazari/error.h>
#include <jazari/plugin.h>

static const struct jz_param_spec hostcheck_params[] = {
    {.name = "ints", .type = JZ_PARAM_INT_LIST, .default_json = "[]"},
    {.name = "strs", .type = JZ_PARAM_STRING_LIST, .default_json = "[]"},
    {.name = "ratio", .type = JZ_PARAM_FLOAT, .default_json = "0.5"},
};

static int hostcheck_run(jz_ctx_t *ctx, const struct jz_host *host)
{
    host->log(ctx, JZ_LOG_INFO, "check host_size_ok=%d abi=%u.%u",
              host->struct_size >= sizeof *host, host->abi_major, host->abi_minor);
    host->log(ctx, JZ_LOG_INFO, "check job_id=%s", host->job_id(ctx));
    host->log(ctx, JZ_LOG_INFO, "check params_json=%s", host->params_json(ctx));
    host->log(ctx, JZ_LOG_INFO, "check ints=%zu:%lld,%lld", host->param_list_len(ctx, "ints"),
              (long long)host->param_list_int(ctx, "ints", 0),
              (long long)host->param_list_int(ctx, "ints", 1));
    host->log(ctx, JZ_LOG_INFO, "check strs=%zu:%s", host->param_list_len(ctx, "strs"),
              host->param_list_string(ctx, "strs", 0) ? host->param_list_string(ctx, "strs", 0)
                                                      : "(null)");
    host->log(ctx, JZ_LOG_INFO, "check ratio=%g absent=%d,%lld,%g,%d,%s",
              host->param_float(ctx, "ratio"), host->param_present(ctx, "nope"),
              (long long)host->param_int(ctx, "nope"), host->param_float(ctx, "nope"),
              host->param_bool(ctx, "nope"), host->param_string(ctx, "nope") ? "set" : "(null)");

    size_t n = host->device_count(ctx);
    host->log(ctx, JZ_LOG_INFO, "check devices=%zu", n);
    for (size_t i = 0; i < n; i++) {
        struct jz_device_info d = {.struct_size = sizeof d};
        int rc = host->device_get(ctx, i, &d);
        host->log(ctx, JZ_LOG_INFO, "check dev%zu=%d:%s/%d/%d/%s/%s/%llu/%d", i, rc, d.backend,
                  d.ordinal, d.node_index, d.pci_bus_id, d.model,
                  (unsigned long long)d.memory_bytes, d.numa_node);
    }
    /* An older plugin's smaller struct: only the fields it knows are written. */
    struct jz_device_info small;
    memset(&small, 'Z', sizeof small);
    small.struct_size = (uint32_t)offsetof(struct jz_device_info, ordinal);
    int rc = host->device_get(ctx, 0, &small);
    host->log(ctx, JZ_LOG_INFO, "check small_get=%d backend=%s untouched=%d", rc,
              rc == 0 ? small.backend : "", small.model[0] == 'Z');
    struct jz_device_info past = {.struct_size = sizeof past};
    host->log(ctx, JZ_LOG_INFO, "check get_past_end=%d", host->device_get(ctx, n, &past));

    host->log(ctx, JZ_LOG_INFO, "check cpus=%s count=%zu", host->cpu_list(ctx),
              host->cpu_count(ctx));
    host->log(ctx, JZ_LOG_INFO, "check output_dir_set=%d submit_dir=%s",
              host->output_dir(ctx)[0] == '/', host->submit_dir(ctx));

    char buf[4096];
    host->log(ctx, JZ_LOG_INFO, "check artifact_bad=%d,%d,%d",
              host->artifact_path(ctx, "../escape", buf, sizeof buf),
              host->artifact_path(ctx, ".hidden", buf, sizeof buf),
              host->artifact_path(ctx, "ok.txt", buf, 4));
    int a1 = host->artifact_path(ctx, "ok.txt", buf, sizeof buf);
    int a2 = host->artifact_path(ctx, "ok.txt", buf, sizeof buf); /* registered once */
    host->log(ctx, JZ_LOG_INFO, "check artifact_ok=%d,%d", a1, a2);

    const char *restore = host->checkpoint_restore_path(ctx);
    host->log(ctx, JZ_LOG_INFO, "check restore=%s", restore ? "yes" : "none");
    host->log(ctx, JZ_LOG_INFO, "check commit_without_file=%d", host->checkpoint_commit(ctx));
    rc = host->checkpoint_begin(ctx, buf, sizeof buf);
    FILE *f = rc == 0 ? fopen(buf, "w") : NULL;
    if (f) {
        fputs("state\n", f);
        fclose(f);
    }
    host->log(ctx, JZ_LOG_INFO, "check checkpoint=%d,%d,requested=%d", rc,
              host->checkpoint_commit(ctx), host->checkpoint_requested(ctx));

    host->metric(ctx, "bad name", 1.0, 0);
    host->metric(ctx, "inf", INFINITY, 0);
    host->metric(ctx, "good.metric-1", 2.5, -1);
    host->progress(ctx, 7.0, "over one");
    host->log(ctx, JZ_LOG_INFO, "line one\nstill line one");
    char big[6000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    host->log(ctx, JZ_LOG_DEBUG, "%s", big);
    host->log(ctx, JZ_LOG_INFO, "check cancelled=%d", host->cancelled(ctx));
    host->set_error(ctx, "hostcheck: done (%d)", 5);
    return 5;
}

static const struct jz_plugin_ops hostcheck_ops = {.struct_size = sizeof hostcheck_ops,
                                                   .run = hostcheck_run};

JZ_PLUGIN_DEFINE(.name = "hostcheck", .version = "0.0.1",
                 .description = "Test: exercises every host function", .caps = JZ_CAP_CHECKPOINT,
                 .params = hostcheck_params, .n_params = JZ_ARRAY_LEN(hostcheck_params),
                 .ops = &hostcheck_ops);
