/* Parameter validation against plugin schemas: the input is a JSON object of parameters; its
 * first byte picks one of the built-in plugins' schemas. Normalising twice gives the same. */
#include "fuzz.h"

#include "common/json.h"
#include "common/params.h"

static json_t *schemas[FUZZ_N_PLUGINS];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    json_t *descs[FUZZ_N_PLUGINS];
    fuzz_load_schemas(descs);
    for (int i = 0; i < FUZZ_N_PLUGINS; i++) {
        schemas[i] = json_incref(json_object_get(descs[i], "params"));
        json_decref(descs[i]);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const json_t *schema = schemas[data[0] % FUZZ_N_PLUGINS];
    json_t *params = jz_json_parse((const char *)data + 1, size - 1, 32, NULL);
    if (params && !json_is_object(params)) {
        json_decref(params);
        return 0;
    }
    json_t *norm = NULL;
    char *field = NULL;
    struct jz_error err = {0};
    int rc = jz_params_validate(schema, params, &norm, &field, &err);
    if (rc) {
        FUZZ_CHECK(rc < 0 && norm == NULL);
        FUZZ_CHECK(field && strncmp(field, "params", 6) == 0);
        FUZZ_CHECK(strncmp(err.msg, "params", 6) == 0);
        free(field);
    } else {
        FUZZ_CHECK(json_is_object(norm) && field == NULL);
        /* What validation produced validates again, to itself. */
        json_t *again = NULL;
        char *field2 = NULL;
        struct jz_error err2 = {0};
        int rc2 = jz_params_validate(schema, norm, &again, &field2, &err2);
        if (rc2)
            fprintf(stderr, "normalized params refused: %s\n", err2.msg);
        FUZZ_CHECK(rc2 == 0);
        FUZZ_CHECK(json_equal(norm, again));
        json_decref(again);
        json_decref(norm);
    }
    json_decref(params);
    return 0;
}
