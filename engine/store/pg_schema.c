/* The PostgreSQL schema of the state store, its migrations, and the apply
 * step: read the version, then in one transaction lock, check, migrate. */

#include "engine/store/pg_schema.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the schema ---------------------------------------------------------------- */

/* A cost is a number >= 0 and finite: PostgreSQL sorts NaN above every
 * number, so `>= 0` alone would let it in. */
#define USD_CHECK(col)    "CHECK (" col " >= 0 AND " col " < 'Infinity'::double precision)"
#define PERIOD_CHECK(col) "CHECK (" col " ~ '^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$')"

// clang-format off
/* Schema version 1. */
static const char *const schema_v1[] = {
    "CREATE TABLE meta ("
    "  key   text PRIMARY KEY,"
    "  value text NOT NULL"
    ")",
    /* One row per migration applied: which version it made, when, and the
     * server process (pg_backend_pid) of the connection that applied it. */
    "CREATE TABLE schema_log ("
    "  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  version     integer NOT NULL,"
    "  applied_at  timestamptz NOT NULL DEFAULT now(),"
    "  backend_pid integer NOT NULL DEFAULT pg_backend_pid()"
    ")",
    /* What a cost adds to its periods' totals, in whole pico-dollars,
     * rounded half up as SQLite's round() of a cost >= 0. */
    "CREATE FUNCTION fr_pusd(usd double precision) RETURNS bigint"
    " LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE"
    " AS $$ SELECT floor(usd * 1e12::double precision + 0.5::double precision)::bigint $$",
    /* A flowrun process. Its id is made by the client; its clock is the
     * server's: `expires` is pushed on at each heartbeat, and an owner whose
     * `expires` has passed is dead, whatever the hosts' clocks say. */
    "CREATE TABLE owners ("
    "  id        text PRIMARY KEY,"
    "  user_name text NOT NULL,"
    "  host      text NOT NULL,"
    "  pid       integer NOT NULL CHECK (pid > 0),"
    "  started   timestamptz NOT NULL DEFAULT now(),"
    "  heartbeat timestamptz NOT NULL DEFAULT now(),"
    "  expires   timestamptz NOT NULL,"
    "  CHECK (expires >= heartbeat)"
    ")",
    "CREATE INDEX owners_expires ON owners(expires)",
    "CREATE TABLE runs ("
    "  id         text PRIMARY KEY,"
    "  workflow   text NOT NULL,"
    "  wf_path    text,"
    "  started_at double precision NOT NULL,"
    "  ended_at   double precision,"
    "  status     text NOT NULL DEFAULT 'running',"
    "  exit_code  integer,"
    "  cost_usd   double precision NOT NULL DEFAULT 0 " USD_CHECK("cost_usd") ","
    "  owner_id   text REFERENCES owners(id) ON DELETE SET NULL,"
    "  user_name  text NOT NULL DEFAULT '',"
    "  host       text NOT NULL DEFAULT '',"
    "  pid        integer"
    ")",
    "CREATE INDEX runs_started ON runs(started_at)",
    "CREATE INDEX runs_workflow ON runs(workflow, started_at)",
    "CREATE INDEX runs_running ON runs(owner_id) WHERE status = 'running'",
    /* The ledger: each attempt, booked when its request is sent ('pending',
     * at its worst case) and settled to what it cost. (run_id, task,
     * attempt) is the client's key: see pg_schema.h. The owner of a pending
     * attempt holds a slot of its endpoint while it lives. */
    "CREATE TABLE attempts ("
    "  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  run_id          text NOT NULL REFERENCES runs(id),"
    "  task            text NOT NULL,"
    "  attempt         integer NOT NULL CHECK (attempt >= 1),"
    "  endpoint        text NOT NULL,"
    "  tier            text NOT NULL CHECK (tier IN ('local', 'cloud')),"
    "  model           text,"
    "  input_tokens    bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),"
    "  output_tokens   bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),"
    "  cached_tokens   bigint NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),"
    "  usage_estimated boolean NOT NULL DEFAULT false,"
    "  cost_usd        double precision NOT NULL " USD_CHECK("cost_usd") ","
    "  latency_ms      double precision NOT NULL DEFAULT 0,"
    "  outcome         text NOT NULL CHECK (outcome IN ('pending', 'ok', 'error', 'timeout',"
    "                  'cancelled', 'budget', 'quality', 'truncated', 'refused', 'tool_call',"
    "                  'no_answer')),"
    "  error           text,"
    "  at              double precision NOT NULL,"
    "  month           text NOT NULL CHECK (month = left(day, 7)),"
    "  day             text NOT NULL CHECK (day ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),"
    "  task_type       text,"
    "  ttft_ms         double precision,"
    "  owner_id        text REFERENCES owners(id) ON DELETE SET NULL,"
    "  user_name       text NOT NULL DEFAULT '',"
    "  host            text NOT NULL DEFAULT '',"
    "  complexity      double precision,"
    "  score           double precision,"
    /* a tool loop's turns: the requests of one attempt, 0 for the first */
    "  turn            integer NOT NULL DEFAULT 0 CHECK (turn >= 0),"
    "  CONSTRAINT attempts_key UNIQUE (run_id, task, attempt, turn)"
    ")",
    "CREATE INDEX attempts_run ON attempts(run_id, month)",
    "CREATE INDEX attempts_month ON attempts(month)",
    "CREATE INDEX attempts_in_flight ON attempts(endpoint) WHERE outcome = 'pending'",
    /* Each period's totals: a month 'YYYY-MM' or a UTC day 'YYYY-MM-DD'. */
    "CREATE TABLE period_totals ("
    "  period       text PRIMARY KEY " PERIOD_CHECK("period") ","
    "  charged_pusd bigint NOT NULL DEFAULT 0,"
    "  booked_pusd  bigint NOT NULL DEFAULT 0"
    ")",
    /* One function for the three triggers: an old row's cost comes off its
     * month and day, a new row's goes on, in one statement. The rows are
     * locked in the order of their keys' bytes (a month before its days,
     * one month before the next), the same in every transaction, so two
     * settles never wait for each other in a cycle; a period whose totals
     * do not change is not touched (a $0 attempt locks no totals row). */
    "CREATE FUNCTION attempts_totals() RETURNS trigger LANGUAGE plpgsql AS $$"
    " DECLARE"
    "  old_c bigint := 0; old_b bigint := 0; new_c bigint := 0; new_b bigint := 0;"
    "  old_m text; old_d text; new_m text; new_d text;"
    " BEGIN"
    "  IF TG_OP <> 'INSERT' THEN"
    "   old_c := fr_pusd(OLD.cost_usd);"
    "   old_b := CASE WHEN OLD.outcome <> 'pending' THEN old_c ELSE 0 END;"
    "   old_m := OLD.month; old_d := OLD.day;"
    "  END IF;"
    "  IF TG_OP <> 'DELETE' THEN"
    "   new_c := fr_pusd(NEW.cost_usd);"
    "   new_b := CASE WHEN NEW.outcome <> 'pending' THEN new_c ELSE 0 END;"
    "   new_m := NEW.month; new_d := NEW.day;"
    "  END IF;"
    "  INSERT INTO period_totals AS t (period, charged_pusd, booked_pusd)"
    "   SELECT k, sum(c), sum(b)"
    "   FROM (VALUES (old_m, -old_c, -old_b), (old_d, -old_c, -old_b),"
    "                (new_m, new_c, new_b), (new_d, new_c, new_b)) AS d(k, c, b)"
    "   WHERE k IS NOT NULL GROUP BY k HAVING sum(c) <> 0 OR sum(b) <> 0"
    "   ORDER BY k COLLATE \"C\""
    "  ON CONFLICT (period) DO UPDATE"
    "   SET charged_pusd = t.charged_pusd + excluded.charged_pusd,"
    "       booked_pusd = t.booked_pusd + excluded.booked_pusd;"
    "  RETURN NULL;"
    " END $$",
    "CREATE TRIGGER attempts_totals_insert AFTER INSERT ON attempts"
    " FOR EACH ROW EXECUTE FUNCTION attempts_totals()",
    "CREATE TRIGGER attempts_totals_delete AFTER DELETE ON attempts"
    " FOR EACH ROW EXECUTE FUNCTION attempts_totals()",
    "CREATE TRIGGER attempts_totals_update AFTER UPDATE OF cost_usd, outcome, month, day"
    " ON attempts FOR EACH ROW"
    " WHEN (OLD.cost_usd IS DISTINCT FROM NEW.cost_usd OR OLD.outcome IS DISTINCT FROM"
    " NEW.outcome OR OLD.month IS DISTINCT FROM NEW.month OR OLD.day IS DISTINCT FROM NEW.day)"
    " EXECUTE FUNCTION attempts_totals()",
    /* The routing history (engine/history, `flowrun stats --routing`), the
     * same figures as SQLite's routing_history and routing_bins
     * (engine/store/open.c, schema 11): per key (endpoint, task type, '-'
     * for none, complexity band 0.2 wide, 0..4, none in 0.5's) the settled
     * attempts, the gated passes and fails raw and decayed (a half-life of
     * 30 days, as sums of 2^((at - w_ref) / half-life) relative to the
     * key's first gated attempt), and the sums the means are read from;
     * routing_bins counts the gated attempts per pair of latency and time
     * to first content bins. Triggers add each attempt as it settles, in
     * the settle's transaction. */
    "CREATE TABLE routing_history ("
    "  endpoint   text NOT NULL,"
    "  task_type  text NOT NULL,"
    "  band       integer NOT NULL,"
    "  settled    bigint NOT NULL DEFAULT 0,"
    "  passes     bigint NOT NULL DEFAULT 0,"
    "  fails      bigint NOT NULL DEFAULT 0,"
    "  errors     bigint NOT NULL DEFAULT 0,"
    "  w_pass     double precision NOT NULL DEFAULT 0,"
    "  w_fail     double precision NOT NULL DEFAULT 0,"
    "  w_ref      double precision,"
    "  last_at    double precision,"
    "  score_sum  double precision NOT NULL DEFAULT 0,"
    "  score_n    bigint NOT NULL DEFAULT 0,"
    "  cost_sum   double precision NOT NULL DEFAULT 0,"
    "  out_tokens bigint NOT NULL DEFAULT 0,"
    "  reply_ms   double precision NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (endpoint, task_type, band)"
    ")",
    "CREATE TABLE routing_bins ("
    "  endpoint  text NOT NULL,"
    "  task_type text NOT NULL,"
    "  band      integer NOT NULL,"
    "  lat_bin   integer NOT NULL,"
    "  ttft_bin  integer NOT NULL,"
    "  n         bigint NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (endpoint, task_type, band, lat_bin, ttft_bin)"
    ")",
    /* An attempt's complexity band (fr_store_history_band): none or not
     * finite is 0.5's. */
    "CREATE FUNCTION fr_band(c double precision) RETURNS integer"
    " LANGUAGE sql IMMUTABLE PARALLEL SAFE"
    " AS $$ SELECT CASE WHEN c IS NULL OR c IN ('NaN', 'Infinity', '-Infinity') THEN 2"
    " WHEN NOT c > 0 THEN 0 WHEN c * 5 >= 4 THEN 4 ELSE trunc(c * 5)::integer END $$",
    /* A latency's bin (fr_store_history_bin): floor(4 log2(max(ms, 1))),
     * 127 at most, in numeric so that a power of two is exact. */
    "CREATE FUNCTION fr_bin(ms double precision) RETURNS integer"
    " LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE"
    " AS $$ SELECT least(127, floor(4 * log(2::numeric,"
    " greatest(ms, 1)::numeric)))::integer $$",
    /* An attempt settled (inserted settled, or from 'pending' to an
     * outcome) added to its key and, gated, to its bins. */
    "CREATE FUNCTION attempts_history() RETURNS trigger LANGUAGE plpgsql AS $$"
    " DECLARE"
    "  ty text := coalesce(NEW.task_type, '-'); b integer := fr_band(NEW.complexity);"
    "  g boolean := NEW.outcome IN ('ok', 'quality', 'truncated', 'refused', 'no_answer',"
    "   'tool_call');"
    "  p integer := (NEW.outcome = 'ok')::integer; f integer; e integer; sc boolean;"
    " BEGIN"
    "  f := (g AND NEW.outcome <> 'ok')::integer;"
    "  e := (NEW.outcome IN ('error', 'timeout'))::integer;"
    "  sc := g AND NEW.score IS NOT NULL AND NEW.score NOT IN ('NaN', 'Infinity', '-Infinity');"
    "  INSERT INTO routing_history AS h VALUES (NEW.endpoint, ty, b, 1, p, f, e, p, f,"
    "   CASE WHEN g THEN NEW.at END, CASE WHEN g THEN NEW.at END,"
    "   CASE WHEN sc THEN NEW.score ELSE 0 END, sc::integer, NEW.cost_usd,"
    "   CASE WHEN g THEN NEW.output_tokens ELSE 0 END, CASE WHEN g THEN NEW.latency_ms ELSE 0 END)"
    "  ON CONFLICT (endpoint, task_type, band) DO UPDATE SET settled = h.settled + 1,"
    "   passes = h.passes + p, fails = h.fails + f, errors = h.errors + e,"
    "   w_pass = h.w_pass + p * power(2::float8, (NEW.at - coalesce(h.w_ref, NEW.at)) / 2592000.0),"
    "   w_fail = h.w_fail + f * power(2::float8, (NEW.at - coalesce(h.w_ref, NEW.at)) / 2592000.0),"
    "   w_ref = CASE WHEN g THEN coalesce(h.w_ref, NEW.at) ELSE h.w_ref END,"
    "   last_at = CASE WHEN g THEN greatest(coalesce(h.last_at, NEW.at), NEW.at) ELSE h.last_at END,"
    "   score_sum = h.score_sum + excluded.score_sum, score_n = h.score_n + excluded.score_n,"
    "   cost_sum = h.cost_sum + excluded.cost_sum, out_tokens = h.out_tokens + excluded.out_tokens,"
    "   reply_ms = h.reply_ms + excluded.reply_ms;"
    "  IF g THEN"
    "   INSERT INTO routing_bins AS r VALUES (NEW.endpoint, ty, b, fr_bin(NEW.latency_ms),"
    "    CASE WHEN NEW.ttft_ms >= 0 AND NEW.ttft_ms < 'Infinity' THEN fr_bin(NEW.ttft_ms)"
    "    ELSE -1 END, 1)"
    "   ON CONFLICT (endpoint, task_type, band, lat_bin, ttft_bin) DO UPDATE SET n = r.n + 1;"
    "  END IF;"
    "  RETURN NULL;"
    " END $$",
    "CREATE TRIGGER attempts_history_insert AFTER INSERT ON attempts"
    " FOR EACH ROW WHEN (NEW.outcome <> 'pending') EXECUTE FUNCTION attempts_history()",
    "CREATE TRIGGER attempts_history_update AFTER UPDATE OF outcome ON attempts"
    " FOR EACH ROW WHEN (OLD.outcome = 'pending' AND NEW.outcome <> 'pending')"
    " EXECUTE FUNCTION attempts_history()",
    /* A share of one period's cap (a month's or a day's) held by an owner
     * for one run, as engine/store/lease.c's. spent_usd is what the run had
     * spent in the period when the lease was closed. */
    "CREATE TABLE leases ("
    "  id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  run_id    text NOT NULL REFERENCES runs(id),"
    "  period    text NOT NULL " PERIOD_CHECK("period") ","
    "  amount    double precision NOT NULL " USD_CHECK("amount") ","
    "  owner_id  text REFERENCES owners(id) ON DELETE SET NULL,"
    "  opened_at double precision NOT NULL,"
    "  closed_at double precision,"
    "  closed_by text CHECK (closed_by IN ('released', 'reclaimed')),"
    "  spent_usd double precision,"
    "  CHECK ((closed_at IS NULL) = (closed_by IS NULL))"
    ")",
    "CREATE INDEX leases_open ON leases(period) WHERE closed_at IS NULL",
    "CREATE UNIQUE INDEX leases_one_open ON leases(run_id, period) WHERE closed_at IS NULL",
    /* The open leases, each with whether its owner still lives: a dead
     * owner's lease counts no more and is for the next leaser to reclaim. */
    "CREATE VIEW open_leases AS"
    "  SELECT l.id, l.run_id, l.period, l.amount, l.owner_id, l.opened_at,"
    "         coalesce(o.expires > now(), false) AS live"
    "  FROM leases l LEFT JOIN owners o ON o.id = l.owner_id"
    "  WHERE l.closed_at IS NULL",
    /* A shared endpoint: the row a capacity reservation locks. */
    "CREATE TABLE endpoints ("
    "  name       text PRIMARY KEY,"
    "  first_seen timestamptz NOT NULL DEFAULT now()"
    ")",
    /* The slots held: pending attempts of live owners, per endpoint. */
    /* The notification channel of an endpoint's freed slots, and LISTEN on
     * it (LISTEN takes a name, not a parameter): a settle of a capped
     * endpoint's attempt notifies it, with the endpoint as payload. */
    "CREATE FUNCTION fr_slot_channel(ep text) RETURNS text"
    " LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE"
    " AS $$ SELECT 'fr_slot_' || md5(ep) $$",
    "CREATE FUNCTION fr_slot_listen(ep text) RETURNS void LANGUAGE plpgsql AS $$"
    " BEGIN EXECUTE format('LISTEN %I', fr_slot_channel(ep)); END $$",
    "CREATE VIEW in_flight AS"
    "  SELECT a.endpoint, count(*) AS held"
    "  FROM attempts a JOIN owners o ON o.id = a.owner_id"
    "  WHERE a.outcome = 'pending' AND o.expires > now()"
    "  GROUP BY a.endpoint",
    /* The cost ledger: every attempt with its workflow, user and host. */
    "CREATE VIEW ledger AS"
    "  SELECT a.month, a.day, a.at, r.workflow, a.run_id, a.task, a.attempt, a.endpoint,"
    "         a.tier, a.model, a.input_tokens, a.output_tokens, a.cached_tokens,"
    "         a.usage_estimated, a.cost_usd, a.outcome, a.user_name, a.host"
    "  FROM attempts a JOIN runs r ON r.id = a.run_id",
    /* The result cache, keyed by a hash of everything that shapes a result. */
    "CREATE TABLE cache ("
    "  key        text PRIMARY KEY,"
    "  endpoint   text NOT NULL,"
    "  model      text,"
    "  text       text,"
    "  json       text,"
    "  input      bigint NOT NULL DEFAULT 0,"
    "  output     bigint NOT NULL DEFAULT 0,"
    "  cached     bigint NOT NULL DEFAULT 0,"
    "  created_at double precision NOT NULL"
    ")",
    /* Human approvals: the latest checkpoint per workflow and task. */
    "CREATE TABLE approvals ("
    "  workflow    text NOT NULL,"
    "  task        text NOT NULL,"
    "  output_hash text NOT NULL,"
    "  state       text NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),"
    "  run_id      text,"
    "  output_path text,"
    "  asked_at    double precision NOT NULL,"
    "  decided_by  text,"
    "  decided_at  double precision,"
    "  note        text,"
    "  PRIMARY KEY (workflow, task)"
    ")",
    /* Each finished run's report as it printed it (the JSON byte for byte:
     * text, not jsonb, which would reorder it). */
    "CREATE TABLE reports ("
    "  run_id    text PRIMARY KEY REFERENCES runs(id),"
    "  summary   text NOT NULL,"
    "  stored_at double precision NOT NULL,"
    "  json      text NOT NULL"
    ")",
    NULL};
