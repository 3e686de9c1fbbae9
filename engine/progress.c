#include "engine/progress.h"

#include "engine/util/buf.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static fr_log_level g_plain = FR_LOG_WARN;

void fr_progress_set_level(fr_log_level level)
{
    g_plain = level;
}

void fr_progress_started(size_t ntasks)
{
    fr_log_event(g_plain, "run", "run.start", "tasks=%zu status=started", ntasks);
}

void fr_progress_ended(const char *name, fr_task_state state, const char *reason)
{
    fr_log_event(g_plain, "sched", "task.end", "task=%s status=%s reason=\"%s\"", name,
                 fr_task_state_name(state), reason ? reason : "");
}

void fr_progress_ok(const char *name, const fr_task_result *res, const fr_endpoints *eps)
{
    const fr_endpoint_spec *s = fr_ep_spec(eps, (size_t)res->endpoint);
    fr_log_event(
        g_plain, "sched", "task.end",
        "task=%s status=ok endpoint=%s tier=%s latency_ms=%.0f tokens_in=%ld tokens_out=%ld", name,
        s->name, fr_tier_name(s->tier), res->latency_ms, res->usage.input, res->usage.output);
}

void fr_progress_fanout_ok(const char *name, size_t instances, const char *note)
{
    fr_log_event(g_plain, "sched", "task.end", "task=%s status=ok instances=%zu%s%s", name,
                 instances, note ? " note=" : "", note ? note : "");
}

/* ---- the live block ----------------------------------------------------- */

struct fr_live {
    uv_timer_t timer;
    const fr_results *res;
    const fr_sched *sched;
    const fr_endpoints *eps;
    const fr_clock *clock;
    int drawn;   /* lines of the block on screen, the cursor below them */
    bool color;  /* NO_COLOR unset */
    bool closed; /* the timer's close callback ran */
};

static bool g_cursor_hidden; /* for the exit handler */

static void show_cursor_at_exit(void)
{
    if (g_cursor_hidden)
        fputs("\033[?25h", stderr);
}

bool fr_live_possible(void)
{
    const char *term = getenv("TERM");
    return isatty(STDERR_FILENO) && !(term && strcmp(term, "dumb") == 0);
}

/* The terminal's size, 80x24 when it cannot be read. */
static void winsize(int *cols, int *rows)
{
    struct winsize ws;
    *cols = 80;
    *rows = 24;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
}

/* Appends `text` cut to `cols` - 1 columns (bytes: the block is ASCII but
 * for names), then a newline. */
static void put_line(fr_buf *out, const char *text, int cols, bool dim, bool color)
{
    size_t n = strlen(text), max = cols > 1 ? (size_t)cols - 1 : 1;
    if (dim && color)
        fr_buf_puts(out, "\033[2m");
    fr_buf_printf(out, "%.*s", (int)(n < max ? n : max), text);
    if (dim && color)
        fr_buf_puts(out, "\033[0m");
    fr_buf_puts(out, "\033[K\n");
}

static void clear_block(fr_live *l, fr_buf *out)
{
    if (l->drawn > 0)
        fr_buf_printf(out, "\r\033[%dA\033[J", l->drawn);
    l->drawn = 0;
}

/* One running task's line. */
static void task_line(const fr_live *l, size_t i, uint64_t now, char *buf, size_t cap)
{
    const fr_task_result *t = &l->res->tasks[i];
    const char *ep = t->endpoint >= 0 ? fr_ep_spec(l->eps, (size_t)t->endpoint)->name : "-";
    uint64_t since = t->attempt_ns ? t->attempt_ns : t->start_ns;
    double el = since && now > since ? (double)(now - since) / 1e9 : 0;
    int n = snprintf(buf, cap, "  %-20s %-14s %6.1fs", l->res->wf->tasks[i].name, ep, el);
    if (n < 0 || (size_t)n >= cap)
        return;
    if (!t->attempt_ns)
        snprintf(buf + n, cap - (size_t)n, "  waiting to retry");
    else if (t->capacity_wait)
        snprintf(buf + n, cap - (size_t)n, "  waiting for a slot another flowrun holds");
    else if (t->streamed > 0)
        n += snprintf(buf + n, cap - (size_t)n, "  %lu tok %.0f tok/s", t->streamed,
                      el > 0 ? (double)t->streamed / el : 0);
    if (n >= 0 && (size_t)n < cap && (t->turns > 0 || t->tool[0]))
        snprintf(buf + n, cap - (size_t)n, "  turn %d%s%s", t->turns + 1,
                 t->tool[0] ? " tool " : "", t->tool);
}

/* Draws the block at the cursor: the running tasks (as many as fit), the
 * queue and the footer. */
