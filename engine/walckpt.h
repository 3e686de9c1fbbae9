#pragma once
/* The state store's checkpoints off the loop: the store's commits on the
 * loop only count the write-ahead log's frames (fr_store_checkpoint_apart),
 * and once the log has gained FR_STORE_CKPT_FRAMES since the last
 * checkpoint, one runs in libuv's thread pool on a connection of its own
 * (fr_store_ckpt): the page copies and the fdatasyncs SQLite would make
 * inside a commit on the loop's thread happen beside it. One at a time; the
 * loop runs until it ends. Owned by engine/booking; it reaches the store
 * (engine/store/store.h) and nothing else. */

#include "engine/store/store.h"
#include "engine/util/err.h"

#include <stdbool.h>
#include <uv.h>

typedef struct fr_walckpt fr_walckpt;

/* What the checkpoints did, for the log and the tests. */
typedef struct fr_walckpt_stats {
    long runs;     /* checkpoints run in the pool */
    long on_loop;  /* made on the loop instead: the log had reached FR_STORE_WAL_LIMIT */
    long most;     /* the most frames the log held after a commit */
    long restarts; /* commits seen to start the log again (each syncs its new header) */
    long failed;   /* checkpoints that failed (each logged) */
} fr_walckpt_stats;

/* Takes over the checkpoints of `st` (borrowed: it outlives the result) on
 * `loop` (borrowed) into `*out` (owned by the caller: fr_walckpt_close).
 * FR_OK, or what fr_store_ckpt_open returned (`err` set): then `st` goes on
 * checkpointing after its commits as before, and `*out` is NULL. */
int fr_walckpt_open(uv_loop_t *loop, fr_store *st, fr_walckpt **out, fr_error *err);

/* Called on the loop after the store committed, with no transaction
 * open: queues a checkpoint when the log holds FR_STORE_CKPT_FRAMES frames
 * or more, some not yet copied, and none runs. A commit whose transaction
 * was open when a checkpoint caught up appends to the log rather than
 * starting it again, so checkpoints follow one another while the log is
 * that long, until one ends between two transactions and the next commit
 * starts the log again. Should the log reach FR_STORE_WAL_LIMIT frames all
 * the same (commits faster than the pool copies), this call copies what is
 * left itself, on the loop, once no checkpoint runs: the log's bound, at
 * the cost of that turn, as SQLite's own checkpoints in the commit. NULL
 * is fine. */
void fr_walckpt_committed(fr_walckpt *w);

/* True while a checkpoint is queued or runs. NULL: false. */
bool fr_walckpt_busy(const fr_walckpt *w);

/* Fills `out` with w's counters (zeros for NULL). */
void fr_walckpt_stats_get(const fr_walckpt *w, fr_walckpt_stats *out);

/* Closes the checkpointer; NULL is fine. The loop has run to its end, so no
 * checkpoint runs; should one still (a loop stopped early), it waits for its
 * pass to end and leaves the memory to it. Before fr_store_close of its
 * store. */
void fr_walckpt_close(fr_walckpt *w);
