/* The CSV reader through its buffer entry point; the first byte picks expect_features (0: the
 * first column is the label). */
#include "fuzz.h"

#include <math.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t expect = data[0] % 8;
    struct jz_dataset ds = {0};
    struct jz_error err = {0};
    if (jz_dataset_load_csv_buffer((const char *)data + 1, size - 1, "fuzz", expect, &ds, &err) ==
        0) {
        FUZZ_CHECK(ds.rows >= 1 && ds.features >= 1);
        if (expect)
            FUZZ_CHECK(ds.features == expect);
        for (size_t i = 0; i < ds.rows * ds.features; i++)
            FUZZ_CHECK(isfinite(ds.x[i]));
        for (size_t i = 0; ds.y && i < ds.rows; i++)
            FUZZ_CHECK(ds.y[i] >= 0 && ds.y[i] < ds.classes);
        jz_dataset_free(&ds);
    } else {
        FUZZ_CHECK(err.code < 0 && strncmp(err.msg, "fuzz", 4) == 0);
    }
    return 0;
}
