// Test plugin "cxx": a plugin written in C++ (C++20), using the standard library and an
// exception internally, exporting its descriptor with JZ_PLUGIN_DEFINE.
#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <jazari/plugin.h>

namespace {

const jz_param_spec cxx_params[] = {
    {.name = "values", .type = JZ_PARAM_INT_LIST, .default_json = "[1,2,3]"},
    {.name = "throw_inside", .type = JZ_PARAM_BOOL, .default_json = "false"},
};

long long sum_of(const std::vector<long long> &v, bool throw_inside)
{
    if (throw_inside)
        throw std::runtime_error("asked to throw");
    return std::accumulate(v.begin(), v.end(), 0LL);
}

int cxx_run(jz_ctx_t *ctx, const jz_host *host)
{
    std::vector<long long> v;
    for (size_t i = 0; i < host->param_list_len(ctx, "values"); i++)
        v.push_back(host->param_list_int(ctx, "values", i));
    // Exceptions must not cross the C ABI: caught here and turned into the job's error.
    try {
        long long s = sum_of(v, host->param_bool(ctx, "throw_inside"));
        std::string msg = "cxx: sum=" + std::to_string(s);
        host->log(ctx, JZ_LOG_INFO, "%s", msg.c_str());
        host->metric(ctx, "sum", static_cast<double>(s), -1);
        return 0;
    } catch (const std::exception &e) {
        host->set_error(ctx, "cxx: %s", e.what());
        return 1;
    }
}

const jz_plugin_ops cxx_ops = {.struct_size = sizeof(jz_plugin_ops), .run = cxx_run};

} // namespace

JZ_PLUGIN_DEFINE(.name = "cxx", .version = "0.1.0",
                 .description = "Test: a plugin written in C++",
                 .caps = 0, .params = cxx_params, .n_params = JZ_ARRAY_LEN(cxx_params),
                 .ops = &cxx_ops);
