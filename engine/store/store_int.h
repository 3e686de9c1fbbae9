#pragma once
/* What the files of engine/store/ share and nobody else sees: the store's
 * struct, its prepared statements, the holder of a lease or a run, and the
 * statement, transaction and error helpers. Only the files of engine/store/ include
 * this; everyone else includes engine/store/store.h. */

#include "engine/store/store.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

/* The statements prepared once at open (fr_store_prepare_all) and reused. */
enum fr_store_stmt {
    S_BEGIN,
    S_BEGIN_IMMEDIATE,
    S_COMMIT,
    S_ROLLBACK,
    S_RUN_BEGIN,
    S_RUN_END,
    S_ATTEMPT,
    S_RESERVE,
    S_SETTLE,
    S_ATTEMPT_MONTH,
    S_MONTH_SPENT,
    S_MONTH_BOOKED,
    S_RUNNING,
    S_CRASH_PENDING,
    S_CRASH_LEASES,
    S_CRASH_RUN,
    S_OPEN_LEASES,
    S_LEASE_CLOSE,
    S_LEASE_GROW,
    S_LEASE_NEW,
    S_RELEASE,
    S_SPEND,
    S_RUN_STATUS,
    S_CACHE_GET,
    S_CACHE_PUT,
    S_OWNER_NEW,
    S_OWNER_BEAT,
    S_OWNER_END,
    S_OWNER_PRUNE,
    S_SLOTS_HELD,
    S_SLOTS_SET,
    S_HISTORY,
    S_HIST_ADD,
    S_BIN_ADD,
    S_HIST_CRASH,
    S_COUNT
};

/* A routing history key's attempts added in the open write, not yet in its
 * row (history_table.c): counts and sums as S_HIST_ADD binds them. */
typedef struct fr_store_hist_sum {
    char *endpoint, *type; /* owned */
    int band;
    long settled, passes, fails, errors, score_n, out_tokens;
    bool has_ref;  /* a gated attempt was added: ref and last_at are set */
    double ref;    /* the first gated attempt's time: w_pass and w_fail are relative to it */
    double w_pass; /* sums of 2^((at - ref) / FR_STORE_HISTORY_HALF_LIFE_S) */
    double w_fail;
    double last_at, score_sum, cost_sum, reply_ms;
} fr_store_hist_sum;

/* A key's replies added in the open write in one pair of latency bins. */
typedef struct fr_store_bin_sum {
    size_t key; /* its key's index in fr_store.hist */
    int lat_bin, ttft_bin;
    long n;
} fr_store_bin_sum;

/* The $0 slots of a shared endpoint and model this owner holds (owners.c),
 * and the count its owner_slots row holds (-1: not known, written at the
 * next commit): a turn that leaves the count as it was writes nothing. */
typedef struct fr_store_slot_sum {
    char *endpoint, *model; /* owned; model NULL for none */
    long held;
    long written;
    double since;         /* when its oldest request waiting began to (unix s), 0: none waits */
    double since_written; /* what the row holds, -1: not known */
} fr_store_slot_sum;

struct fr_store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[S_COUNT];
    pid_t pid;                    /* the process that opened the store */
    unsigned long fork_gen;       /* its fork generation (fr_store_fork_gen) */
    unsigned long long pid_start; /* its start time (clock ticks after boot), 0 unknown */
    char boot_id[64];             /* this boot of the host, "" unknown */
    char user_name[256];          /* who books (fr_store_identify), "" unknown */
    char host[256];               /* from which host, "" unknown */
    time_t clock;                 /* 0: the real clock */
    /* Write batching (fr_store_batch): */
    bool batching;                /* writes join one open transaction */
    bool pending;                 /* that transaction is open (BEGIN IMMEDIATE) */
    void (*on_pending)(void *ud); /* told when it opens */
    void *pending_ud;
    long commits;    /* transactions committed, autocommits included */
    long lost;       /* batches rolled back */
    long prepares;   /* statements prepared since open */
    long wal_frames; /* the log's frames after the last commit, -1 until
                        fr_store_checkpoint_apart (engine/store/wal.c) */
    /* The routing history added in the batch, written at its flush: a
     * turn's attempts of one key are one row's UPSERT, not one each. */
    fr_store_hist_sum *hist;
    size_t nhist, caphist;
    fr_store_bin_sum *bins;
    size_t nbins, capbins;
    /* Its owner row (owners.c), "" before fr_store_owner_begin: */
    char owner_id[48];
    char real_host[256];          /* this host's name (gethostname), "" unknown: liveness */
    double owner_beat;            /* when its expiry was last pushed on (store clock) */
    fr_store_slot_sum *slot_sums; /* its $0 slots, by endpoint and model */
    size_t nslot_sums, capslot_sums;
    long long slot_seq; /* the $0 slots taken so far (their handles) */
    /* A PostgreSQL store opened for reading (fr_store_open_readonly of a
     * URL): the readers ask it instead of SQLite; `db` is NULL. */
    struct fr_pgread *pg;
};

