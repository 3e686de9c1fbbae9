/* Tests of dsl/sandbox on its own: the sandbox's environment, the limits
 * of a Lua call (instructions, memory), the counted registry references
 * and errors made from Lua messages. */

#include "tests/unit/support/dsl_fixture.h"

/* ---- the sandbox on its own ---- */

static lua_State *sandbox(long instructions)
{
    fr_lua_limits lim = {.instructions = instructions, .mem_bytes = 4 << 20};
    lua_State *L = fr_sandbox_new(&lim, "test");
    assert_non_null(L);
    return L;
}

static int run(lua_State *L, const char *code, int nresults, fr_error *err)
{
    memset(err, 0, sizeof *err);
    int rc = fr_sandbox_load_string(L, code, strlen(code), "chunk", err);
    if (rc != FR_OK)
        return rc;
    return fr_lua_call(L, 0, nresults, "test call", err);
}

static void test_sandbox_env(void **state)
{
    (void)state;
    lua_State *L = sandbox(0);
    fr_error err;
    assert_int_equal(run(L, "return getmetatable('')", 1, &err), FR_OK);
    assert_true(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    lua_pop(L, 1);
    /* The env's string table is a copy: changing it leaves methods alone. */
    assert_int_equal(run(L, "string.upper = nil; return ('x'):upper()", 1, &err), FR_OK);
    assert_string_equal(lua_tostring(L, -1), "X");
    lua_pop(L, 1);
    assert_int_equal(run(L,
                         "return type(os.time()), type(os.clock()), os.getenv, os.exit, "
                         "table.unpack({7})",
                         5, &err),
                     FR_OK);
    assert_string_equal(lua_tostring(L, -5), "number");
    assert_string_equal(lua_tostring(L, -4), "number");
    assert_true(lua_isnil(L, -3) && lua_isnil(L, -2));
    assert_int_equal(lua_tointeger(L, -1), 7);
    lua_pop(L, 5);
    assert_int_equal(run(L,
                         "return io, require, load, loadstring, dofile, debug, "
                         "collectgarbage, coroutine, package, string.dump",
                         10, &err),
                     FR_OK);
    for (int i = 1; i <= 10; i++)
        assert_true(lua_isnil(L, -i));
    lua_pop(L, 10);
    assert_int_equal(lua_gettop(L), 0);

    /* xpcall and setmetatable still work as usual. */
    assert_int_equal(run(L,
                         "local ok, m = xpcall(error, function(e) return 'handled: ' .. e end, "
                         "'x', 0) local t = setmetatable({}, { __index = { k = 1 } }) "
                         "return ok, m, t.k, getmetatable(t).__index.k",
                         4, &err),
                     FR_OK);
    assert_false(lua_toboolean(L, -4));
    assert_string_equal(lua_tostring(L, -3), "handled: x");
    assert_int_equal(lua_tointeger(L, -2), 1);
    assert_int_equal(lua_tointeger(L, -1), 1);
    lua_pop(L, 4);
    assert_int_equal(run(L, "setmetatable({}, { __gc = print })", 0, &err), FR_ELUA);
    assert_non_null(strstr(err.msg, "__gc metamethods are not allowed"));

    /* print goes to the logger with component lua:<name>. */
    FILE *log = tmpfile();
    fr_log_set_stream(log);
    fr_log_level old = fr_log_get_level();
    fr_log_set_level(FR_LOG_INFO);
    assert_int_equal(run(L, "print('hello', 42, nil)", 0, &err), FR_OK);
    fr_log_set_level(old);
    fr_log_set_stream(NULL);
    char buf[256] = {0};
    rewind(log);
    assert_true(fread(buf, 1, sizeof buf - 1, log) > 0);
    fclose(log);
    assert_non_null(strstr(buf, "lua:test"));
    assert_non_null(strstr(buf, "hello\t42\tnil"));

    /* Syntax errors carry the chunk's name and line. */
    assert_int_equal(run(L, "local x =\n\n = 2", 0, &err), FR_ESYNTAX);
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);
    fr_sandbox_free(L);
    fr_sandbox_free(NULL);
}

