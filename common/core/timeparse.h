/*
 * timeparse.h - recovery target times: "--to" strings to an instant, and instants to the text
 * PostgreSQL's recovery_target_time accepts.
 *
 * Accepted forms (surrounding blanks ignored, words case-insensitive, nothing else accepted):
 *   now
 *   N second(s)|sec(s)|minute(s)|min(s)|hour(s)|day(s)|week(s) ago   N a decimal integer >= 0;
 *                                         a day is 86400 seconds, a week 7 days
 *   YYYY-MM-DD HH:MM:SS[.f]               local time (the TZ environment variable applies)
 *   YYYY-MM-DD                            its midnight, local time
 *   YYYY-MM-DD HH:MM:SS[.f]ZONE           ZONE: +HH, +HHMM, +HH:MM, -HH..., UTC or Z, optionally
 *                                         after one blank
 *   YYYY-MM-DDTHH:MM:SS[.f][ZONE]         ISO 8601 ("2026-11-25T10:00:00Z")
 * .f is 1 to 6 fractional digits. Fields are checked: month 1-12, day within the month (leap
 * years included), hour 0-23, minute and second 0-59, offset at most 15:59. A local time that
 * a daylight-saving change skips is refused; one that occurs twice means the earlier instant.
 * Results are microseconds since the Unix epoch; instants before 1970 are refused.
 */
#ifndef WALVAULT_CORE_TIMEPARSE_H
#define WALVAULT_CORE_TIMEPARSE_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

/* Enough for any wv_time_format output, NUL included. */
#define WV_TIME_FORMAT_LEN 48

/*
 * Parse s; "now" and "... ago" count back from now_unix (seconds). Returns 0, or WV_EUSAGE
 * with a one-line message that quotes the input and says what is wrong or which forms are
 * accepted; *out_unix_us is untouched on failure.
 */
int wv_time_parse(const char *s, int64_t now_unix, int64_t *out_unix_us, wv_err *err);

/*
 * "2026-11-25 11:00:00+01" in local time with its numeric UTC offset ("+05:30" when the offset
 * is not whole hours); ".ffffff" (trailing zeros dropped) follows the seconds when the instant has
 * a fraction. wv_time_format_utc writes the same in UTC ("...+00"). Both outputs parse back with
 * wv_time_parse to the same instant. len should be WV_TIME_FORMAT_LEN.
 */
void wv_time_format(int64_t unix_us, char *out, size_t len);
void wv_time_format_utc(int64_t unix_us, char *out, size_t len);

#endif
