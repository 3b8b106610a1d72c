"""Real clients through the proxy: PyMySQL, mysql-connector-python, the
mariadb CLI, Node's mysql2 and the Rust mysql crate; text and binary
protocols, multi-statements, multiple result sets."""

import pymysql
from pymysql.constants import CLIENT

from harness.accounts import USERS
from harness.clients import (connector_connect, mariadb_cli, node_client, rust_client,
                             scalar)

ITEMS = [(1, "apple", 3), (2, "pear", 5), (3, "plum", 7)]


def session_status(conn, name):
    cur = conn.cursor()
    cur.execute("SHOW SESSION STATUS LIKE %s", (name,))
    row = cur.fetchone()
    cur.close()
    return int(row[1])


# --- PyMySQL ----------------------------------------------------------------------

def test_pymysql_reads_rows(proxy, connect):
    conn = connect("app_ro", database="app")
    with conn.cursor() as cur:
        cur.execute("SELECT id, name, qty FROM items ORDER BY id")
        assert cur.fetchall() == tuple(ITEMS)
        cur.execute("SELECT name FROM items WHERE qty > %s ORDER BY id", (4,))
        assert cur.fetchall() == (("pear",), ("plum",))


def test_pymysql_session_state_and_transactions(proxy, cluster, connect):
    conn = connect("app_rw", database="app")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS txn_test (id INT PRIMARY KEY, v VARCHAR(16))")
        cur.execute("DELETE FROM txn_test")
        conn.commit()
        cur.execute("SET @marker = 'kept'")
        cur.execute("BEGIN")
        cur.execute("INSERT INTO txn_test VALUES (1, 'rolled back')")
        conn.rollback()
        cur.execute("INSERT INTO txn_test VALUES (2, 'committed')")
        conn.commit()
        cur.execute("SELECT id, v FROM txn_test ORDER BY id")
        assert cur.fetchall() == ((2, "committed"),)
        cur.execute("SELECT @marker")
        assert cur.fetchall() == (("kept",),)
        cur.execute("CREATE TEMPORARY TABLE tmp_state (a INT)")
        cur.execute("INSERT INTO tmp_state VALUES (10), (20)")
        cur.execute("SELECT SUM(a) FROM tmp_state")
        assert cur.fetchall()[0][0] == 30
    # Visible directly on the primary, from outside the proxy.
    assert cluster.primary.admin_query("SELECT v FROM app.txn_test") == (("committed",),)


def test_pymysql_error_inside_session_keeps_it_usable(proxy, connect):
    conn = connect("app_ro", database="app")
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT * FROM no_such_table")
        except pymysql.err.ProgrammingError as e:
            assert e.args == (1146, "Table 'app.no_such_table' doesn't exist")
        else:
            raise AssertionError("query on a missing table succeeded")
        try:
            cur.execute("INSERT INTO items VALUES (9, 'x', 1)")
        except pymysql.err.OperationalError as e:
            assert e.args[0] == 1142  # INSERT command denied: app_ro has SELECT only
        else:
            raise AssertionError("read-only user could insert")
        cur.execute("SELECT COUNT(*) FROM items")
        assert cur.fetchall() == ((3,),)


def test_ping_and_init_db_pass_through(proxy, connect):
    conn = connect("app_rw")
    assert scalar(conn, "SELECT DATABASE()") is None
    conn.ping(reconnect=False)
    conn.select_db("app")  # COM_INIT_DB
    assert scalar(conn, "SELECT DATABASE()") == "app"
    try:
        conn.select_db("app_missing")
    except pymysql.err.OperationalError as e:
        assert e.args == (1049, "Unknown database 'app_missing'")
    else:
        raise AssertionError("COM_INIT_DB to a missing database succeeded")
    assert scalar(conn, "SELECT DATABASE()") == "app"


def test_pymysql_multi_statements(proxy, connect):
    conn = connect("app_rw", database="app", client_flag=CLIENT.MULTI_STATEMENTS)
    with conn.cursor() as cur:
        cur.execute("SELECT 1; SELECT 2, 'two'; SELECT name FROM items WHERE id = 3")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((2, "two"),)
        assert cur.nextset()
        assert cur.fetchall() == (("plum",),)
        assert not cur.nextset()
        cur.execute("SELECT 42")
        assert cur.fetchall() == ((42,),)


