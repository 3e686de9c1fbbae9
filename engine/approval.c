/* Human approval: the decision for a succeeded approval task's output, from
 * the command line, the store, or (asked by the caller) the terminal. */
#include "engine/approval.h"

#include "engine/util/hash.h"
#include "engine/util/mem.h"

#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A read of the shared store's row, still due: its completion holds it. */
typedef struct shared_read {
    struct shared_read *prev, *next;
    fr_approvals *a; /* NULL once over (answered, timed out, dropped): linked no more */
    size_t task;
    bool can_ask;
    fr_approval *out;
    fr_approvals_done_fn done;
    void *ud;
    bool back;       /* the store's completion came */
    bool timer_open; /* its timer's handle not yet closed */
    uv_timer_t timer;
} shared_read;

struct fr_approvals {
    fr_approvals_opts o;
    shared_read *reads; /* the reads still due */
    char (*hash)[17];   /* per task: the hash of the output being decided */
    char **path;        /* per task: the file of that output (owned) */
};

/* The state's name; see approval.h. */
const char *fr_approval_state_name(fr_approval_state st)
{
    switch (st) {
    case FR_APPROVAL_PENDING:
        return "pending";
    case FR_APPROVAL_APPROVED:
        return "approved";
    case FR_APPROVAL_REJECTED:
        return "rejected";
    default:
        return NULL;
    }
}

/* Frees a checkpoint's strings; see approval.h. */
void fr_approval_clear(fr_approval *a)
{
    if (!a)
        return;
    free(a->by);
    free(a->at);
    free(a->note);
    memset(a, 0, sizeof *a);
}

/* Who is deciding; see approval.h. */
char *fr_approval_user(char *out, size_t size)
{
    const struct passwd *pw = getpwuid(getuid());
    const char *env = getenv("USER");
    snprintf(out, size, "%s",
             pw && pw->pw_name && *pw->pw_name ? pw->pw_name
             : env && *env                     ? env
                                               : "unknown");
    return out;
}

/* ISO-8601 UTC of unix time `t` (owned). */
static char *iso_time(double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    char buf[32] = "";
    if (gmtime_r(&s, &tm))
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return fr_xstrdup(buf);
}

static fr_approval_state state_of(const char *s)
{
    return !s                           ? FR_APPROVAL_NONE
           : strcmp(s, "approved") == 0 ? FR_APPROVAL_APPROVED
           : strcmp(s, "rejected") == 0 ? FR_APPROVAL_REJECTED
           : strcmp(s, "pending") == 0  ? FR_APPROVAL_PENDING
                                        : FR_APPROVAL_NONE;
}

static void fill_from_row(const fr_store_approval *row, fr_approval *out)
{
    fr_approval_clear(out);
    out->state = state_of(row->state);
    out->by = row->by ? fr_xstrdup(row->by) : NULL;
    out->note = row->note ? fr_xstrdup(row->note) : NULL;
    out->at = iso_time(out->state == FR_APPROVAL_PENDING ? row->asked_at : row->decided_at);
}

/* A run's checkpoints; see approval.h. */
fr_approvals *fr_approvals_new(const fr_approvals_opts *o)
{
    fr_approvals *a = fr_xcalloc(1, sizeof *a);
    a->o = *o;
    /* Room for the fan-outs' instances too: the workflow grows into wf->tasks_cap. */
    size_t n = o->wf->tasks_cap > o->wf->ntasks ? o->wf->tasks_cap : o->wf->ntasks;
    a->hash = fr_xcalloc(n ? n : 1, sizeof *a->hash);
    a->path = fr_xcalloc(n ? n : 1, sizeof *a->path);
    return a;
}

/* Frees the checkpoints; see approval.h. */
void fr_approvals_free(fr_approvals *a)
{
    if (!a)
        return;
    fr_approvals_drop_reads(a);
    for (size_t t = 0; t < a->o.wf->ntasks; t++)
        free(a->path[t]);
    free(a->path);
    free(a->hash);
    free(a);
}

/* The output as the run writes it: its JSON (indented) or its text. */
static char *output_text(const fr_reply *reply)
{
    if (reply->json)
        return json_dumps(reply->json, JSON_INDENT(2) | JSON_ENCODE_ANY);
    return fr_xstrdup(reply->text ? reply->text : "");
}

/* The file of a task's output; see approval.h. */
char *fr_approvals_output_path(const fr_approvals *a, size_t task, const fr_reply *reply)
{
    return fr_xasprintf("%s/%s.%s", a->o.out_dir, a->o.wf->tasks[task].name,
                        reply->json ? "json" : "txt");
}

