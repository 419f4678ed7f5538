/* sql.c - see sql.h. */
#include "pg/sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/buf.h"
#include "pg/replication.h" /* wv_pg_one_line */

struct wv_pgsql {
    PGconn *conn;
};

static int res_fail(wv_pgsql *c, PGresult *res, wv_err *err, const char *what)
{
    char msg[768];
    wv_pg_one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c->conn), msg, sizeof(msg));
    if (!msg[0])
        wv_pg_one_line(PQerrorMessage(c->conn), msg, sizeof(msg));
    return wv_err_set(err, WV_EPG, "%s: %s", what, msg[0] ? msg : "unexpected server response");
}

int wv_pgsql_connect(const char *connstr, wv_pgsql **out, wv_err *err)
{
    int rc = wv_pg_connstr_check(connstr, NULL, err);
    if (rc < 0)
        return rc;
    const char *keys[3], *vals[3];
    int n = 0;
    if (connstr && *connstr) {
        keys[n] = "dbname";
        vals[n++] = connstr;
    }
    keys[n] = "fallback_application_name";
    vals[n++] = "walvault";
    keys[n] = NULL;
    vals[n] = NULL;
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn)
        return wv_err_set(err, WV_EPG, "could not connect to the server: out of memory");
    wv_pgsql *c = wv_xcalloc(1, sizeof(*c));
    c->conn = conn;
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[768];
        wv_pg_one_line(PQerrorMessage(conn), msg, sizeof(msg));
        wv_err_set(err, WV_EPG, "could not connect to the server: %s",
                   msg[0] ? msg : "no message from the server");
        wv_err_hint(err, "check -d, the PG* environment variables and pg_hba.conf");
        wv_pgsql_close(c);
        return WV_EPG;
    }
    *out = c;
    return 0;
}

void wv_pgsql_close(wv_pgsql *c)
{
    if (!c)
        return;
    PQfinish(c->conn);
    free(c);
}

int wv_pgsql_value(wv_pgsql *c, const char *query, int nparams, const char *const *params,
                   char *out, size_t outlen, wv_err *err)
{
    PGresult *res = PQexecParams(c->conn, query, nparams, NULL, params, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        int rc = res_fail(c, res, err, query);
        PQclear(res);
        return rc;
    }
    const char *v = PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)
                        ? PQgetvalue(res, 0, 0)
                        : "";
    snprintf(out, outlen, "%s", v);
    PQclear(res);
    return 0;
}

int wv_pgsql_script(wv_pgsql *c, const char *text,
                    int (*cb)(void *arg, const wv_pgsql_result *r, wv_err *err), void *arg,
                    wv_err *err)
{
    if (!PQsendQuery(c->conn, text))
        return res_fail(c, NULL, err, "could not send the script");
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult(c->conn)) != NULL) {
        ExecStatusType s = PQresultStatus(res);
        if (rc == 0 && s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK && s != PGRES_EMPTY_QUERY) {
            rc = res_fail(c, res, err, "statement failed");
        } else if (rc == 0 && s != PGRES_EMPTY_QUERY) {
            wv_pgsql_result r = {
                .tag = PQcmdStatus(res),
                .nrows = s == PGRES_TUPLES_OK ? PQntuples(res) : 0,
                .ncols = s == PGRES_TUPLES_OK ? PQnfields(res) : 0,
                .first = NULL,
            };
            if (r.nrows > 0 && r.ncols > 0 && !PQgetisnull(res, 0, 0))
                r.first = PQgetvalue(res, 0, 0);
            rc = cb(arg, &r, err);
        }
        PQclear(res);
    }
    return rc;
}