def test_pymysql_stored_procedure_with_two_result_sets(proxy, connect):
    conn = connect("app_rw", database="app")
    with conn.cursor() as cur:
        cur.execute("CALL two_results(2)")
        assert cur.fetchall() == ((2,),)
        assert cur.nextset()
        assert cur.fetchall() == (("apple", 3), ("pear", 5))
        assert cur.nextset()  # the CALL's own status
        assert not cur.fetchall() and cur.description is None
        assert not cur.nextset()
        cur.execute("SELECT 'after'")
        assert cur.fetchall() == (("after",),)


# --- mysql-connector-python ------------------------------------------------------------

def test_connector_server_side_prepared_statements(proxy, cluster):
    conn = connector_connect(proxy.host, proxy.port, "app_rw", USERS["app_rw"], database="app")
    try:
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT name, qty FROM items WHERE id = %s", (2,))
        assert cur.fetchall() == [("pear", 5)]
        cur.execute("SELECT name, qty FROM items WHERE id = %s", (3,))
        assert cur.fetchall() == [("plum", 7)]
        cur.execute("SELECT ?, ? IS NULL, CHAR_LENGTH(?)", ("text", None, "x" * 70000))
        assert cur.fetchall() == [("text", 1, 70000)]
        cur.close()
        plain = conn.cursor()
        plain.execute("SHOW SESSION STATUS LIKE 'Com_stmt_prepare'")
        prepared = int(plain.fetchall()[0][1])
        plain.execute("SHOW SESSION STATUS LIKE 'Com_stmt_execute'")
        executed = int(plain.fetchall()[0][1])
        plain.execute("SELECT @@port")
        assert plain.fetchall() == [(cluster.primary.port,)]
        plain.close()
        assert prepared >= 2 and executed >= 3, (prepared, executed)
    finally:
        conn.close()


def test_connector_prepared_insert_and_read_back(proxy):
    conn = connector_connect(proxy.host, proxy.port, "app_rw", USERS["app_rw"], database="app")
    try:
        cur = conn.cursor(prepared=True)
        cur.execute("CREATE TABLE IF NOT EXISTS prep_test (id INT PRIMARY KEY, b BLOB, n INT)")
        cur.execute("DELETE FROM prep_test")
        data = bytes(range(256)) * 4
        cur.execute("INSERT INTO prep_test VALUES (?, ?, ?)", (1, data, None))
        conn.commit()
        cur.execute("SELECT b, n FROM prep_test WHERE id = ?", (1,))
        rows = cur.fetchall()
        assert [(bytes(b), n) for b, n in rows] == [(data, None)]
    finally:
        conn.close()


# --- mariadb CLI ----------------------------------------------------------------------

def test_mariadb_cli_queries(proxy, cluster):
    res = mariadb_cli(proxy.host, proxy.port, "app_ro", USERS["app_ro"],
                      "SELECT @@port; SELECT name, qty FROM items ORDER BY id", database="app")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert int(lines[0]) in {s.port for s in cluster.replicas}
    assert lines[1:] == ["apple\t3", "pear\t5", "plum\t7"]


def test_mariadb_cli_wrong_password(proxy):
    res = mariadb_cli(proxy.host, proxy.port, "app_rw", "bad-password", "SELECT 1")
    assert res.returncode == 1
    assert res.stderr.strip() == ("ERROR 1045 (28000): Access denied for user "
                                  "'app_rw'@'127.0.0.1' (using password: YES)")


def test_mariadb_cli_unknown_database(proxy):
    res = mariadb_cli(proxy.host, proxy.port, "app_rw", USERS["app_rw"], "SELECT 1",
                      database="app_missing")
    assert res.returncode == 1
    assert res.stderr.strip() == "ERROR 1049 (42000): Unknown database 'app_missing'"


def test_mariadb_cli_user_without_password(proxy, cluster):
    res = mariadb_cli(proxy.host, proxy.port, "nopw", "", "SELECT @@port, CURRENT_USER()")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "%d\tnopw@%%\n" % cluster.primary.port


def test_mariadb_cli_stored_procedure(proxy):
    res = mariadb_cli(proxy.host, proxy.port, "app_rw", USERS["app_rw"], "CALL two_results(3)",
                      database="app")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["3", "apple\t3", "pear\t5", "plum\t7"]


# --- Node mysql2 ----------------------------------------------------------------------

