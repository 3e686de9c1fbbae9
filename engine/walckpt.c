#include "engine/walckpt.h"

#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <pthread.h>
#include <stdlib.h>

/* Passes one checkpoint makes at most while commits keep adding frames. */
#define PASSES 2

struct fr_walckpt {
    uv_loop_t *loop;
    fr_store *st;
    fr_store_ckpt *ckpt;
    uv_work_t work;
    bool queued;          /* a checkpoint is queued or runs (its after-callback is due) */
    bool orphaned;        /* closed meanwhile: the after-callback frees */
    long base;            /* frames checkpointed by the last one, of the log as it was */
    long last;            /* the log's frames after the last commit */
    long queued_restarts; /* stats.restarts when the checkpoint was queued */
    fr_walckpt_stats stats;
    /* What the pool's pass hands back (written there, read on the loop
     * after it): */
    long log, done;
    int rc;
    fr_error err;
    /* The pass's end, for a close that finds it running: */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running;
};

/* In the pool: the checkpoint's passes on the checkpointer's connection. */
static void on_work(uv_work_t *req)
{
    fr_walckpt *w = req->data;
    w->rc = fr_store_ckpt_run(w->ckpt, PASSES, &w->log, &w->done, &w->err);
    pthread_mutex_lock(&w->mu);
    w->running = false;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void walckpt_free(fr_walckpt *w)
{
    fr_store_ckpt_close(w->ckpt);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

/* Logs a checkpoint that failed (`status` a libuv error, else `err`). The
 * log keeps its frames: the next checkpoint due, or the store's close,
 * copies them. Nothing is lost. */
static void log_failure(fr_walckpt *w, const fr_error *err, const char *status)
{
    char msg[1400];
    w->stats.failed++;
    fr_log_event(FR_LOG_WARN, "store", "store.checkpoint_failed", "error=\"%s\"",
                 status ? status : fr_error_format(err, msg, sizeof msg));
}

/* Back on the loop. */
static void on_done(uv_work_t *req, int status)
{
    fr_walckpt *w = req->data;
    w->queued = false;
    if (w->orphaned) {
        walckpt_free(w);
        return;
    }
    w->stats.runs++;
    if (status != 0 || w->rc != FR_OK) {
        log_failure(w, &w->err, status != 0 ? uv_strerror(status) : NULL);
        return;
    }
    /* A log started again while the pass ran: what it copied may be of the
     * old log, more than the new one holds. */
    w->base = w->stats.restarts == w->queued_restarts ? w->done : 0;
    fr_log_event(FR_LOG_DEBUG, "store", "store.checkpoint", "log=%ld done=%ld", w->log, w->done);
}

int fr_walckpt_open(uv_loop_t *loop, fr_store *st, fr_walckpt **out, fr_error *err)
{
    *out = NULL;
    fr_store_ckpt *c = NULL;
    int rc = fr_store_ckpt_open(st, &c, err);
    if (rc != FR_OK)
        return rc;
    fr_walckpt *w = fr_xcalloc(1, sizeof *w);
    w->loop = loop;
    w->st = st;
    w->ckpt = c;
    w->work.data = w;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    fr_store_checkpoint_apart(st);
    *out = w;
    return FR_OK;
}

void fr_walckpt_committed(fr_walckpt *w)
{
    if (!w)
        return;
    long frames = fr_store_wal_frames(w->st);
    if (frames > w->stats.most)
        w->stats.most = frames;
    /* Between two starts the log only grows: fewer frames than after the
     * last commit, and this commit started it again from its beginning. */
    if (frames < w->last) {
        w->base = 0;
        w->stats.restarts++;
    }
    w->last = frames;
    if (w->queued || frames < FR_STORE_CKPT_FRAMES || frames <= w->base)
        return;
    if (frames >= FR_STORE_WAL_LIMIT) {
        /* Commits come faster than the pool copies them: this turn copies
         * what is left (since the pool's last checkpoint) right after its
         * commit, so the next commit starts the log again, as SQLite does
         * in every commit past its threshold. The log's bound. */
        long log = 0, done = 0;
        fr_error err = {0};
        int rc = fr_store_checkpoint(w->st, &log, &done, &err);
        w->stats.on_loop++;
        if (rc != FR_OK)
            log_failure(w, &err, NULL);
        else
            w->base = done;
        return;
    }
    w->running = true; /* no pass runs now: no lock needed to start one */
    if (uv_queue_work(w->loop, &w->work, on_work, on_done) != 0) {
        w->running = false;
        return; /* asked again after the next commit */
    }
    w->queued = true;
    w->queued_restarts = w->stats.restarts;
}

bool fr_walckpt_busy(const fr_walckpt *w)
{
    return w && w->queued;
}

void fr_walckpt_stats_get(const fr_walckpt *w, fr_walckpt_stats *out)
{
    *out = w ? w->stats : (fr_walckpt_stats){0};
}

void fr_walckpt_close(fr_walckpt *w)
{
    if (!w)
        return;
    if (!w->queued) {
        walckpt_free(w);
        return;
    }
    /* The loop stopped with a checkpoint queued: wait for its pass (this
     * runs after the loop, where waiting blocks nothing), then leave w to
     * the after-callback, should the loop run again. */
    pthread_mutex_lock(&w->mu);
    while (w->running)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    fr_store_ckpt_close(w->ckpt);
    w->ckpt = NULL;
    w->orphaned = true;
}
