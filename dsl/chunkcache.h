#pragma once
/* Compiled workflow files kept between runs: Lua's compiler takes 87 M
 * instructions for a workflow of 5,000 tasks (714 KB), where loading the
 * same chunk compiled is 4.5 M. A file of FR_CHUNKCACHE_MIN bytes or more is
 * kept compiled, with a copy of its text, in $XDG_CACHE_HOME/flowrun/chunks
 * (else ~/.cache/flowrun/chunks), one file per workflow path. Bytecode can
 * break out of the sandbox, so only a file this user wrote in a folder only
 * this user can write is read, and only when its copy of the text equals
 * the text read now byte for byte, its chunk name is the same and its
 * bytecode's checksum holds; anything else is compiled from the text again.
 * FLOWRUN_CHUNK_CACHE=0 turns it off. Every failure is silent: the cache only
 * ever saves time. */

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

/* Smaller files compile in under 3 ms: they are not kept. */
#define FR_CHUNKCACHE_MIN 65536
/* The files kept at most: keeping one more removes the least recently
 * used, loaded or written (a workflow used again compiles once more and is
 * kept again). */
#define FR_CHUNKCACHE_FILES 32

/* Pushes the compiled chunk of the `len` bytes of `code` read from the file
 * at `path`, to be named `chunkname` (all borrowed), when the cache holds
 * it: returns true with the function on L's stack [-0, +1], its upvalues as
 * lua_load leaves them. False with nothing pushed when it does not. */
bool fr_chunkcache_load(lua_State *L, const char *path, const char *chunkname, const char *code,
                        size_t len);

/* Keeps the function on top of L's stack (left there), compiled from the
 * `len` bytes of `code` of the file at `path` as `chunkname` (all
 * borrowed), for the next load of that file. Written to a new file renamed
 * over the old, so a reader sees the old one or the new one whole; a
 * failure leaves the cache as it was. Then the least recently used files
 * past FR_CHUNKCACHE_FILES are removed (a load that uses a file marks it
 * used). */
void fr_chunkcache_store(lua_State *L, const char *path, const char *chunkname, const char *code,
                         size_t len);