/* The process holding an open lease, or running a run, as read inside a
 * transaction; for a lease also its amount and what its run spent. */
typedef struct fr_store_lease_row {
    sqlite3_int64 id;
    char run[256];
    sqlite3_int64 pid;
    unsigned long long start;
    char boot[64];
    double amount; /* leased */
    double spent;  /* what its run spent in the month */
    bool same_run; /* held for the run asking */
} fr_store_lease_row;

/* ---- statements (inline: they sit on every call of the ledger) ------------- */

/* Resets statement `s` (borrowed) for its next use. Its error, if any, was
 * read already. */
static inline void fr_store_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Binds text `v` (borrowed until the statement is reset) to parameter `i`
 * of `s`, or NULL when `v` is NULL. */
static inline void fr_store_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* Copies column `i` of `s` as text into `out` of `size` bytes ("" for NULL,
 * truncated to fit). */
static inline void fr_store_column_copy(sqlite3_stmt *s, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(out, size, "%s", t ? (const char *)t : "");
}

/* ---- engine/store/db.c: errors, checks, clock, processes, statements -------- */

/* Fills `err` with FR_ESTORE for the store's path: `what` (borrowed) failed,
 * and SQLite's message (never SQL text or values). Returns FR_ESTORE. */
int fr_store_db_error(const fr_store *st, fr_error *err, const char *what);

/* Fills `err` for a failed INSERT of run `run_id`'s row (both borrowed): a
 * foreign key (a run not begun) or a duplicate id is FR_EINVAL, anything
 * else fr_store_db_error with `what`. Returns the code. */
int fr_store_insert_error(fr_store *st, fr_error *err, const char *run_id, const char *what);

/* FR_OK when `st` may be used by this process: it exists and was opened by
 * this process, not inherited through fork(). Otherwise fills `err`. */
int fr_store_check_usable(const fr_store *st, fr_error *err);
/* fr_store_check_usable for a reader that a PostgreSQL store opened by
 * fr_store_open_readonly answers too (it dispatches to engine/store/pgread);
 * fr_store_check_usable refuses such a store for everything else. */
int fr_store_check_readable(const fr_store *st, fr_error *err);

/* FR_OK when `month` (borrowed) is "YYYY-MM" with a month 01-12, else
 * FR_EINVAL in `err`. */
int fr_store_check_month(const fr_store *st, const char *month, fr_error *err);

/* FR_OK when `day` (borrowed) is "YYYY-MM-DD" with a month 01-12 and a day
 * 01-31, else FR_EINVAL in `err`. */
int fr_store_check_day(const fr_store *st, const char *day, fr_error *err);

/* FR_OK when `period` (borrowed) is a month "YYYY-MM" or a day "YYYY-MM-DD"
 * (the key of a cap's leases and totals), else FR_EINVAL in `err`. */
int fr_store_check_period(const fr_store *st, const char *period, fr_error *err);

/* True for an amount of money (or milliseconds) a row may hold: finite, >= 0. */
bool fr_store_valid_usd(double v);

/* The store's clock in unix seconds: its set clock, or the real one. */
double fr_store_now(const fr_store *st);

