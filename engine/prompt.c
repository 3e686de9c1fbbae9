/* The approvals' terminal prompt: a queue of questions, one on screen, the
 * answer read line by line from a uv_tty. */
#include "engine/prompt.h"

#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The output's lines shown, and the widest shown whole (bytes). */
#define PROMPT_LINES    10
#define PROMPT_WIDTH    100
#define PROMPT_LINE_MAX 4096

typedef struct question {
    size_t task;
    char *name, *text, *path;
} question;

struct fr_prompt {
    uv_tty_t tty;
    fr_prompt_answer_fn answer;
    void *ud;
    question *q; /* queue[head .. n) */
    size_t head, n, cap;
    bool showing, reading, eof, closing;
    char line[PROMPT_LINE_MAX];
    size_t len;
    char buf[1024];
    FILE *held; /* log lines held back while a question is on screen */
    char *held_mem;
    size_t held_size;
};

/* Both ends a person uses are terminals; see prompt.h. */
bool fr_prompt_possible(void)
{
    return isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
}

/* Opens the prompt on standard input's terminal; see prompt.h. */
fr_prompt *fr_prompt_new(uv_loop_t *loop, fr_prompt_answer_fn answer, void *ud)
{
    fr_prompt *p = fr_xcalloc(1, sizeof *p);
    if (uv_tty_init(loop, &p->tty, STDIN_FILENO, 1) != 0) {
        free(p);
        return NULL;
    }
    p->tty.data = p;
    p->answer = answer;
    p->ud = ud;
    uv_tty_set_mode(&p->tty, UV_TTY_MODE_NORMAL); /* lines, echoed, as the user knows them */
    return p;
}

/* Whether questions may still be asked; see prompt.h. */
bool fr_prompt_open(const fr_prompt *p)
{
    return p && !p->eof && !p->closing;
}

/* Questions not answered yet; see prompt.h. */
size_t fr_prompt_waiting(const fr_prompt *p)
{
    return p ? p->n - p->head : 0;
}

static void hold_logs(fr_prompt *p)
{
    if (!p->held && (p->held = open_memstream(&p->held_mem, &p->held_size)))
        fr_log_set_stream(p->held);
}

static void release_logs(fr_prompt *p)
{
    if (!p->held)
        return;
    fr_log_set_stream(NULL);
    fclose(p->held);
    p->held = NULL;
    if (p->held_size)
        fwrite(p->held_mem, 1, p->held_size, stderr);
    free(p->held_mem);
    p->held_mem = NULL;
    p->held_size = 0;
}

/* Prints the first lines of `text`, each cut at PROMPT_WIDTH bytes (never
 * inside a UTF-8 sequence), and how many there are. */
static void print_output(const char *text)
{
    size_t lines = 0;
    for (const char *s = text; *s; lines++) {
        const char *eol = strchr(s, '\n');
        size_t n = eol ? (size_t)(eol - s) : strlen(s);
        if (lines < PROMPT_LINES) {
            size_t shown = n;
            if (shown > PROMPT_WIDTH) {
                shown = PROMPT_WIDTH;
                while (shown > 0 && ((unsigned char)s[shown] & 0xC0) == 0x80)
                    shown--;
            }
            fprintf(stderr, "  | %.*s%s\n", (int)shown, s, shown < n ? " ..." : "");
        }
        s += n + (eol ? 1 : 0);
    }
    if (lines > PROMPT_LINES)
        fprintf(stderr, "  | ... (%zu more lines)\n", lines - PROMPT_LINES);
    if (lines == 0)
        fprintf(stderr, "  | (empty)\n");
}

