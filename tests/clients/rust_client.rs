//! Command-line MySQL client used by the end-to-end tests, built on the
//! `mysql` crate.
//!
//! Usage: rust_client URL OP...
//!
//! Each OP is one of
//!   query=SQL      run SQL with the text protocol (COM_QUERY)
//!   exec=SQL       prepare SQL on the server and execute it (COM_STMT_*)
//!   param=VALUE    a string parameter for the preceding exec= (repeatable)
//!   int=VALUE      an integer parameter for the preceding exec=
//!   change_user=USER  COM_CHANGE_USER to USER (Conn::change_user), with
//!   pass=PASSWORD  the password for the preceding change_user= (default empty)
//!   db=DATABASE    the database for the preceding change_user= (default none)
//!
//! Output, one line per item, fields separated by tabs (values escaped so
//! that a tab, newline or backslash never appears raw):
//!   op      N                       start of the N-th operation (from 0)
//!   set     COLUMN...               start of a result set
//!   row     VALUE...                a row; SQL NULL prints as \N
//!   ok      AFFECTED  LAST_INSERT_ID  a statement without a result set
//!   changed                         a change_user= that succeeded
//! On an error: `error  CODE  SQLSTATE  MESSAGE` on stderr, exit status 1
//! (2 for errors that are not a server's ERR packet).

use mysql::prelude::*;
use mysql::{ChangeUserOpts, Conn, Opts, Params, Value};
use std::io::Write;
use std::process::exit;

enum Op {
    Query(String),
    Exec(String, Vec<Value>),
    ChangeUser { user: String, pass: String, db: Option<String> },
}

fn escape(s: &[u8]) -> String {
    let text = String::from_utf8_lossy(s);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
    out
}

fn value_text(v: &Value) -> String {
    match v {
        Value::NULL => "\\N".to_string(),
        Value::Bytes(b) => escape(b),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Date(y, mo, d, h, mi, s, us) => {
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
        }
        Value::Time(neg, d, h, mi, s, us) => {
            let sign = if *neg { "-" } else { "" };
            format!("{sign}{}:{mi:02}:{s:02}.{us:06}", *d * 24 + u32::from(*h))
        }
    }
}

fn fail(e: mysql::Error) -> ! {
    match e {
        mysql::Error::MySqlError(me) => {
            eprintln!("error\t{}\t{}\t{}", me.code, me.state, escape(me.message.as_bytes()));
            exit(1)
        }
        other => {
            eprintln!("error\t0\t\t{}", escape(other.to_string().as_bytes()));
            exit(2)
        }
    }
}

fn print_sets<P: mysql::prelude::Protocol>(
    out: &mut impl Write,
    mut result: mysql::QueryResult<'_, '_, '_, P>,
) -> Result<(), mysql::Error> {
    while let Some(set) = result.iter() {
        let columns: Vec<String> =
            set.columns().as_ref().iter().map(|c| escape(c.name_str().as_bytes())).collect();
        if columns.is_empty() {
            writeln!(out, "ok\t{}\t{}", set.affected_rows(), set.last_insert_id().unwrap_or(0))
                .unwrap();
            continue;
        }
        writeln!(out, "set\t{}", columns.join("\t")).unwrap();
        for row in set {
            let row = row?;
            let values: Vec<String> = row.unwrap().iter().map(value_text).collect();
            writeln!(out, "row\t{}", values.join("\t")).unwrap();
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args[0] == "--help" {
        eprintln!("usage: rust_client URL (query=SQL | exec=SQL [param=V|int=N]...)...");
        exit(2);
    }
    let opts = match Opts::from_url(&args[0]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error\t0\t\tbad URL: {e}");
            exit(2)
        }
    };
    let mut ops: Vec<Op> = Vec::new();
    for arg in &args[1..] {
        let (kind, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        match (kind, ops.last_mut()) {
            ("query", _) => ops.push(Op::Query(value.to_string())),
            ("exec", _) => ops.push(Op::Exec(value.to_string(), Vec::new())),
            ("change_user", _) => {
                ops.push(Op::ChangeUser { user: value.to_string(), pass: String::new(), db: None })
            }
            ("pass", Some(Op::ChangeUser { pass, .. })) => *pass = value.to_string(),
            ("db", Some(Op::ChangeUser { db, .. })) => *db = Some(value.to_string()),
            ("param", Some(Op::Exec(_, params))) => params.push(Value::from(value)),
            ("int", Some(Op::Exec(_, params))) => match value.parse::<i64>() {
                Ok(n) => params.push(Value::Int(n)),
                Err(_) => {
                    eprintln!("error\t0\t\tbad integer: {value}");
                    exit(2)
                }
            },
            _ => {
                eprintln!("error\t0\t\tbad argument: {arg}");
                exit(2)
            }
        }
    }

    let mut conn = Conn::new(opts).unwrap_or_else(|e| fail(e));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (i, op) in ops.into_iter().enumerate() {
        writeln!(out, "op\t{i}").unwrap();
        let res = match op {
            Op::Query(sql) => match conn.query_iter(sql) {
                Ok(r) => print_sets(&mut out, r),
                Err(e) => Err(e),
            },
            Op::Exec(sql, params) => {
                let params =
                    if params.is_empty() { Params::Empty } else { Params::Positional(params) };
                match conn.exec_iter(sql, params) {
                    Ok(r) => print_sets(&mut out, r),
                    Err(e) => Err(e),
                }
            }
            Op::ChangeUser { user, pass, db } => {
                let opts = ChangeUserOpts::default()
                    .with_user(Some(user))
                    .with_pass(Some(pass))
                    .with_db_name(db);
                conn.change_user(opts).map(|()| writeln!(out, "changed").unwrap())
            }
        };
        if let Err(e) = res {
            out.flush().unwrap();
            fail(e);
        }
    }
    out.flush().unwrap();
}
