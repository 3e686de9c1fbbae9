/* Tests of dsl/chunkcache through the sandbox's loader
 * (fr_sandbox_load_file_cached): a large file is kept compiled and loaded
 * from the cache while its text is the same; a changed text, a damaged or
 * swapped cache file, a folder others may write, a small file and
 * FLOWRUN_CHUNK_CACHE=0 all compile from the text, with the same results
 * and the same error lines; past FR_CHUNKCACHE_FILES the oldest go. The debug log says which way
 * each load went. */

#include "dsl/chunkcache.h"
#include "dsl/sandbox.h"
#include "engine/util/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

static char g_dir[256], g_cache[300], g_chunks[340], g_file[300];
static bool g_keep = true; /* loads may keep what they compile */

/* How the last load went, from the debug log: "hit", "miss", or "". */
static char *g_log;
static size_t g_log_len;
static FILE *g_log_f;

static void log_start(void)
{
    g_log_f = open_memstream(&g_log, &g_log_len);
    fr_log_set_stream(g_log_f);
    fr_log_set_level(FR_LOG_DEBUG);
}

static bool log_has(const char *s)
{
    fflush(g_log_f);
    return g_log && strstr(g_log, s) != NULL;
}

static void log_stop(void)
{
    fr_log_set_stream(stderr);
    fr_log_set_level(FR_LOG_WARN);
    fclose(g_log_f);
    free(g_log);
    g_log = NULL;
}

/* Writes the workflow-sized chunk: `rows` assignments (each 40 bytes), then
 * a function that fails on the line after them, and returns the count,
 * `word` and the function. */
static void write_chunk(size_t rows, const char *word)
{
    FILE *f = fopen(g_file, "w");
    assert_non_null(f);
    fprintf(f, "local t = {}\n");
    for (size_t i = 0; i < rows; i++)
        fprintf(f, "t[#t + 1] = 'abcdefghijklmnopqrstu'\n");
    fprintf(f, "local function boom() error('boom') end\nreturn #t, '%s', boom\n", word);
    fclose(f);
}

/* The line of boom's error in a chunk of `rows` rows. */
static int boom_line(size_t rows)
{
    return (int)rows + 2;
}

/* Loads g_file through the cache and checks what it returns: `rows`,
 * `word`, and a function whose error names g_file at boom_line. */
static void load_and_check(size_t rows, const char *word)
{
    fr_lua_limits lim = {.instructions = 0, .mem_bytes = 64 << 20};
    lua_State *L = fr_sandbox_new(&lim, "test");
    assert_non_null(L);
    fr_error err = {0};
    assert_int_equal(fr_sandbox_load_file_cached(L, g_file, g_keep, &err), FR_OK);
    assert_int_equal(fr_lua_call(L, 0, 3, "chunk", &err), FR_OK);
    assert_int_equal(lua_tointeger(L, -3), (lua_Integer)rows);
    assert_string_equal(lua_tostring(L, -2), word);
    memset(&err, 0, sizeof err);
    assert_int_equal(fr_lua_call(L, 0, 0, "boom", &err), FR_ELUA);
    assert_string_equal(err.source, g_file);
    assert_int_equal(err.line, boom_line(rows));
    fr_sandbox_free(L);
}

/* The cache's files, and the one there is (NULL for none; asserts there is
 * at most one). */
static int count_chunks(char *one, size_t size)
{
    DIR *d = opendir(g_chunks);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') {
            n++;
            if (one)
                snprintf(one, size, "%s/%s", g_chunks, e->d_name);
        }
    closedir(d);
    return n;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/flowrun-chunkcache.XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_cache, sizeof g_cache, "%s/cache", g_dir);
    snprintf(g_chunks, sizeof g_chunks, "%s/flowrun/chunks", g_cache);
    snprintf(g_file, sizeof g_file, "%s/wf.lua", g_dir);
    setenv("XDG_CACHE_HOME", g_cache, 1);
    unsetenv("FLOWRUN_CHUNK_CACHE");
    g_keep = true;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Loads g_file as load_and_check(rows, word) does and asserts that the
 * cache's log says `what` ("hit" or "miss") for that load. */
static void load_expect(size_t rows, const char *word, const char *what)
{
    char line[64];
    snprintf(line, sizeof line, "chunk cache %s", what);
    log_start();
    load_and_check(rows, word);
    assert_true(log_has(line));
    log_stop();
}

/* Points g_file at workflow `i` of the folder (wfNN.lua). */
static void use_workflow(int i)
{
    snprintf(g_file, sizeof g_file, "%s/wf%02d.lua", g_dir, i);
}

/* Writes and loads workflows 0 .. n-1, each kept a clock tick after the one
 * before; g_file is left at the last. */
static void keep_workflows(int n)
{
    for (int i = 0; i < n; i++) {
        use_workflow(i);
        write_chunk(2000, "one");
        load_and_check(2000, "one");
        usleep(10000);
    }
}

