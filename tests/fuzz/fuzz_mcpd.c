/* libFuzzer target for the MCP server core's message handling
 * (engine/mcpd/mcpd.h): what a client writes, one message a line, into a
 * fresh peer, as `flowrun mcp` reads it over stdio or an HTTP body.
 *
 * Input: lines of text. A line that is a tools/call is left out (a call
 * starts a child flowrun, which is not what this target is for; the calls'
 * argument checks have their unit tests); every other line is fed.
 *
 * Invariants: nothing ends the peer; each line causes at most one message
 * with `last` (its response), and a request (an object with a method and a
 * string or integer id) exactly one; every message sent is a JSON-RPC 2.0
 * object, a response with exactly one of result and error, an error with an
 * integer code and a message. */

#include "engine/mcpd/mcpd.h"
#include "tests/unit/support/split.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

typedef struct sink {
    int lasts;
} sink;

static void on_send(void *ud, void *tag, const json_t *msg, bool last)
{
    sink *s = ud;
    (void)tag;
    FUZZ_CHECK(json_is_object(msg));
    const char *v = json_string_value(json_object_get(msg, "jsonrpc"));
    FUZZ_CHECK(v && strcmp(v, "2.0") == 0);
    bool result = json_object_get(msg, "result") != NULL;
    const json_t *error = json_object_get(msg, "error");
    if (last) {
        FUZZ_CHECK(result != (error != NULL));
        s->lasts++;
    }
    if (error) {
        FUZZ_CHECK(json_is_integer(json_object_get(error, "code")));
        FUZZ_CHECK(json_is_string(json_object_get(error, "message")));
    }
}

static fr_mcpd *server(void)
{
    static uv_loop_t loop;
    static fr_mcpd *d;
    if (d)
        return d;
    char dir[] = "/tmp/fuzz_mcpd.XXXXXX";
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    fr_mcpd_opts o = {.exe = "/nonexistent/flowrun", .work_dir = dir};
    fr_error err = {0};
    FUZZ_CHECK(fr_mcpd_new(&loop, &o, &d, &err) == FR_OK);
    return d;
}

/* Whether `line` is a tools/call (left out), and whether it is a request. */
static void classify(const char *line, size_t n, bool *call, bool *request)
{
    *call = *request = false;
    json_t *m = json_loadb(line, n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(m)) {
        json_decref(m);
        return;
    }
    const char *method = json_string_value(json_object_get(m, "method"));
    const json_t *id = json_object_get(m, "id");
    *call = method && strcmp(method, "tools/call") == 0;
    *request = method && id && (json_is_string(id) || json_is_integer(id));
    json_decref(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sink s = {0};
    fr_mcpd_peer *p = fr_mcpd_peer_new(server(), on_send, &s);
    const char *text = (const char *)data;
    size_t at = 0;
    while (at < size) {
        const char *nl = memchr(text + at, '\n', size - at);
        size_t n = nl ? (size_t)(nl - (text + at)) : size - at;
        bool call, request;
        classify(text + at, n, &call, &request);
        if (!call) {
            int before = s.lasts;
            fr_mcpd_peer_input(p, text + at, n, NULL);
            FUZZ_CHECK(s.lasts - before <= 1);
            if (request)
                FUZZ_CHECK(s.lasts - before == 1);
        }
        at += n + 1;
    }
    fr_mcpd_peer_free(p);
    return 0;
}