static void test_lua_call_limits(void **state)
{
    (void)state;
    lua_State *L = sandbox(100000);
    fr_error err;
    assert_int_equal(run(L, "\n\nwhile true do end", 0, &err), FR_ELIMIT);
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.msg, "test call: instruction limit exceeded (100000"));

    /* The function caught the error and returned: the call still fails. */
    assert_int_equal(run(L,
                         "local ok = pcall(function() while true do end end)\n"
                         "return 'survived'",
                         1, &err),
                     FR_ELIMIT);
    assert_int_equal(lua_gettop(L), 0);
    assert_int_equal(run(L,
                         "for i = 1, 100 do\n"
                         "  xpcall(function() while true do end end,\n"
                         "         function(m) while true do end end)\n"
                         "end\nreturn 1",
                         1, &err),
                     FR_ELIMIT);
    assert_int_equal(lua_gettop(L), 0);

    /* Loops inside C functions are charged too. */
    assert_int_equal(run(L, "\nlocal s = string.rep('', 1e15)", 0, &err), FR_ELIMIT);
    assert_int_equal(err.line, 2);
    assert_int_equal(run(L,
                         "local ok = pcall(function() return ('').rep('', 1e15, '') end) "
                         "return ok",
                         1, &err),
                     FR_ELIMIT);
    assert_int_equal(run(L, "table.move({}, 1, math.maxinteger, 2)", 0, &err), FR_ELIMIT);
    assert_int_equal(run(L, "table.move({}, math.mininteger, math.maxinteger, 2)", 0, &err),
                     FR_ELIMIT);
    assert_int_equal(run(L,
                         "local t = table.move({1, 2, 3}, 1, 3, 2) "
                         "return #t .. (''):rep(2) .. ('ab'):rep(3, ',')",
                         1, &err),
                     FR_OK);
    assert_string_equal(lua_tostring(L, -1), "4ab,ab,ab");
    lua_pop(L, 1);

    /* The budget is per call: a short call after a failed one works. */
    assert_int_equal(run(L, "local n = 0 for i = 1, 1000 do n = n + i end return n", 1, &err),
                     FR_OK);
    assert_int_equal(lua_tointeger(L, -1), 500500);
    lua_pop(L, 1);

    /* Memory: refused allocations end the call with FR_ELIMIT, pcall or not. */
    assert_int_equal(run(L, "return string.rep(('x'):rep(1000), 5000)", 1, &err), FR_ELIMIT);
    assert_non_null(strstr(err.msg, "memory limit exceeded"));
    assert_int_equal(
        run(L, "local ok = pcall(string.rep, ('x'):rep(1000), 5000) return 'ok'", 1, &err),
        FR_ELIMIT);
    assert_int_equal(lua_gettop(L), 0);
    size_t used = fr_sandbox_mem_used(L);
    assert_true(used > 0 && used < (4 << 20));

    /* Runtime errors: ELUA with position; error objects that are not strings. */
    assert_int_equal(run(L, "\nerror('bad thing')", 0, &err), FR_ELUA);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.msg, "test call: bad thing");
    /* Errors whose message has no position get the innermost line. */
    assert_int_equal(run(L, "\n\nerror({})", 0, &err), FR_ELUA);
    assert_non_null(strstr(err.msg, "(error object is a table value)"));
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);
    assert_int_equal(run(L, "error('no position', 0)", 0, &err), FR_ELUA);
    assert_int_equal(err.line, 1);
    assert_string_equal(err.msg, "test call: no position");
    assert_int_equal(run(L, "local function f()\n  error()\nend\nf()", 0, &err), FR_ELUA);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "(error object is a nil value)"));
    assert_int_equal(run(L,
                         "local e = setmetatable({}, {__tostring = function() return 'told' end})\n"
                         "error(e)",
                         0, &err),
                     FR_ELUA);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.msg, "test call: told");
    /* A memory error skips the message handler; the line is still known. */
    assert_int_equal(run(L, "local s = 'x'\nfor i = 1, 40 do\n  s = s .. s\nend", 0, &err),
                     FR_ELIMIT);
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);

    /* Errors of the parser that carry no position: the line it was reading. */
    char deep[700] = "local a = 1\n\nreturn ";
    for (int i = 0; i < 300; i++)
        strcat(deep, "{");
    assert_int_equal(run(L, deep, 0, &err), FR_ESYNTAX);
    assert_non_null(strstr(err.msg, "C stack overflow"));
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);
    size_t big = 6u << 20;
    char *huge = malloc(big + 32);
    assert_non_null(huge);
    strcpy(huge, "local a = 1\nreturn {");
    size_t at = strlen(huge);
    while (at + 3 < big) {
        memcpy(huge + at, "1,\n", 3);
        at += 3;
    }
    strcpy(huge + at, "}");
    assert_int_equal(run(L, huge, 0, &err), FR_ELIMIT);
    assert_non_null(strstr(err.msg, "memory limit exceeded while parsing"));
    assert_true(err.line > 2);
    free(huge);
    fr_sandbox_free(L);
}

static void test_refs(void **state)
{
    (void)state;
    lua_State *L = sandbox(0);
    long before = fr_sandbox_live_refs();
    lua_pushnil(L);
    assert_int_equal(fr_sandbox_ref(L), LUA_REFNIL);
    lua_newtable(L);
    int ref = fr_sandbox_ref(L);
    assert_int_equal(fr_sandbox_live_refs(), before + 1);
    fr_sandbox_unref(L, ref);
    fr_sandbox_unref(L, LUA_NOREF);
    assert_int_equal(fr_sandbox_live_refs(), before);
    fr_sandbox_free(L);
}

