#pragma once
/* A map from names to indexes (open addressing over FNV-1a, engine/util/hash),
 * for lookups by name that must not scan: the loader's duplicate and
 * dependency checks (dsl/decl.c, dsl/load.c). Keys are borrowed. */

#include <stddef.h>

typedef struct fr_strmap fr_strmap;

/* Returns an empty map (owned; fr_strmap_free) sized for about `hint` keys;
 * it grows as needed. */
fr_strmap *fr_strmap_new(size_t hint);
/* Frees the map, not the keys; NULL is fine. */
void fr_strmap_free(fr_strmap *m);

/* Maps `key` (borrowed: it must stay valid and unchanged while in the map)
 * to `value`, unless `key` is already there: returns the value it already
 * had (the map unchanged), or -1 when it was added. */
long fr_strmap_put(fr_strmap *m, const char *key, size_t value);
/* Returns the value of `key` (borrowed), or -1 when absent. */
long fr_strmap_get(const fr_strmap *m, const char *key);
