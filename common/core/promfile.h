/*
 * promfile.h - a node_exporter textfile (Prometheus text exposition format 0.0.4), written
 * atomically.
 *
 * Families are declared once (name, HELP, TYPE gauge or counter) and their samples kept together,
 * in declaration order, whatever order they are set in, so that the file has one HELP and one TYPE
 * line per metric followed by all of its samples, as the format requires. Names must match
 * [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*; label values are escaped (\\, \",
 * \n); HELP text escapes \\ and \n. Values print as integers when integral, else with 15 digits;
 * NaN and infinities as NaN, +Inf, -Inf.
 *
 * wv_prom_write writes a temp file in the target's directory (a name that does not end in .prom,
 * so the collector never reads it half-written), fsyncs it, renames it over the target and fsyncs
 * the directory. Mode 0644: node_exporter runs as another user.
 */
#ifndef WALVAULT_CORE_PROMFILE_H
#define WALVAULT_CORE_PROMFILE_H

#include "core/buf.h"
#include "core/error.h"

typedef struct wv_prom wv_prom;

wv_prom *wv_prom_new(void);
void wv_prom_free(wv_prom *p); /* NULL allowed */

/* Declare a family; type is "gauge" or "counter". WV_EUSAGE for a bad name or type, or a name
 * declared twice. */
int wv_prom_family(wv_prom *p, const char *name, const char *type, const char *help, wv_err *err);

/* A sample of a declared family, with one label (label NULL: none). WV_EUSAGE for an undeclared
 * family or a bad label name. */
int wv_prom_sample(wv_prom *p, const char *name, const char *label, const char *value_of_label,
                   double value, wv_err *err);

/* The file's text. */
void wv_prom_render(const wv_prom *p, wv_buf *out);

/* Render and write to path atomically (see above). */
int wv_prom_write(const wv_prom *p, const char *path, wv_err *err);

#endif
