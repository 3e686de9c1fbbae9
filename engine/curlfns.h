#pragma once
/* libcurl, loaded at the first transfer plain HTTP cannot carry (https://,
 * a proxy, FLOWRUN_HTTP=curl: engine/http.c), not at the program's start
 * (engine/util/dlib.h). engine/http*.c call it through fr_curl. */

#include "engine/util/err.h"

#include <curl/curl.h>

/* The libcurl functions flowrun calls, each of curl's own type. */
typedef struct fr_curl_fns {
    __typeof__(curl_global_init) *global_init;
    __typeof__(curl_multi_init) *multi_init;
    __typeof__(curl_multi_setopt) *multi_setopt;
    __typeof__(curl_multi_add_handle) *multi_add_handle;
    __typeof__(curl_multi_remove_handle) *multi_remove_handle;
    __typeof__(curl_multi_cleanup) *multi_cleanup;
    __typeof__(curl_multi_info_read) *multi_info_read;
    __typeof__(curl_multi_socket_action) *multi_socket_action;
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_header) *easy_header;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_easy_strerror) *easy_strerror;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
    __typeof__(curl_url) *url;
    __typeof__(curl_url_cleanup) *url_cleanup;
    __typeof__(curl_url_set) *url_set;
    __typeof__(curl_url_get) *url_get;
    __typeof__(curl_free) *free;
} fr_curl_fns;

/* Set by fr_curl_load; NULL pointers before it succeeded. */
extern fr_curl_fns fr_curl;

/* Loads libcurl and initialises its global state, once per process (call
 * it from the loop thread before the first transfer through curl; later
 * calls answer as the first did). FR_OK, or FR_ENOENT (the library or one
 * of its functions missing: `err` says which package installs it) or
 * FR_EINTERNAL (curl_global_init failed). */
int fr_curl_load(fr_error *err);
