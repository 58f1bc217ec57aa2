/* Topologies from agents: the hwloc XML an agent's hello carries, loaded from memory. Each
 * document is first imported in a child process (trial_import in scheduler/topo_hwloc.c), so
 * this target runs about 50 inputs a second: a fork and two hwloc imports each. */
#include "fuzz.h"

#include "scheduler/topo.h"
#include "scheduler/topo_hwloc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* hwloc would otherwise read these from the environment of whoever runs the fuzzer. */
    unsetenv("HWLOC_XMLFILE");
    unsetenv("HWLOC_FSROOT");
    setenv("HWLOC_HIDE_ERRORS", "2", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jz_topo *t = NULL;
    struct jz_error err = {0};
    if (jz_topo_hwloc_load_xml_buffer((const char *)data, size, &t, &err) == 0) {
        FUZZ_CHECK(jz_topo_is_finished(t));
        size_t gpus = jz_topo_gpu_count(t);
        FUZZ_CHECK(gpus <= JZ_TOPO_MAX_GPUS);
        for (size_t i = 0; i < gpus; i++)
            for (size_t j = 0; j < gpus; j++)
                FUZZ_CHECK(jz_topo_gpu_distance(t, i, j) == jz_topo_gpu_distance(t, j, i));
        char buf[4096];
        (void)jz_topo_describe(t, buf, sizeof buf);
        jz_topo_destroy(t);
    } else {
        FUZZ_CHECK(err.code < 0 && err.msg[0]);
    }
    return 0;
}
