/* flowrun-sim: models, their counters and their fault scripts. The server
 * (sim_http.c) and the reply (sim_chat.c) look models up here. */

#include "engine/sim/sim_int.h"

#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>

static const char *const fault_names[] = {
    [FR_SIM_FAULT_OK] = "ok",
    [FR_SIM_FAULT_429] = "429",
    [FR_SIM_FAULT_500] = "500",
    [FR_SIM_FAULT_503] = "503",
    [FR_SIM_FAULT_529] = "529",
    [FR_SIM_FAULT_CUT] = "cut",
    [FR_SIM_FAULT_HANG] = "hang",
    [FR_SIM_FAULT_BADJSON] = "badjson",
    [FR_SIM_FAULT_NOUSAGE] = "nousage",
    [FR_SIM_FAULT_BADUTF8] = "badutf8",
    [FR_SIM_FAULT_ERROR] = "error",
    [FR_SIM_FAULT_REPEAT] = "repeat",
    [FR_SIM_FAULT_BADSCHEMA] = "badschema",
    [FR_SIM_FAULT_ECHOKEY] = "echokey",
    [FR_SIM_FAULT_REFUSAL] = "refusal",
    [FR_SIM_FAULT_TOOLCALL] = "toolcall",
    [FR_SIM_FAULT_THINKING] = "thinking",
    [FR_SIM_FAULT_ECHOOKEY] = "echookey",
};
#define NFAULTS (sizeof fault_names / sizeof fault_names[0])

/* Returns the kind named by name[0..n), or -1. */
int fr_sim_fault_parse(const char *name, size_t n)
{
    for (size_t i = 0; i < NFAULTS; i++)
        if (strlen(fault_names[i]) == n && memcmp(fault_names[i], name, n) == 0)
            return (int)i;
    return -1;
}

/* Returns the static name of `f`. */
const char *fr_sim_fault_name(fr_sim_fault f)
{
    return (size_t)f < NFAULTS ? fault_names[f] : "?";
}

/* Parses "KIND+KIND+..." into an owned array (NULL when empty). Returns
 * false on an unknown or empty kind. */
static bool parse_script(const char *text, fr_sim_fault **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!text || !*text)
        return true;
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == '+';
    fr_sim_fault *script = fr_xcalloc(cap, sizeof *script);
    size_t count = 0;
    for (const char *p = text;;) {
        size_t len = strcspn(p, "+");
        int kind = fr_sim_fault_parse(p, len);
        if (kind < 0) {
            free(script);
            return false;
        }
        script[count++] = (fr_sim_fault)kind;
        if (!p[len])
            break;
        p += len + 1;
    }
    *out = script;
    *n = count;
    return true;
}

static void set_script(fr_sim_entry *e, const fr_sim_fault *script, size_t n)
{
    free(e->script);
    e->script = NULL;
    if (n) {
        e->script = fr_xmalloc(n * sizeof *script);
        memcpy(e->script, script, n * sizeof *script);
    }
    e->nscript = n;
    e->script_pos = 0;
}

