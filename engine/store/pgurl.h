#pragma once
/* The passwords of a PostgreSQL connection string masked, for every
 * message that names a database: engine/store/pgconn and the PostgreSQL
 * backend use it. Talks to nothing. */

#include <stdbool.h>

/* Returns an owned copy of the connection string `url` (borrowed) with each
 * password replaced by "***": a URI's user:password@ and password=
 * parameter (its name percent-decoded, as libpq reads it), a key=value
 * string's password= (quoted or not), and inside a dbname= that is itself a
 * URI or key=value string. Text it cannot parse from some point on is
 * masked from there; text that would read differently once masked (a
 * masked value held the '/' where a URI's user info would end) becomes its
 * scheme and "***" alone. Masking what it returns changes nothing. NULL
 * gives NULL. */
char *fr_pgurl_mask(const char *url);

/* True when `state` (borrowed, may be NULL) names a PostgreSQL database
 * rather than a folder: a URI that starts "postgresql://" or
 * "postgres://", as `--state` and $FLOWRUN_STATE take it. */
bool fr_pgurl_is_url(const char *state);

/* The PostgreSQL URL a command's state names (borrowed from the argument
 * or the environment): `state_dir` (its --state, may be NULL) when it is
 * one, else $FLOWRUN_STATE when --state is not given and that is one; NULL
 * when the state is a folder. */
const char *fr_pgurl_state(const char *state_dir);
