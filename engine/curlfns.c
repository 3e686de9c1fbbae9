#include "engine/curlfns.h"

#include "engine/util/dlib.h"

fr_curl_fns fr_curl;

#define FN(name) FR_DLIB_FN("curl_", fr_curl, name)
static const fr_dlib_fn fns[] = {
    FN(global_init),
    FN(multi_init),
    FN(multi_setopt),
    FN(multi_add_handle),
    FN(multi_remove_handle),
    FN(multi_cleanup),
    FN(multi_info_read),
    FN(multi_socket_action),
    FN(easy_init),
    FN(easy_setopt),
    FN(easy_getinfo),
    FN(easy_header),
    FN(easy_cleanup),
    FN(easy_strerror),
    FN(slist_append),
    FN(slist_free_all),
    FN(url),
    FN(url_cleanup),
    FN(url_set),
    FN(url_get),
    FN(free),
};
#undef FN

static fr_dlib lib = {.soname = "libcurl.so.4",
                      .package = "libcurl4",
                      .needed = "https:// endpoints, proxies and FLOWRUN_HTTP=curl",
                      .fns = fns,
                      .nfns = sizeof fns / sizeof *fns};

/* curl_global_init's answer, once (loop thread only, as curl asks). */
static int global_rc = 1; /* 1: not called yet */

int fr_curl_load(fr_error *err)
{
    int rc = fr_dlib_load(&lib, err);
    if (rc != FR_OK)
        return rc;
    if (global_rc == 1)
        global_rc = fr_curl.global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? FR_OK : FR_EINTERNAL;
    return global_rc == FR_OK ? FR_OK
                              : fr_error_set(err, FR_EINTERNAL, "libcurl", 0,
                                             "libcurl could not initialise (curl_global_init)");
}
