//! Connection ids myroute hands out, and the KILL commands that name them.
//!
//! A client is greeted before any backend is chosen, so the id in its
//! greeting cannot be its backend session's. myroute's ids come from a
//! range no server hands out ([`FIRST_ID`] up), and every KILL naming one
//! is handled by myroute, so a client can never kill an unrelated backend
//! session by the id it was greeted with. KILLs naming other ids pass
//! through: they name backend sessions.
//!
//! Heads up (MariaDB "KILL"; MySQL "COM_PROCESS_KILL"): the statement is
//! `KILL [HARD | SOFT] [CONNECTION | QUERY] id` (`KILL QUERY ID query_id`
//! and `KILL USER name` name other things); COM_PROCESS_KILL (0x0C) carries
//! a 4-byte id and kills the connection.
//!
//! Pure: parses a command's payload.

use crate::protocol::constants::com;

/// The first id myroute hands out: 2^30. Servers count their sessions up
/// from 1 and would need a billion connections to get here; ids stay below
/// 2^31 because some drivers read them as signed 32-bit integers.
pub const FIRST_ID: u32 = 1 << 30;
/// How many ids the range holds before it wraps.
pub const ID_RANGE: u32 = 1 << 30;

/// True for an id in myroute's range.
pub fn is_ours(id: u64) -> bool {
    (u64::from(FIRST_ID)..u64::from(FIRST_ID) + u64::from(ID_RANGE)).contains(&id)
}

/// The id after `id`, wrapping inside the range.
pub fn next_id(id: u32) -> u32 {
    FIRST_ID + (id.wrapping_sub(FIRST_ID).wrapping_add(1) % ID_RANGE)
}

/// A KILL a client sent, naming `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub id: u64,
    /// KILL QUERY: only the running statement; else the connection.
    pub query: bool,
    /// Where, in the command's payload, the statements that follow the
    /// KILL in the same COM_QUERY start (`KILL 5; SELECT 1`); 0 if none.
    pub rest: usize,
}

impl Kill {
    /// The statement that kills backend session `backend_id` the same way,
    /// followed by `rest`, the statements the client sent after its KILL.
    pub fn statement(&self, backend_id: u32, rest: &[u8]) -> Vec<u8> {
        let what = if self.query { "QUERY" } else { "CONNECTION" };
        let mut p = vec![com::QUERY];
        p.extend_from_slice(format!("KILL {what} {backend_id}").as_bytes());
        if !rest.is_empty() {
            p.push(b';');
            p.extend_from_slice(rest);
        }
        p
    }
}

/// The longest COM_QUERY payload looked at as a KILL: longer ones are not
/// KILLs myroute handles, and are relayed without being held.
pub const MAX_STATEMENT: usize = 256;

/// Parses a command payload (command byte first): a COM_PROCESS_KILL, or
/// a COM_QUERY whose first statement is exactly
/// `KILL [HARD|SOFT] [CONNECTION|QUERY] id` (any case, any whitespace),
/// alone or followed by `;` and more statements (a multi-statement query,
/// as mysql2's pool sends `KILL ?; SELECT ...`). Anything else, including
/// `KILL QUERY ID n` and `KILL USER u`, is `None`.
pub fn parse(payload: &[u8]) -> Option<Kill> {
    match payload {
        [com::PROCESS_KILL, a, b, c, d] => Some(Kill {
            id: u64::from(u32::from_le_bytes([*a, *b, *c, *d])),
            query: false,
            rest: 0,
        }),
        [com::QUERY, sql @ ..] if sql.len() <= MAX_STATEMENT => {
            // A KILL statement holds no quote, so its first `;` ends it.
            let (head, rest) = match sql.iter().position(|&b| b == b';') {
                Some(semi)
                    if !sql[semi + 1..].iter().all(|b| b.is_ascii_whitespace() || *b == b';') =>
                {
                    (&sql[..semi], 1 + semi + 1)
                }
                _ => (sql, 0),
            };
            statement(head).map(|(id, query)| Kill { id, query, rest })
        }
        _ => None,
    }
}