/* Sets st->pid, st->pid_start and st->boot_id to this process's identity
 * (0 and "" where the system does not tell), and st->user_name and st->host
 * to who books and from where (FLOWRUN_USER and FLOWRUN_HOST replace them). */
void fr_store_identify(fr_store *st);

/* Reads a holder from columns `col` .. `col + 3` of row `s` (run id, pid,
 * pid start, boot id) into `l` (borrowed); leaves its other fields alone. */
void fr_store_read_holder(sqlite3_stmt *s, int col, fr_store_lease_row *l);

/* True unless the holder `l` (borrowed) is known to be gone: recorded in
 * another boot of the host, no such pid, a zombie, or a pid reused by a
 * process that started at another time. An unknown is taken as alive. */
bool fr_store_holder_alive(const fr_store *st, const fr_store_lease_row *l);

/* True when the holder `l` (borrowed) is this process. */
bool fr_store_held_here(const fr_store *st, const fr_store_lease_row *l);

/* Runs prepared statement `id`, whose parameters are bound, expecting no
 * rows, and resets it. FR_OK, or fr_store_db_error with `what` (borrowed). */
int fr_store_exec(fr_store *st, enum fr_store_stmt id, const char *what, fr_error *err);

/* How many forks this process is from (each fork's child counts one
 * more, from the first call on): a store whose generation differs was
 * opened by an ancestor and must not be used here. */
unsigned long fr_store_fork_gen(void);

/* With batching on, opens the batch's write transaction when none is open
 * (BEGIN IMMEDIATE: the write lock is taken first, so what a booking reads
 * inside it no other process changes) and tells on_pending; otherwise does
 * nothing (the write is its own transaction). FR_OK or FR_ESTORE. */
int fr_store_batch_join(fr_store *st, fr_error *err);

/* Commits the batch's open transaction, if any, before a call that runs its
 * own (BEGIN) or must be seen by another process at once. FR_OK or
 * FR_ESTORE (the batch is rolled back). */
int fr_store_own_txn(fr_store *st, fr_error *err);

/* Rolls back the open transaction, if any. Leaves a previous error in place. */
void fr_store_rollback(fr_store *st);

/* Prepares every statement of enum fr_store_stmt on st->db. FR_OK, or
 * FR_ESTORE in `err`; what was prepared is finalised by fr_store_close. */
int fr_store_prepare_all(fr_store *st, fr_error *err);

/* ---- engine/store/marker.c: the marker "<path>.id" of a store that existed -- */

/* True when the marker of the database at `path` (borrowed) exists. */
bool fr_store_has_marker(const char *path);

/* Fills `err` with FR_ESTORE for the database at `path` (borrowed), missing
 * or without flowrun's schema while its marker says a store existed: what
 * happened, when the store was created, and how to start over on purpose.
 * Returns FR_ESTORE. */
int fr_store_marker_refusal(const char *path, fr_error *err);

/* Writes the marker of st's database when there is none; cannot fail. */
void fr_store_write_marker(const fr_store *st);

/* ---- defined by the file of the concept, used by another ----------------- */

/* ledger.c: marks run `run_id` (borrowed), whose process is gone, crashed,
 * inside the caller's write transaction: its requests in flight become
 * charges at their worst case, its open leases close keeping them, and the
 * run's cost is everything it was charged. FR_OK or FR_ESTORE. */
int fr_store_crash_run(fr_store *st, const char *run_id, fr_error *err);

/* lease.c: begins a transaction with statement `begin` (S_BEGIN to read,
 * S_BEGIN_IMMEDIATE to write) and reads from its one snapshot the month's
 * spend, every charge of `month` (borrowed), into *spent and its open leases
 * into *rows (returns owned: free(), NULL on failure) and *n; `run_id`
 * (borrowed, may be NULL) marks the rows held for that run. On failure the
 * transaction is rolled back. FR_OK or FR_ESTORE. */
int fr_store_lease_snapshot(fr_store *st, enum fr_store_stmt begin, const char *month,
                            const char *run_id, double *spent, fr_store_lease_row **rows, size_t *n,
                            fr_error *err);

