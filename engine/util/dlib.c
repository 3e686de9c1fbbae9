#include "engine/util/dlib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Opens and looks up, under the lock: sets lib->state and lib->why. */
static void load_locked(fr_dlib *lib)
{
    void *h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(lib->why, sizeof lib->why, "%s", e ? e : "not found");
        lib->state = FR_ENOENT;
        return;
    }
    for (size_t i = 0; i < lib->nfns; i++) {
        (void)dlerror();
        void *p = dlsym(h, lib->fns[i].name);
        if (!p) {
            snprintf(lib->why, sizeof lib->why, "it has no function %s", lib->fns[i].name);
            dlclose(h);
            lib->state = FR_ENOENT;
            return;
        }
        *lib->fns[i].slot = p;
    }
    lib->state = 1; /* h stays open for the process's life */
}

int fr_dlib_load(fr_dlib *lib, fr_error *err)
{
    pthread_mutex_lock(&lock);
    if (lib->state <= 0) /* a failure may pass (no descriptor free): tried again */
        load_locked(lib);
    int state = lib->state;
    pthread_mutex_unlock(&lock);
    if (state == 1)
        return FR_OK;
    return fr_error_set(err, state, lib->soname, 0,
                        "cannot load %s (%s): %s need it; install Debian's %s package", lib->soname,
                        lib->why, lib->needed, lib->package);
}
