/* jz_kernels_check_version against the real library and against one that reports another API
 * version; the library's SONAME carries the API version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <jazari/kernels.h>

/* --wrap: calls from this file reach __wrap_; __real_ is the library's. */
int __real_jz_kernels_api_version(void);
int __wrap_jz_kernels_api_version(void);
static int fake_version = -1; /* -1: the real one */

int __wrap_jz_kernels_api_version(void)
{
    return fake_version < 0 ? __real_jz_kernels_api_version() : fake_version;
}

static void test_real_library_matches(void **state)
{
    (void)state;
    fake_version = -1;
    assert_int_equal(__real_jz_kernels_api_version(), JZ_KERNELS_API_VERSION);
    struct jz_error err = {0};
    assert_int_equal(jz_kernels_check_version(&err), 0);
    assert_int_equal(err.code, 0);
}

static void test_mismatch_names_both_versions(void **state)
{
    (void)state;
    fake_version = JZ_KERNELS_API_VERSION + 1;
    struct jz_error err = {0};
    assert_int_equal(jz_kernels_check_version(&err), JZ_EABI);
    char want[128];
    snprintf(want, sizeof want, "has API version %d, but this code was built for version %d",
             JZ_KERNELS_API_VERSION + 1, JZ_KERNELS_API_VERSION);
    assert_non_null(strstr(err.msg, want));
    assert_int_equal(jz_kernels_check_version(NULL), JZ_EABI); /* err may be NULL */
    fake_version = -1;
}

static void test_soname_is_api_version(void **state)
{
    (void)state;
    char want[64];
    snprintf(want, sizeof want, "libjz_kernels.so.%d", JZ_KERNELS_API_VERSION);
    assert_string_equal(JZ_KERNELS_SONAME, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_library_matches),
        cmocka_unit_test(test_mismatch_names_both_versions),
        cmocka_unit_test(test_soname_is_api_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