static void test_kept_then_loaded_compiled(void **state)
{
    (void)state;
    write_chunk(2000, "one");
    log_start();
    load_and_check(2000, "one"); /* the cache's folders made, the file kept */
    assert_false(log_has("chunk cache hit"));
    assert_true(log_has("chunk cache kept"));
    log_stop();
    assert_int_equal(count_chunks(NULL, 0), 1);
    struct stat st;
    assert_int_equal(stat(g_chunks, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    log_start();
    load_and_check(2000, "one"); /* the same results and error line, from bytecode */
    assert_true(log_has("chunk cache hit"));
    assert_false(log_has("chunk cache kept"));
    log_stop();
}

static void test_changed_text_compiles_again(void **state)
{
    (void)state;
    write_chunk(2000, "one");
    load_and_check(2000, "one");
    write_chunk(2000, "two"); /* the same length, one word changed */
    log_start();
    load_and_check(2000, "two");
    assert_true(log_has("chunk cache miss"));
    assert_true(log_has("chunk cache kept"));
    log_stop();
    write_chunk(2100, "two"); /* longer: its lines move */
    load_and_check(2100, "two");
    assert_int_equal(count_chunks(NULL, 0), 1); /* one file per workflow */
}

/* Damages the cache file `path`: flips its byte `at` from the end. */
static void flip(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, -at, SEEK_END), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, -at, SEEK_END), 0);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

static void test_damaged_file_compiles_again(void **state)
{
    (void)state;
    char one[600];
    write_chunk(2000, "one");
    load_and_check(2000, "one");
    assert_int_equal(count_chunks(one, sizeof one), 1);
    for (long at = 1; at < 4000; at += 397) { /* bytes of its bytecode */
        flip(one, at);
        load_expect(2000, "one", "miss");
    }
    assert_int_equal(truncate(one, 100), 0);
    load_expect(2000, "one", "miss");
    /* A link in its place, even to a good file, is not followed. */
    char good[700];
    snprintf(good, sizeof good, "%s/good", g_dir);
    assert_int_equal(rename(one, good), 0);
    assert_int_equal(symlink(good, one), 0);
    load_expect(2000, "one", "miss");
}

static void test_folder_others_may_write_is_not_used(void **state)
{
    (void)state;
    char one[600];
    write_chunk(2000, "one");
    load_and_check(2000, "one");
    assert_int_equal(count_chunks(one, sizeof one), 1);
    assert_int_equal(chmod(g_chunks, 0777), 0);
    log_start();
    load_and_check(2000, "one");
    assert_false(log_has("chunk cache hit"));
    log_stop();
    assert_int_equal(chmod(g_chunks, 0700), 0);
    assert_int_equal(chmod(one, 0666), 0); /* the file itself */
    load_expect(2000, "one", "miss");
}

static void test_small_file_and_off_not_kept(void **state)
{
    (void)state;
    write_chunk(100, "small"); /* 4 KB */
    load_and_check(100, "small");
    assert_int_equal(count_chunks(NULL, 0), 0);
    setenv("FLOWRUN_CHUNK_CACHE", "0", 1);
    write_chunk(2000, "one");
    load_and_check(2000, "one");
    assert_int_equal(count_chunks(NULL, 0), 0);
    unsetenv("FLOWRUN_CHUNK_CACHE");
}

static void test_reading_load_keeps_nothing(void **state)
{
    (void)state;
    write_chunk(2000, "one");
    g_keep = false; /* a plan's load: reads what is kept, keeps nothing */
    load_and_check(2000, "one");
    assert_int_equal(count_chunks(NULL, 0), 0);
    g_keep = true;
    load_and_check(2000, "one");
    g_keep = false;
    load_expect(2000, "one", "hit");
}

static void test_oldest_removed_past_the_limit(void **state)
{
    (void)state;
    char first[300];
    snprintf(first, sizeof first, "%s", g_file);
    keep_workflows(FR_CHUNKCACHE_FILES + 2);
    assert_int_equal(count_chunks(NULL, 0), FR_CHUNKCACHE_FILES);
    load_expect(2000, "one", "hit"); /* the last one kept is there */
    use_workflow(0);
    load_expect(2000, "one", "miss"); /* the first, the oldest, was removed */
    snprintf(g_file, sizeof g_file, "%s", first);
}

static void test_used_file_outlives_newer_ones(void **state)
{
    (void)state;
    char first[300];
    snprintf(first, sizeof first, "%s", g_file);
    keep_workflows(FR_CHUNKCACHE_FILES);
    /* wf00, kept first, is used again: wf01 is now the least recently used. */
    use_workflow(0);
    load_expect(2000, "one", "hit");
    usleep(10000);
    use_workflow(FR_CHUNKCACHE_FILES);
    write_chunk(2000, "one");
    load_and_check(2000, "one"); /* one more kept: one goes */
    assert_int_equal(count_chunks(NULL, 0), FR_CHUNKCACHE_FILES);
    use_workflow(0);
    load_expect(2000, "one", "hit");
    use_workflow(1);
    load_expect(2000, "one", "miss");
    snprintf(g_file, sizeof g_file, "%s", first);
}

static void test_plain_load_never_uses_it(void **state)
{
    (void)state;
    write_chunk(2000, "one");
    fr_lua_limits lim = {.instructions = 0, .mem_bytes = 64 << 20};
    lua_State *L = fr_sandbox_new(&lim, "test");
    fr_error err = {0};
    assert_int_equal(fr_sandbox_load_file(L, g_file, &err), FR_OK);
    fr_sandbox_free(L);
    assert_int_equal(count_chunks(NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kept_then_loaded_compiled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_text_compiles_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_file_compiles_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_others_may_write_is_not_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_file_and_off_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reading_load_keeps_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oldest_removed_past_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_used_file_outlives_newer_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_load_never_uses_it, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