/* owners.c: counts in *held the slots of an endpoint and model held now by
 * the other owners (the live ones: a lease not run out and, on this host,
 * a process that is there), and sets *yield when one of them waits for a
 * slot and should have the next before this owner, which holds `own` and
 * asks for a request waiting since `since` (unix seconds): it holds fewer,
 * or as many and has waited longer (the owner's id breaks a tie). Inside
 * the caller's write transaction. FR_OK or FR_ESTORE. */
int fr_store_slots_held(fr_store *st, const char *endpoint, const char *model, long own,
                        double since, long *held, bool *yield, fr_error *err);

/* owners.c: takes a $0 slot of a's endpoint and model (borrowed) for this
 * owner, inside the caller's write transaction: one more in its count,
 * written at the batch's flush (fr_store_slots_write), else at once. Sets
 * *handle to the slot's handle (< 0: no attempt row is its). FR_OK,
 * FR_ELIMIT past 65,535 endpoints and models, FR_ESTORE. */
int fr_store_slot_take(fr_store *st, const fr_attempt_rec *a, long long *handle, fr_error *err);

/* owners.c: frees the $0 slot `handle` (fr_store_slot_take's) inside the
 * caller's write transaction, as fr_store_slot_take writes it. FR_EINVAL
 * for a handle that holds no slot, FR_ESTORE. */
int fr_store_slot_give(fr_store *st, long long handle, fr_error *err);

/* owners.c: writes this owner's changed counts of $0 slots into
 * owner_slots, in the open write transaction. FR_OK or FR_ESTORE. */
int fr_store_slots_write(fr_store *st, fr_error *err);

/* owners.c: the counts are to be written again at the next commit (the
 * transaction that held them rolled back); with `free_all` forgets them
 * (the owner ended, or the store closes). */
void fr_store_slots_forget(fr_store *st, bool free_all);

/* owners.c: pushes this store's owner's expiry on when its last push is a
 * heartbeat old (FR_STORE_OWNER_BEAT_MS), inside the caller's write
 * transaction or batch; nothing to do without an owner. FR_OK or
 * FR_ESTORE. */
int fr_store_owner_fresh(fr_store *st, fr_error *err);

/* history_table.c: adds attempt `a` (borrowed), booked or settled at
 * `at` (unix seconds) inside the caller's write, to the routing history
 * (routing_history and routing_bins); in flight ("pending") adds nothing.
 * In the batch's transaction it is summed with the batch's other attempts
 * of its key and written by fr_store_history_write at the flush; else it
 * is written at once. FR_OK or FR_ESTORE. */
int fr_store_history_add(fr_store *st, const fr_attempt_rec *a, double at, fr_error *err);

/* history_table.c: writes the routing history summed in the open
 * transaction (one UPSERT per key and per pair of bins) and forgets it.
 * FR_OK or FR_ESTORE (the transaction is then the caller's to roll
 * back). */
int fr_store_history_write(fr_store *st, fr_error *err);

/* history_table.c: forgets the routing history summed in a transaction
 * rolled back, or of a store being freed (then also its memory). */
void fr_store_history_forget(fr_store *st, bool free_all);

/* spend.c: sets *total to the one number that statement `id` (S_MONTH_SPENT:
 * every charge of the month; S_MONTH_BOOKED: its booked replies only) reads
 * for `month` (borrowed). FR_OK or FR_ESTORE. */
int fr_store_month_total(fr_store *st, enum fr_store_stmt id, const char *month, double *total,
                         fr_error *err);

/* Whether `m` (borrowed, may be NULL) is a month "YYYY-MM", or with `day`
 * a day "YYYY-MM-DD" (month 01-12, day 01-31). */
bool fr_store_period_valid(const char *m, bool day);

/* ---- the documents the readers build, shared by the SQLite store and the
 * PostgreSQL read side (pgread.c): only the queries differ ---------------- */

/* One row of a spend query: the attempts of a (period, workflow, endpoint,
 * tier, user, host) group; the strings borrowed. */
typedef struct fr_store_spend_row {
    const char *period, *workflow, *endpoint, *tier, *user, *host;
    long long attempts, input, output, cached, estimated;
    double cost;
} fr_store_spend_row;

