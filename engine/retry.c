#include "engine/retry.h"

#include "engine/util/err.h"

#include <math.h>
#include <string.h>

/* Backoff between retries on one endpoint. */
#define BACKOFF_BASE_MS 250.0
#define BACKOFF_MAX_MS  8000.0

bool fr_retry_retryable(int rc, long status)
{
    switch (rc) {
    case FR_ECONNECT:
    case FR_ETIMEDOUT:
    case FR_ETRUNCATED:
    case FR_EIO:
    case FR_EPROTO:
    case FR_ERETRY:
        return true;
    case FR_EHTTP:
        return status == 408 || status == 409 || status == 425 || status == 429 || status >= 500;
    default:
        return false;
    }
}

bool fr_retry_quota_exhausted(long status, const char *msg)
{
    return status == 429 && msg &&
           (strstr(msg, "insufficient_quota") || strstr(msg, "quota") ||
            strstr(msg, "spending limit") || strstr(msg, "billing"));
}

fr_retry_decision fr_retry_decide(const fr_failure *f, const fr_retry_state *s)
{
    fr_retry_decision d = {.kind = FR_RETRY_OTHER, .reason = "error"};
    int rc = f->rc;
    if (s->attempts >= FR_MAX_ATTEMPTS) {
        d.kind = FR_RETRY_GIVE_UP;
        return d;
    }
    if (rc == FR_ERETRY && s->ep_attempts > s->retries)
        rc = FR_EQUALITY; /* no retries left here: escalate instead */
    if (rc == FR_EQUALITY || rc == FR_EFINISH) {
        /* The endpoint answered, but not well enough, or not to the end: ask
         * the policy for another one rather than asking the same model
         * again (a cut at the same max_tokens on the same model recurs). */
        d.reason = rc == FR_EFINISH && f->finish_outcome ? f->finish_outcome : "quality";
        return d;
    }
    if (!s->ep_usable || !fr_retry_retryable(rc, f->status) ||
        fr_retry_quota_exhausted(f->status, f->msg) || s->ep_attempts > s->retries)
        return d; /* this endpoint is spent for the task */
    /* Exponential backoff with full jitter: a random wait up to the
     * exponential bound, so retries of many tasks do not line up. */
    double bound = BACKOFF_BASE_MS * pow(2.0, s->ep_attempts);
    if (bound > BACKOFF_MAX_MS)
        bound = BACKOFF_MAX_MS;
    double delay = bound * s->jitter;
    if (f->retry_after_s >= 0 && f->retry_after_s * 1000.0 + FR_RETRY_AFTER_MARGIN_MS > delay)
        delay = f->retry_after_s * 1000.0 + FR_RETRY_AFTER_MARGIN_MS;
    d.delay_ms = delay;
    if (s->deadline_ms > 0 && s->now_ms + delay >= s->deadline_ms) {
        /* Waiting here would outlast the task: another endpoint may take it now. */
        d.past_deadline = true;
        return d;
    }
    d.kind = FR_RETRY_SAME;
    return d;
}
