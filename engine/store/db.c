/* The store's shared pieces: the statements every file of engine/store/
 * prepares at open, the errors and checks of every call, the clock, and
 * which process holds a lease or runs a run (this one, a live one, or one
 * that is gone). Declared in store_int.h; used by open, ledger, lease,
 * spend and cache_table. */

#include "engine/store/store_int.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Sum of a closed or open lease's run's attempts in the lease's period (its
 * `month` column: a month, or a day). */
#define LEASE_SPENT                                                                                \
    "(SELECT TOTAL(a.cost_usd) FROM attempts a WHERE a.run_id = leases.run_id"                     \
    " AND (a.month = leases.month OR a.day = leases.month))"

/* The SQL of each statement of enum fr_store_stmt, prepared at open. */
static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_RUN_BEGIN] = "INSERT INTO runs(id, workflow, wf_path, started_at, pid, pid_start, boot_id,"
                    " user_name, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_RUN_END] = "UPDATE runs SET ended_at = ?2, status = ?3, exit_code = ?4, cost_usd = ?5"
                  " WHERE id = ?1",
    [S_ATTEMPT] = "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, model,"
                  " input_tokens, output_tokens, cached_tokens, usage_estimated, cost_usd,"
                  " latency_ms, outcome, error, at, month, task_type, ttft_ms, day, user_name,"
                  " host, complexity, score) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"
                  " ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
    /* ?14, the owner, stays NULL but for a shared endpoint's slot. */
    [S_RESERVE] = "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, model, cost_usd,"
                  " outcome, at, month, task_type, day, user_name, host, owner_id, complexity)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
                  " ?15)",
    [S_SETTLE] = "UPDATE attempts SET input_tokens = ?2, output_tokens = ?3, cached_tokens = ?4,"
                 " usage_estimated = ?5, cost_usd = ?6, latency_ms = ?7, outcome = ?8, error = ?9,"
                 " at = ?10, ttft_ms = ?12, score = ?13, complexity = COALESCE(?14, complexity)"
                 " WHERE id = ?1 AND run_id = ?11 AND outcome = 'pending'",
    [S_ATTEMPT_MONTH] = "SELECT month FROM attempts WHERE id = ?1",
    /* What the period (a month or a day) is charged: booked attempts and
     * those in flight at their worst case: a day's row of day_totals, kept
     * by triggers, or a month's days ("YYYY-MM-00" to "YYYY-MM-31"). */
    [S_MONTH_SPENT] = "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"
                      " WHERE day >= ?1 AND day <= ?1 || '-99'",
    /* What the period's booked replies cost (the monthly alert's total). */
    [S_MONTH_BOOKED] = "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals"
                       " WHERE day >= ?1 AND day <= ?1 || '-99'",
    [S_RUNNING] = "SELECT id, pid, pid_start, boot_id FROM runs"
                  " WHERE status = 'running' AND pid IS NOT NULL",
    [S_CRASH_PENDING] = "UPDATE attempts SET outcome = 'cancelled', at = ?2, error = 'the run''s"
                        " process died with the request in flight: its worst case is kept'"
                        " WHERE run_id = ?1 AND outcome = 'pending'",
    [S_CRASH_LEASES] =
        "UPDATE leases SET closed_at = ?2, closed_by = 'reclaimed', spent_usd = " LEASE_SPENT
        " WHERE run_id = ?1 AND closed_at IS NULL",
    [S_CRASH_RUN] = "UPDATE runs SET status = 'crashed', ended_at = ?2, cost_usd ="
                    " (SELECT TOTAL(cost_usd) FROM attempts WHERE run_id = ?1)"
                    " WHERE id = ?1 AND status = 'running'",
    [S_OPEN_LEASES] = "SELECT id, run_id, pid, pid_start, boot_id, amount, " LEASE_SPENT
                      " FROM leases WHERE month = ?1 AND closed_at IS NULL",
    [S_LEASE_CLOSE] = "UPDATE leases SET closed_at = ?2, closed_by = ?3, spent_usd = " LEASE_SPENT
                      " WHERE id = ?1 AND closed_at IS NULL",
    [S_LEASE_GROW] = "UPDATE leases SET amount = amount + ?2 WHERE id = ?1",
    [S_LEASE_NEW] = "INSERT INTO leases(run_id, month, amount, pid, pid_start, boot_id, opened_at)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_RELEASE] =
        "UPDATE leases SET closed_at = ?2, closed_by = 'released', spent_usd = " LEASE_SPENT
        " WHERE run_id = ?1 AND closed_at IS NULL"
        " AND pid = ?3 AND pid_start = ?4 AND boot_id = ?5",
    /* By month (?2 = 0) or by day (?2 = 1); who and where are "-" for rows
     * booked before schema 10, or without a name. */
    [S_SPEND] = "SELECT CASE WHEN ?2 THEN day ELSE month END AS period, workflow, endpoint, tier,"
                " COUNT(*), TOTAL(cost_usd), SUM(input_tokens), SUM(output_tokens),"
                " SUM(cached_tokens), SUM(usage_estimated), coalesce(nullif(user_name, ''), '-'),"
                " coalesce(nullif(host, ''), '-')"
                " FROM ledger WHERE period IS NOT NULL AND (?1 IS NULL OR period = ?1)"
                " GROUP BY period, workflow, endpoint, tier, user_name, host"
                " ORDER BY period, workflow, endpoint, tier, user_name, host",
    [S_RUN_STATUS] = "SELECT status, cost_usd FROM runs WHERE id = ?1",
    [S_CACHE_GET] = "SELECT model, text, json, input, output, cached FROM cache WHERE key = ?1",
    [S_CACHE_PUT] = "INSERT OR REPLACE INTO cache (key, endpoint, model, text, json, input,"
                    " output, cached, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_OWNER_NEW] = "INSERT INTO owners(id, pid, pid_start, boot_id, user_name, host, started,"
                    " heartbeat, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
    [S_OWNER_BEAT] = "UPDATE owners SET heartbeat = ?2, expires = ?3 WHERE id = ?1",
    [S_OWNER_END] = "DELETE FROM owners WHERE id = ?1",
    /* Owners long dead: their in-flight attempts count for nothing already. */
    [S_OWNER_PRUNE] = "DELETE FROM owners WHERE expires < ?1",
    /* The slots of an endpoint and model held by each owner but ?3 (this
     * store's, whose own slots its caller counts: fr_store_reserve_slot):
     * its in-flight attempts of a shared endpoint, counted in the partial
     * index attempts_slots (a range of it per owner; owners are few), and
     * its count of $0 slots; and since when its oldest request waits for
     * one (NULL: none waits). */
    [S_SLOTS_HELD] = "SELECT o.id, o.pid, o.pid_start, o.boot_id, o.host, o.expires,"
                     " (SELECT COUNT(*) FROM attempts a WHERE a.endpoint = ?1 AND a.model IS ?2"
                     " AND a.owner_id = o.id AND a.outcome = 'pending') + coalesce(s.held, 0),"
                     " s.waiting_since FROM owners o LEFT JOIN owner_slots s ON s.owner_id = o.id"
                     " AND s.endpoint = ?1 AND s.model = coalesce(?2, '') WHERE o.id IS NOT ?3",
    /* This owner's count of the $0 slots of an endpoint and model it
     * holds, and since when it waits for one (owners.c:
     * fr_store_slots_write). */
    [S_SLOTS_SET] = "INSERT INTO owner_slots VALUES (?1, ?2, coalesce(?3, ''), ?4, ?5)"
                    " ON CONFLICT (owner_id, endpoint, model) DO UPDATE SET held = excluded.held,"
                    " waiting_since = excluded.waiting_since",
    /* The routing history of the endpoints named in the JSON array ?1 (NULL:
     * all): each key's sums (kind 0), then its pairs of bins (kind 1:
     * latency bin, ttft bin, count in the place of settled and passes). */
    [S_HISTORY] =
        "SELECT endpoint, task_type, band, 0, 0, settled, passes, fails, errors, w_pass,"
        " w_fail, w_ref, last_at, score_sum, score_n, cost_sum, out_tokens, reply_ms"
        " FROM routing_history"
        " WHERE ?1 IS NULL OR endpoint IN (SELECT value FROM json_each(?1))"
        " UNION ALL SELECT endpoint, task_type, band, 1, lat_bin, n, ttft_bin, 0, 0, 0, 0, NULL,"
        " NULL, 0, 0, 0, 0, 0 FROM routing_bins"
        " WHERE ?1 IS NULL OR endpoint IN (SELECT value FROM json_each(?1))",
    /* A key's attempts of one write (?1-?3), summed by history_table.c:
     * settled ?4, passes ?5, fails ?6, errors ?7, the decayed sums of its
     * passes ?8 and fails ?9 relative to ?10 (its first gated attempt's
     * time, NULL when none was gated), its last gated attempt's time ?11,
     * scores ?12 over ?13, cost ?14, output tokens ?15, latency ?16. The
     * decayed sums are carried over to the row's reference (w_ref, the
     * key's first gated attempt ever). One statement, a new key's row or
     * the sums of its row: a key's first attempts booked by two processes
     * at once both count (an UPDATE, then an INSERT when it found no row,
     * had the second fail on the row the first added in between). */
    [S_HIST_ADD] = "INSERT INTO routing_history VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                   " ?11, ?12, ?13, ?14, ?15, ?16)"
                   " ON CONFLICT (endpoint, task_type, band) DO UPDATE SET"
                   " settled = settled + excluded.settled, passes = passes + excluded.passes,"
                   " fails = fails + excluded.fails, errors = errors + excluded.errors,"
                   " w_pass = w_pass + IFNULL(excluded.w_pass"
                   " * pow(2, (excluded.w_ref - IFNULL(w_ref, excluded.w_ref)) / 2592000.0), 0),"
                   " w_fail = w_fail + IFNULL(excluded.w_fail"
                   " * pow(2, (excluded.w_ref - IFNULL(w_ref, excluded.w_ref)) / 2592000.0), 0),"
                   " w_ref = IFNULL(w_ref, excluded.w_ref),"
                   " last_at = CASE WHEN excluded.last_at IS NULL THEN last_at"
                   " ELSE MAX(IFNULL(last_at, excluded.last_at), excluded.last_at) END,"
                   " score_sum = score_sum + excluded.score_sum,"
                   " score_n = score_n + excluded.score_n, cost_sum = cost_sum + excluded.cost_sum,"
                   " out_tokens = out_tokens + excluded.out_tokens,"
                   " reply_ms = reply_ms + excluded.reply_ms",
    /* A key's replies of one write in a pair of bins (?1-?5): ?6 more. */
    [S_BIN_ADD] = "INSERT INTO routing_bins VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                  " ON CONFLICT (endpoint, task_type, band, lat_bin, ttft_bin)"
                  " DO UPDATE SET n = n + excluded.n",
    /* A crashed run's requests in flight, about to be settled as
     * cancelled (S_CRASH_PENDING): settled attempts and cost of their keys. */
    [S_HIST_CRASH] =
        "INSERT INTO routing_history(endpoint, task_type, band, settled, cost_sum)"
        " SELECT endpoint, COALESCE(task_type, '-'),"
        " MIN(4, MAX(0, CAST(COALESCE(complexity, 0.5) * 5 AS INTEGER))), COUNT(*),"
        " TOTAL(cost_usd) FROM attempts WHERE run_id = ?1 AND outcome = 'pending' GROUP BY 1, 2, 3"
        " ON CONFLICT DO UPDATE SET settled = settled + excluded.settled,"
        " cost_sum = cost_sum + excluded.cost_sum",
};

