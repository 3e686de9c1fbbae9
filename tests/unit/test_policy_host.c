/* Tests of dsl/policy's host: it turns every way a policy can fail (a wrong
 * answer, an error, a loop, a memory hog) into one error with the file and
 * line, hands the policy copies, and returns every registry reference.
 * Every tests/unit/fixtures/dsl/policy_bad_*.lua must fail to load or its
 * self-check with the code, line and words of its header comments (the
 * format of tests/unit/test_dsl.c's fixtures):
 *   -- code: FR_ELUA
 *   -- line: 7
 *   -- expect: text the message must contain
 * Runs from the source root (CTest's working directory). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/support/policy_harness.h"

/* ---- the host ------------------------------------------------------------------ */

static void test_route_answers(void **state)
{
    (void)state;
    fr_policy *p = load_code("return { route = function(task, candidates, run)\n"
                             "  if task.agent == 'name' then return 'mid' end\n"
                             "  if task.agent == 'table' then return candidates[2] end\n"
                             "  if task.agent == 'nil' then return nil end\n"
                             "  if task.agent == 'number' then return 42 end\n"
                             "  if task.agent == 'alien' then return { name = 'nope' } end\n"
                             "  return 'nope'\n"
                             "end }\n",
                             NULL);
    static const struct {
        const char *agent;
        int rc;
        const char *want;
    } cases[] = {
        {"name", FR_OK, "mid"},
        {"table", FR_OK, "strong"},
        {"nil", FR_OK, NULL},
        {"number", FR_EPOLICY, "a number"},
        {"alien", FR_EPOLICY, "'nope'"},
        {"unknown", FR_EPOLICY, "'nope'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *t = task(0.5, "first", NULL);
        json_object_set_new(t, "agent", json_string(cases[i].agent));
        json_t *c = cands(MID(4), STRONG(4), NULL);
        json_t *r = run_info();
        char *choice = NULL;
        fr_error err = {0};
        int rc = fr_policy_route(p, t, c, r, &choice, &err);
        assert_int_equal(rc, cases[i].rc);
        if (rc == FR_OK && cases[i].want) {
            assert_string_equal(choice, cases[i].want);
        } else if (rc == FR_OK) {
            assert_null(choice);
        } else {
            assert_null(choice);
            assert_string_equal(err.source, "policies/host.lua");
            assert_non_null(strstr(err.msg, cases[i].want));
        }
        free(choice);
        json_decref(t);
        json_decref(c);
        json_decref(r);
    }
    fr_policy_free(p);
}

static void test_route_error_has_file_and_line(void **state)
{
    (void)state;
    fr_policy *p = load_code("local function pick(c)\n"
                             "  return c.missing.name\n"
                             "end\n"
                             "return { route = function(task, candidates, run)\n"
                             "  return pick(candidates[1])\n"
                             "end }\n",
                             NULL);
    fr_error err = {0};
    assert_int_equal(route_rc(p, task(0.5, "first", NULL), cands(MID(4), NULL), &err, NULL),
                     FR_ELUA);
    assert_string_equal(err.source, "policies/host.lua");
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "missing"));
    /* The policy still works for the next decision. */
    assert_int_equal(route_rc(p, task(0.5, "first", NULL), cands(MID(4), NULL), &err, NULL),
                     FR_ELUA);
    fr_policy_free(p);
}

/* Copying the arguments in runs protected too: a task too big for the
 * policy's memory cap fails that decision with the route's line, it does
 * not abort the process, and the policy goes on working. */