/* Blocks that change size class as they grow and shrink (strings, tables
 * from empty to thousands of slots and back) keep their contents, freed
 * memory serves again, and the state's count of bytes comes back to where
 * it was once the garbage is collected. */
static void test_allocator(void **state)
{
    (void)state;
    lua_State *L = sandbox(0);
    lua_gc(L, LUA_GCCOLLECT);
    size_t before = fr_sandbox_mem_used(L);
    fr_error err;
    static const char code[] =
        "local sum = 0\n"
        "for round = 1, 3 do\n"
        "  local t, parts = {}, {}\n"
        "  for i = 1, 3000 do\n"
        "    t[i] = string.rep(string.char(65 + i % 26), i % 700)\n"
        "    parts[#parts + 1] = { n = i, s = t[i] }\n"
        "  end\n"
        "  for i = 3000, 1, -1 do\n"
        "    assert(#t[i] == i % 700 and t[i]:byte(1) == (i % 700 > 0 and 65 + i % 26 or nil))\n"
        "    assert(parts[i].n == i and parts[i].s == t[i])\n"
        "    sum = sum + #t[i]\n"
        "    t[i], parts[i] = nil, nil\n"
        "  end\n"
        "  local big = table.concat({ string.rep('x', 5000), string.rep('y', 10) })\n"
        "  assert(#big == 5010 and big:sub(5001) == string.rep('y', 10))\n"
        "end\n"
        "return sum\n";
    assert_int_equal(run(L, code, 1, &err), FR_OK);
    long expect = 0;
    for (long i = 1; i <= 3000; i++)
        expect += i % 700;
    assert_int_equal(lua_tointeger(L, -1), 3 * expect);
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT);
    size_t after = fr_sandbox_mem_used(L);
    assert_true(after < before + 4096); /* what the chunk's garbage held is counted back */
    fr_sandbox_free(L);
}

static void test_error_from_msg(void **state)
{
    (void)state;
    fr_error err;
    assert_int_equal(fr_lua_error_from_msg(&err, FR_ELUA, "wf/a.lua:12: oops: 3"), FR_ELUA);
    assert_string_equal(err.source, "wf/a.lua");
    assert_int_equal(err.line, 12);
    assert_string_equal(err.msg, "oops: 3");
    fr_lua_error_from_msg(&err, FR_ELUA, "c:/x:y.lua:7: m\nstack traceback:\n\t[C]: in ?");
    assert_string_equal(err.source, "c:/x:y.lua");
    assert_int_equal(err.line, 7);
    assert_string_equal(err.msg, "m");
    fr_lua_error_from_msg(&err, FR_ESYNTAX, "plain message");
    assert_string_equal(err.source, "");
    assert_int_equal(err.line, 0);
    assert_string_equal(err.msg, "plain message");
    assert_int_equal(fr_lua_error_from_msg(NULL, FR_ELUA, "x"), FR_ELUA);
}

/* A trusted state (the built-in policies) runs its Lua without the count
 * hook: a loop the budget would stop runs to its end. What C functions do
 * is still charged, the memory budget still holds, a pcall still cannot
 * swallow either, and a call after a failed one runs uncounted again. */
static void test_trusted_runs_uncounted(void **state)
{
    (void)state;
    static const char loop[] = "local n = 0 for i = 1, 100000 do n = n + i end return n";
    lua_State *L = sandbox(10000);
    fr_error err;
    assert_int_equal(run(L, loop, 1, &err), FR_ELIMIT);
    fr_sandbox_trust(L);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(run(L, loop, 1, &err), FR_OK);
        assert_int_equal(lua_tointeger(L, -1), 5000050000);
        lua_pop(L, 1);
        assert_int_equal(
            run(L, "local ok = pcall(string.rep, '', 1e15) return 'survived'", 1, &err), FR_ELIMIT);
        assert_non_null(strstr(err.msg, "instruction limit exceeded"));
        assert_int_equal(run(L,
                             "local t = {} local ok = pcall(function() "
                             "for i = 1, 1e7 do t[i] = i end end) return 'survived'",
                             1, &err),
                         FR_ELIMIT);
        assert_non_null(strstr(err.msg, "memory limit exceeded"));
        assert_int_equal(lua_gettop(L), 0);
    }
    fr_sandbox_free(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sandbox_env),
        cmocka_unit_test(test_lua_call_limits),
        cmocka_unit_test(test_trusted_runs_uncounted),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_allocator),
        cmocka_unit_test(test_error_from_msg),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
