/* Tests of parameter schemas and validation: every type, coercions, bounds, choices, required,
 * unknown names, limits, and the checks on compiled-in descriptors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/params.h"

static const struct jz_param_spec specs[] = {
    {.name = "name", .type = JZ_PARAM_STRING, .required = true, .min = 1, .max = 8},
    {.name = "act", .type = JZ_PARAM_STRING, .default_json = "\"relu\"", .choices = "relu|gelu"},
    {.name = "epochs", .type = JZ_PARAM_INT, .default_json = "3", .min = 1, .max = 100},
    {.name = "lr", .type = JZ_PARAM_FLOAT, .default_json = "0.01", .min = 0, .max = 10},
    {.name = "shuffle", .type = JZ_PARAM_BOOL, .default_json = "true"},
    {.name = "files", .type = JZ_PARAM_STRING_LIST},
    {.name = "layers", .type = JZ_PARAM_INT_LIST, .min = 1, .max = 3},
    {.name = "note", .type = JZ_PARAM_STRING},
};

static json_t *schema(void)
{
    json_t *s = jz_params_schema_to_json(specs, JZ_ARRAY_LEN(specs));
    assert_non_null(s);
    return s;
}

/* Validates JSON text; returns the normalized object or NULL with err/field filled. */
static json_t *validate(const char *text, char **field, struct jz_error *err)
{
    json_t *s = schema();
    json_t *p = json_loads(text, 0, NULL);
    assert_non_null(p);
    json_t *out = NULL;
    int rc = jz_params_validate(s, p, &out, field, err);
    json_decref(s);
    json_decref(p);
    if (rc != 0) {
        assert_null(out);
        assert_int_equal(rc, err->code);
        return NULL;
    }
    return out;
}

/* Asserts that text is refused with a message starting "params.NAME: " and that field says so. */
static void refused(const char *text, const char *name, const char *needle)
{
    char *field = NULL;
    struct jz_error err = {0};
    json_t *out = validate(text, &field, &err);
    assert_null(out);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "params.%s: ", name);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
        fail_msg("message '%s' does not start with '%s'", err.msg, prefix);
    if (needle && !strstr(err.msg, needle))
        fail_msg("message '%s' does not mention '%s'", err.msg, needle);
    assert_non_null(field);
    char expect[128];
    snprintf(expect, sizeof expect, "params.%s", name);
    assert_string_equal(field, expect);
    free(field);
}

static void test_defaults_applied(void **state)
{
    struct jz_error err;
    json_t *out = validate("{\"name\": \"x\"}", NULL, &err);
    assert_non_null(out);
    assert_string_equal(json_string_value(json_object_get(out, "act")), "relu");
    assert_int_equal(json_integer_value(json_object_get(out, "epochs")), 3);
    assert_true(json_is_real(json_object_get(out, "lr")));
    assert_true(json_real_value(json_object_get(out, "lr")) == 0.01);
    assert_true(json_is_true(json_object_get(out, "shuffle")));
    /* Optional parameters without a default stay absent. */
    assert_null(json_object_get(out, "files"));
    assert_null(json_object_get(out, "layers"));
    json_decref(out);
}

static void test_coercions(void **state)
{
    struct jz_error err;
    json_t *out = validate("{\"name\": \"x\", \"epochs\": \"7\", \"lr\": \"0.5\", "
                           "\"shuffle\": \"false\", \"layers\": \"256, 128\", "
                           "\"files\": \"a b\"}",
                           NULL, &err);
    assert_non_null(out);
    assert_int_equal(json_integer_value(json_object_get(out, "epochs")), 7);
    assert_true(json_real_value(json_object_get(out, "lr")) == 0.5);
    assert_true(json_is_false(json_object_get(out, "shuffle")));
    json_t *layers = json_object_get(out, "layers");
    assert_int_equal(json_array_size(layers), 2);
    assert_int_equal(json_integer_value(json_array_get(layers, 0)), 256);
    assert_int_equal(json_integer_value(json_array_get(layers, 1)), 128);
    json_t *files = json_object_get(out, "files");
    assert_int_equal(json_array_size(files), 1); /* never split on spaces */
    assert_string_equal(json_string_value(json_array_get(files, 0)), "a b");
    json_decref(out);

    /* Native JSON types pass; an integral real is an int; an int is a float. */
    out = validate("{\"name\": \"x\", \"epochs\": 4.0, \"lr\": 2, \"layers\": [1, 2, 3], "
                   "\"files\": [\"p\", \"q\"], \"shuffle\": false}",
                   NULL, &err);
    assert_non_null(out);
    assert_true(json_is_integer(json_object_get(out, "epochs")));
    assert_true(json_is_real(json_object_get(out, "lr")));
    assert_int_equal(json_array_size(json_object_get(out, "layers")), 3);
    json_decref(out);
}

