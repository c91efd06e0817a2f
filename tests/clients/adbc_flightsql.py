#!/usr/bin/env python3
"""The ADBC Flight SQL driver (Python, Go underneath) against a running cxdb.

Ingests three events with ADBC bulk ingest, then checks a query, a prepared
statement with parameters (re-bound), adbc_get_objects, the table schema,
driver info and the current catalog. Exits non-zero on the first mismatch.

Usage: adbc_flightsql.py [grpc://HOST:PORT]   (or CXDB_FLIGHT_URI; a bare
HOST:PORT, as in the server's --ports-file, is taken as grpc://).
Needs: pip install adbc-driver-flightsql pyarrow
"""

import datetime
import os
import sys
import uuid

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa


def check(ok, what, got):
    if not ok:
        sys.exit(f"adbc_flightsql: FAILED: {what}: got {got!r}")
    print(f"  ok  {what}")


def main():
    uri = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CXDB_FLIGHT_URI", "")
    if not uri:
        sys.exit(__doc__)
    if "://" not in uri:
        uri = "grpc://" + uri
    # A tenant of its own, so the script can run against any server.
    tenant = "adbc-" + uuid.uuid4().hex[:12]
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    hour = datetime.timedelta(hours=1)
    events = pa.table(
        {
            "tenant_id": [tenant] * 3,
            "event_id": ["a1", "a2", "a3"],
            "event_time": pa.array([t0, t0 + hour, t0 + 2 * hour], pa.timestamp("us", tz="UTC")),
            "event_type": ["conversation.created", "conversation.created", "csat.submitted"],
            "conversation_id": ["c1", "c2", "c1"],
            "channel": ["chat", "email", None],
            "csat_score": pa.array([None, None, 5], pa.int32()),
        }
    )
    print(f"adbc_flightsql: {uri}, tenant {tenant}")
    # autocommit: cxdb has no transactions (GetSqlInfo says so), and the
    # DB-API default of "off" would only produce a warning.
    with flightsql.connect(uri, autocommit=True) as conn:
        with conn.cursor() as cur:
            n = cur.adbc_ingest("events", events, mode="append")
            check(n == 3, "adbc_ingest appends 3 events", n)

            cur.execute(
                f"SELECT event_id, channel FROM events WHERE tenant_id = '{tenant}' ORDER BY event_id"
            )
            table = cur.fetch_arrow_table()
            check(
                table.column("event_id").to_pylist() == ["a1", "a2", "a3"]
                and table.column("channel").to_pylist() == ["chat", "email", None],
                "query returns the ingested rows",
                table.to_pydict(),
            )

            sql = "SELECT count(*) AS n FROM events WHERE tenant_id = $1 AND channel = $2"
            cur.execute(sql, parameters=(tenant, "chat"))
            row = cur.fetchone()
            check(row == (1,), "prepared statement with 2 parameters", row)
            cur.execute(sql, parameters=(tenant, "email"))
            row = cur.fetchone()
            check(row == (1,), "same statement re-bound", row)
            # A Python int (int64) bound where the column is Int32.
            cur.execute(
                "SELECT event_id, csat_score FROM events WHERE tenant_id = $1 AND csat_score >= $2",
                parameters=(tenant, 4),
            )
            rows = cur.fetchall()
            check(rows == [("a3", 5)], "int64 parameter against an Int32 column", rows)
            # Unconstrained parameter: the result takes the bound type, and
            # the FlightInfo schema agrees with the stream (the driver checks).
            cur.execute("SELECT $1 AS x", parameters=("hello",))
            row = cur.fetchone()
            check(row == ("hello",), "SELECT $1 with a text value", row)

        objects = conn.adbc_get_objects(
            depth="all", catalog_filter="cxdb", db_schema_filter="public", table_name_filter="events"
        ).read_all().to_pylist()
        catalogs = [c["catalog_name"] for c in objects]
        check(catalogs == ["cxdb"], "adbc_get_objects: catalog cxdb", catalogs)
        schemas = [s["db_schema_name"] for s in objects[0]["catalog_db_schemas"]]
        check(schemas == ["public"], "adbc_get_objects: schema public", schemas)
        tables = objects[0]["catalog_db_schemas"][0]["db_schema_tables"]
        check(
            [(t["table_name"], t["table_type"]) for t in tables] == [("events", "TABLE")],
            "adbc_get_objects: table events",
            tables,
        )
        columns = [c["column_name"] for c in tables[0]["table_columns"]]
        check(
            columns[:4] == ["tenant_id", "event_id", "event_time", "ingested_at"],
            "adbc_get_objects: columns of events",
            columns,
        )
        all_schemas = [
            s["db_schema_name"]
            for c in conn.adbc_get_objects(depth="db_schemas").read_all().to_pylist()
            for s in c["catalog_db_schemas"]
        ]
        check(
            "information_schema" in all_schemas and "public" in all_schemas,
            "adbc_get_objects: every schema",
            all_schemas,
        )

        schema = conn.adbc_get_table_schema("events", db_schema_filter="public")
        check(
            schema.field("event_time").type == pa.timestamp("us", tz="UTC"),
            "adbc_get_table_schema: event_time is timestamp[us, UTC]",
            schema,
        )
        info = conn.adbc_get_info()
        check(info.get("vendor_name") == "cxdb", "adbc_get_info: vendor_name", info)
        catalog = conn.adbc_current_catalog
        check(catalog == "cxdb", "current catalog (GetSessionOptions)", catalog)
        schema_name = conn.adbc_current_db_schema
        check(schema_name == "public", "current schema (GetSessionOptions)", schema_name)
    print("adbc_flightsql: all checks passed")


if __name__ == "__main__":
    main()
