//! Reading what a target's code under test wrote: a cursor over a payload
//! and the packets of an output buffer. (Each target uses some of it.)
#![allow(dead_code)]

use myroute::protocol::errors;
use myroute::protocol::wire::header_of;

/// A cursor that gives up (`None`) where the bytes end too soon.
pub struct Cur<'a>(pub &'a [u8]);

impl<'a> Cur<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    pub fn uint(&mut self, n: usize) -> Option<u64> {
        Some(self.take(n)?.iter().rev().fold(0, |v, &b| v << 8 | u64::from(b)))
    }

    pub fn lenenc(&mut self) -> Option<u64> {
        match self.uint(1)? {
            v @ 0..=250 => Some(v),
            0xFC => self.uint(2),
            0xFD => self.uint(3),
            0xFE => self.uint(8),
            _ => None,
        }
    }

    pub fn lenenc_str(&mut self) -> Option<&'a [u8]> {
        let n = self.lenenc()?;
        self.take(usize::try_from(n).ok()?)
    }

    pub fn nul_str(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(s)
    }
}

/// The packets in `out`: `(sequence id, payload)`; `out` holds whole
/// packets only.
pub fn packets(mut out: &[u8]) -> Vec<(u8, &[u8])> {
    let mut v = Vec::new();
    while !out.is_empty() {
        let (len, seq) = header_of(out).expect("a whole header");
        assert!(out.len() >= 4 + len, "a whole packet");
        v.push((seq, &out[4..4 + len]));
        out = &out[4 + len..];
    }
    v
}

/// `out` is exactly one ERR packet with sequence id `seq` and `code`;
/// returns its message.
pub fn only_err(out: &[u8], seq: u8, code: u16) -> String {
    let p = packets(out);
    assert_eq!(p.len(), 1, "one ERR packet");
    assert_eq!(p[0].0, seq, "sequence id of the ERR");
    let (c, msg) = errors::parse_err(p[0].1).expect("an ERR packet");
    assert_eq!(c, code);
    msg
}