static void test_type_errors(void **state)
{
    refused("{\"name\": 5}", "name", "expected a string");
    refused("{\"name\": \"x\", \"epochs\": \"7x\"}", "epochs", "integer");
    refused("{\"name\": \"x\", \"epochs\": 2.5}", "epochs", "integer");
    refused("{\"name\": \"x\", \"lr\": \"fast\"}", "lr", "number");
    refused("{\"name\": \"x\", \"lr\": \"nan\"}", "lr", "number");
    refused("{\"name\": \"x\", \"shuffle\": \"yes\"}", "shuffle", "true or false");
    refused("{\"name\": \"x\", \"shuffle\": 1}", "shuffle", "true or false");
    refused("{\"name\": \"x\", \"files\": [\"a\", 3]}", "files", "element 1");
    refused("{\"name\": \"x\", \"files\": 3}", "files", "list of strings");
    refused("{\"name\": \"x\", \"layers\": \"1,,2\"}", "layers", "integer");
    refused("{\"name\": \"x\", \"layers\": \"1,2,\"}", "layers", "empty");
    refused("{\"name\": \"x\", \"layers\": [1, \"b\"]}", "layers", "element 1");
}

static void test_bounds_and_choices(void **state)
{
    refused("{\"name\": \"x\", \"epochs\": 0}", "epochs", "outside");
    refused("{\"name\": \"x\", \"epochs\": 101}", "epochs", "101 is outside [1, 100]");
    refused("{\"name\": \"x\", \"lr\": -0.1}", "lr", "outside");
    refused("{\"name\": \"\"}", "name", "0 bytes");
    refused("{\"name\": \"123456789\"}", "name", "9 bytes");
    refused("{\"name\": \"x\", \"layers\": []}", "layers", "0 elements");
    refused("{\"name\": \"x\", \"layers\": \"1,2,3,4\"}", "layers", "4 elements");
    refused("{\"name\": \"x\", \"act\": \"tanh\"}", "act", "relu, gelu");
    struct jz_error err;
    json_t *out = validate("{\"name\": \"12345678\", \"epochs\": 100, \"lr\": 10, "
                           "\"act\": \"gelu\"}",
                           NULL, &err);
    assert_non_null(out);
    json_decref(out);
}

static void test_required_and_unknown(void **state)
{
    refused("{}", "name", "required");
    refused("{\"name\": null}", "name", "required");
    refused("{\"name\": \"x\", \"bogus\": 1}", "bogus", "unknown parameter");
    /* NULL params means "none given". */
    json_t *s = schema();
    json_t *out = NULL;
    struct jz_error err;
    assert_int_equal(jz_params_validate(s, NULL, &out, NULL, &err), JZ_EINVAL);
    assert_string_equal(err.msg, "params.name: required");
    json_t *arr = json_array();
    char *field = NULL;
    assert_int_equal(jz_params_validate(s, arr, &out, &field, &err), JZ_EINVAL);
    assert_string_equal(field, "params");
    free(field);
    json_decref(arr);
    json_decref(s);
}

static void test_limits(void **state)
{
    json_t *s = schema();
    json_t *out = NULL;
    struct jz_error err;
    /* A string over 64 KiB (the spec has no smaller max for "note"). */
    size_t big = JZ_PARAMS_MAX_STRING + 1;
    char *text = malloc(big + 1);
    memset(text, 'a', big);
    text[big] = '\0';
    json_t *p = json_pack("{s:s, s:s}", "name", "x", "note", text);
    assert_int_equal(jz_params_validate(s, p, &out, NULL, &err), JZ_ELIMIT);
    assert_non_null(strstr(err.msg, "params.note: "));
    text[big - 1] = '\0'; /* exactly 64 KiB passes */
    json_object_set_new(p, "note", json_string(text));
    assert_int_equal(jz_params_validate(s, p, &out, NULL, &err), 0);
    json_decref(out);
    free(text);
    json_decref(p);

    /* A list over 4096 elements. */
    json_t *files = json_array();
    for (int i = 0; i <= JZ_PARAMS_MAX_LIST; i++)
        json_array_append_new(files, json_string("f"));
    p = json_pack("{s:s, s:o}", "name", "x", "files", files);
    assert_int_equal(jz_params_validate(s, p, &out, NULL, &err), JZ_ELIMIT);
    assert_non_null(strstr(err.msg, "params.files: more than 4096"));
    json_decref(p);

    /* More than 256 parameters in one job. */
    p = json_object();
    for (int i = 0; i <= JZ_PARAMS_MAX_COUNT; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        json_object_set_new(p, key, json_integer(i));
    }
    assert_int_equal(jz_params_validate(s, p, &out, NULL, &err), JZ_ELIMIT);
    json_decref(p);
    json_decref(s);
}

