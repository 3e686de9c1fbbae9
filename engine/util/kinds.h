#pragma once
/* Small enums shared by every layer: the tier of an endpoint and the wire
 * protocol it speaks, with their names as written in workflow files. */

typedef enum { FR_TIER_ANY = 0, FR_TIER_LOCAL, FR_TIER_CLOUD } fr_tier;
typedef enum { FR_PROTO_OPENAI = 0, FR_PROTO_OLLAMA, FR_PROTO_ANTHROPIC } fr_protocol;

/* Return static names: "any"/"local"/"cloud", "openai"/"ollama"/"anthropic". */
const char *fr_tier_name(fr_tier t);
const char *fr_protocol_name(fr_protocol p);
/* Parse a name; return 0 and set *out, or -1 if the name is unknown. */
int fr_tier_parse(const char *s, fr_tier *out);
int fr_protocol_parse(const char *s, fr_protocol *out);