static void test_arguments_beyond_the_memory_cap(void **state)
{
    (void)state;
    fr_lua_limits lim = {.mem_bytes = 1u << 20};
    fr_policy *p = load_code("local n = 0\n"
                             "return { route = function(task, candidates, run)\n"
                             "  return candidates[1]\n"
                             "end,\n"
                             "on_result = function(task, result, run) return 'accept' end }\n",
                             &lim);
    size_t big = 2u << 20;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, 'x', big);
    text[big] = '\0';
    for (int round = 0; round < 2; round++) {
        fr_error err = {0};
        json_t *t = task(0.5, "first", NULL);
        json_object_set_new(t, "note", json_string(text));
        assert_int_equal(route_rc(p, t, cands(MID(4), NULL), &err, NULL), FR_ELIMIT);
        assert_string_equal(err.source, "policies/host.lua");
        assert_int_equal(err.line, 2);
        assert_non_null(strstr(err.msg, "memory limit"));

        memset(&err, 0, sizeof err);
        json_t *tk = task(0.5, "first", NULL);
        json_t *res = json_pack("{s:s}", "text", text);
        json_t *r = run_info();
        fr_verdict v;
        assert_int_equal(fr_policy_on_result(p, tk, res, r, &v, &err), FR_ELIMIT);
        assert_int_equal(err.line, 5);
        json_decref(tk);
        json_decref(res);
        json_decref(r);

        memset(&err, 0, sizeof err);
        assert_int_equal(route_rc(p, task(0.5, "first", NULL), cands(MID(4), NULL), &err, NULL),
                         FR_OK);
    }
    free(text);
    fr_policy_free(p);
}

static void test_limits_cannot_be_swallowed(void **state)
{
    (void)state;
    fr_lua_limits lim = {.mem_bytes = 4u << 20, .instructions = 200000};
    fr_policy *p = load_code("return { route = function(task, candidates, run)\n"
                             "  if task.agent == 'loop' then\n"
                             "    pcall(function() while true do end end)\n"
                             "    return candidates[1]\n"
                             "  end\n"
                             "  local hog, page = {}, string.rep('x', 4096)\n"
                             "  pcall(function()\n"
                             "    for i = 1, 1e9 do hog[i] = page .. i end\n"
                             "  end)\n"
                             "  return candidates[1]\n"
                             "end }\n",
                             &lim);
    for (int round = 0; round < 2; round++) {
        fr_error err = {0};
        json_t *t = task(0.5, "first", NULL);
        json_object_set_new(t, "agent", json_string("loop"));
        assert_int_equal(route_rc(p, t, cands(MID(4), NULL), &err, NULL), FR_ELIMIT);
        assert_string_equal(err.source, "policies/host.lua");
        assert_int_equal(err.line, 3);
        assert_non_null(strstr(err.msg, "instruction limit"));

        memset(&err, 0, sizeof err);
        t = task(0.5, "first", NULL);
        json_object_set_new(t, "agent", json_string("hog"));
        assert_int_equal(route_rc(p, t, cands(MID(4), NULL), &err, NULL), FR_ELIMIT);
        assert_non_null(strstr(err.msg, "memory limit"));
    }
    fr_policy_free(p);
}

static void test_on_result_verdicts(void **state)
{
    (void)state;
    fr_policy *p = load_code("local verdicts = { a = 'accept', r = 'retry', e = 'escalate',\n"
                             "  bad = 'maybe', num = 7 }\n"
                             "return {\n"
                             "  route = function(task, candidates, run) return candidates[1] end,\n"
                             "  on_result = function(task, result, run)\n"
                             "    if task.agent == 'boom' then error('no verdict') end\n"
                             "    return verdicts[task.agent]\n"
                             "  end,\n"
                             "}\n",
                             NULL);
    assert_true(fr_policy_has_on_result(p));
    static const struct {
        const char *agent;
        int rc;
        fr_verdict v;
    } cases[] = {
        {"a", FR_OK, FR_VERDICT_ACCEPT},        {"r", FR_OK, FR_VERDICT_RETRY},
        {"e", FR_OK, FR_VERDICT_ESCALATE},      {"none", FR_OK, FR_VERDICT_ACCEPT},
        {"bad", FR_EPOLICY, FR_VERDICT_ACCEPT}, {"num", FR_EPOLICY, FR_VERDICT_ACCEPT},
        {"boom", FR_ELUA, FR_VERDICT_ACCEPT},
    };
    json_t *result =
        json_pack("{s:s, s:s, s:s, s:n, s:f, s:{s:i, s:i}, s:f, s:i}", "endpoint", "mid", "tier",
                  "cloud", "text", "hi", "json", "latency_ms", 80.0, "tokens", "input", 10,
                  "output", 2, "cost_usd", 0.0001, "attempt", 1);
    json_t *r = run_info();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *t = task(0.5, "first", NULL);
        json_object_set_new(t, "agent", json_string(cases[i].agent));
        fr_verdict v = FR_VERDICT_RETRY;
        fr_error err = {0};
        int rc = fr_policy_on_result(p, t, result, r, &v, &err);
        assert_int_equal(rc, cases[i].rc);
        if (rc == FR_OK)
            assert_int_equal(v, cases[i].v);
        else
            assert_string_equal(err.source, "policies/host.lua");
        if (rc == FR_EPOLICY)
            assert_non_null(strstr(err.msg, cases[i].agent[0] == 'b' ? "maybe" : "number"));
        if (rc == FR_ELUA)
            assert_int_equal(err.line, 6);
        json_decref(t);
    }
    json_decref(result);
    json_decref(r);
    fr_policy_free(p);

    /* Without on_result every reply is accepted. */
    p = load_code("return { route = function() return nil end }", NULL);
    assert_false(fr_policy_has_on_result(p));
    fr_verdict v = FR_VERDICT_RETRY;
    assert_int_equal(fr_policy_on_result(p, NULL, NULL, NULL, &v, NULL), FR_OK);
    assert_int_equal(v, FR_VERDICT_ACCEPT);
    fr_policy_free(p);
}