// clang-format on

/* Schema version 2: since when each owner's oldest request for a slot of
 * an endpoint waits (fr_pgstore_slot_waiting). A reservation leaves a free
 * slot to a live owner that waits and holds fewer, so that one run's queue
 * does not keep every slot it frees from another process. */
static const char *const schema_v2[] = {"CREATE TABLE slot_waits ("
                                        "  owner_id text NOT NULL,"
                                        "  endpoint text NOT NULL,"
                                        "  since    double precision NOT NULL,"
                                        "  PRIMARY KEY (owner_id, endpoint)"
                                        ")",
                                        NULL};

/* migrations[v] takes a database from version v to v + 1. */
static const char *const *const migrations[FR_PG_SCHEMA_VERSION] = {schema_v1, schema_v2};

/* The statements of one migration; see pg_schema.h. */
const char *const *fr_pg_schema_sql(int from)
{
    return from >= 0 && from < FR_PG_SCHEMA_VERSION ? migrations[from] : NULL;
}

/* ---- the apply step ------------------------------------------------------------ */

/* How many times the version may be read again (after a race lost to
 * another process, or a connection lost mid-way) before giving up: each
 * race means another process moved the version on, so a few suffice. */
#define MAX_TRIES 8

typedef enum { READ_META, READ_VERSION, MIGRATE } step;

