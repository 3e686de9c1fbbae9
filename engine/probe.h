#pragma once
/* Endpoint health checks (`flowrun endpoints --check`): every endpoint of a
 * run's endpoint view is asked at once, on the loop through engine/http,
 * each step bounded by a timeout: is it reachable, does its model list
 * (OpenAI-compatible and Anthropic GET /v1/models, Ollama GET /api/tags and
 * /api/ps) name the endpoint's model, is its key variable set and accepted
 * (a 401 or 403 is a refused key), and, when asked, how long a one-token
 * request takes to its first token. The key's value is sent only in the
 * protocol's own header and never appears in a result. Used by
 * engine/cli/endpoints_cmd. */

#include "engine/endpoint.h"
#include "engine/http.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct fr_probe fr_probe;

typedef struct fr_probe_opts {
    long timeout_ms; /* each request's whole time; 0 = 5000 */
    bool one_token;  /* also send a one-token chat request (it may cost) */
} fr_probe_opts;

/* Called once when every endpoint has been checked, from a libuv callback. */
typedef void (*fr_probe_done_fn)(void *ud);

/* Starts checking every endpoint of `eps` (borrowed; must outlive the probe)
 * on `http` (borrowed) with `opts` (borrowed, copied). Returns the probe
 * (owned; fr_probe_free); `done` is called once all are checked (at once
 * when there is none). */
fr_probe *fr_probe_start(fr_http *http, const fr_endpoints *eps, const fr_probe_opts *opts,
                         fr_probe_done_fn done, void *ud);

/* What was found for endpoint `e`, once done: a new JSON object (owned by
 * the caller) of
 *   "reachable": bool, "error": why not (string, absent when reachable),
 *   "key": "none" (no key variable), "missing" (not set), "rejected"
 *          (401/403), "set" (sent and not refused),
 *   "model_present": bool, or null when the server gave no model list,
 *   "models_status": the model list's HTTP status (0 for none),
 *   "loaded": bool (Ollama: the model is in /api/ps), absent otherwise,
 *   "ttft_ms": number (with one_token, when a first token came),
 *   "probe_error": string (with one_token, when the request failed),
 *   "usable": bool, "problems": [strings a user reads].
 * Every message is passed through the redaction of known keys. */
json_t *fr_probe_result(const fr_probe *p, size_t e);

/* Cancels what is still in flight (no done call) and frees the probe; the
 * caller runs the loop afterwards. NULL is fine. */
void fr_probe_free(fr_probe *p);

/* Returns `url` (borrowed) as an owned string without what may carry a
 * secret: the user:password@ part and the query. NULL gives NULL. */
char *fr_probe_public_url(const char *url);
