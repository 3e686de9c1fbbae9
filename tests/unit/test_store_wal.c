/* The write-ahead log's checkpoints apart from the writing connection
 * (engine/store/wal.c): once fr_store_checkpoint_apart is on, the store's
 * commits only count the log's frames and never copy them (SQLite would, in
 * the commit, past FR_STORE_CKPT_FRAMES); a checkpointer on a second
 * connection copies them, writers going on meanwhile, and the log starts
 * again from its beginning at the first commit after a checkpoint that left
 * nothing behind; nothing committed is lost on the way. */

#include "tests/unit/support/store_fixture.h"

/* A reply big enough that each commit of one cache entry adds pages. */
static char big_text[12000];

static void put_entry(fr_store *st, int i)
{
    if (!big_text[0]) {
        memset(big_text, 'x', sizeof big_text - 1);
        big_text[sizeof big_text - 1] = '\0';
    }
    fr_reply r = {.text = big_text, .model = "m"};
    char key[32];
    snprintf(key, sizeof key, "key-%d", i);
    assert_ok(fr_store_cache_put(st, key, "e1", &r, &e_));
}

/* Size of the log file of the database at `path`, in bytes. */
static long wal_bytes(const char *path)
{
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct stat sb;
    return stat(wal, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Commits entries one by one from `from` until the log holds more than
 * `frames` frames; returns the next entry's number. */
static int commit_past(fr_store *st, int from, long frames)
{
    int i = from;
    while (fr_store_wal_frames(st) <= frames) {
        put_entry(st, i++);
        assert_true(i - from < 100000);
    }
    return i;
}

static fr_store_ckpt *ckpt_ok(fr_store *st)
{
    fr_store_ckpt *c = NULL;
    assert_ok(fr_store_ckpt_open(st, &c, &e_));
    assert_non_null(c);
    return c;
}

/* The commits of a store whose checkpoints are apart never copy the log:
 * it grows past SQLite's automatic threshold, frame by frame. */
static void test_commits_leave_the_log_to_grow(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    assert_int_equal(fr_store_wal_frames(f->st), -1);
    fr_store_checkpoint_apart(f->st);
    assert_int_equal(fr_store_wal_frames(f->st), 0);
    int n = commit_past(f->st, 0, 2 * FR_STORE_CKPT_FRAMES);
    long frames = fr_store_wal_frames(f->st);
    assert_true(frames > 2 * FR_STORE_CKPT_FRAMES);
    /* The file holds every frame counted: none was copied and reused. */
    assert_true(wal_bytes(f->path) >= frames * 4096);
    /* Another connection reads all of it all the same. */
    assert_int_equal((long)raw_num(f->path, "SELECT count(*) FROM cache"), n);
}

/* Without it, as before: SQLite's commits checkpoint, and the log starts
 * again at about FR_STORE_CKPT_FRAMES. The contrast that shows the test
 * above measures what it says. */
static void test_sqlite_checkpoints_in_the_commit_by_default(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    for (int i = 0; i < 1500; i++)
        put_entry(f->st, i);
    assert_true(wal_bytes(f->path) < (FR_STORE_CKPT_FRAMES + 64) * 4200L);
    assert_int_equal((long)raw_num(f->path, "SELECT count(*) FROM cache"), 1500);
}

/* A checkpointer copies the log while the store's connection stays open;
 * the next commit starts the log again from its beginning. */
static void test_checkpoint_then_the_log_starts_again(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store_checkpoint_apart(f->st);
    int n = commit_past(f->st, 0, FR_STORE_CKPT_FRAMES);
    fr_store_ckpt *c = ckpt_ok(f->st);
    long log = -1, done = -1;
    assert_ok(fr_store_ckpt_run(c, 4, &log, &done, &e_));
    assert_int_equal(log, fr_store_wal_frames(f->st));
    assert_int_equal(done, log);
    put_entry(f->st, n++);
    assert_true(fr_store_wal_frames(f->st) < 50);
    assert_int_equal((long)raw_num(f->path, "SELECT count(*) FROM cache"), n);
    fr_store_ckpt_close(c);
}

static void on_pending(void *ud)
{
    (*(int *)ud)++;
}

/* A transaction open while a checkpoint catches up keeps its snapshot:
 * its commit appends to the log; the next checkpoint copies that, and the
 * commit after it starts the log again. What engine/walckpt's rule relies
 * on: another checkpoint while the log is long and not all copied. */
static void test_open_transaction_appends_until_the_next_checkpoint(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store_checkpoint_apart(f->st);
    int n = commit_past(f->st, 0, FR_STORE_CKPT_FRAMES);
    fr_store_ckpt *c = ckpt_ok(f->st);
    int opened = 0;
    fr_store_batch(f->st, on_pending, &opened);
    put_entry(f->st, n++); /* the turn's transaction is open now */
    assert_int_equal(opened, 1);
    long log = -1, done = -1;
    assert_ok(fr_store_ckpt_run(c, 4, &log, &done, &e_));
    assert_int_equal(done, log);
    assert_ok(fr_store_flush(f->st, &e_));
    long after = fr_store_wal_frames(f->st);
    assert_true(after > log); /* appended: the log did not start again */
    assert_ok(fr_store_ckpt_run(c, 4, &log, &done, &e_));
    assert_int_equal(log, after);
    assert_int_equal(done, after);
    put_entry(f->st, n++);
    assert_ok(fr_store_flush(f->st, &e_));
    assert_true(fr_store_wal_frames(f->st) < 50);
    fr_store_batch(f->st, NULL, NULL);
    assert_int_equal((long)raw_num(f->path, "SELECT count(*) FROM cache"), n);
    fr_store_ckpt_close(c);
}

/* Only a store written here has a checkpointer. */
static void test_no_checkpointer_for_a_read_only_store(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store_close(f->st);
    f->st = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open_readonly(f->path, &f->st, &err), FR_OK);
    fr_store_ckpt *c = (fr_store_ckpt *)&err;
    assert_int_equal(fr_store_ckpt_open(f->st, &c, &err), FR_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err.msg, "not written here"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_commits_leave_the_log_to_grow),
        STORE_TEST(test_sqlite_checkpoints_in_the_commit_by_default),
        STORE_TEST(test_checkpoint_then_the_log_starts_again),
        STORE_TEST(test_open_transaction_appends_until_the_next_checkpoint),
        STORE_TEST(test_no_checkpointer_for_a_read_only_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
