#include "engine/store/pqfns.h"

#include "engine/util/dlib.h"

fr_pq_fns fr_pq;

#define FN(name) FR_DLIB_FN("PQ", fr_pq, name)
static const fr_dlib_fn fns[] = {
    FN(clear),
    FN(cmdTuples),
    FN(connectPoll),
    FN(connectStartParams),
    FN(connectdbParams),
    FN(conninfoFree),
    FN(conninfoParse),
    FN(consumeInput),
    FN(enterPipelineMode),
    FN(errorMessage),
    FN(execParams),
    FN(finish),
    FN(flush),
    FN(fname),
    FN(freemem),
    FN(getResult),
    FN(getisnull),
    FN(getlength),
    FN(getvalue),
    FN(isBusy),
    FN(nfields),
    FN(notifies),
    FN(ntuples),
    FN(pipelineSync),
    FN(resultErrorField),
    FN(resultErrorMessage),
    FN(resultStatus),
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
    FN(sendPipelineSync),
#endif
    FN(sendQueryParams),
    FN(setNoticeProcessor),
    FN(setnonblocking),
    FN(socket),
    FN(status),
};
#undef FN

static fr_dlib lib = {.soname = "libpq.so.5",
                      .package = "libpq5",
                      .needed = "PostgreSQL state stores (--state postgresql://...)",
                      .fns = fns,
                      .nfns = sizeof fns / sizeof *fns};

int fr_pq_load(fr_error *err)
{
    return fr_dlib_load(&lib, err);
}