static void draw_block(fr_live *l, fr_buf *out)
{
    const fr_results *r = l->res;
    int cols, rows;
    winsize(&cols, &rows);
    size_t n = r->wf->ntasks, running = 0, ready = 0, pending = 0, done = 0, failed = 0, asking = 0;
    double spent = 0;
    long tok_local = 0, tok_all = 0;
    for (size_t i = 0; i < n; i++) {
        const fr_task_result *t = &r->tasks[i];
        fr_task_state st = fr_sched_state(l->sched, i);
        spent += t->cost;
        running += st == FR_TASK_RUNNING;
        ready += st == FR_TASK_READY;
        pending += st == FR_TASK_PENDING;
        done += fr_task_state_terminal(st);
        failed += st == FR_TASK_FAILED || st == FR_TASK_BUDGET;
        asking += t->approval.state == FR_APPROVAL_PENDING && st == FR_TASK_OK;
        if (st == FR_TASK_OK && t->endpoint >= 0) {
            long tk = t->usage.input + t->usage.output;
            tok_all += tk;
            if (fr_ep_spec(l->eps, (size_t)t->endpoint)->tier == FR_TIER_LOCAL)
                tok_local += tk;
        }
    }
    /* Never more lines than the terminal has: the queue and footer take
     * two, one stays free for the cursor. */
    size_t room = rows > 4 ? (size_t)rows - 3 : 1;
    uint64_t now = fr_clock_ns(l->clock);
    char line[512];
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        if (fr_sched_state(l->sched, i) != FR_TASK_RUNNING)
            continue;
        if (shown + 1 == room && running > room) {
            snprintf(line, sizeof line, "  +%zu more running", running - shown);
            put_line(out, line, cols, true, l->color);
            l->drawn++;
            break;
        }
        task_line(l, i, now, line, sizeof line);
        put_line(out, line, cols, false, l->color);
        l->drawn++;
        shown++;
    }
    bool full = fr_sched_total_free(l->sched) == 0;
    snprintf(line, sizeof line,
             "  queue: %zu ready, %zu waiting for a slot, %zu waiting for approval, %zu on "
             "dependencies",
             full ? 0 : ready, full ? ready : 0, asking, pending);
    put_line(out, line, cols, true, l->color);
    char s1[FR_USD_LEN], s2[FR_USD_LEN];
    int k = snprintf(line, sizeof line, "  done %zu/%zu, %zu failed, spent %s", done, n, failed,
                     fr_usd_cost(s1, spent));
    if (r->has_budget && k > 0 && (size_t)k < sizeof line)
        k += snprintf(line + k, sizeof line - (size_t)k, " of %s", fr_usd_cost(s2, r->budget_usd));
    if (k > 0 && (size_t)k < sizeof line)
        snprintf(line + k, sizeof line - (size_t)k, ", local %.0f%%",
                 tok_all ? 100.0 * (double)tok_local / (double)tok_all : 0.0);
    put_line(out, line, cols, false, l->color);
    l->drawn += 2;
}

static void flush_out(fr_buf *out)
{
    fwrite(fr_buf_str(out), 1, out->len, stderr);
    fflush(stderr);
    fr_buf_close(out);
}

static void redraw(fr_live *l)
{
    if (fr_log_held())
        return; /* a question is on screen: the block stays off it */
    fr_buf out;
    fr_buf_init(&out, 0);
    clear_block(l, &out);
    draw_block(l, &out);
    flush_out(&out);
}

/* engine/util/log's hook: a line goes above the block. */
static void around_log(void *ud, bool before)
{
    fr_live *l = ud;
    if (!before) {
        redraw(l);
        return;
    }
    fr_buf out;
    fr_buf_init(&out, 0);
    clear_block(l, &out);
    flush_out(&out);
}

static void on_tick(uv_timer_t *h)
{
    redraw(h->data);
}

fr_live *fr_live_start(uv_loop_t *loop, const fr_results *res, const fr_sched *sched,
                       const fr_endpoints *eps, const fr_clock *clock)
{
    fr_live *l = fr_xcalloc(1, sizeof *l);
    *l = (fr_live){.res = res, .sched = sched, .eps = eps, .clock = clock};
    const char *nc = getenv("NO_COLOR");
    l->color = !(nc && *nc);
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, on_tick, 150, 150);
    uv_unref((uv_handle_t *)&l->timer);
    static bool registered;
    if (!registered)
        registered = atexit(show_cursor_at_exit) == 0;
    g_cursor_hidden = true;
    fputs("\033[?25l", stderr);
    fr_log_set_around(around_log, l);
    redraw(l);
    return l;
}

static void on_closed(uv_handle_t *h)
{
    ((fr_live *)h->data)->closed = true;
}

void fr_live_stop(fr_live *l)
{
    if (!l)
        return;
    fr_log_set_around(NULL, NULL);
    fr_buf out;
    fr_buf_init(&out, 0);
    clear_block(l, &out);
    fr_buf_puts(&out, "\033[?25h");
    flush_out(&out);
    g_cursor_hidden = false;
    uv_close((uv_handle_t *)&l->timer, on_closed);
    while (!l->closed)
        uv_run(l->timer.loop, UV_RUN_ONCE);
    free(l);
}
