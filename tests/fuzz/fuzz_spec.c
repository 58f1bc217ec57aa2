/* The worker's SPEC.json loader through its buffer entry point. */
#include "fuzz.h"

#include "worker/worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jz_worker_spec spec = {0};
    struct jz_error err = {0};
    if (jz_worker_spec_load_buffer((const char *)data, size, &spec, &err) == 0) {
        FUZZ_CHECK(spec.job_id && spec.plugin_path && spec.output_dir);
        FUZZ_CHECK(spec.cpus && spec.numa_nodes && spec.submit_dir);
        FUZZ_CHECK(json_is_object(spec.params));
        FUZZ_CHECK(spec.n_devices == 0 || spec.devices);
        FUZZ_CHECK(spec.n_devices <= JZ_WORKER_MAX_DEVICES);
        jz_worker_spec_free(&spec);
    } else {
        FUZZ_CHECK(err.code < 0 && err.msg[0]);
    }
    return 0;
}