/* The self-check offers the candidates it is given (the run's endpoints), so
 * a policy that names one of them passes; a name that is no candidate is a
 * decision the default makes in a run, not a broken policy. */
static void test_check_names_and_real_candidates(void **state)
{
    (void)state;
    json_t *real = cands(cand("gpu", "local", 0.6, 2, 2, 0, 0, -1),
                         cand("api", "cloud", 0.9, 4, 4, 3, 15, -1), NULL);
    static const char *const codes[] = {
        "return { route = function(t, c) return 'gpu' end }",
        "return { route = function(t, c) return 'elsewhere' end }",
        "return { route = function(t, c) return c[1].name:upper() end }",
        "return { route = function(t, c)\n"
        "  for _, x in ipairs(c) do if x.name == 'api' then return x end end\n"
        "  error('no api')\n end }",
    };
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        fr_policy *p = load_code(codes[i], NULL);
        fr_error err = {0};
        int rc = fr_policy_check(p, real, &err);
        if (rc != FR_OK)
            print_error("case %zu: %s\n", i, err.msg);
        assert_int_equal(rc, FR_OK);
        fr_policy_free(p);
    }
    /* The made-up candidates have no 'api': that policy errors there. */
    fr_policy *p = load_code(codes[3], NULL);
    fr_error err = {0};
    assert_int_equal(fr_policy_check(p, NULL, &err), FR_ELUA);
    assert_non_null(strstr(err.msg, "no api"));
    fr_policy_free(p);
    json_decref(real);
}

/* The self-check refuses a version that would fail its first decision. */
static void test_check_refuses_broken_versions(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int rc;
        int line;
    } cases[] = {
        /* A wrong answer names the line where the function is defined. */
        {"return { route = function() return true end }", FR_EPOLICY, 1},
        {"return {\n route = function(t, c)\n return c[1].nope.x end }", FR_ELUA, 3},
        {"return { route = function() while true do end end }", FR_ELIMIT, 1},
        {"return { route = function(t, c) return c[2] end,\n"
         " on_result = function() return 'perhaps' end }",
         FR_EPOLICY, 2},
        {"return { route = function(t, c) return c[2] end,\n"
         " on_result = function(t, r) return r.nope.x end }",
         FR_ELUA, 2},
    };
    fr_lua_limits lim = {.instructions = 100000};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fr_policy *p = load_code(cases[i].code, &lim);
        fr_error err = {0};
        int rc = fr_policy_check(p, NULL, &err);
        if (rc != cases[i].rc)
            print_error("case %zu: %s %s\n", i, fr_err_name(rc), err.msg);
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(err.source, "policies/host.lua");
        assert_int_equal(err.line, cases[i].line);
        fr_policy_free(p);
    }
}

