/* flowrun-guard: the guard alone (engine/guard.h), libc only, so that the
 * children flowrun starts do not wait for flowrun's libraries to load. */
#include "engine/guard.h"

int main(int argc, char **argv)
{
    return fr_guard_main(argc, argv);
}
