#include "engine/gate.h"

#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/redact.h"
#include "dsl/schema.h"

#include <stdlib.h>
#include <string.h>

/* True when `text` (may be NULL) holds more than blanks. */
static bool has_text(const char *text)
{
    for (const char *p = text ? text : ""; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return true;
    return false;
}

int fr_gate_empty(const fr_reply *reply, const char **outcome, fr_error *err)
{
    if (reply->json || has_text(reply->text))
        return FR_OK;
    *outcome = "no_answer";
    return fr_error_set(err, FR_EFINISH, NULL, 0,
                        "the reply is empty: no text and no tool call (finish reason '%s')",
                        reply->finish_reason ? reply->finish_reason
                                             : fr_finish_name(reply->finish));
}

int fr_gate_finish(const fr_task_spec *ts, const fr_reply *reply, const char **outcome,
                   fr_error *err)
{
    const char *said = reply->finish_reason ? reply->finish_reason : fr_finish_name(reply->finish);
    bool text = has_text(reply->text); /* blanks cut at max_tokens are no answer */
    *outcome = NULL;
    switch (reply->finish) {
    case FR_FINISH_LENGTH:
        if (ts->allow_truncated && text)
            return FR_OK;
        *outcome = "truncated";
        if (!text)
            return fr_error_set(err, FR_EFINISH, NULL, 0,
                                "the reply was cut at max_tokens %d before any answer (finish "
                                "reason '%s'); raise max_tokens",
                                ts->max_tokens, said);
        return fr_error_set(err, FR_EFINISH, NULL, 0,
                            "the reply was cut at max_tokens %d (finish reason '%s'); raise "
                            "max_tokens, or set allow_truncated = true to accept cut text",
                            ts->max_tokens, said);
    case FR_FINISH_REFUSED:
        *outcome = "refused";
        return fr_error_set(err, FR_EFINISH, NULL, 0,
                            "the model refused, or a content filter stopped the reply (finish "
                            "reason '%s')",
                            said);
    case FR_FINISH_TOOL_CALL:
        *outcome = "tool_call";
        return fr_error_set(err, FR_EFINISH, NULL, 0,
                            "the model stopped to call a tool, and the task offers none (finish "
                            "reason '%s')",
                            said);
    case FR_FINISH_NO_ANSWER:
        *outcome = "no_answer";
        return fr_error_set(err, FR_EFINISH, NULL, 0,
                            "the reply holds reasoning (thinking) but no answer (finish reason "
                            "'%s'); raise max_tokens or use a model that answers after thinking",
                            said);
    default:
        return fr_gate_empty(reply, outcome, err);
    }
}

int fr_gate_schema(const fr_task_spec *ts, const fr_reply *reply, fr_error *err)
{
    if (!ts->schema)
        return FR_OK;
    char msg[600];
    if (!reply->json && reply->finish == FR_FINISH_LENGTH) /* accepted by allow_truncated */
        return fr_error_set(err, FR_EQUALITY, NULL, 0,
                            "the reply was cut at max_tokens %d and its JSON is incomplete; raise "
                            "max_tokens",
                            ts->max_tokens);
    if (!reply->json)
        return fr_error_set(err, FR_EQUALITY, NULL, 0, "the reply carries no JSON");
    if (fr_schema_validate(ts->schema, reply->json, msg, sizeof msg) != FR_OK)
        return fr_error_set(err, FR_EQUALITY, NULL, 0, "the reply does not match the schema: %s",
                            msg);
    return FR_OK;
}

int fr_gate_check(fr_workflow *wf, size_t task, const fr_reply *reply, double *score, fr_error *err)
{
    const fr_task_spec *ts = &wf->tasks[task];
    if (!ts->has_check)
        return FR_OK;
    double s;
    char *why = NULL;
    fr_error cerr = {0};
    int rc = fr_workflow_check(wf, task, reply->text, reply->json, &s, &why, &cerr);
    if (rc != FR_OK) {
        char msg[1400];
        rc = fr_error_set(err, FR_EQUALITY, NULL, 0, "the check did not score the reply: %s",
                          fr_error_format(&cerr, msg, sizeof msg));
    } else {
        *score = s; /* failed or not, the attempt's score (the routing history's) */
        if (s < ts->min_quality || (s <= 0 && ts->min_quality <= 0))
            rc = fr_error_set(err, FR_EQUALITY, NULL, 0,
                              "the check scored %.2f (min_quality %.2f)%s%s", s, ts->min_quality,
                              why ? ": " : "", why ? why : "");
    }
    free(why);
    return rc;
}

/* Redacts the known keys in every string of `v` (borrowed, changed in
 * place): values and member names. */
static void redact_json(json_t *v)
{
    if (json_is_string(v)) {
        size_t len = json_string_length(v);
        char *s = fr_xstrndup(json_string_value(v), len);
        if (fr_redact_secrets(&s, &len))
            json_string_setn_nocheck(v, s, len);
        free(s); /* no key left in it either way */
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            redact_json(item);
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *member;
        void *tmp;
        json_object_foreach_safe(v, tmp, key, member)
        {
            redact_json(member);
            size_t len = strlen(key);
            char *k = fr_xstrndup(key, len);
            if (fr_redact_secrets(&k, &len)) {
                json_object_set(v, k, member); /* the new name; the old one goes */
                json_object_del(v, key);
            }
            free(k);
        }
    }
}

void fr_gate_redact(fr_reply *reply, const char *task, const char *endpoint)
{
    size_t len = reply->text ? strlen(reply->text) : 0;
    bool hit = fr_redact_secrets(&reply->text, &len);
    if (reply->json)
        redact_json(reply->json);
    len = reply->model ? strlen(reply->model) : 0;
    fr_redact_secrets(&reply->model, &len);
    if (hit)
        fr_log_event(FR_LOG_WARN, "run", "task.reply_redacted",
                     "task=%s endpoint=%s reply=redacted why=\"the reply repeats an API key\"",
                     task, endpoint);
}