/* A file that does not load names itself, and the line when there is one. */
static void test_load_errors_name_the_path(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int rc;
        int line;
        const char *words;
    } cases[] = {
        {"return {\n route = function( end }", FR_ESYNTAX, 2, "near"},
        {"return 42", FR_EPOLICY, 0, "must return a table"},
        {"return { rout = function() end }", FR_EPOLICY, 0, "no function 'route'"},
        {"return { route = function() end, on_result = 'accept' }", FR_EPOLICY, 0, "on_result"},
        {"local x = nil\nreturn x.route", FR_ELUA, 2, "nil"},
        {"return { route = io.open }", FR_ELUA, 1, "io"},
        {"while true do end", FR_ELIMIT, 1, "instruction limit"},
        {"\27Lua", FR_ESYNTAX, 0, ""},
    };
    fr_lua_limits lim = {.instructions = 100000};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fr_policy *p = NULL;
        fr_error err = {0};
        const char *code = cases[i].code;
        int rc =
            fr_policy_load_string("policies/broken.lua", code, strlen(code), &lim, 2, &p, &err);
        if (rc != cases[i].rc)
            print_error("case %zu: %s %s\n", i, fr_err_name(rc), err.msg);
        assert_int_equal(rc, cases[i].rc);
        assert_null(p);
        assert_string_equal(err.source, "policies/broken.lua");
        if (cases[i].line)
            assert_int_equal(err.line, cases[i].line);
        assert_non_null(strstr(err.msg, cases[i].words));
    }
    /* A missing file is FR_ENOENT, with its path. */
    fr_policy *p = NULL;
    fr_error err = {0};
    assert_int_equal(fr_policy_load("policies/none.lua", NULL, 1, &p, &err), FR_ENOENT);
    assert_string_equal(err.source, "policies/none.lua");
}

/* The policy gets copies: what it does to them does not reach the caller,
 * and state it keeps between calls survives (the built-ins rely on it). */
static void test_arguments_are_copies(void **state)
{
    (void)state;
    fr_policy *p = load_code("local calls = 0\n"
                             "return { route = function(task, candidates, run)\n"
                             "  calls = calls + 1\n"
                             "  candidates[1].name = 'forged'\n"
                             "  task.tried[1] = 'x'\n"
                             "  return calls == 1 and candidates[2] or candidates[1]\n"
                             "end }\n",
                             NULL);
    json_t *t = task(0.5, "first", NULL);
    json_t *c = cands(MID(4), STRONG(4), NULL);
    json_t *r = run_info();
    for (int i = 0; i < 2; i++) {
        char *choice = NULL;
        fr_error err = {0};
        int rc = fr_policy_route(p, t, c, r, &choice, &err);
        /* The second call returns the renamed candidate: not one of ours. */
        assert_int_equal(rc, i == 0 ? FR_OK : FR_EPOLICY);
        if (i == 0)
            assert_string_equal(choice, "strong");
        free(choice);
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "name")), "mid");
    assert_int_equal(json_array_size(json_object_get(t, "tried")), 0);
    json_decref(t);
    json_decref(c);
    json_decref(r);
    fr_policy_free(p);
}

/* Kept arguments (fr_policy_keep_args, as the built-ins have them) show a
 * policy exactly what a fresh copy would, whatever it did to them in the
 * decision before: new keys, changed fields and elements, a sorted or
 * shortened candidates list, metatables set, removed or changed, an error
 * half way. The policy checks every field and the number of keys against
 * what the test gives decision d (1 to 4 candidates, tried and tags of
 * changing lengths, nil fields), then spoils its arguments one way in
 * nine. The same run without keeping is the reference. */
