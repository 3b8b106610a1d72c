'use strict';
// Client program for the end-to-end tests, using the mysql2 package.
//
// Usage: node node_client.js JSON
// JSON: {"host", "port", "user", "password", "database"?, "multipleStatements"?,
//        "ops": [{"query": SQL, "params"?: [...]} | {"execute": SQL, "params"?: [...]}]}
// "query" uses the text protocol (parameters are escaped client-side);
// "execute" prepares the statement on the server (COM_STMT_PREPARE/EXECUTE).
//
// Prints one JSON document on stdout:
//   {"ok": true, "results": [R, ...]}          one R per op
//   {"ok": false, "error": {...}, "results": [...]} on the first error
// R is {"rows": [[v, ...], ...], "columns": [...]} for a result set,
// {"affectedRows": n, "insertId": n} for a statement without one, or
// {"sets": [R, ...]} when a statement returned several results.
// Exit status 0 in both cases; non-zero only when the program itself fails.

const mysql = require('mysql2/promise');

function plain(v) {
  if (v === null || v === undefined) return null;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  return v;
}

function describe(result, fields) {
  if (Array.isArray(result)) {
    // Several results (multi-statements, CALL): result[i] pairs with fields[i].
    if (result.length > 0 && Array.isArray(fields) && Array.isArray(fields[0]) ||
        result.length > 0 && !Array.isArray(result[0]) && result.some((r) => Array.isArray(r))) {
      return { sets: result.map((r, i) => describe(r, fields ? fields[i] : undefined)) };
    }
    return {
      columns: (fields || []).map((f) => f.name),
      rows: result.map((row) => row.map(plain)),
    };
  }
  return { affectedRows: result.affectedRows, insertId: result.insertId };
}

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const out = { ok: true, results: [] };
  let conn;
  try {
    conn = await mysql.createConnection({
      host: spec.host,
      port: spec.port,
      user: spec.user,
      password: spec.password,
      database: spec.database,
      multipleStatements: !!spec.multipleStatements,
      rowsAsArray: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      connectTimeout: 10000,
    });
    for (const op of spec.ops || []) {
      if (op.query !== undefined) {
        const [result, fields] = await conn.query(op.query, op.params || []);
        out.results.push(describe(result, fields));
      } else {
        const [result, fields] = await conn.execute(op.execute, op.params || []);
        out.results.push(describe(result, fields));
      }
    }
  } catch (e) {
    out.ok = false;
    out.error = {
      code: e.code || null,
      errno: e.errno === undefined ? null : e.errno,
      sqlState: e.sqlState || null,
      message: e.sqlMessage || e.message,
    };
  }
  if (conn) {
    try { await conn.end(); } catch (e) { /* already closed */ }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(3);
});
