/* SHA-256 against the FIPS 180-2 / NIST vectors, fed whole and in pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sha256.h"

static void digest(const void *data, size_t len, size_t piece, char *hex)
{
    const unsigned char *p = data;
    sha256_ctx c;
    size_t off;

    sha256_init(&c);
    for (off = 0; off < len; off += piece)
        sha256_update(&c, p + off, len - off < piece ? len - off : piece);
    sha256_hex(&c, hex);
}

static void test_known_vectors(void **state)
{
    static const struct {
        const char *msg;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",   /* 448 bits */
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
         "klmnopqrlmnopqrsmnopqrstnopqrstu",                         /* 896 bits */
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[SHA256_HEX_LEN + 1];
    size_t pieces[] = {1, 3, 63, 64, 65, 1000};
    size_t i;
    size_t j;

    (void)state;
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        for (j = 0; j < sizeof(pieces) / sizeof(pieces[0]); j++) {
            digest(v[i].msg, strlen(v[i].msg), pieces[j], hex);
            assert_string_equal(hex, v[i].hex);
        }
}

/* One million 'a' (FIPS 180-2, appendix B.3); lengths around the padding
 * boundary (55, 56, 64 bytes) come out of it too when fed unevenly. */
static void test_million_a_and_padding_edges(void **state)
{
    static const struct {
        size_t len;
        const char *hex;
    } v[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
    };
    char *a = malloc(1000000);
    char hex[SHA256_HEX_LEN + 1];
    size_t i;

    (void)state;
    assert_non_null(a);
    memset(a, 'a', 1000000);
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        digest(a, v[i].len, 7, hex);
        assert_string_equal(hex, v[i].hex);
        digest(a, v[i].len, 4096, hex);
        assert_string_equal(hex, v[i].hex);
    }
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_vectors),
        cmocka_unit_test(test_million_a_and_padding_edges),
    };

    return cmocka_run_group_tests_name("sha256", tests, NULL, NULL);
}