/* ---- errors and checks ------------------------------------------------------ */

/* FR_ESTORE with what failed and SQLite's message (never SQL text or
 * values); see store_int.h. */
int fr_store_db_error(const fr_store *st, fr_error *err, const char *what)
{
    if (st->db && (sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_NOTADB)
        return fr_error_set(err, FR_ESTORE, st->path, 0,
                            "%s: not a SQLite database: is the state path right?", what);
    return fr_error_set(err, FR_ESTORE, st->path, 0, "%s: %s", what,
                        st->db ? sqlite3_errmsg(st->db) : "out of memory");
}

/* The forks this process is from: each fork's child counts one more, so a
 * store opened before a fork tells the child from its parent without a
 * getpid() per call (every booking asks). */
static unsigned long fork_gen;
static pthread_once_t fork_watch = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    fork_gen++;
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

/* The fork generation of this process; see store_int.h. */
unsigned long fr_store_fork_gen(void)
{
    pthread_once(&fork_watch, watch_forks);
    return fork_gen;
}

/* A store is bound to the process that opened it (see fr_store_open);
 * see store_int.h. */
int fr_store_check_usable(const fr_store *st, fr_error *err)
{
    if (!st)
        return fr_error_set(err, FR_EINVAL, "state", 0, "no state store");
    if (fork_gen != st->fork_gen)
        return fr_error_set(err, FR_ESTORE, st->path, 0,
                            "the state store was opened by process %ld: a forked process must "
                            "open its own",
                            (long)st->pid);
    if (st->pg)
        return fr_error_set(err, FR_ESTORE, st->path, 0,
                            "this command does not read a PostgreSQL state store yet");
    return FR_OK;
}

/* fr_store_check_usable for the readers a PostgreSQL store answers too;
 * see store_int.h. */
int fr_store_check_readable(const fr_store *st, fr_error *err)
{
    return st && st->pg ? FR_OK : fr_store_check_usable(st, err);
}

/* Whether `m` is a month "YYYY-MM" (a day "YYYY-MM-DD" with `day`); see store_int.h. */
bool fr_store_period_valid(const char *m, bool day)
{
    size_t n = day ? 10 : 7;
    if (!m || strlen(m) != n || m[4] != '-' || (day && m[7] != '-'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (i != 4 && i != 7 && (m[i] < '0' || m[i] > '9'))
            return false;
    int mon = (m[5] - '0') * 10 + (m[6] - '0');
    int mday = day ? (m[8] - '0') * 10 + (m[9] - '0') : 1;
    return mon >= 1 && mon <= 12 && mday >= 1 && mday <= 31;
}

/* Refuses a month that is not "YYYY-MM"; see store_int.h. */
int fr_store_check_month(const fr_store *st, const char *month, fr_error *err)
{
    if (!fr_store_period_valid(month, false))
        return fr_error_set(err, FR_EINVAL, st->path, 0, "month must be \"YYYY-MM\", not \"%s\"",
                            month ? month : "(null)");
    return FR_OK;
}

/* Refuses a day that is not "YYYY-MM-DD"; see store_int.h. */
int fr_store_check_day(const fr_store *st, const char *day, fr_error *err)
{
    if (!fr_store_period_valid(day, true))
        return fr_error_set(err, FR_EINVAL, st->path, 0, "day must be \"YYYY-MM-DD\", not \"%s\"",
                            day ? day : "(null)");
    return FR_OK;
}

/* Refuses a period that is neither; see store_int.h. */
int fr_store_check_period(const fr_store *st, const char *period, fr_error *err)
{
    if (!fr_store_period_valid(period, false) && !fr_store_period_valid(period, true))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "period must be a month \"YYYY-MM\" or a day \"YYYY-MM-DD\", not "
                            "\"%s\"",
                            period ? period : "(null)");
    return FR_OK;
}

/* An amount a row may hold; see store_int.h. */
bool fr_store_valid_usd(double v)
{
    return isfinite(v) && v >= 0;
}

/* Maps a failed insert: a constraint on the run id is the caller's mistake;
 * see store_int.h. */
int fr_store_insert_error(fr_store *st, fr_error *err, const char *run_id, const char *what)
{
    int ext = sqlite3_extended_errcode(st->db);
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "run %s was not begun in the state database", run_id);
    if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "run %s is already recorded", run_id);
    return fr_store_db_error(st, err, what);
}

