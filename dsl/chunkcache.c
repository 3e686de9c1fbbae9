/* Compiled workflow files kept between runs; see chunkcache.h.
 *
 * A cache file is a header of five 64-bit words in the machine's order (the
 * magic, then the lengths of the chunk name, the text and the bytecode, then
 * the bytecode's FNV-1a), followed by the name, the text and the bytecode.
 * Lua's own header inside the bytecode checks its version and number
 * formats. Blocking file I/O: called while a workflow loads, before the loop
 * runs. */

#include "dsl/chunkcache.h"

#include "engine/util/buf.h"
#include "engine/util/fs.h"
#include "engine/util/hash.h"
#include "engine/util/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC UINT64_C(0x314b4e4843524625) /* "%FRCHNK1" read as little-endian */

enum { H_MAGIC, H_NAME, H_TEXT, H_CODE, H_SUM, H_WORDS };

/* Whether `st` is this user's and no one else may write it. */
static bool private_to_user(const struct stat *st)
{
    return st->st_uid == geteuid() && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* Whether `dir` (borrowed) is a folder, not a link, private to this user. */
static bool private_dir(const char *dir)
{
    struct stat st;
    return lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && private_to_user(&st);
}

/* Writes into `out` (PATH_MAX bytes) the cache file of the workflow at
 * `path` (borrowed), creating the cache's folders (0700) when `create`;
 * false when the cache is off, has no home, or a folder of it is not
 * private to this user. */
static bool cache_file(const char *path, bool create, char out[PATH_MAX])
{
    const char *off = getenv("FLOWRUN_CHUNK_CACHE");
    if (off && (strcmp(off, "0") == 0 || strcmp(off, "off") == 0))
        return false;
    char base[PATH_MAX], dir[PATH_MAX], real[PATH_MAX];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(base, sizeof base, "%s", xdg);
    else if (home && home[0] == '/')
        n = snprintf(base, sizeof base, "%s/.cache", home);
    else
        return false;
    if (n < 0 || (size_t)n >= sizeof base)
        return false;
    n = snprintf(dir, sizeof dir, "%s/flowrun/chunks", base);
    if (n < 0 || (size_t)n >= sizeof dir || !realpath(path, real))
        return false;
    if (create && !private_dir(dir)) {
        fr_error err = {0};
        if (fr_mkdir_p(dir, 0700, &err) != FR_OK)
            return false;
    }
    /* Each folder from the base down: one that others may write could have
     * the chunks folder swapped under it. */
    char flowrun[PATH_MAX];
    n = snprintf(flowrun, sizeof flowrun, "%s/flowrun", base);
    if (n < 0 || (size_t)n >= sizeof flowrun || !private_dir(base) || !private_dir(flowrun) ||
        !private_dir(dir))
        return false;
    uint64_t key = fr_fnv1a64(real, strlen(real), FR_FNV1A64_BASIS);
    n = snprintf(out, PATH_MAX, "%s/%016llx.chunk", dir, (unsigned long long)key);
    return n > 0 && n < PATH_MAX;
}

/* Reads exactly `n` bytes of `fd` into `p`. */
static bool read_all(int fd, void *p, size_t n)
{
    char *at = p;
    while (n > 0) {
        ssize_t r = read(fd, at, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        at += r;
        n -= (size_t)r;
    }
    return true;
}

/* Writes the `n` bytes at `p` to `fd`. */
static bool write_all(int fd, const void *p, size_t n)
{
    const char *at = p;
    while (n > 0) {
        ssize_t w = write(fd, at, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        at += w;
        n -= (size_t)w;
    }
    return true;
}

typedef struct {
    const char *p;
    size_t left;
} bc_reader;

static const char *read_bc(lua_State *L, void *ud, size_t *size)
{
    (void)L;
    bc_reader *r = ud;
    *size = r->left;
    r->left = 0;
    return *size ? r->p : NULL;
}

bool fr_chunkcache_load(lua_State *L, const char *path, const char *chunkname, const char *code,
                        size_t len)
{
    char file[PATH_MAX];
    if (len < FR_CHUNKCACHE_MIN || !cache_file(path, false, file))
        return false;
    bool ok = false;
    char *rest = NULL;
    int fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        goto cleanup; /* not kept yet */
    struct stat st;
    uint64_t h[H_WORDS];
    size_t name_len = strlen(chunkname);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !private_to_user(&st) ||
        !read_all(fd, h, sizeof h) || h[H_MAGIC] != MAGIC || h[H_NAME] != name_len ||
        h[H_TEXT] != len || h[H_CODE] == 0 || h[H_CODE] > (uint64_t)st.st_size ||
        (uint64_t)st.st_size != sizeof h + name_len + len + h[H_CODE])
        goto cleanup;
    size_t code_len = (size_t)h[H_CODE], n = name_len + len + code_len;
    rest = malloc(n);
    if (!rest || !read_all(fd, rest, n) || memcmp(rest, chunkname, name_len) != 0 ||
        memcmp(rest + name_len, code, len) != 0)
        goto cleanup;
    const char *bc = rest + name_len + len;
    if (fr_fnv1a64(bc, code_len, FR_FNV1A64_BASIS) != h[H_SUM])
        goto cleanup;
    bc_reader rd = {.p = bc, .left = code_len};
    if (!lua_checkstack(L, 1))
        goto cleanup;
    if (lua_load(L, read_bc, &rd, chunkname, "b") != LUA_OK) {
        lua_pop(L, 1);
        goto cleanup;
    }
    ok = true;
    /* Used now: the pruning removes the least recently used first. */
    futimens(fd, NULL);
cleanup:
    if (fd >= 0)
        close(fd);
    free(rest);
    fr_log(FR_LOG_DEBUG, "dsl", "chunk cache %s for %s", ok ? "hit" : "miss", path);
    return ok;
}

typedef struct {
    char name[32];
    struct timespec mtime;
} kept_file;

static int older_first(const void *a, const void *b)
{
    const struct timespec *x = &((const kept_file *)a)->mtime, *y = &((const kept_file *)b)->mtime;
    if (x->tv_sec != y->tv_sec)
        return x->tv_sec < y->tv_sec ? -1 : 1;
    return x->tv_nsec < y->tv_nsec ? -1 : x->tv_nsec > y->tv_nsec;
}

/* Removes the least recently used files (loaded or written: their mtime)
 * of the cache folder of `file` (borrowed, just written: never removed)
 * past FR_CHUNKCACHE_FILES. */
static void prune(const char *file)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(file, '/');
    if (!slash || (size_t)(slash - file) >= sizeof dir)
        return;
    memcpy(dir, file, (size_t)(slash - file));
    dir[slash - file] = '\0';
    DIR *d = opendir(dir);
    if (!d)
        return;
    kept_file *files = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        struct stat st;
        if (len != 22 || strcmp(e->d_name + 16, ".chunk") != 0 ||
            strcmp(e->d_name, slash + 1) == 0 ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            kept_file *more = realloc(files, cap * sizeof *files);
            if (!more)
                break;
            files = more;
        }
        memcpy(files[n].name, e->d_name, len + 1);
        files[n++].mtime = st.st_mtim;
    }
    /* The file just written is one of the FR_CHUNKCACHE_FILES kept. */
    if (n + 1 > FR_CHUNKCACHE_FILES) {
        qsort(files, n, sizeof *files, older_first);
        for (size_t i = 0; i < n + 1 - FR_CHUNKCACHE_FILES; i++)
            unlinkat(dirfd(d), files[i].name, 0);
    }
    free(files);
    closedir(d);
}