static const char leak_policy[] =
    "local function keys(t)\n"
    "  local n = 0\n"
    "  for _ in pairs(t) do n = n + 1 end\n"
    "  return n\n"
    "end\n"
    "local function check(ok, what) if not ok then error('leaked: ' .. what, 2) end end\n"
    "local function names(a, n, prefix, what)\n"
    "  check(rawlen(a) == n and keys(a) == n and a.ghost == nil, what .. ' length')\n"
    "  for j = 1, n do check(a[j] == prefix .. j, what .. '[' .. j .. ']') end\n"
    "end\n"
    "return { route = function(task, cands, run)\n"
    "  local d = task.priority\n"
    "  check(task.name == 't' and task.agent == 'a' and task.complexity == 0.5 and\n"
    "        task.private == false and task.attempt == 1 and task.reason == 'first' and\n"
    "        task.est_input_tokens == 10 and task.max_tokens == 20 and task.tools == 0,\n"
    "        'task fields')\n"
    "  check(task.type == (d % 2 == 1 and 'code' or nil), 'task.type')\n"
    "  check(keys(task) == (d % 2 == 1 and 12 or 11) and task.ghost == nil, 'task keys')\n"
    "  names(task.tried, d % 3, 'x', 'tried')\n"
    "  local n = 1 + d % 4\n"
    "  check(#cands == n and keys(cands) == n and cands.ghost == nil, 'candidates')\n"
    "  for i = 1, n do\n"
    "    local c = cands[i]\n"
    "    check(c.name == 'c' .. i and c.model == 'm' .. i and c.protocol == 'openai' and\n"
    "          c.tier == (i % 2 == 1 and 'local' or 'cloud'), 'strings of ' .. i)\n"
    "    check(c.in_flight == d and c.max_parallel == 4 and c.free == (i + d) % 3 and\n"
    "          c.queued == i and c.quality == i / 10 and c.price_in == 1 and\n"
    "          c.price_out == 2 and c.est_cost == d / 100 and c.context == 1000 * i,\n"
    "          'numbers of ' .. i)\n"
    "    local lat = (i + d) % 2 == 1 and d + i or nil\n"
    "    check(c.latency_p50 == lat, 'latency of ' .. i)\n"
    "    check(keys(c) == (lat and 17 or 16) and c.ghost == nil, 'keys of ' .. i)\n"
    "    check(c.history.attempts == 0 and c.history.pass_rate == nil and\n"
    "          c.history.type == nil and c.history_all.weight == 0 and\n"
    "          keys(c.history) == 9 and keys(c.history_all) == 7, 'history of ' .. i)\n"
    "    names(c.tags, (i + d) % 3, 't', 'tags of ' .. i)\n"
    "  end\n"
    "  local capped = d % 2 == 1\n"
    "  check(run.budget == (capped and 5 or nil) and run.remaining == (capped and 4 or nil)\n"
    "        and run.spent == 1 and run.reserved == 0 and run.elapsed == 0 and\n"
    "        run.done == d and run.total == n and run.ready == 1, 'run')\n"
    "  check(keys(run) == (capped and 9 or 7) and run.ghost == nil, 'run keys')\n"
    "  local c, mode = cands[1], d % 9\n"
    "  local choice = c.name\n"
    "  local function ghost() return 'ghost' end\n"
    "  if mode == 1 then\n"
    "    task.ghost = 1; c.ghost = 1; run.ghost = 1; cands.ghost = 1\n"
    "  elseif mode == 2 then\n"
    "    task.tried[#task.tried + 1] = 'x9'; c.tags[#c.tags + 1] = 't9'; cands[n + 1] = c\n"
    "  elseif mode == 3 then\n"
    "    task.name = 'no'; task.tried = {'q'}; c.free = 99; c.tags = {'z'}; c.name = 'no'\n"
    "    run.spent = -1; task.type = nil; c.latency_p50 = nil; run.budget = nil\n"
    "    c.history.attempts = 99; c.history_all.weight = nil; c.history.pass_rate = 1\n"
    "    for j = 1, #task.tried do task.tried[j] = 'no' end\n"
    "  elseif mode == 4 then\n"
    "    table.sort(cands, function(a, b) return a.name > b.name end)\n"
    "    table.remove(cands, 1)\n"
    "    for j = #c.tags, 1, -1 do c.tags[j] = nil end\n"
    "  elseif mode == 5 then\n"
    "    setmetatable(task, {__index = ghost}); setmetatable(c, nil); c.ghost = 1\n"
    "  elseif mode == 6 then\n"
    "    local mt = getmetatable(run)\n"
    "    if mt then mt.__index = ghost else setmetatable(run, {__index = ghost}) end\n"
    "  elseif mode == 7 then\n"
    "    local mt = getmetatable(run)\n"
    "    if mt then mt.__newindex = nil end\n"
    "    run.ghost = 1; task.ghost = 1\n"
    "  elseif mode == 8 then\n"
    "    task.ghost = 1; c.free = 99; error('spoiled, then failed')\n"
    "  end\n"
    "  return choice\n"
    "end }\n";

