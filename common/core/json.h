/*
 * json.h - JSON text the programs write (list --json, status --json, expire --json, drill's state
 * file, notify_command's events).
 */
#ifndef WALVAULT_CORE_JSON_H
#define WALVAULT_CORE_JSON_H

#include "core/buf.h"

/* Append s (NULL: "") as a JSON string with its quotes: '"' and '\\' escaped, \n \t \r by name,
 * other control characters and DEL as \u00XX, and every byte that is not part of valid UTF-8 as
 * \ufffd, so that the result is always valid JSON whatever s holds. */
void wv_json_string(wv_buf *out, const char *s);

#endif
