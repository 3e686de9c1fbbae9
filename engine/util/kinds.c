#include "engine/util/kinds.h"

#include <string.h>

static const char *const tiers[] = {"any", "local", "cloud"};
static const char *const protos[] = {"openai", "ollama", "anthropic"};

const char *fr_tier_name(fr_tier t)
{
    return (unsigned)t < 3 ? tiers[t] : "?";
}

const char *fr_protocol_name(fr_protocol p)
{
    return (unsigned)p < 3 ? protos[p] : "?";
}

int fr_tier_parse(const char *s, fr_tier *out)
{
    for (int i = 1; i < 3; i++)
        if (strcmp(s, tiers[i]) == 0) {
            *out = (fr_tier)i;
            return 0;
        }
    return -1;
}

int fr_protocol_parse(const char *s, fr_protocol *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, protos[i]) == 0) {
            *out = (fr_protocol)i;
            return 0;
        }
    return -1;
}