/* True when --approve-all, or --approve named `name`. */
static bool approved_in_advance(const fr_approvals *a, const char *name)
{
    if (a->o.approve_all)
        return true;
    for (size_t i = 0; i < a->o.napprove; i++)
        if (strcmp(a->o.approve[i], name) == 0)
            return true;
    return false;
}

/* Writes the row of `task` in `state` (asked now by this run) and fills
 * `out` from it. */
static int put_row(fr_approvals *a, size_t task, fr_approval_state state, const char *by,
                   const char *note, fr_approval *out, fr_error *err)
{
    fr_store_approval row = {
        .workflow = (char *)a->o.wf->name,
        .task = (char *)a->o.wf->tasks[task].name,
        .output_hash = a->hash[task],
        .state = (char *)fr_approval_state_name(state),
        .run_id = (char *)a->o.run_id,
        .output_path = a->path[task],
        .by = (char *)by,
        .note = (char *)note,
    };
    fr_approval_clear(out);
    out->state = state;
    out->by = by ? fr_xstrdup(by) : NULL;
    out->note = note ? fr_xstrdup(note) : NULL;
    out->at = iso_time((double)time(NULL));
    if (!a->o.pg)
        return fr_store_approval_put(a->o.store, &row, err);
    int rc = fr_pgstore_approval_put(a->o.pg, &row, a->o.pg_put_done, a->o.pg_put_ud);
    return rc == FR_OK ? FR_OK
                       : fr_error_set(err, FR_ESTORE, "approval", 0,
                                      "the checkpoint of '%s' could not be queued for the "
                                      "shared store",
                                      row.task);
}

/* Hashes the output of `task` and names its file. */
static void prepare(fr_approvals *a, size_t task, const fr_reply *reply)
{
    char *text = output_text(reply);
    snprintf(a->hash[task], sizeof a->hash[task], "%016llx",
             (unsigned long long)fr_fnv1a64(text, strlen(text), FR_FNV1A64_BASIS));
    free(text);
    free(a->path[task]);
    a->path[task] = fr_approvals_output_path(a, task, reply);
}

/* Records the decision made in advance for `task`. */
static int put_in_advance(fr_approvals *a, size_t task, fr_approval *out, fr_error *err)
{
    char user[128];
    return put_row(a, task, FR_APPROVAL_APPROVED, fr_approval_user(user, sizeof user),
                   a->o.approve_all ? "--approve-all" : "--approve", out, err);
}

/* Decides from the store's row `row` (borrowed, NULL for none). */
static int decide_from(fr_approvals *a, size_t task, const fr_store_approval *row, bool can_ask,
                       fr_approval *out, fr_error *err)
{
    fr_approval_state st = row && strcmp(row->output_hash, a->hash[task]) == 0
                               ? state_of(row->state)
                               : FR_APPROVAL_NONE;
    if (st == FR_APPROVAL_APPROVED || st == FR_APPROVAL_REJECTED) {
        fill_from_row(row, out);
        return FR_OK;
    }
    if (can_ask) {
        fr_approval_clear(out);
        return FR_OK;
    }
    return put_row(a, task, FR_APPROVAL_PENDING, NULL, NULL, out, err);
}

/* Decides, or says to ask; see approval.h. */
int fr_approvals_decide(fr_approvals *a, size_t task, const fr_reply *reply, bool can_ask,
                        fr_approval *out, fr_error *err)
{
    const char *name = a->o.wf->tasks[task].name;
    prepare(a, task, reply);
    if (approved_in_advance(a, name))
        return put_in_advance(a, task, out, err);
    fr_store_approval row;
    bool found = false;
    int rc = fr_store_approval_get(a->o.store, a->o.wf->name, name, &row, &found, err);
    if (rc != FR_OK) {
        fr_approval_clear(out);
        out->state = FR_APPROVAL_PENDING;
        return rc;
    }
    rc = decide_from(a, task, found ? &row : NULL, can_ask, out, err);
    fr_store_approval_clear(&row);
    return rc;
}

static void read_maybe_free(shared_read *r)
{
    if (!r->a && r->back && !r->timer_open)
        free(r);
}

static void on_read_timer_closed(uv_handle_t *h)
{
    shared_read *r = h->data;
    r->timer_open = false;
    read_maybe_free(r);
}

/* Ends read `r` for its set: unlinked, its timer closing. */
static void read_over(shared_read *r)
{
    fr_approvals *a = r->a;
    if (r->prev)
        r->prev->next = r->next;
    else
        a->reads = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->a = NULL;
    if (r->timer_open && !uv_is_closing((uv_handle_t *)&r->timer))
        uv_close((uv_handle_t *)&r->timer, on_read_timer_closed);
}

