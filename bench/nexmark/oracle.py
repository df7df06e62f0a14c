"""Checks weir's Nexmark answers against DuckDB's.

    python oracle.py EVENTS_DIR OUTPUT_DIR QUERY...

EVENTS_DIR holds the Parquet files bench/nexmark/events.toml published
(bid/, auction/, person/); OUTPUT_DIR/QUERY holds the Parquet files the
query's pipeline published. For each query, DuckDB runs the query's SQL on
the events and the two answers are compared as multisets of rows (EXCEPT
ALL both ways): exactly equal, or the rows that differ are printed and the
exit status is 1. Dot files (a file sink's staging) are not read.

The SQL is Nexmark's, in DuckDB's dialect: Flink's windowing table
functions become the arithmetic of their windows.
"""

import sys

import duckdb

QUERIES = {
    "q0": """
        SELECT auction, bidder, price, dateTime, extra FROM bid
    """,
    "q1": """
        SELECT auction, bidder, CAST(0.908 AS DOUBLE) * price AS price, dateTime, extra
        FROM bid
    """,
    "q2": """
        SELECT auction, price FROM bid WHERE auction % 123 = 0
    """,
    "q3": """
        SELECT P.name, P.city, P.state, A.id
        FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
        WHERE A.category = 10 AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')
    """,
    # HOP(bid, dateTime, 2 s, 10 s): each bid is in the five windows
    # [2k s, 2k s + 10 s) that start in (dateTime - 10 s, dateTime].
    "q5": """
        WITH hop AS (
            SELECT auction, k * 2000 AS starttime
            FROM (SELECT auction, unnest(range(epoch_ms(dateTime) // 2000 - 4,
                                               epoch_ms(dateTime) // 2000 + 1)) AS k
                  FROM bid)
        ), AuctionBids AS (
            SELECT auction, count(*) AS num, starttime FROM hop GROUP BY auction, starttime
        ), MaxBids AS (
            SELECT max(num) AS maxn, starttime FROM AuctionBids GROUP BY starttime
        )
        SELECT AuctionBids.auction, AuctionBids.num
        FROM AuctionBids JOIN MaxBids
          ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.num >= MaxBids.maxn
    """,
    # TUMBLE(bid, dateTime, INTERVAL '10' SECOND): windows [10k s, 10(k+1) s).
    "q7": """
        WITH B1 AS (
            SELECT MAX(price) AS maxprice,
                   make_timestamp((epoch_ms(dateTime) // 10000 + 1) * 10000 * 1000) AS dateTime
            FROM bid GROUP BY epoch_ms(dateTime) // 10000
        )
        SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra
        FROM bid B JOIN B1 ON B.price = B1.maxprice
        WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL 10 SECOND AND B1.dateTime
    """,
    "q8": """
        WITH P AS (
            SELECT id, name, epoch_ms(dateTime) // 10000 AS w FROM person GROUP BY id, name, w
        ), A AS (
            SELECT seller, epoch_ms(dateTime) // 10000 AS w FROM auction GROUP BY seller, w
        )
        SELECT P.id, P.name, make_timestamp(P.w * 10000 * 1000) AS starttime
        FROM P JOIN A ON P.id = A.seller AND P.w = A.w
    """,
    # SESSION(dateTime, INTERVAL '10' SECOND): a bidder's bids less than
    # 10 s apart are one session, from its first bid to its last plus 10 s.
    "q11": """
        WITH marked AS (
            SELECT bidder, dateTime,
                   CASE WHEN dateTime - LAG(dateTime) OVER w < INTERVAL 10 SECOND
                        THEN 0 ELSE 1 END AS starts
            FROM bid WINDOW w AS (PARTITION BY bidder ORDER BY dateTime)
        ), numbered AS (
            SELECT bidder, dateTime,
                   SUM(starts) OVER (PARTITION BY bidder ORDER BY dateTime
                                     ROWS UNBOUNDED PRECEDING) AS session
            FROM marked
        )
        SELECT MIN(dateTime) AS starttime,
               MAX(dateTime) + INTERVAL 10 SECOND AS endtime,
               bidder, COUNT(*) AS bid_count
        FROM numbered GROUP BY bidder, session
    """,
    # Not Nexmark queries: the window and temporal joins
    # (bench/nexmark/join_*.toml).
    "join_window": """
        SELECT make_timestamp(B.w * 10000 * 1000) AS window_start,
               make_timestamp((B.w + 1) * 10000 * 1000) AS window_end,
               B.auction, B.bidder, B.price, B.dateTime,
               A.id, A.initialBid, A.reserve, A.dateTime AS right_dateTime, A.expires,
               A.seller, A.category
        FROM (SELECT *, epoch_ms(dateTime) // 10000 AS w FROM bid) B
        LEFT JOIN (SELECT *, epoch_ms(dateTime) // 10000 AS w FROM auction) A
          ON B.auction = A.id AND B.w = A.w
    """,
    "join_temporal": """
        SELECT A.id, A.initialBid, A.reserve, A.dateTime, A.expires, A.seller, A.category,
               A.seller % 6 AS k,
               P.id AS right_id, P.name, P.city, P.state, P.dateTime AS right_dateTime,
               P.id % 6 AS right_k
        FROM auction A ASOF JOIN person P
          ON A.seller % 6 = P.id % 6 AND A.dateTime >= P.dateTime
    """,
}


def parquet(directory):
    return f"read_parquet('{directory}/*.parquet')"


def main():
    events, outputs, *queries = sys.argv[1:]
    db = duckdb.connect()
    for table in ("bid", "auction", "person"):
        db.execute(f"CREATE VIEW {table} AS SELECT * FROM {parquet(f'{events}/{table}')}")
    failed = False
    for query in queries:
        sql = QUERIES[query]
        expected = db.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
        db.execute(f"CREATE OR REPLACE VIEW weir AS SELECT * FROM {parquet(f'{outputs}/{query}')}")
        got = db.execute("SELECT count(*) FROM weir").fetchone()[0]
        columns = [row[0] for row in db.execute("DESCRIBE weir").fetchall()]
        expected_columns = [row[0] for row in db.execute(f"DESCRIBE {sql}").fetchall()]
        if sorted(columns) != sorted(expected_columns):
            print(f"{query}: weir's columns {columns}, DuckDB's {expected_columns}")
            failed = True
            continue
        listed = ", ".join(f'"{column}"' for column in expected_columns)
        missing = db.execute(
            f"SELECT {listed} FROM ({sql}) EXCEPT ALL SELECT {listed} FROM weir"
        ).fetchall()
        extra = db.execute(
            f"SELECT {listed} FROM weir EXCEPT ALL SELECT {listed} FROM ({sql})"
        ).fetchall()
        if missing or extra:
            failed = True
            print(f"{query}: DuckDB {expected} rows, weir {got}; "
                  f"{len(missing)} missing from weir, {len(extra)} extra in weir")
            for row in missing[:5]:
                print(f"  missing {row}")
            for row in extra[:5]:
                print(f"  extra   {row}")
        else:
            print(f"{query}: {got} rows, equal to DuckDB's")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