/* A new spend document (owned): {"months": []}, or {"days": []} with
 * `by_day`. */
json_t *fr_store_spend_doc_new(bool by_day);
/* Adds row `r` (borrowed) to `doc`: rows come ordered by period. */
void fr_store_spend_doc_add(json_t *doc, bool by_day, const fr_store_spend_row *r);
/* Ends `doc`: the period asked for by name (`period`, may be NULL) is
 * listed with zeros when no row had it. */
void fr_store_spend_doc_end(json_t *doc, bool by_day, const char *period);

/* A new document of a run for fr_store_run_tasks (owned), tasks empty;
 * the strings borrowed. */
json_t *fr_store_run_doc_new(const char *run_id, const char *workflow, const char *status,
                             double cost_usd);
/* Adds one attempt of the run, in booking order, to `doc`; strings
 * borrowed. */
void fr_store_run_doc_add(json_t *doc, const char *task, const char *endpoint, const char *outcome,
                          double cost_usd);

/* The observed samples of fr_store_observed: a new accumulator (owned),
 * one sample added per successful attempt, newest first (strings
 * borrowed), and its end: the owned document (the accumulator taken). */
json_t *fr_store_observed_new(void);
void fr_store_observed_add(json_t *acc, const char *task, const char *endpoint, double latency_ms,
                           long long output_tokens);
json_t *fr_store_observed_end(json_t *acc);

/* fr_store_runs' entries: the query's first FR_STORE_RUNS_COLUMNS
 * columns (id, workflow, started_at, ended_at, status, exit_code, cost_usd,
 * makespan_ms, the report's cost_usd, local_token_share, has_report), as
 * JSON values, taken; `gone` says the run's process is gone (a run still
 * "running" is then "crashed"). Returns the owned entry. */
#define FR_STORE_RUNS_COLUMNS 11
json_t *fr_store_runs_row(json_t *v[FR_STORE_RUNS_COLUMNS], bool gone);

/* fr_store_report_get's rows, best first (the whole id, else the newest):
 * row `n` (from 0) of the query, its id, workflow, status, json and
 * summary (borrowed), goes into `out` (the first) or names the second
 * match in `other` (256 bytes); returns true when no further row matters
 * (the whole id matched). Then fr_store_report_found says what the `n`
 * rows read mean: FR_OK, FR_ENOENT for none, FR_EINVAL for an ambiguous
 * prefix (`out` cleared on an error; `source` names the store). */
bool fr_store_report_pick(fr_store_report *out, char other[256], int n, const char *ref,
                          const char *const v[5]);
int fr_store_report_found(fr_store_report *out, const char *other, int n, const char *source,
                          const char *ref, const char *workflow, fr_error *err);

/* fr_store_run_stats' groups: group `key` (borrowed) of `groups` from its
 * sums `v`: requests, ok, replies, quality failures, input, output and
 * cached tokens, cost, local attempts, local tokens; with `tier` (an
 * endpoint's; NULL for a task type). Then its quantiles: `p50` and `p95`
 * (taken, JSON numbers or null) of metric `key` ("latency_ms" or
 * "ttft_ms") of group `group`. The document: `by_endpoint` and `by_type`
 * taken. */
#define FR_STORE_STATS_SUMS 10
void fr_store_stats_group(json_t *groups, const char *key, const double v[FR_STORE_STATS_SUMS],
                          const char *tier);
void fr_store_stats_quantiles(json_t *groups, const char *group, const char *key, json_t *p50,
                              json_t *p95);
json_t *fr_store_stats_doc(double since, long long runs, json_t *by_endpoint, json_t *by_type);

/* The `n` names `endpoints` (borrowed) as a compact JSON array (owned:
 * free), the routing history's query parameter; NULL for NULL (every
 * endpoint). */
char *fr_store_names_json(const char *const *endpoints, size_t n);

/* The routing history's query gives a bin row's count and ttft bin in the
 * places of `settled` and `passes`: moves them to `n` and `ttft_bin`. */
void fr_store_history_row_fix(fr_store_history_row *r);
