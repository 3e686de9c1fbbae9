/* A request made into an easy handle's settings (engine/http_int.h): the
 * URL checked once, the header list (wiped when freed: it carries the key),
 * what a reused handle must be set again, and the wait a reply asked for. */
#include "engine/http_int.h"

#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <ctype.h>
#include <math.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Frees a header list, wiping each line first: the credential headers carry
 * the API key. */
void fr_http_free_headers(struct curl_slist *list)
{
    for (struct curl_slist *l = list; l; l = l->next)
        fr_wipe(l->data, strlen(l->data));
    fr_curl.slist_free_all(list);
}

static bool check_url(const char *url)
{
    bool ok = false;
    char *scheme = NULL;
    CURLU *u = fr_curl.url();
    if (!u)
        goto cleanup;
    if (fr_curl.url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto cleanup;
    if (fr_curl.url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        goto cleanup;
    ok = strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0;
cleanup:
    fr_curl.free(scheme);
    fr_curl.url_cleanup(u);
    return ok;
}

/* True for an http or https URL. Sets *cached (borrowed, lives as long as
 * h) to the remembered copy of `url` when there is one, else NULL: a run
 * sends to a few URLs many times, and each is parsed here once. */
bool fr_http_valid_url(fr_http *h, const char *url, const char **cached)
{
    *cached = NULL;
    if (!url || !url[0])
        return false;
    for (size_t i = 0; i < h->nurls; i++) {
        if (strcmp(h->urls[i], url) == 0) {
            *cached = h->urls[i];
            return true;
        }
    }
    if (!check_url(url))
        return false;
    if (h->nurls < URL_CACHE_MAX)
        *cached = h->urls[h->nurls++] = fr_xstrdup(url);
    return true;
}

/* A header line must be "Name: value" on one line: no CR or LF smuggling. */
bool fr_http_valid_header(const char *line)
{
    if (!line)
        return false;
    const char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return false;
    for (const char *p = line; p < colon; p++)
        if (*p == ' ' || *p == '\t')
            return false;
    return strpbrk(line, "\r\n") == NULL;
}

bool fr_http_has_header(const fr_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++)
        if (strncasecmp(req->headers[i], name, n) == 0 && req->headers[i][n] == ':')
            return true;
    return false;
}

int fr_http_build_headers(const fr_request *req, struct curl_slist **out)
{
    struct curl_slist *list = NULL, *next;
    int rc = FR_ENOMEM;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!(next = fr_curl.slist_append(list, req->headers[i])))
            goto cleanup;
        list = next;
    }
    /* The body is JSON; without this curl would label it a form. */
    if (!fr_http_has_header(req, "Content-Type")) {
        if (!(next = fr_curl.slist_append(list, "Content-Type: application/json")))
            goto cleanup;
        list = next;
    }
    /* An empty value removes the header curl would add: no 100-continue round trip. */
    if (!(next = fr_curl.slist_append(list, "Expect:")))
        goto cleanup;
    list = next;
    *out = list;
    list = NULL;
    rc = FR_OK;
cleanup:
    fr_http_free_headers(list);
    return rc;
}

int fr_http_curl_rc(CURLcode cc)
{
    if (cc == CURLE_OUT_OF_MEMORY)
        return FR_ENOMEM;
    return cc == CURLE_OK ? FR_OK : FR_EINVAL;
}

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = fr_curl.easy_setopt(e, opt, val);                                                 \
    } while (0)

/* Sets what this request has of its own, and of what a reused handle was
 * set to only what differs: the URL (`cached`, from valid_url, or NULL),
 * headers and body always, the method, the connect timeout, the reply cap. */