typedef struct apply {
    fr_pgconn *c;
    char *source;
    fr_pg_schema_done_fn done;
    void *ud;
    step at;
    int version; /* as read */
    int tries;
} apply;

static void on_result(void *ud, fr_pgres *res);

/* Ends `a` (taken): calls its callback with `rc` and, unless FR_OK, the
 * message `fmt`, then frees it. */
static void finish(apply *a, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void finish(apply *a, int rc, const char *fmt, ...)
{
    fr_error err = {0};
    err.code = rc;
    snprintf(err.source, sizeof err.source, "%s", a->source);
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err.msg, sizeof err.msg, fmt, ap);
        va_end(ap);
    }
    a->done(a->ud, rc, rc == FR_OK ? NULL : &err);
    free(a->source);
    free(a);
}

/* Sends the request of step `a->at`. Returns fr_pgconn_query's code. */
static int send_step(apply *a)
{
    if (a->at == READ_META)
        return fr_pgconn_query(a->c, "SELECT to_regclass('meta') IS NOT NULL", 0, NULL, on_result,
                               a);
    if (a->at == READ_VERSION)
        return fr_pgconn_query(a->c, "SELECT value FROM meta WHERE key = 'schema_version'", 0, NULL,
                               on_result, a);
    /* The lock, the check, each missing migration and its log row, the
     * version: one transaction. */
    size_t n = 3;
    for (int v = a->version; v < FR_PG_SCHEMA_VERSION; v++) {
        for (const char *const *s = migrations[v]; *s; s++)
            n++;
        n++;
    }
    fr_pgstmt *stmts = fr_xcalloc(n, sizeof *stmts);
    char **owned = fr_xcalloc(n, sizeof *owned);
    size_t i = 0;
    stmts[i++].sql = "SELECT pg_advisory_xact_lock(" FR_PG_SCHEMA_LOCK_KEY_SQL ")";
    owned[i] =
        fr_xasprintf("DO $fr$ DECLARE v text := '0'; BEGIN"
                     " IF to_regclass('meta') IS NOT NULL THEN"
                     "  SELECT value INTO v FROM meta WHERE key = 'schema_version';"
                     " END IF;"
                     " IF v IS DISTINCT FROM '%d' THEN"
                     "  RAISE EXCEPTION 'the schema version is now %%, not %d', coalesce(v, 'none')"
                     "   USING ERRCODE = '" FR_PG_SCHEMA_RACED "';"
                     " END IF;"
                     " END $fr$",
                     a->version, a->version);
    stmts[i].sql = owned[i];
    i++;
    for (int v = a->version; v < FR_PG_SCHEMA_VERSION; v++) {
        for (const char *const *s = migrations[v]; *s; s++)
            stmts[i++].sql = *s;
        owned[i] = fr_xasprintf("INSERT INTO schema_log(version) VALUES (%d)", v + 1);
        stmts[i].sql = owned[i];
        i++;
    }
    owned[i] = fr_xasprintf("INSERT INTO meta(key, value) VALUES ('schema_version', '%d')"
                            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            FR_PG_SCHEMA_VERSION);
    stmts[i].sql = owned[i];
    i++;
    int rc = fr_pgconn_transaction(a->c, (int)i, stmts, on_result, a);
    for (size_t k = 0; k < n; k++)
        free(owned[k]);
    free(owned);
    free(stmts);
    return rc;
}

