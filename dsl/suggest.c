/* Edit distance for did-you-mean suggestions. */

#include "dsl/suggest.h"

#include <ctype.h>
#include <string.h>

#define MAX_WORD 64

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Optimal string alignment distance (Levenshtein plus adjacent
 * transpositions), case-insensitive; both strings at most MAX_WORD long. */
static size_t distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t d[MAX_WORD + 1][MAX_WORD + 1];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca == cb ? 0 : 1;
            d[i][j] = min3(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < d[i][j])
                d[i][j] = d[i - 2][j - 2] + 1;
        }
    }
    return d[la][lb];
}

/*
 * Returns the closest of `cands` to `word`, or NULL when the best distance
 * is above the typo threshold (1 for names up to 4 characters, 2 up to 8, 3
 * beyond) or not smaller than the word itself. Ties go to the earlier
 * candidate. Borrows everything; returns a pointer into `cands`.
 */
const char *fr_suggest(const char *word, const char *const *cands, size_t n)
{
    size_t lw = strlen(word);
    if (lw == 0 || lw > MAX_WORD)
        return NULL;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (!cands[i])
            continue;
        size_t lc = strlen(cands[i]);
        if (lc == 0 || lc > MAX_WORD)
            continue;
        size_t d = distance(word, lw, cands[i], lc);
        size_t longest = lw > lc ? lw : lc;
        size_t limit = longest <= 4 ? 1 : longest <= 8 ? 2 : 3;
        if (d <= limit && d < lw && d < best_d) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}
