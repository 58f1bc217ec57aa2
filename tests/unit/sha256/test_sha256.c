/* common/sha256.c: the FIPS 180-4 examples, and the same digests as OpenSSL's for random
 * messages of every length up to 1,100 bytes, fed whole and in random pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "common/sha256.h"

static void test_fips_examples(void **state)
{
    char hex[65];
    jz_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    jz_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 448 bits */
    jz_sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a', in pieces of 1000 */
    struct jz_sha256 c;
    char a[1000];
    memset(a, 'a', sizeof a);
    jz_sha256_init(&c);
    for (int i = 0; i < 1000; i++)
        jz_sha256_update(&c, a, sizeof a);
    uint8_t d[JZ_SHA256_BYTES];
    jz_sha256_final(&c, d);
    static const uint8_t want[JZ_SHA256_BYTES] = {
        0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7, 0xe2, 0x84, 0xd7, 0x3e, 0x67,
        0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97, 0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    assert_memory_equal(d, want, sizeof want);
}

static void test_against_openssl(void **state)
{
    uint64_t s = 0x9E3779B97F4A7C15ull;
    uint8_t msg[1100];
    for (size_t len = 0; len <= sizeof msg; len++) {
        for (size_t i = 0; i < len; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            msg[i] = (uint8_t)s;
        }
        uint8_t ref[EVP_MAX_MD_SIZE];
        unsigned rlen = 0;
        assert_int_equal(EVP_Digest(msg, len, ref, &rlen, EVP_sha256(), NULL), 1);
        assert_int_equal(rlen, JZ_SHA256_BYTES);
        /* whole */
        uint8_t got[JZ_SHA256_BYTES];
        struct jz_sha256 c;
        jz_sha256_init(&c);
        jz_sha256_update(&c, msg, len);
        jz_sha256_final(&c, got);
        assert_memory_equal(got, ref, JZ_SHA256_BYTES);
        /* in random pieces, empty ones included */
        jz_sha256_init(&c);
        for (size_t off = 0; off < len;) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            size_t n = (size_t)(s % 130);
            if (n > len - off)
                n = len - off;
            jz_sha256_update(&c, msg + off, n);
            off += n;
        }
        jz_sha256_final(&c, got);
        assert_memory_equal(got, ref, JZ_SHA256_BYTES);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fips_examples),
        cmocka_unit_test(test_against_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