static void test_kept_arguments_do_not_leak(void **state)
{
    (void)state;
    static const char *const tried[] = {"x1", "x2"}, *const tags[] = {"t1", "t2", "t3"};
    for (int keep = 0; keep < 2; keep++) {
        fr_policy *p = load_code(leak_policy, NULL);
        if (keep)
            fr_policy_keep_args(p);
        for (int d = 0; d < 72; d++) {
            size_t n = 1 + (size_t)d % 4;
            fr_policy_cand c[4];
            char names[4][16], models[4][16];
            for (size_t k = 0; k < n; k++) {
                int i = (int)k + 1;
                snprintf(names[k], sizeof names[k], "c%d", i);
                snprintf(models[k], sizeof models[k], "m%d", i);
                c[k] = (fr_policy_cand){.name = names[k],
                                        .tier = i % 2 ? "local" : "cloud",
                                        .protocol = "openai",
                                        .model = models[k],
                                        .in_flight = d,
                                        .max_parallel = 4,
                                        .free = (i + d) % 3,
                                        .queued = i,
                                        .quality = i / 10.0,
                                        .price_in = 1,
                                        .price_out = 2,
                                        .est_cost = d / 100.0,
                                        .latency_p50 = (i + d) % 2 ? d + i : -1,
                                        .tags = tags,
                                        .ntags = (size_t)((i + d) % 3),
                                        .context = 1000 * i};
            }
            fr_policy_task t = {.name = "t",
                                .agent = "a",
                                .type = d % 2 ? "code" : NULL,
                                .complexity = 0.5,
                                .priority = d,
                                .attempt = 1,
                                .reason = "first",
                                .tried = tried,
                                .ntried = (size_t)(d % 3),
                                .est_input_tokens = 10,
                                .max_tokens = 20};
            fr_policy_run r = {.capped = d % 2,
                               .budget = 5,
                               .spent = 1,
                               .remaining = 4,
                               .done = d,
                               .total = (long)n,
                               .ready = 1};
            long choice = -2;
            fr_error err = {0};
            int rc = fr_policy_route_view(p, &t, c, n, &r, &choice, &err);
            if (d % 9 == 8) {
                assert_int_equal(rc, FR_ELUA);
                assert_non_null(strstr(err.msg, "spoiled, then failed"));
                continue;
            }
            if (rc != FR_OK)
                print_error("keep=%d decision %d: %s:%d: %s\n", keep, d, err.source, err.line,
                            err.msg);
            assert_int_equal(rc, FR_OK);
            assert_int_equal(choice, 0);
        }
        fr_policy_free(p);
    }
}

/* Checks one policy fixture against its header (see the top of the file);
 * returns the number of mismatches, each printed. */
static int check_bad_policy(const char *dir, const char *name)
{
    static const int codes[] = {FR_ELUA, FR_ESYNTAX, FR_ELIMIT, FR_EPOLICY};
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024], expect[1024] = "";
    int want_code = 1, want_line = -1, bad = 0;
    while (fgets(line, sizeof line, f) && strncmp(line, "-- ", 3) == 0) {
        line[strcspn(line, "\n")] = '\0';
        for (size_t i = 0; strncmp(line, "-- code: ", 9) == 0 && i < 4; i++)
            if (strcmp(fr_err_name(codes[i]), line + 9) == 0)
                want_code = codes[i];
        if (strncmp(line, "-- line: ", 9) == 0)
            want_line = atoi(line + 9);
        if (strncmp(line, "-- expect: ", 11) == 0)
            snprintf(expect, sizeof expect, "%s", line + 11);
    }
    fclose(f);
    assert_true(want_code < 0 && want_line > 0 && expect[0]);

    /* As a run starts one: load, then the self-check. */
    fr_policy *p = NULL;
    fr_error err = {0};
    int rc = fr_policy_load(path, NULL, 1, &p, &err);
    if (rc == FR_OK)
        rc = fr_policy_check(p, NULL, &err);
    fr_policy_free(p);
    char buf[2048];
    fr_error_format(&err, buf, sizeof buf);
    if (rc != want_code) {
        print_error("%s: got %s, want %s (%s)\n", name, fr_err_name(rc), fr_err_name(want_code),
                    buf);
        bad++;
    }
    if (err.line != want_line || strcmp(err.source, path) != 0) {
        print_error("%s: got %s:%d, want %s:%d (%s)\n", name, err.source, err.line, path, want_line,
                    buf);
        bad++;
    }
    if (!strstr(err.msg, expect)) {
        print_error("%s: message lacks \"%s\": %s\n", name, expect, buf);
        bad++;
    }
    return bad;
}

