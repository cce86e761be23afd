"""psycopg 3 against `sabot serve`: connect, parameters ($1 through the extended protocol),
every type Sabot produces read in text and in binary format, errors with their SQLSTATEs, a
stream with a job and a materialized view. Run by tests/server.rs with the server's port; exits
non-zero (an assertion with the values) on any difference."""

import datetime
import decimal
import sys

import psycopg
from psycopg import errors

PORT = int(sys.argv[1])

# Expected values, reasoned from the SQL below.
EXPECTED = [
    True,
    2,
    3,
    4,
    1.5,
    2.25,
    decimal.Decimal("1.25"),
    "text",
    b"ab",
    datetime.date(2024, 1, 2),
    datetime.time(3, 4, 5, 250000),
    datetime.datetime(2024, 1, 2, 3, 4, 5),
    datetime.datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=datetime.timezone.utc),
    datetime.timedelta(days=1, seconds=3),
    [1, 2, 3],
    ["a", None, "c"],
    [1.5, 2.5],
    [True, False],
    [datetime.date(2024, 1, 2)],
    [datetime.datetime(2024, 1, 2, 3, 4, 5)],
    [decimal.Decimal("1.25")],
    [datetime.timedelta(days=1)],
    [b"ab"],
    [datetime.time(3, 4, 5)],
    [2],
    [datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)],
    None,
]
EVERY_TYPE = (
    "SELECT true, CAST(2 AS SMALLINT), CAST(3 AS INT), CAST(4 AS BIGINT), CAST(1.5 AS REAL), "
    "CAST(2.25 AS DOUBLE), CAST(1.25 AS DECIMAL(10, 2)), 'text', CAST('ab' AS BYTEA), "
    "DATE '2024-01-02', CAST('03:04:05.25' AS TIME), TIMESTAMP '2024-01-02 03:04:05', "
    "arrow_cast(TIMESTAMP '2024-01-02 03:04:05.25', 'Timestamp(Microsecond, Some(\"UTC\"))'), "
    "INTERVAL '1 day 3 seconds', make_array(1, 2, 3), make_array('a', NULL, 'c'), "
    "make_array(1.5, 2.5), make_array(true, false), make_array(DATE '2024-01-02'), "
    "make_array(TIMESTAMP '2024-01-02 03:04:05'), make_array(CAST(1.25 AS DECIMAL(10, 2))), "
    "make_array(INTERVAL '1' DAY), make_array(CAST('ab' AS BYTEA)), "
    "make_array(CAST('03:04:05' AS TIME)), make_array(CAST(2 AS SMALLINT)), "
    "make_array(arrow_cast(TIMESTAMP '2024-01-02 03:04:05', "
    "'Timestamp(Microsecond, Some(\"UTC\"))')), "
    "CAST(NULL AS BIGINT)"
)


def check(what, actual, expected):
    assert actual == expected, f"{what}: got {actual!r}, expected {expected!r}"


def instant(v):
    # A timestamptz comes back in the session's zone (UTC); compare instants.
    if isinstance(v, datetime.datetime) and v.tzinfo:
        return v.astimezone(datetime.timezone.utc)
    if isinstance(v, list):
        return [instant(x) for x in v]
    return v


def normalized(row):
    return [instant(v) for v in row]


with psycopg.connect(f"host=127.0.0.1 port={PORT} user=sabot dbname=sabot") as conn:
    # Every type, in text (simple and extended protocol) and in binary format.
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute(EVERY_TYPE)
        check(f"binary={binary}", normalized(cur.fetchone()), EXPECTED)
    check(
        "simple protocol",
        normalized(conn.execute(EVERY_TYPE, prepare=False).fetchone()),
        EXPECTED,
    )
    # Parameters, inferred and cast.
    check("parameter", conn.execute("SELECT %s::BIGINT + 1", (41,)).fetchone(), (42,))
    check(
        "parameters",
        conn.execute("SELECT upper(%s), %s * 2", ("x", 1.25)).fetchone(),
        ("X", 2.5),
    )
    # Errors carry SQLSTATEs, and the connection goes on after a rollback.
    try:
        conn.execute("SELECT * FROM missing")
        raise AssertionError("a missing table was found")
    except errors.UndefinedTable as e:
        check("missing table message", "missing" in str(e), True)
    conn.rollback()
    try:
        conn.execute("SELEC 1")
        raise AssertionError("a syntax error passed")
    except errors.SyntaxError:
        pass
    conn.rollback()
    check("after errors", conn.execute("SELECT 1").fetchone(), (1,))

with psycopg.connect(
    f"host=127.0.0.1 port={PORT} user=sabot dbname=sabot", autocommit=True
) as conn:
    conn.execute(
        "CREATE TABLE clicks (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) "
        "WITH ('connector' = 'memory')"
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO clicks VALUES (%s, CAST(%s AS TIMESTAMP(3)))",
            [
                (1, "2024-01-01 00:00:01"),
                (2, "2024-01-01 00:00:02"),
                (1, "2024-01-01 00:00:09"),
                (1, "2024-01-01 00:00:12"),
            ],
        )
    rows = conn.execute(
        "SELECT k, window_end, COUNT(*) FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), "
        "INTERVAL '10' SECOND)) GROUP BY k, window_start, window_end ORDER BY window_end, k"
    ).fetchall()
    ten = datetime.datetime(2024, 1, 1, 0, 0, 10)
    twenty = datetime.datetime(2024, 1, 1, 0, 0, 20)
    check("windows", rows, [(1, ten, 2), (2, ten, 1), (1, twenty, 1)])
    # A server-side cursor streams rows as they come.
    with conn.cursor() as cur:
        seen = list(
            cur.stream(
                "SELECT k FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
                "WHERE k = %s",
                (1,),
            )
        )
    check("stream", seen, [(1,), (1,), (1,)])

# Default settings: psycopg prepares a statement run 5 times, and once it has prepared
# statements it sends DEALLOCATE ALL after DDL (Sabot answered "Prepared statement 'all' does
# not exist"). Runs before and after several DDL statements, in and out of autocommit.
for autocommit in (True, False):
    with psycopg.connect(
        f"host=127.0.0.1 port={PORT} user=sabot dbname=sabot", autocommit=autocommit
    ) as conn:
        check("prepare threshold", conn.prepare_threshold, 5)
        for round in range(3):
            for i in range(8):
                check(
                    f"prepared {round} {i}",
                    conn.execute("SELECT %s::BIGINT * 2", (i,)).fetchone(),
                    (2 * i,),
                )
            name = f"ddl_{int(autocommit)}_{round}"
            conn.execute(f"CREATE TABLE {name} (a BIGINT)")
            conn.execute(f"DROP TABLE {name}")
            if not autocommit:
                conn.commit()
        # A timestamptz keeps its type and instant, in text and in binary.
        for binary in (False, True):
            value = conn.cursor(binary=binary).execute(
                "SELECT '2024-01-01 00:00:10+05'::timestamptz"
            ).fetchone()[0]
            check(
                f"timestamptz binary={binary}",
                value.astimezone(datetime.timezone.utc),
                datetime.datetime(2023, 12, 31, 19, 0, 10, tzinfo=datetime.timezone.utc),
            )

print("psycopg ok")