/* Sends the step after a result, or ends `a` when it cannot be sent. */
static void next(apply *a, step at)
{
    a->at = at;
    int rc = send_step(a);
    if (rc != FR_OK)
        finish(a, rc, "cannot reach the state database: %s", fr_strerror(rc));
}

/* Reads the version again after a race or a lost connection, at most
 * MAX_TRIES times. */
static void again(apply *a, const fr_pgres *res)
{
    if (++a->tries >= MAX_TRIES) {
        finish(a, fr_pgres_code(res), "cannot bring the state database's schema to version %d: %s",
               FR_PG_SCHEMA_VERSION, fr_pgres_message(res));
        return;
    }
    next(a, READ_META);
}

/* Parses the stored version: a whole number >= 1, else -1. */
static int parse_version(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno == 0 && *end == '\0' && v >= 1 && v <= 1000000 ? (int)v : -1;
}

/* What the version read decides. */
static void decide(apply *a)
{
    if (a->version > FR_PG_SCHEMA_VERSION)
        finish(a, FR_ESTOREVER,
               "the state database has schema version %d, but this flowrun knows versions up "
               "to %d: upgrade flowrun to use it",
               a->version, FR_PG_SCHEMA_VERSION);
    else if (a->version == FR_PG_SCHEMA_VERSION)
        finish(a, FR_OK, NULL);
    else
        next(a, MIGRATE);
}

