/* libFuzzer target for engine/util/jscan, the path scanner of stream
 * events.
 *
 * Input: one JSON text (any bytes). The scanner walks all of it, building
 * a jansson tree from what it reads (strings through fr_jscan_unescape,
 * whole numbers from `i`, reals from their text).
 *
 * Invariants: when the scan ends well (fr_jscan_done), json_loadb(text, n,
 * 0) accepts the text and its tree equals the scanner's (json_equal; a key
 * named twice keeps its last value in both); when json_loadb rejects the
 * text, the scan went bad. Every split point of a stream's events is fed
 * through the adapters' targets (fuzz_openai and its neighbours), which
 * compare the scanner's reading of a reply with the tree code's. */

#include "engine/util/jscan.h"
#include "tests/unit/support/jscan_tree.h"
#include "tests/unit/support/split.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by libFuzzer once per input: `data` (borrowed, `size` bytes), the
 * text. Returns 0; a broken invariant aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FUZZ_CHECK(jscan_against_jansson((const char *)data, size) != -1);
    return 0;
}
