/* The client the MCP conformance suite drives (tests/e2e/mcp_conformance.sh):
 * `mcp_client URL` starts engine/mcp on the Streamable HTTP server at URL
 * (the revision chosen as flowrun chooses it), lists the tools and calls
 * them, printing each result: the calls the scenario names in
 * MCP_CONFORMANCE_CONTEXT's toolCalls when it names some, else every tool
 * with arguments made from its input schema (numbers 1, strings "test",
 * ...; a tool taking a `schema` object gets another tool's inputSchema as
 * listed, which shows what the client kept of it). Exits 0 when the start succeeded, 1
 * when it failed, 2 on bad usage. Nothing else of flowrun runs. */
#include "dsl/workflow.h"
#include "engine/http.h"
#include "engine/mcp/mcp.h"
#include "engine/proc.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct client {
    fr_mcp *m;
    size_t pending;
    int rc;
} client;

static void on_done(void *ud, fr_tool_result *r);

/* A value of JSON Schema `s` (borrowed): the first enum member, the
 * default, or a plain value of its type; objects get their properties. */
static json_t *sample(const json_t *s)
{
    const json_t *e = json_object_get(s, "enum");
    if (json_array_size(e) > 0)
        return json_deep_copy(json_array_get(e, 0));
    if (json_object_get(s, "default"))
        return json_deep_copy(json_object_get(s, "default"));
    const char *type = json_string_value(json_object_get(s, "type"));
    if (!type)
        type = json_object_get(s, "properties") ? "object" : "string";
    if (strcmp(type, "number") == 0 || strcmp(type, "integer") == 0)
        return json_integer(1);
    if (strcmp(type, "boolean") == 0)
        return json_true();
    if (strcmp(type, "array") == 0)
        return json_array();
    if (strcmp(type, "object") == 0) {
        json_t *o = json_object();
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)json_object_get(s, "properties"), k, v)
            json_object_set_new(o, k, sample(v));
        return o;
    }
    return json_string("test");
}

/* The arguments for tool `t` (new): from its schema; a `schema` object
 * parameter gets the inputSchema of another tool of `tools`. */
static json_t *arguments(const json_t *tools, const json_t *t)
{
    const json_t *schema = json_object_get(t, "inputSchema");
    json_t *args = sample(schema);
    const json_t *p = json_object_get(json_object_get(schema, "properties"), "schema");
    const char *type = json_string_value(json_object_get(p, "type"));
    size_t i;
    const json_t *other;
    if (type && strcmp(type, "object") == 0)
        json_array_foreach(tools, i, other) if (other != t)
        {
            json_object_set(args, "schema", json_object_get(other, "inputSchema"));
            break;
        }
    return args;
}

static void call(client *c, const char *name, const json_t *args)
{
    printf("calling %s\n", name);
    if (fr_mcp_call_tool(c->m, name, args, 20, on_done, c, NULL) == FR_OK)
        c->pending++;
}

static void on_done(void *ud, fr_tool_result *r)
{
    client *c = ud;
    printf("%s%s\n", r->is_error ? "error result: " : "result: ", r->text);
    if (--c->pending == 0)
        fr_mcp_stop(c->m);
}

static void on_ready(void *ud, int rc, const fr_error *err)
{
    client *c = ud;
    if (rc != FR_OK) {
        fprintf(stderr, "mcp_client: %s\n", err ? err->msg : fr_strerror(rc));
        c->rc = 1;
        fr_mcp_stop(c->m);
        return;
    }
    const json_t *tools = fr_mcp_tools(c->m);
    printf("revision %s, %zu tools\n", fr_mcp_revision(c->m), json_array_size(tools));
    size_t i;
    const json_t *t;
    const char *ctx = getenv("MCP_CONFORMANCE_CONTEXT");
    json_t *context = ctx ? json_loads(ctx, 0, NULL) : NULL;
    const json_t *calls = json_object_get(context, "toolCalls");
    json_array_foreach(calls, i, t)
        call(c, json_string_value(json_object_get(t, "name")), json_object_get(t, "arguments"));
    if (json_array_size(calls) == 0)
        json_array_foreach(tools, i, t)
        {
            json_t *args = arguments(tools, t);
            call(c, json_string_value(json_object_get(t, "name")), args);
            json_decref(args);
        }
    json_decref(context);
    if (c->pending == 0)
        fr_mcp_stop(c->m);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], FR_PROC_GUARD_ARG) == 0)
        return fr_proc_guard_main(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: mcp_client URL\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fr_http *http = fr_http_new(&loop);
    fr_mcp_spec spec = {
        .name = "conformance", .url = argv[argc - 1], .start_timeout_s = 20, .call_timeout_s = 20};
    client c = {0};
    c.m = fr_mcp_new(&loop, http, &spec, ".");
    fr_mcp_start(c.m, on_ready, &c);
    uv_run(&loop, UV_RUN_DEFAULT);
    fr_http_free(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return c.rc;
}