static void on_result(void *ud, fr_pgres *res)
{
    apply *a = ud;
    int rc = fr_pgres_code(res);
    if (rc == FR_EOUTCOME || (a->at == MIGRATE && rc == FR_ESTORE &&
                              strcmp(fr_pgres_sqlstate(res), FR_PG_SCHEMA_RACED) == 0)) {
        again(a, res);
    } else if (rc != FR_OK) {
        finish(a, rc, "%s the state database's schema: %s",
               a->at == MIGRATE ? "cannot migrate" : "cannot read", fr_pgres_message(res));
    } else if (a->at == READ_META) {
        const char *v = fr_pgres_value(res, 0, 0);
        a->version = 0;
        if (v && strcmp(v, "t") == 0)
            next(a, READ_VERSION);
        else
            decide(a);
    } else if (a->at == READ_VERSION) {
        a->version = parse_version(fr_pgres_value(res, 0, 0));
        if (a->version < 0)
            finish(a, FR_ESTORE,
                   "the database has a meta table but no valid flowrun schema version: is it "
                   "flowrun's state?");
        else
            decide(a);
    } else {
        finish(a, FR_OK, NULL);
    }
    fr_pgres_free(res);
}

/* Brings the schema to the current version; see pg_schema.h. */
int fr_pg_schema_apply(fr_pgconn *c, const char *source, fr_pg_schema_done_fn done, void *ud)
{
    if (!c || !source || !done)
        return FR_EINVAL;
    apply *a = fr_xcalloc(1, sizeof *a);
    a->c = c;
    a->source = fr_xstrdup(source);
    a->done = done;
    a->ud = ud;
    a->at = READ_META;
    int rc = send_step(a);
    if (rc != FR_OK) {
        free(a->source);
        free(a);
    }
    return rc;
}
