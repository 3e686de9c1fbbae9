/* pg_ledger STATE.db URL: puts the ledger of a SQLite state database into
 * the PostgreSQL store at URL (its schema applied first when it has none),
 * as tests/unit/support/pg_copy.h does, for tests/e2e/pg_cli.sh, which
 * compares what flowrun's read commands print from each store. Exit 0, or
 * 1 with the failure on stderr. */

#include "tests/unit/support/pg_copy.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: pg_ledger STATE.db URL\n");
        return 2;
    }
    PGconn *c = PQconnectdb(argv[2]);
    int rc = PQstatus(c) == CONNECTION_OK ? pgc_copy(argv[1], c) : -1;
    if (PQstatus(c) != CONNECTION_OK)
        fprintf(stderr, "pg_ledger: cannot connect: %s", PQerrorMessage(c));
    PQfinish(c);
    return rc == 0 ? 0 : 1;
}
