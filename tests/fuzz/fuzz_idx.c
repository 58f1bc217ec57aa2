/* The IDX reader (plain or gzipped) through its buffer entry point. */
#include "fuzz.h"

#include <math.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    float *v = NULL;
    size_t rows = 0, features = 0;
    struct jz_error err = {0};
    if (jz_idx_read_buffer(data, size, "fuzz", &v, &rows, &features, &err) == 0) {
        FUZZ_CHECK(rows >= 1 && features >= 1);
        FUZZ_CHECK(rows <= JZ_DATASET_MAX_ROWS && features <= JZ_DATASET_MAX_FEATURES);
        for (size_t i = 0; i < rows * features; i++) /* touches every value */
            FUZZ_CHECK(isfinite(v[i]));
        free(v);
    } else {
        FUZZ_CHECK(err.code < 0 && strncmp(err.msg, "fuzz", 4) == 0);
    }
    return 0;
}
