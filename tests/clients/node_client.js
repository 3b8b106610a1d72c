'use strict';
// Client program for the end-to-end tests, using the mysql2 package.
//
// Usage: node node_client.js JSON
// JSON: {"host", "port", "user", "password", "database"?, "multipleStatements"?,
//        "ssl"?: {"ca"?: PEM file, "rejectUnauthorized"?: bool, "verifyIdentity"?: bool},
//        "connections"?: {NAME: {...}}, "ops": [OP, ...]}
// The connection "main" uses the top-level settings and is opened first;
// each other NAME in "connections" uses them with its own fields ("user",
// "password", "database", ...) in place, and is opened when an op first
// names it.
//
// OP is one of
//   {"query": SQL, "params"?: [...]}    text protocol (parameters escaped client-side)
//   {"execute": SQL, "params"?: [...]}  prepared on the server (COM_STMT_PREPARE/EXECUTE)
//   {"changeUser": {"user", "password", "database"?}}   COM_CHANGE_USER
//   {"threadId": true}                  the connection id the greeting gave
//   {"pollUntil": SQL, "timeoutMs"?: N} runs SQL until its first value is
//                                       true (not 0, NULL or ''), at most N ms
//   {"wait": LABEL}                     the result of the op started as LABEL
//   {"end": true}                       closes the connection
// with, on any op,
//   "conn": NAME         the connection it runs on (default "main")
//   "start": LABEL       start it and go on at once; {"wait": LABEL} collects it
//   "expectError": true  an error becomes this op's result instead of ending the run
// In SQL, "{threadId:NAME}" stands for that connection's id from its greeting.
//
// With "ssl" the connection must use TLS (mysql2 fails if the server does not
// offer it); the CA file is read and given to mysql2 as `ca`.
//
// Prints one JSON document on stdout:
//   {"ok": true, "tls": T, "results": [R, ...]}          one R per op
//   {"ok": false, "error": {...}, "tls": T, "results": [...]} on the first unexpected error
// T is null on a plaintext connection (or before login), else what the main
// connection's own TLS socket says: {"protocol": "TLSv1.3", "cipher": NAME,
// "fingerprint256": "AB:CD:..." of the server's certificate}.
// R is {"rows": [[v, ...], ...], "columns": [...]} for a result set,
// {"affectedRows": n, "insertId": n} for a statement without one,
// {"sets": [R, ...]} when a statement returned several results,
// {"changed": true} for a changeUser, {"threadId": n}, {"polls": n} for a
// pollUntil, {"ended": true}, or {"error": {...}} for an expected error.  The
// result of a waited op also has "elapsedMs" (from its start to its end).
// Exit status 0 in all these cases; non-zero only when the program itself fails.

const fs = require('fs');
const tls = require('tls');
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

function sslOptions(spec) {
  if (!spec) return undefined;
  const ssl = {};
  if (spec.ca) ssl.ca = fs.readFileSync(spec.ca);
  if (spec.rejectUnauthorized !== undefined) ssl.rejectUnauthorized = spec.rejectUnauthorized;
  if (spec.verifyIdentity !== undefined) ssl.verifyIdentity = spec.verifyIdentity;
  return ssl;
}

function tlsView(conn) {
  const stream = conn && conn.connection && conn.connection.stream;
  if (!(stream instanceof tls.TLSSocket)) return null;
  const cert = stream.getPeerCertificate();
  return {
    protocol: stream.getProtocol(),
    cipher: stream.getCipher().name,
    fingerprint256: cert && cert.fingerprint256 ? cert.fingerprint256 : null,
  };
}

function errorOf(e) {
  return {
    code: e.code || null,
    errno: e.errno === undefined ? null : e.errno,
    sqlState: e.sqlState || null,
    message: e.sqlMessage || e.message,
  };
}

function truthy(v) {
  return !(v === null || v === undefined || v === 0 || v === '0' || v === '' || v === false);
}

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const out = { ok: true, tls: null, results: [] };
  const conns = new Map();
  const started = new Map();

  async function connection(name) {
    if (conns.has(name)) return conns.get(name);
    const own = name === 'main' ? {} : ((spec.connections || {})[name] || {});
    const pick = (k) => (own[k] !== undefined ? own[k] : spec[k]);
    const conn = await mysql.createConnection({
      host: pick('host'),
      port: pick('port'),
      user: pick('user'),
      password: pick('password'),
      database: pick('database'),
      multipleStatements: !!pick('multipleStatements'),
      rowsAsArray: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      connectTimeout: 10000,
      ssl: sslOptions(pick('ssl')),
    });
    conns.set(name, conn);
    return conn;
  }

  function expand(sql) {
    return sql.replace(/\{threadId:([A-Za-z0-9_]+)\}/g, (_, name) => {
      if (!conns.has(name)) throw new Error('no connection ' + name + ' yet');
      return String(conns.get(name).threadId);
    });
  }

  async function run(op) {
    if (op.wait !== undefined) {
      if (!started.has(op.wait)) throw new Error('nothing started as ' + op.wait);
      return started.get(op.wait);
    }
    const conn = await connection(op.conn || 'main');
    if (op.query !== undefined) {
      const [result, fields] = await conn.query(expand(op.query), op.params || []);
      return describe(result, fields);
    }
    if (op.execute !== undefined) {
      const [result, fields] = await conn.execute(expand(op.execute), op.params || []);
      return describe(result, fields);
    }
    if (op.changeUser !== undefined) {
      await conn.changeUser(op.changeUser);
      return { changed: true };
    }
    if (op.threadId) {
      return { threadId: conn.threadId };
    }
    if (op.pollUntil !== undefined) {
      const deadline = Date.now() + (op.timeoutMs || 10000);
      for (let polls = 1; ; polls++) {
        const [rows] = await conn.query(expand(op.pollUntil));
        if (rows.length > 0 && truthy(rows[0][0])) return { polls };
        if (Date.now() >= deadline) {
          throw new Error('pollUntil timed out after ' + polls + ' polls: ' + op.pollUntil);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    if (op.end) {
      await conn.end();
      conns.delete(op.conn || 'main');
      return { ended: true };
    }
    throw new Error('unknown op ' + JSON.stringify(op));
  }

  // Settles an op: its result, or {"error"} when an error is expected.
  async function settle(op) {
    const t0 = Date.now();
    try {
      const r = await run(op);
      if (op.start !== undefined) r.elapsedMs = Date.now() - t0;
      return r;
    } catch (e) {
      if (!op.expectError) throw e;
      const r = { error: errorOf(e) };
      if (op.start !== undefined) r.elapsedMs = Date.now() - t0;
      return r;
    }
  }

  try {
    // The main connection is always opened, first: a run without ops is a
    // login check.
    out.tls = tlsView(await connection('main'));
    for (const op of spec.ops || []) {
      if (op.start !== undefined) {
        const p = settle(op);
        // An unexpected error surfaces when the op is waited for.
        p.catch(() => {});
        started.set(op.start, p);
        out.results.push({ started: op.start });
      } else {
        out.results.push(await settle(op));
      }
    }
  } catch (e) {
    out.ok = false;
    out.error = errorOf(e);
  }
  for (const conn of conns.values()) {
    if (!out.ok) {
      // A statement may still be running: do not wait for it.
      conn.destroy();
      continue;
    }
    // A connection the server (or the proxy) has closed may never answer
    // COM_QUIT: give it a moment, then drop it.
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(resolve, 3000); });
    try { await Promise.race([conn.end(), late]); } catch (e) { /* already closed */ }
    clearTimeout(timer);
    conn.destroy();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(3);
});