int fr_http_setup_easy(fr_xfer *x, const fr_request *req, const char *cached, size_t body_len,
                       long connect_ms)
{
    CURL *e = x->easy;
    easy_set *set = &x->set;
    CURLcode cc = CURLE_OK;
    if (!cached || set->url != cached)
        SET(CURLOPT_URL, req->url);
    if (cc == CURLE_OK)
        set->url = cached;
    SET(CURLOPT_HTTPHEADER, x->headers);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    SET(CURLOPT_POSTFIELDS, x->body);
    if (x->method[0] || set->custom_method) {
        SET(CURLOPT_CUSTOMREQUEST, x->method[0] ? x->method : NULL);
        set->custom_method = x->method[0] != '\0';
    }
    if (set->connect_ms != connect_ms) {
        SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
        set->connect_ms = connect_ms;
    }
    if (set->max_response != x->max_response) {
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_response);
        set->max_response = x->max_response;
    }
    if (cc != CURLE_OK)
        *set = (easy_set){.connect_ms = -1}; /* set it all again next time */
    return fr_http_curl_rc(cc);
}
#undef SET

static double parse_retry_after(const char *v);

/* The wait the server asked for: retry-after-ms when it sent a valid one
 * (it is the more precise), else Retry-After; -1 when neither. */
double fr_http_retry_after_s(const fr_xfer *x)
{
    return fr_http_retry_after_parse(x->retry_after, x->retry_after_ms);
}

/* From the raw values ("" when absent), for both paths. */
double fr_http_retry_after_parse(const char *retry_after, const char *retry_after_ms)
{
    if (retry_after_ms[0] && isdigit((unsigned char)retry_after_ms[0])) {
        char *end = NULL;
        double ms = strtod(retry_after_ms, &end);
        if (*end == '\0' && isfinite(ms) && ms >= 0)
            return ms / 1000.0;
    }
    return parse_retry_after(retry_after);
}

/* The month of a three-letter name ("Jan" 0 .. "Dec" 11), or -1. */
static int month_of(const char *m)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (strncmp(m, names + 3 * i, 3) == 0 && m[3] == '\0')
            return i;
    return -1;
}

/* An HTTP date (RFC 9110 5.6.7) as Unix time, or -1: the IMF-fixdate
 * "Sun, 06 Nov 1994 08:49:37 GMT" and the obsolete RFC 850
 * ("Sunday, 06-Nov-94 08:49:37 GMT") and asctime ("Sun Nov  6 08:49:37
 * 1994") forms a recipient must accept. */
time_t fr_http_date_parse(const char *v)
{
    char wday[16], mon[4], zone[4];
    int day, year, hh, mm, ss, n = 0;
    struct tm tm = {0};
    if (sscanf(v, "%15[A-Za-z], %2d %3s %4d %2d:%2d:%2d %3s%n", wday, &day, mon, &year, &hh, &mm,
               &ss, zone, &n) == 8 &&
        strlen(wday) == 3) {
        /* IMF-fixdate */
    } else if (sscanf(v, "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d %3s%n", wday, &day, mon, &year, &hh,
                      &mm, &ss, zone, &n) == 8) {
        mon[3] = '\0';
        year += year < 70 ? 2000 : 1900; /* RFC 850's two digits */
    } else if (sscanf(v, "%3[A-Za-z] %3s %2d %2d:%2d:%2d %4d%n", wday, mon, &day, &hh, &mm, &ss,
                      &year, &n) == 7) {
        snprintf(zone, sizeof zone, "GMT"); /* asctime's is UTC */
    } else {
        return (time_t)-1;
    }
    while (v[n] == ' ' || v[n] == '\t')
        n++;
    tm.tm_mon = month_of(mon);
    if (v[n] || strcmp(zone, "GMT") != 0 || tm.tm_mon < 0 || day < 1 || day > 31 || hh > 23 ||
        mm > 59 || ss > 60 || year < 1970)
        return (time_t)-1;
    tm.tm_mday = day;
    tm.tm_year = year - 1900;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    return timegm(&tm);
}

/* Retry-After is delta-seconds or an HTTP date; returns seconds from now
 * (0 for a date in the past), or -1 when absent or unreadable. */
static double parse_retry_after(const char *v)
{
    if (!v[0])
        return -1;
    if (isdigit((unsigned char)v[0])) {
        char *end = NULL;
        double d = strtod(v, &end);
        while (*end == ' ' || *end == '\t')
            end++;
        return (*end == '\0' && isfinite(d) && d >= 0) ? d : -1;
    }
    time_t when = fr_http_date_parse(v);
    if (when == (time_t)-1)
        return -1;
    double d = difftime(when, time(NULL));
    return d > 0 ? d : 0;
}