/// `KILL [HARD|SOFT] [CONNECTION|QUERY] id`: the id, and whether it is a
/// KILL QUERY.
fn statement(sql: &[u8]) -> Option<(u64, bool)> {
    let sql = std::str::from_utf8(sql).ok()?;
    let sql = sql.trim_end_matches(|c: char| c == ';' || c.is_ascii_whitespace());
    let mut words = sql.split_ascii_whitespace().peekable();
    if !words.next()?.eq_ignore_ascii_case("KILL") {
        return None;
    }
    let is = |w: &&str, k: &str| w.eq_ignore_ascii_case(k);
    words.next_if(|w| is(w, "HARD") || is(w, "SOFT"));
    let query = words.next_if(|w| is(w, "QUERY")).is_some();
    if !query {
        words.next_if(|w| is(w, "CONNECTION"));
    }
    let id = words.next()?;
    if words.next().is_some() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((id.parse().ok()?, query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> Vec<u8> {
        let mut p = vec![com::QUERY];
        p.extend_from_slice(sql.as_bytes());
        p
    }

    #[test]
    fn kill_statements_in_every_spelling() {
        let cases = [
            ("KILL 1073741825", Some((1073741825, false))),
            ("kill query 5", Some((5, true))),
            ("  Kill\tConnection\n 7 ;", Some((7, false))),
            ("KILL HARD QUERY 9;", Some((9, true))),
            ("kill soft 11", Some((11, false))),
            ("KILL QUERY ID 5", None),
            ("KILL USER bob", None),
            ("KILL", None),
            ("KILL 5 6", None),
            ("KILL -5", None),
            ("KILL 5x", None),
            ("SELECT 1", None),
            ("KILLER 5", None),
            ("KILL 99999999999999999999999", None),
        ];
        for (sql, want) in cases {
            let got = parse(&query(sql)).map(|k| (k.id, k.query));
            assert_eq!(got, want, "{sql}");
            assert_eq!(parse(&query(sql)).map_or(0, |k| k.rest), 0, "{sql}");
        }
        assert_eq!(
            parse(&[com::PROCESS_KILL, 1, 0, 0, 0x40]),
            Some(Kill { id: 0x4000_0001, query: false, rest: 0 })
        );
        assert_eq!(parse(&[com::PROCESS_KILL, 1, 0, 0]), None);
        let long = format!("KILL {}5", " ".repeat(MAX_STATEMENT));
        assert_eq!(parse(&query(&long)), None);
    }

    #[test]
    fn a_kill_may_lead_a_multi_statement_query() {
        let p = query("kill 1073741830; select sleep(0.05)");
        let k = parse(&p).unwrap();
        assert_eq!((k.id, k.query), (1073741830, false));
        assert_eq!(&p[k.rest..], b" select sleep(0.05)");
        assert_eq!(k.statement(12, &p[k.rest..]), query("KILL CONNECTION 12; select sleep(0.05)"));
        assert_eq!(parse(&query("KILL QUERY 7 ;; ")).map(|k| (k.id, k.rest)), Some((7, 0)));
        assert_eq!(parse(&query("SELECT 1; KILL 7")), None);
        assert_eq!(parse(&query("KILL 7 8; SELECT 1")), None);
        assert_eq!(k.statement(12, b""), query("KILL CONNECTION 12"));
    }

    #[test]
    fn ids_stay_in_their_range() {
        assert!(is_ours(u64::from(FIRST_ID)) && !is_ours(u64::from(FIRST_ID) - 1));
        assert!(is_ours((1 << 31) - 1) && !is_ours(1 << 31));
        assert_eq!(next_id(FIRST_ID), FIRST_ID + 1);
        assert_eq!(next_id((1 << 31) - 1), FIRST_ID);
        assert_eq!(next_id(0), FIRST_ID + 1); // anything outside starts over
    }

    #[test]
    fn the_backend_statement_names_the_backend_id() {
        let k = Kill { id: 1 << 30, query: true, rest: 0 };
        assert_eq!(k.statement(42, b""), query("KILL QUERY 42"));
        let k = Kill { id: 1 << 30, query: false, rest: 0 };
        assert_eq!(k.statement(7, b""), query("KILL CONNECTION 7"));
    }
}