static int dump_to(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    return fr_buf_append(ud, p, n) == FR_OK ? 0 : 1;
}

void fr_chunkcache_store(lua_State *L, const char *path, const char *chunkname, const char *code,
                         size_t len)
{
    char file[PATH_MAX], tmp[PATH_MAX + 32];
    if (len < FR_CHUNKCACHE_MIN || !lua_isfunction(L, -1) || !cache_file(path, true, file))
        return;
    fr_buf bc;
    fr_buf_init(&bc, 0);
    int fd = -1;
    bool ok = false;
    /* Not stripped: errors keep their lines. */
    if (lua_dump(L, dump_to, &bc, 0) != 0 || bc.len == 0)
        goto cleanup;
    size_t name_len = strlen(chunkname);
    uint64_t h[H_WORDS] = {
        [H_MAGIC] = MAGIC,
        [H_NAME] = name_len,
        [H_TEXT] = len,
        [H_CODE] = bc.len,
        [H_SUM] = fr_fnv1a64(bc.data, bc.len, FR_FNV1A64_BASIS),
    };
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", file, (long)getpid());
    unlink(tmp); /* left by an earlier process of this id that died writing it */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        goto cleanup;
    ok = write_all(fd, h, sizeof h) && write_all(fd, chunkname, name_len) &&
         write_all(fd, code, len) && write_all(fd, bc.data, bc.len);
    ok = close(fd) == 0 && ok;
    fd = -1;
    ok = ok && rename(tmp, file) == 0;
    if (!ok)
        unlink(tmp);
    else
        prune(file);
cleanup:
    if (fd >= 0)
        close(fd);
    fr_buf_close(&bc);
    fr_log(FR_LOG_DEBUG, "dsl", "chunk cache %s for %s", ok ? "kept" : "not kept", path);
}
