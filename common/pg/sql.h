/*
 * sql.h - a plain (non-replication) libpq connection for SQL: restore points and WAL switches
 * (mark), the checks of a drill. Same conventions as replication.h: a connection string or URI,
 * else the PG* environment; a password in the string is refused. Errors are one line with the
 * server's message.
 */
#ifndef WALVAULT_PG_SQL_H
#define WALVAULT_PG_SQL_H

#include <stddef.h>

#include "core/error.h"

typedef struct wv_pgsql wv_pgsql;

/* WV_EPG when the server refuses or cannot be reached, WV_EUSAGE for a password in connstr. */
int wv_pgsql_connect(const char *connstr, wv_pgsql **out, wv_err *err);
void wv_pgsql_close(wv_pgsql *c); /* NULL allowed */

/* One query with text parameters; the first column of its first row into out ("" when the query
 * returns no row or NULL). */
int wv_pgsql_value(wv_pgsql *c, const char *query, int nparams, const char *const *params,
                   char *out, size_t outlen, wv_err *err);

/* The result of one statement of a script: its command tag ("SELECT 1"), the number of rows and
 * columns, and the first column of the first row (NULL when there is none or it is NULL). */
typedef struct wv_pgsql_result {
    const char *tag;
    int nrows, ncols;
    const char *first;
} wv_pgsql_result;

/* Run a script (one or more statements) and call cb for each statement's result; cb returns 0 to
 * go on. A statement that fails is WV_EPG with the server's message; the script stops there. */
int wv_pgsql_script(wv_pgsql *c, const char *text,
                    int (*cb)(void *arg, const wv_pgsql_result *r, wv_err *err), void *arg,
                    wv_err *err);

#endif