/* ---- clock and processes ----------------------------------------------------- */

/* A set clock or the real one; see store.h. */
double fr_store_unix_now(time_t clock)
{
    if (clock)
        return (double)clock;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The store's clock; see store_int.h. */
double fr_store_now(const fr_store *st)
{
    return fr_store_unix_now(st->clock);
}

/* The store's clock for its callers; see store.h. */
double fr_store_clock(const fr_store *st)
{
    return fr_store_now(st);
}

/* The UTC date of `t` in the proleptic Gregorian calendar, as gmtime
 * gives it, by arithmetic on days (gmtime and strftime cost more than the
 * attempt's row they label): false outside years 1000-9999, which the
 * labels' four digits cannot hold. */
static bool utc_date(time_t t, int *year, int *month, int *day)
{
    /* 1000-01-01T00:00:00Z and 10000-01-01T00:00:00Z */
    if (t < (time_t)-30610224000LL || t >= (time_t)253402300800LL)
        return false;
    long long days = (long long)t / 86400 - ((long long)t % 86400 < 0);
    /* Days counted from 0000-03-01, so a leap day ends its year; an era is
     * the 400 years (146,097 days) after which the calendar repeats. */
    long long z = days + 719468;
    long long era = z / 146097;
    long long doe = z - era * 146097;                                      /* 0 .. 146096 */
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0 .. 399 */
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100); /* 0 .. 365, from March */
    long long mp = (5 * doy + 2) / 153;                      /* 0 = March .. 11 = February */
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (*month <= 2));
    return *year >= 1000 && *year <= 9999;
}

