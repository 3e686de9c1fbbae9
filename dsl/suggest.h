#pragma once
/* "Did you mean ...?" for the DSL's error messages: the closest candidate
 * by edit distance. Pure C; used by dsl/load and dsl/template. */

#include <stddef.h>

/* Returns the candidate of `cands` (borrowed array of `n` names) closest to
 * `word` (borrowed) by optimal-string-alignment distance, ignoring case, or
 * NULL when none is close enough to be a likely typo. The result is
 * borrowed from `cands`. NULL entries of `cands` are skipped. */
const char *fr_suggest(const char *word, const char *const *cands, size_t n);