/* Policies that raise odd error objects, nest too deeply, run out of memory
 * or hide errors in metamethods fail with their file and line: never an
 * abort, never a message without a position. */
static void test_bad_policy_fixtures(void **state)
{
    (void)state;
    const char *dir = "tests/unit/fixtures/dsl";
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0, bad = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "policy_bad_", 11) != 0 || l < 5 ||
            strcmp(de->d_name + l - 4, ".lua") != 0)
            continue;
        bad += check_bad_policy(dir, de->d_name);
        n++;
    }
    closedir(d);
    assert_true(n >= 10);
    assert_int_equal(bad, 0);
}

/* Every registry reference the policy host takes goes through the counted
 * pair of dsl/sandbox: a policy holds two (route, on_result) while it lives,
 * routing and on_result take none for good, a reload beside the live version
 * holds its own two, and freeing every version (or a load that fails) leaves
 * the count where it was. A reference that is never released shows here. */
static void test_registry_refs_return_to_zero(void **state)
{
    (void)state;
    static const char code[] = "return {\n"
                               "  route = function(task, candidates) return candidates[1] end,\n"
                               "  on_result = function() return 'accept' end,\n"
                               "}\n";
    long refs0 = fr_sandbox_live_refs();
    fr_policy *live = load_code(code, NULL);
    assert_int_equal(fr_sandbox_live_refs(), refs0 + 2);
    assert_int_equal(fr_policy_check(live, NULL, NULL), FR_OK);
    for (int i = 0; i < 3; i++) {
        expect_route(live, task(0.5, "first", NULL), cands(SMALL(1), MID(1), NULL), "small");
        json_t *t = task(0.5, "first", NULL), *r = run_info();
        json_t *result = json_pack("{s:s, s:s}", "endpoint", "small", "text", "hi");
        fr_verdict v = FR_VERDICT_RETRY;
        assert_int_equal(fr_policy_on_result(live, t, result, r, &v, NULL), FR_OK);
        assert_int_equal(v, FR_VERDICT_ACCEPT);
        json_decref(t);
        json_decref(r);
        json_decref(result);
    }
    assert_int_equal(fr_sandbox_live_refs(), refs0 + 2);

    /* A reload: the next version loads beside the live one, then replaces it. */
    fr_policy *next = load_code("return { route = function() return nil end }", NULL);
    assert_int_equal(fr_sandbox_live_refs(), refs0 + 3);
    fr_policy_free(live);
    assert_int_equal(fr_sandbox_live_refs(), refs0 + 1);

    /* Versions that fail to load hold nothing. */
    static const char *const bad[] = {
        "return { route = function() end, on_result = 5 }",
        "return { on_result = function() end }",
        "error('boom')",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fr_policy *p = NULL;
        fr_error err = {0};
        assert_int_not_equal(
            fr_policy_load_string("policies/host.lua", bad[i], strlen(bad[i]), NULL, 4, &p, &err),
            FR_OK);
        assert_null(p);
        assert_int_equal(fr_sandbox_live_refs(), refs0 + 1);
    }
    fr_policy_free(next);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        fr_policy_free(load_builtin(builtins[i]));
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_answers),
        cmocka_unit_test(test_route_error_has_file_and_line),
        cmocka_unit_test(test_limits_cannot_be_swallowed),
        cmocka_unit_test(test_arguments_beyond_the_memory_cap),
        cmocka_unit_test(test_on_result_verdicts),
        cmocka_unit_test(test_check_refuses_broken_versions),
        cmocka_unit_test(test_check_names_and_real_candidates),
        cmocka_unit_test(test_load_errors_name_the_path),
        cmocka_unit_test(test_arguments_are_copies),
        cmocka_unit_test(test_kept_arguments_do_not_leak),
        cmocka_unit_test(test_bad_policy_fixtures),
        cmocka_unit_test(test_registry_refs_return_to_zero),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
