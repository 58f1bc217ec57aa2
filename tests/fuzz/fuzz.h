/* Shared by the fuzz targets: the libFuzzer entry points, and loading the plugin schemas that
 * tests/fuzz/schemas holds (what `jazari-worker --describe` prints for the built-in plugins). */
#ifndef JZ_TESTS_FUZZ_H
#define JZ_TESTS_FUZZ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Invariants are checked with this rather than assert(), which NDEBUG would compile out. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A NUL-terminated copy of the input (the caller frees it): string parsers need one. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#ifdef JZ_FUZZ_SCHEMAS
#define FUZZ_N_PLUGINS 5
static const char *const fuzz_plugin_names[FUZZ_N_PLUGINS] = {"train", "infer", "simulate",
                                                              "example", "batch"};

/* The descriptions, in fuzz_plugin_names' order; aborts when one cannot be read. */
static inline void fuzz_load_schemas(json_t *out[FUZZ_N_PLUGINS])
{
    for (int i = 0; i < FUZZ_N_PLUGINS; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.json", JZ_FUZZ_SCHEMAS, fuzz_plugin_names[i]);
        json_error_t jerr;
        out[i] = json_load_file(path, 0, &jerr);
        if (!out[i]) {
            fprintf(stderr, "fuzz: cannot load %s: %s\n", path, jerr.text);
            abort();
        }
    }
}
#endif

#endif
