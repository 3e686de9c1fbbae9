#pragma once
/* Shared libraries opened when first needed (dlopen), not linked: a run
 * that never uses one (libcurl past plain http://, libpq past SQLite) does
 * not pay at its start for loading it and its dependencies: about 5 ms of
 * CPU and 6 MB of memory for libcurl's and libpq's 30 libraries. */

#include "engine/util/err.h"

#include <stddef.h>

/* One function to look up: its name and the function pointer it sets
 * (the address of a variable of its type, as void **). */
typedef struct fr_dlib_fn {
    const char *name;
    void **slot;
} fr_dlib_fn;

/* The fr_dlib_fn of function `prefix name` (string literals) into member
 * `name` of `table`, a struct of function pointers. */
#define FR_DLIB_FN(prefix, table, name)                                                            \
    {                                                                                              \
        prefix #name, (void **)&(table).name                                                       \
    }

/* A library and what it provides, loaded once by fr_dlib_load. */
typedef struct fr_dlib {
    const char *soname;  /* "libcurl.so.4" */
    const char *package; /* the Debian package that installs it, for the error */
    const char *needed;  /* what needs it, for the error: "https:// endpoints" */
    const fr_dlib_fn *fns;
    size_t nfns;
    /* set by fr_dlib_load: */
    int state; /* 0 not tried, 1 loaded, < 0 the fr_err of the last failed try */
    char why[256];
} fr_dlib;

/* Opens lib->soname and sets every function of lib->fns, once per process
 * (thread-safe); after a failure a later call tries again (the process may
 * have been out of descriptors). The library stays
 * loaded until the process exits. FR_OK, or FR_ENOENT with `err` naming the
 * library, what needs it and the package that installs it (dlopen's or
 * dlsym's reason included): a missing function refuses the whole library. */
int fr_dlib_load(fr_dlib *lib, fr_error *err);
