#pragma once
/* libpq, loaded when a PostgreSQL store is first opened (fr_pgconn_open,
 * fr_pgread_open), not at the program's start (engine/util/dlib.h):
 * engine/store/pgconn.c and pgread.c call it through fr_pq. */

#include "engine/util/err.h"

#include <libpq-fe.h>

/* The libpq functions flowrun calls, each of libpq's own type. */
typedef struct fr_pq_fns {
    __typeof__(PQclear) *clear;
    __typeof__(PQcmdTuples) *cmdTuples;
    __typeof__(PQconnectPoll) *connectPoll;
    __typeof__(PQconnectStartParams) *connectStartParams;
    __typeof__(PQconnectdbParams) *connectdbParams;
    __typeof__(PQconninfoFree) *conninfoFree;
    __typeof__(PQconninfoParse) *conninfoParse;
    __typeof__(PQconsumeInput) *consumeInput;
    __typeof__(PQenterPipelineMode) *enterPipelineMode;
    __typeof__(PQerrorMessage) *errorMessage;
    __typeof__(PQexecParams) *execParams;
    __typeof__(PQfinish) *finish;
    __typeof__(PQflush) *flush;
    __typeof__(PQfname) *fname;
    __typeof__(PQfreemem) *freemem;
    __typeof__(PQgetResult) *getResult;
    __typeof__(PQgetisnull) *getisnull;
    __typeof__(PQgetlength) *getlength;
    __typeof__(PQgetvalue) *getvalue;
    __typeof__(PQisBusy) *isBusy;
    __typeof__(PQnfields) *nfields;
    __typeof__(PQnotifies) *notifies;
    __typeof__(PQntuples) *ntuples;
    __typeof__(PQpipelineSync) *pipelineSync;
    __typeof__(PQresultErrorField) *resultErrorField;
    __typeof__(PQresultErrorMessage) *resultErrorMessage;
    __typeof__(PQresultStatus) *resultStatus;
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC /* libpq 17 */
    __typeof__(PQsendPipelineSync) *sendPipelineSync;
#endif
    __typeof__(PQsendQueryParams) *sendQueryParams;
    __typeof__(PQsetNoticeProcessor) *setNoticeProcessor;
    __typeof__(PQsetnonblocking) *setnonblocking;
    __typeof__(PQsocket) *socket;
    __typeof__(PQstatus) *status;
} fr_pq_fns;

/* Set by fr_pq_load; NULL pointers before it succeeded. */
extern fr_pq_fns fr_pq;

/* Loads libpq, once per process (thread-safe; later calls answer as the
 * first did). FR_OK, or FR_ENOENT (the library or one of its functions
 * missing: `err` says which package installs it). */
int fr_pq_load(fr_error *err);