static fr_sim_entry *find_entry(const fr_sim *s, const char *name)
{
    for (fr_sim_entry *m = s->models; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

/* Returns the entry of `name`, made on first use with the default script. */
fr_sim_entry *fr_sim_entry_get(fr_sim *s, const char *name)
{
    fr_sim_entry *m = find_entry(s, name);
    if (m)
        return m;
    m = fr_xcalloc(1, sizeof *m);
    m->name = fr_xstrdup(name);
    set_script(m, s->dflt_script, s->dflt_nscript);
    *s->models_tail = m;
    s->models_tail = &m->next;
    return m;
}

/* Consumes the next kind of the script. */
fr_sim_fault fr_sim_entry_next_fault(fr_sim_entry *e)
{
    if (e->script_pos >= e->nscript)
        return FR_SIM_FAULT_OK;
    return e->script[e->script_pos++];
}

/* Frees every entry. */
void fr_sim_entries_free(fr_sim *s)
{
    fr_sim_entry *m = s->models;
    while (m) {
        fr_sim_entry *next = m->next;
        free(m->script);
        free(m->name);
        free(m);
        m = next;
    }
    s->models = NULL;
    s->models_tail = &s->models;
    free(s->dflt_script);
    s->dflt_script = NULL;
}

static bool entry_seen(const fr_sim_entry *m)
{
    return m->requests > 0 || m->in_flight > 0;
}

/* Sets one model's behaviour, or the default when m->name is NULL. */
int fr_sim_set_model(fr_sim *s, const fr_sim_model *m)
{
    if (!s || !m)
        return FR_EINVAL;
    fr_sim_fault *script;
    size_t n;
    if (!parse_script(m->faults, &script, &n))
        return FR_EINVAL;
    if (!m->name) {
        s->dflt_latency_ms = m->latency_ms;
        s->dflt_tokens_per_s = m->tokens_per_s;
        s->dflt_max_concurrent = m->max_concurrent;
        free(s->dflt_script);
        s->dflt_script = script;
        s->dflt_nscript = n;
        for (fr_sim_entry *e = s->models; e; e = e->next)
            if (!e->configured)
                set_script(e, script, n);
        return FR_OK;
    }
    fr_sim_entry *e = fr_sim_entry_get(s, m->name);
    e->configured = true;
    e->latency_ms = m->latency_ms;
    e->tokens_per_s = m->tokens_per_s;
    e->max_concurrent = m->max_concurrent;
    e->refuse_max_tokens = m->refuse_max_tokens;
    e->retry_after_s = m->retry_after_s;
    e->has_skill = m->has_skill;
    e->skill = m->skill;
    e->noise = m->noise;
    set_script(e, script, n);
    free(script);
    return FR_OK;
}

/* Peak in flight for `model` (borrowed), or -1 if it has had no request. */
int fr_sim_peak(const fr_sim *s, const char *model)
{
    const fr_sim_entry *m = s && model ? find_entry(s, model) : NULL;
    return m && entry_seen(m) ? (int)m->peak : -1;
}

/* Returns owned JSON with the counters; see sim.h. */
json_t *fr_sim_stats(const fr_sim *s)
{
    if (!s)
        return NULL;
    json_t *models = json_object();
    for (const fr_sim_entry *m = s->models; m; m = m->next) {
        if (!entry_seen(m))
            continue;
        json_object_set_new(
            models, m->name,
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "early", (json_int_t)m->early,
                      "requests", (json_int_t)m->requests, "peak_in_flight", (json_int_t)m->peak,
                      "rejected", (json_int_t)m->rejected, "in_flight", (json_int_t)m->in_flight,
                      "faults", (json_int_t)m->faults, "input_tokens", (json_int_t)m->input_tokens,
                      "output_tokens", (json_int_t)m->output_tokens));
    }
    json_int_t open = 0;
    for (const fr_sim_conn *c = s->conns; c; c = c->next)
        open++;
    return json_pack("{s:I,s:I,s:I,s:o}", "connections", (json_int_t)s->connections,
                     "open_connections", open, "first_request_unix_us",
                     (json_int_t)s->first_request_us, "models", models);
}

/* Zeroes the counters; see sim.h. */
void fr_sim_reset(fr_sim *s)
{
    if (!s)
        return;
    s->connections = 0;
    s->first_request_us = 0;
    for (fr_sim_entry *m = s->models; m; m = m->next) {
        m->requests = 0;
        m->early = 0;
        m->rejected = 0;
        m->faults = 0;
        m->input_tokens = 0;
        m->output_tokens = 0;
        m->peak = m->in_flight;
    }
}

/* Returns the port the simulator listens on. */
int fr_sim_port(const fr_sim *s)
{
    return s ? s->port : -1;
}
