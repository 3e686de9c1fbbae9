#include "engine/util/fdlimit.h"

#include <errno.h>
#include <limits.h>
#include <sys/resource.h>

#define FD_RAISE_MAX 1048576L

long fr_fd_raise_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY || want > (rlim_t)FD_RAISE_MAX)
        want = (rlim_t)FD_RAISE_MAX;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        struct rlimit up = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = want;
    }
    return fr_fd_limit();
}

long fr_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t)LONG_MAX)
        return LONG_MAX;
    return (long)rl.rlim_cur;
}

int fr_fd_transfer_cap(long limit)
{
    if (limit <= 0)
        return 0;
    long n = (limit - FR_FD_RESERVE) / FR_FD_PER_TRANSFER;
    if (n < 1)
        n = 1;
    return n > INT_MAX ? INT_MAX : (int)n;
}

bool fr_fd_exhausted(int err)
{
    return err == EMFILE || err == ENFILE;
}