static void test_schema_json_form(void **state)
{
    json_t *s = schema();
    json_t *act = json_array_get(s, 1);
    assert_string_equal(json_string_value(json_object_get(act, "type")), "string");
    assert_string_equal(json_string_value(json_object_get(act, "default")), "relu");
    assert_int_equal(json_array_size(json_object_get(act, "choices")), 2);
    assert_null(json_object_get(act, "min")); /* both 0: omitted */
    json_t *epochs = json_array_get(s, 2);
    assert_int_equal(json_integer_value(json_object_get(epochs, "max")), 100);
    assert_false(json_is_true(json_object_get(epochs, "required")));
    assert_true(json_is_true(json_object_get(json_array_get(s, 0), "required")));
    assert_null(json_object_get(json_array_get(s, 5), "default"));
    json_decref(s);
}

static void test_specs_check(void **state)
{
    struct jz_error err;
    assert_int_equal(jz_params_specs_check(specs, JZ_ARRAY_LEN(specs), &err), 0);
    assert_int_equal(jz_params_specs_check(NULL, 0, &err), 0);
    assert_int_equal(jz_params_specs_check(NULL, 2, &err), JZ_EINVAL);

    const struct jz_param_spec bad_name[] = {{.name = "1x", .type = JZ_PARAM_INT}};
    const struct jz_param_spec bad_type[] = {{.name = "x", .type = (enum jz_param_type)42}};
    const struct jz_param_spec dup[] = {{.name = "x", .type = JZ_PARAM_INT},
                                        {.name = "x", .type = JZ_PARAM_FLOAT}};
    const struct jz_param_spec bad_default[] = {
        {.name = "x", .type = JZ_PARAM_INT, .default_json = "200", .min = 0, .max = 10}};
    const struct jz_param_spec bad_json[] = {
        {.name = "x", .type = JZ_PARAM_INT, .default_json = "{oops"}};
    const struct jz_param_spec bad_bounds[] = {
        {.name = "x", .type = JZ_PARAM_FLOAT, .min = 5, .max = 1}};
    const struct jz_param_spec bad_choices[] = {
        {.name = "x", .type = JZ_PARAM_INT, .choices = "1|2"}};
    const struct jz_param_spec empty_choice[] = {
        {.name = "x", .type = JZ_PARAM_STRING, .choices = "a||b"}};
    assert_int_equal(jz_params_specs_check(bad_name, 1, &err), JZ_EINVAL);
    assert_int_equal(jz_params_specs_check(bad_type, 1, &err), JZ_EINVAL);
    assert_int_equal(jz_params_specs_check(dup, 2, &err), JZ_EINVAL);
    assert_non_null(strstr(err.msg, "declared twice"));
    assert_int_equal(jz_params_specs_check(bad_default, 1, &err), JZ_EINVAL);
    assert_non_null(strstr(err.msg, "bad default"));
    assert_int_equal(jz_params_specs_check(bad_json, 1, &err), JZ_EINVAL);
    assert_int_equal(jz_params_specs_check(bad_bounds, 1, &err), JZ_EINVAL);
    assert_int_equal(jz_params_specs_check(bad_choices, 1, &err), JZ_EINVAL);
    assert_int_equal(jz_params_specs_check(empty_choice, 1, &err), JZ_EINVAL);
    assert_null(jz_params_schema_to_json(dup, 2));
    assert_string_equal(jz_param_type_name(JZ_PARAM_INT_LIST), "int_list");
    assert_null(jz_param_type_name((enum jz_param_type)0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_applied),     cmocka_unit_test(test_coercions),
        cmocka_unit_test(test_type_errors),          cmocka_unit_test(test_bounds_and_choices),
        cmocka_unit_test(test_required_and_unknown), cmocka_unit_test(test_limits),
        cmocka_unit_test(test_schema_json_form),     cmocka_unit_test(test_specs_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