/* The shared store's row came (or its error). */
static void on_shared_row(void *ud, int rc, const fr_store_approval *row, const fr_error *ferr)
{
    shared_read *r = ud;
    fr_approvals *a = r->a;
    r->back = true;
    if (!a) { /* timed out or dropped: nobody waits */
        read_maybe_free(r);
        return;
    }
    read_over(r);
    fr_error err = {0};
    if (rc == FR_OK) {
        rc = decide_from(a, r->task, row, r->can_ask, r->out, &err);
        ferr = rc == FR_OK ? NULL : &err;
    } else {
        fr_approval_clear(r->out);
        r->out->state = FR_APPROVAL_PENDING;
    }
    r->done(r->ud, r->task, rc, ferr);
    read_maybe_free(r);
}

/* The shared store did not answer in time: pending, nothing recorded. */
static void on_read_timeout(uv_timer_t *h)
{
    shared_read *r = h->data;
    fr_approvals *a = r->a;
    const char *name = a->o.wf->tasks[r->task].name;
    read_over(r);
    fr_approval_clear(r->out);
    r->out->state = FR_APPROVAL_PENDING;
    fr_error err = {0};
    fr_error_set(&err, FR_ETIMEDOUT, "approval", 0,
                 "the checkpoint of '%s' could not be read from the shared store in time: it "
                 "stays pending in this run, nothing was recorded",
                 name);
    r->done(r->ud, r->task, FR_ETIMEDOUT, &err);
    read_maybe_free(r);
}

void fr_approvals_drop_reads(fr_approvals *a)
{
    while (a && a->reads) {
        shared_read *r = a->reads;
        read_over(r);
        read_maybe_free(r);
    }
}

/* Decides on the shared store; see approval.h. */
int fr_approvals_decide_shared(fr_approvals *a, size_t task, const fr_reply *reply, bool can_ask,
                               fr_approval *out, fr_approvals_done_fn done, void *ud, bool *waiting,
                               fr_error *err)
{
    const char *name = a->o.wf->tasks[task].name;
    *waiting = false;
    prepare(a, task, reply);
    if (approved_in_advance(a, name))
        return put_in_advance(a, task, out, err);
    shared_read *r = fr_xcalloc(1, sizeof *r);
    *r = (shared_read){.next = a->reads,
                       .a = a,
                       .task = task,
                       .can_ask = can_ask,
                       .out = out,
                       .done = done,
                       .ud = ud};
    int rc = fr_pgstore_approval_get(a->o.pg, a->o.wf->name, name, on_shared_row, r);
    if (rc != FR_OK) {
        free(r);
        fr_approval_clear(out);
        out->state = FR_APPROVAL_PENDING;
        return fr_error_set(err, FR_ESTORE, "approval", 0,
                            "the checkpoint of '%s' could not be read from the shared store", name);
    }
    if (a->reads)
        a->reads->prev = r;
    a->reads = r;
    if (a->o.loop) {
        uv_timer_init(a->o.loop, &r->timer);
        r->timer.data = r;
        r->timer_open = true;
        uv_timer_start(&r->timer, on_read_timeout,
                       (uint64_t)(a->o.read_timeout_ms > 0 ? a->o.read_timeout_ms
                                                           : FR_APPROVAL_READ_TIMEOUT_MS),
                       0);
    }
    *waiting = true;
    return FR_OK;
}

/* Sets the shared store; see approval.h. */
void fr_approvals_share(fr_approvals *a, fr_pgstore *pg, uv_loop_t *loop)
{
    a->o.pg = pg;
    a->o.loop = loop;
}

/* Records the terminal's answer; see approval.h. */
int fr_approvals_answer(fr_approvals *a, size_t task, fr_approval_state state, const char *note,
                        fr_approval *out, fr_error *err)
{
    char user[128];
    if (state == FR_APPROVAL_PENDING)
        return put_row(a, task, FR_APPROVAL_PENDING, NULL, NULL, out, err);
    return put_row(a, task, state, fr_approval_user(user, sizeof user), note, out, err);
}

/* `flowrun approve|reject`; see approval.h. */
int fr_approval_record(fr_store *st, const char *workflow, const char *task,
                       fr_approval_state state, const char *note, fr_error *err)
{
    char user[128];
    int rc = fr_store_approval_decide(st, workflow, task, fr_approval_state_name(state),
                                      fr_approval_user(user, sizeof user), note, err);
    if (rc == FR_ENOENT)
        fr_error_set(err, FR_ENOENT, task, 0,
                     "no approval of task '%s' is pending in workflow '%s': run the workflow "
                     "first (without a terminal it stops at the checkpoint and records it), "
                     "then approve or reject",
                     task, workflow);
    return rc;
}