/* Writes `v` (0 .. 10^width - 1) as `width` digits at `out`. */
static void digits(char *out, int v, int width)
{
    for (int i = width - 1; i >= 0; i--, v /= 10)
        out[i] = (char)('0' + v % 10);
}

/* Writes the UTC date of `t` into `out`: "YYYY-MM", then "-DD" with
 * `with_day`; the fallback ("0000-01", "0000-01-01") outside years
 * 1000-9999. `out` holds FR_STORE_DAY_LEN bytes with `with_day`, else
 * FR_STORE_MONTH_LEN. */
static void write_date(time_t t, char *out, bool with_day)
{
    int y = 0, m = 1, d = 1;
    if (!utc_date(t, &y, &m, &d))
        y = 0, m = 1, d = 1;
    digits(out, y, 4);
    out[4] = '-';
    digits(out + 5, m, 2);
    out[7] = '\0';
    if (with_day) {
        out[7] = '-';
        digits(out + 8, d, 2);
        out[10] = '\0';
    }
}

/* The UTC month of a time; see store.h. */
void fr_store_month_of(time_t t, char out[FR_STORE_MONTH_LEN])
{
    write_date(t, out, false);
}

/* The UTC day of a time; see store.h. */
void fr_store_day_of(time_t t, char out[FR_STORE_DAY_LEN])
{
    write_date(t, out, true);
}

