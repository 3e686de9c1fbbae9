/* The one FNV-1a: the published test vectors, a hash that goes on over
 * spans equals the hash of them joined, and the result cache's keys are the
 * ones earlier versions stored (so stored cache rows still hit). */
#include "engine/cache.h"
#include "engine/util/hash.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint64_t fnv(const char *s)
{
    return fr_fnv1a64(s, strlen(s), FR_FNV1A64_BASIS);
}

static void test_published_vectors(void **state)
{
    (void)state;
    /* From the FNV reference's test suite (64-bit FNV-1a). */
    assert_true(FR_FNV1A64_BASIS == UINT64_C(0xcbf29ce484222325));
    assert_true(fnv("") == UINT64_C(0xcbf29ce484222325));
    assert_true(fnv("a") == UINT64_C(0xaf63dc4c8601ec8c));
    assert_true(fnv("foobar") == UINT64_C(0x85944171f73967e8));
    assert_true(fr_fnv1a64(NULL, 0, 42) == 42);
    /* Bytes are unsigned: a high byte is not sign-extended. */
    unsigned char hi = 0xff;
    assert_true(fr_fnv1a64(&hi, 1, FR_FNV1A64_BASIS) ==
                ((FR_FNV1A64_BASIS ^ 0xff) * UINT64_C(1099511628211)));
}

static void test_spans_join(void **state)
{
    (void)state;
    const char *s = "the quick brown fox";
    for (size_t cut = 0; cut <= strlen(s); cut++) {
        uint64_t h = fr_fnv1a64(s, cut, FR_FNV1A64_BASIS);
        h = fr_fnv1a64(s + cut, strlen(s) - cut, h);
        assert_true(h == fnv(s));
    }
}

/* The keys below were computed by the cache key's own FNV-1a before it
 * became this one: a changed key would make every stored result miss. */
static void test_cache_keys_unchanged(void **state)
{
    (void)state;
    json_t *schema =
        json_pack("{s:s, s:{s:{s:s}}}", "type", "object", "properties", "a", "type", "string");
    fr_call call = {.model = "qwen2.5:7b",
                    .system = "Be brief.",
                    .prompt = "Name three rivers.\nREPLY: x",
                    .max_tokens = 256,
                    .temperature = 0.2,
                    .seed = 7,
                    .has_seed = true,
                    .schema = schema};
    char *k = fr_cache_key("wf", "task", "ep", FR_PROTO_OPENAI, &call);
    assert_string_equal(k, "13588d8a014d7311bf4369d90be99e7d");
    free(k);
    call.schema = NULL;
    call.has_seed = false;
    call.system = NULL;
    k = fr_cache_key("", "t", "e", FR_PROTO_ANTHROPIC, &call);
    assert_string_equal(k, "2ef10fd108fab73f885b69a3a2c9523f");
    free(k);
    /* With tools, a negative seed, a prompt of 10,000 bytes (a length of
     * five digits) and high bytes, as the key was before it hashed its
     * fields without joining them first. */
    char *big = malloc(10001);
    for (size_t i = 0; i < 10000; i++)
        big[i] = (char)(i % 7 == 0 ? 0xc3 : 'a' + i % 26);
    big[10000] = '\0';
    json_t *tools = json_pack("[{s:s, s:s}]", "name", "grep", "description", "search files");
    call = (fr_call){.model = "m",
                     .prompt = big,
                     .max_tokens = -1,
                     .temperature = 1e-300,
                     .seed = -42,
                     .has_seed = true,
                     .tools = tools};
    k = fr_cache_key("w", "t", "e", FR_PROTO_OLLAMA, &call);
    assert_string_equal(k, "049ef9500f2a764cba09704fda11f104");
    free(k);
    free(big);
    json_decref(tools);
    json_decref(schema);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_vectors),
        cmocka_unit_test(test_spans_join),
        cmocka_unit_test(test_cache_keys_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