def test_node_mysql2_query_execute_and_multi(proxy, cluster):
    out = node_client(proxy.host, proxy.port, "app_rw", USERS["app_rw"], database="app",
                      multiple_statements=True, ops=[
                          {"query": "SELECT @@port AS port"},
                          {"query": "SELECT name FROM items WHERE id = ?", "params": [1]},
                          {"execute": "SELECT name, qty FROM items WHERE id = ?", "params": [2]},
                          {"execute": "SELECT name, qty FROM items WHERE qty > ? ORDER BY id",
                           "params": [4]},
                          {"query": "SELECT 1 AS a; SELECT 2 AS b"},
                          {"query": "CALL two_results(1)"},
                          {"query": "SHOW SESSION STATUS LIKE 'Com_stmt_prepare'"},
                      ])
    assert out["ok"], out
    r = out["results"]
    assert r[0] == {"columns": ["port"], "rows": [[str(cluster.primary.port)]]}
    assert r[1] == {"columns": ["name"], "rows": [["apple"]]}
    assert r[2] == {"columns": ["name", "qty"], "rows": [["pear", 5]]}
    assert r[3] == {"columns": ["name", "qty"], "rows": [["pear", 5], ["plum", 7]]}
    assert r[4] == {"sets": [{"columns": ["a"], "rows": [[1]]},
                             {"columns": ["b"], "rows": [[2]]}]}
    assert r[5]["sets"][:2] == [{"columns": ["first_value"], "rows": [[1]]},
                                {"columns": ["name", "qty"], "rows": [["apple", 3]]}]
    assert int(r[6]["rows"][0][1]) == 2  # two server-side prepares


def test_node_mysql2_replica_and_errors(proxy, cluster):
    out = node_client(proxy.host, proxy.port, "app_ro", USERS["app_ro"],
                      ops=[{"query": "SELECT @@port"}])
    assert out["ok"], out
    assert int(out["results"][0]["rows"][0][0]) in {s.port for s in cluster.replicas}
    out = node_client(proxy.host, proxy.port, "app_ro", "wrong", ops=[])
    assert out["ok"] is False
    assert out["error"] == {"code": "ER_ACCESS_DENIED_ERROR", "errno": 1045, "sqlState": "28000",
                            "message": "Access denied for user 'app_ro'@'127.0.0.1' "
                                       "(using password: YES)"}
    out = node_client(proxy.host, proxy.port, "app_rw", USERS["app_rw"], database="app_missing",
                      ops=[])
    assert out["ok"] is False
    assert (out["error"]["errno"], out["error"]["sqlState"], out["error"]["message"]) == \
        (1049, "42000", "Unknown database 'app_missing'")


# --- Rust mysql crate ------------------------------------------------------------------

def test_rust_client_query_and_prepared(proxy, cluster, rust_client_bin):
    res = rust_client(proxy.host, proxy.port, "app_rw", USERS["app_rw"], database="app", ops=[
        "query=SELECT @@port",
        "query=SELECT id, name, qty FROM items ORDER BY id",
        "exec=SELECT name, qty FROM items WHERE id = ?", "int=3",
        "exec=SELECT CONCAT(?, '-', ?), ? IS NULL", "param=a\tb", "param=c", "param=x",
        "query=CALL two_results(2)",
        "query=SHOW SESSION STATUS LIKE 'Com_stmt_prepare'",
    ])
    assert res.returncode == 0, res.stderr
    assert res.rows(0) == [(str(cluster.primary.port),)]
    assert res.rows(1) == [("1", "apple", "3"), ("2", "pear", "5"), ("3", "plum", "7")]
    assert res.rows(2) == [("plum", "7")]
    assert res.rows(3) == [("a\tb-c", "0")]
    assert res.sets(4) == [[("2",)], [("apple", "3"), ("pear", "5")]]
    assert int(res.rows(5)[0][1]) >= 2


def test_rust_client_multi_statements_and_errors(proxy, cluster, rust_client_bin):
    res = rust_client(proxy.host, proxy.port, "app_ro", USERS["app_ro"], database="app", ops=[
        "query=SELECT 1; SELECT @@port",
    ])
    assert res.returncode == 0, res.stderr
    sets = res.sets(0)
    assert sets[0] == [("1",)]
    assert int(sets[1][0][0]) in {s.port for s in cluster.replicas}
    res = rust_client(proxy.host, proxy.port, "app_ro", "wrong", ops=["query=SELECT 1"])
    assert res.returncode == 1
    assert res.error == (1045, "28000",
                         "Access denied for user 'app_ro'@'127.0.0.1' (using password: YES)")
    res = rust_client(proxy.host, proxy.port, "app_ro", USERS["app_ro"], database="app",
                      ops=["query=SELECT * FROM nope"])
    assert res.returncode == 1
    assert res.error == (1146, "42S02", "Table 'app.nope' doesn't exist")