/* Copies the label `env` names when set and not empty, else `fallback`
 * (may be NULL: ""), into `out` of `size` bytes. */
static void label(char *out, size_t size, const char *env, const char *fallback)
{
    const char *v = getenv(env);
    snprintf(out, size, "%s", v && *v ? v : fallback ? fallback : "");
}

void fr_store_identity(char *user, size_t usize, char *host, size_t hsize)
{
    struct passwd pw, *found = NULL;
    char buf[1024];
    const char *who = NULL;
    if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &found) == 0 && found && found->pw_name)
        who = found->pw_name;
    else
        who = getenv("USER");
    char name[256] = "";
    if (gethostname(name, sizeof name - 1) != 0)
        name[0] = '\0';
    name[sizeof name - 1] = '\0';
    label(user, usize, "FLOWRUN_USER", who);
    label(host, hsize, "FLOWRUN_HOST", name);
}

/* Reads this boot's id (Linux); leaves "" where there is none. */
static void read_boot_id(char *out, size_t size)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f)
        return;
    if (fgets(out, (int)size, f))
        out[strcspn(out, "\n")] = '\0';
    else
        out[0] = '\0';
    fclose(f);
}

/* Reads a process's state letter and start time (clock ticks after boot)
 * from /proc (Linux). Returns false when they cannot be read. */
static bool proc_info(long pid, char *state, unsigned long long *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ppid ...": comm may hold spaces and parentheses, so fields
     * are counted from the last ')'. The start time is field 22. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return false;
    *state = p[2];
    p += 3;
    for (int field = 4; field <= 22; field++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return false;
        if (field == 22) {
            char *end;
            errno = 0;
            *start = strtoull(p, &end, 10);
            return end != p && errno == 0;
        }
        p += strcspn(p, " ");
    }
    return false;
}

/* True unless the lease's holder is known to be gone: recorded in another boot
 * of the host, no such pid, a zombie, or a pid reused by a process that
 * started at another time. An unknown is taken as alive: a lease wrongly kept
 * blocks spending, a lease wrongly reclaimed could pass the cap. See
 * store_int.h. */
bool fr_store_holder_alive(const fr_store *st, const fr_store_lease_row *l)
{
    if (l->boot[0] && st->boot_id[0] && strcmp(l->boot, st->boot_id) != 0)
        return false;
    if (l->pid <= 0 || l->pid > INT_MAX)
        return false;
    if (kill((pid_t)l->pid, 0) != 0 && errno == ESRCH)
        return false;
    char state;
    unsigned long long start;
    if (proc_info((long)l->pid, &state, &start)) {
        if (state == 'Z' || state == 'X')
            return false;
        if (l->start && start != l->start)
            return false;
    }
    return true;
}

/* True when the lease is held by this process; see store_int.h. */
bool fr_store_held_here(const fr_store *st, const fr_store_lease_row *l)
{
    return l->pid == st->pid && l->start == st->pid_start && strcmp(l->boot, st->boot_id) == 0;
}