static void ask_again(const question *q)
{
    fprintf(stderr,
            "approve '%s'? a = approve, r = reject, optionally followed by a note: ", q->name);
    fflush(stderr);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)size;
    fr_prompt *p = h->data;
    *buf = uv_buf_init(p->buf, sizeof p->buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Shows the next question, or stops reading when none waits. */
static void show_next(fr_prompt *p)
{
    if (p->showing || p->closing)
        return;
    if (p->head == p->n || p->eof) {
        if (p->reading)
            uv_read_stop((uv_stream_t *)&p->tty);
        p->reading = false;
        release_logs(p);
        return;
    }
    const question *q = &p->q[p->head];
    p->showing = true;
    p->len = 0;
    hold_logs(p);
    fprintf(stderr, "\nflowrun: task '%s' succeeded and waits for approval; its output:\n",
            q->name);
    print_output(q->text);
    fprintf(stderr, "  whole output: %s\n", q->path);
    if (p->head + 1 < p->n)
        fprintf(stderr, "  (%zu more waiting after this one)\n", p->n - p->head - 1);
    ask_again(q);
    if (!p->reading && uv_read_start((uv_stream_t *)&p->tty, on_alloc, on_read) == 0)
        p->reading = true;
}

/* Takes the question on screen off the queue and gives its answer. */
static void answer_current(fr_prompt *p, fr_approval_state st, const char *note)
{
    question q = p->q[p->head++];
    p->showing = false;
    release_logs(p);
    p->answer(p->ud, q.task, st, note);
    free(q.name);
    free(q.text);
    free(q.path);
    show_next(p);
}

/* Reads one answer line: "a" / "approve" / "y" / "yes", or "r" / "reject" /
 * "n" / "no", then the note. Anything else asks again. */
static void take_line(fr_prompt *p)
{
    char *s = p->line;
    p->line[p->len] = '\0';
    p->len = 0;
    while (isspace((unsigned char)*s))
        s++;
    char *word = s;
    while (*s && !isspace((unsigned char)*s))
        s++;
    size_t wn = (size_t)(s - word);
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    const char *note = *s ? s : NULL;
#define IS(w) (wn == strlen(w) && strncasecmp(word, w, wn) == 0)
    if (IS("a") || IS("approve") || IS("y") || IS("yes"))
        answer_current(p, FR_APPROVAL_APPROVED, note);
    else if (IS("r") || IS("reject") || IS("n") || IS("no"))
        answer_current(p, FR_APPROVAL_REJECTED, note);
    else
        ask_again(&p->q[p->head]);
#undef IS
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fr_prompt *p = s->data;
    if (nread < 0) {
        /* End of input: nobody will answer here; every question waits in
         * the store instead. */
        uv_read_stop(s);
        p->reading = false;
        p->eof = true;
        fprintf(stderr, "\n");
        while (p->head < p->n && !p->closing) {
            p->showing = true; /* each question left gets its answer: none */
            answer_current(p, FR_APPROVAL_PENDING, NULL);
        }
        return;
    }
    for (ssize_t i = 0; i < nread && p->showing && !p->closing; i++) {
        char c = buf->base[i];
        if (c == '\n' || c == '\r')
            take_line(p);
        else if (p->len + 1 < sizeof p->line)
            p->line[p->len++] = c;
    }
}

/* Queues a question, shown when its turn comes; see prompt.h. */
void fr_prompt_ask(fr_prompt *p, size_t task, const char *name, const char *text, const char *path)
{
    if (p->head > 0 && p->head == p->n)
        p->head = p->n = 0;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4;
        p->q = fr_xrealloc(p->q, p->cap * sizeof *p->q);
    }
    p->q[p->n++] = (question){.task = task,
                              .name = fr_xstrdup(name),
                              .text = fr_xstrdup(text ? text : ""),
                              .path = fr_xstrdup(path ? path : "")};
    show_next(p);
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Stops asking and closes the terminal's handle; see prompt.h. */
void fr_prompt_close(fr_prompt *p)
{
    if (!p || p->closing)
        return;
    p->closing = true;
    if (p->reading)
        uv_read_stop((uv_stream_t *)&p->tty);
    release_logs(p);
    if (p->showing)
        fprintf(stderr, "\n");
    for (size_t i = p->head; i < p->n; i++) {
        free(p->q[i].name);
        free(p->q[i].text);
        free(p->q[i].path);
    }
    free(p->q);
    p->q = NULL;
    uv_tty_reset_mode();
    uv_close((uv_handle_t *)&p->tty, on_closed);
}
