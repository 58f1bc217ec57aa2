/* CPU lists ("0-3,8,10-11"): a parsed list is sorted and unique, and formats to a list that
 * parses to the same CPUs. */
#include "fuzz.h"

#include "common/cpulist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    int *cpus = NULL;
    size_t n = 0;
    struct jz_error err = {0};
    if (jz_cpulist_parse(s, &cpus, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(cpus[i] >= 0 && cpus[i] < JZ_CPULIST_MAX_CPU);
            FUZZ_CHECK(i == 0 || cpus[i - 1] < cpus[i]);
        }
        size_t cap = 8 * n + 16;
        char *buf = malloc(cap);
        FUZZ_CHECK(buf && jz_cpulist_format(cpus, n, buf, cap) == 0);
        int *again = NULL;
        size_t n2 = 0;
        FUZZ_CHECK(jz_cpulist_parse(buf, &again, &n2, &err) == 0);
        FUZZ_CHECK(n2 == n && (n == 0 || memcmp(again, cpus, n * sizeof *cpus) == 0));
        free(again);
        free(buf);
        free(cpus);
    } else {
        FUZZ_CHECK(err.code < 0 && err.msg[0]);
    }
    free(s);
    return 0;
}