/* Takes this process's identity; see store_int.h. */
void fr_store_identify(fr_store *st)
{
    st->pid = getpid();
    read_boot_id(st->boot_id, sizeof st->boot_id);
    fr_store_identity(st->user_name, sizeof st->user_name, st->host, sizeof st->host);
    char state;
    if (!proc_info((long)st->pid, &state, &st->pid_start))
        st->pid_start = 0;
}

/* Reads a lease's or a run's holder from a row; see store_int.h. */
void fr_store_read_holder(sqlite3_stmt *s, int col, fr_store_lease_row *l)
{
    fr_store_column_copy(s, col, l->run, sizeof l->run);
    l->pid = sqlite3_column_int64(s, col + 1);
    l->start = (unsigned long long)sqlite3_column_int64(s, col + 2);
    fr_store_column_copy(s, col + 3, l->boot, sizeof l->boot);
}

/* ---- statements and transactions --------------------------------------------- */

/* Runs statement `id` whose parameters are bound, expecting no rows; see
 * store_int.h. */
int fr_store_exec(fr_store *st, enum fr_store_stmt id, const char *what, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[id];
    int rc = sqlite3_step(s) == SQLITE_DONE ? FR_OK : fr_store_db_error(st, err, what);
    fr_store_done(s);
    return rc;
}

/* Rolls back the open transaction, if any; see store_int.h. */
void fr_store_rollback(fr_store *st)
{
    if (st->db && !sqlite3_get_autocommit(st->db)) {
        sqlite3_step(st->stmt[S_ROLLBACK]);
        fr_store_done(st->stmt[S_ROLLBACK]);
    }
    if (st->pending)
        st->lost++;
    st->pending = false;
    fr_store_history_forget(st, false);
    fr_store_slots_forget(st, false); /* the counts as they are now, at the next commit */
}

/* ---- write batching ---------------------------------------------------------- */

/* Counts every commit, autocommits included (fr_store_stats). */
static int on_commit(void *ud)
{
    ((fr_store *)ud)->commits++;
    return 0;
}

/* Turns batching on; see store.h. */
void fr_store_batch(fr_store *st, void (*on_pending)(void *ud), void *ud)
{
    st->batching = on_pending != NULL;
    st->on_pending = on_pending;
    st->pending_ud = ud;
}

/* Opens the batch's transaction when none is; see store_int.h. */
int fr_store_batch_join(fr_store *st, fr_error *err)
{
    if (!st->batching || st->pending)
        return FR_OK;
    int rc = fr_store_exec(st, S_BEGIN_IMMEDIATE, "cannot lock the state database", err);
    if (rc != FR_OK)
        return rc;
    st->pending = true;
    if (st->on_pending)
        st->on_pending(st->pending_ud);
    return FR_OK;
}

/* Commits what the batch holds; see store.h. */
int fr_store_flush(fr_store *st, fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK || !st->pending)
        return rc;
    rc = fr_store_history_write(st, err);
    if (rc == FR_OK)
        rc = fr_store_slots_write(st, err);
    if (rc == FR_OK)
        rc = fr_store_exec(st, S_COMMIT, "cannot commit the state database", err);
    if (rc != FR_OK)
        fr_store_rollback(st);
    st->pending = false;
    return rc;
}

/* Commits the batch before a call's own transaction; see store_int.h. */
int fr_store_own_txn(fr_store *st, fr_error *err)
{
    return st->pending ? fr_store_flush(st, err) : FR_OK;
}

/* Reads the store's counters; see store.h. */
void fr_store_stats_get(const fr_store *st, fr_store_stats *out)
{
    *out = (fr_store_stats){.commits = st->commits, .lost = st->lost, .prepares = st->prepares};
    for (sqlite3_stmt *s = sqlite3_next_stmt(st->db, NULL); s; s = sqlite3_next_stmt(st->db, s))
        out->statements++;
}

/* The batches rolled back so far; see store.h. */
long fr_store_lost(const fr_store *st)
{
    return st->lost;
}

/* Prepares every statement once, for the store's life; see store_int.h. */
int fr_store_prepare_all(fr_store *st, fr_error *err)
{
    sqlite3_commit_hook(st->db, on_commit, st);
    for (int i = 0; i < S_COUNT; i++) {
        st->prepares++;
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK)
            return fr_store_db_error(st, err, "cannot prepare the state database's statements");
    }
    return FR_OK;
}
