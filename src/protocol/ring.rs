//! A fixed-capacity byte ring whose storage is attached only while it holds
//! bytes.
//!
//! Each connection pair owns two rings (one per direction). An idle pair keeps
//! no storage at all: a ring borrows a buffer from the [`BufPool`] when bytes
//! are about to arrive and gives it back when it drains (PgBouncer's lazily
//! attached iobuf, HAProxy's buffers on demand). The capacity is fixed, so a
//! full ring is the backpressure signal: nothing reads from a source whose
//! ring is full.
//!
//! No I/O happens here; `fill_with` / `drain_with` hand slices of storage to a
//! closure that does the `read` or `write`.

/// Free buffers, all of the same size, reused between rings.
pub struct BufPool {
    size: usize,
    free: Vec<Box<[u8]>>,
    /// Upper bound on buffers kept for reuse; beyond it drained buffers are freed.
    keep: usize,
}

impl BufPool {
    /// A pool handing out buffers of `size` bytes, keeping at most `keep` spares.
    pub fn new(size: usize, keep: usize) -> BufPool {
        BufPool { size, free: Vec::new(), keep }
    }

    /// The capacity of every buffer this pool hands out.
    pub fn buf_size(&self) -> usize {
        self.size
    }

    fn take(&mut self) -> Box<[u8]> {
        self.free.pop().unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    fn give(&mut self, buf: Box<[u8]>) {
        if self.free.len() < self.keep && buf.len() == self.size {
            self.free.push(buf);
        }
    }

    /// Spare buffers currently held (for tests and stats).
    #[cfg(test)]
    pub fn spare(&self) -> usize {
        self.free.len()
    }
}

/// A byte ring. `read_at` is the offset of the oldest byte, `len` the number
/// of bytes held; storage is empty while nothing is buffered.
#[derive(Default)]
pub struct Ring {
    buf: Option<Box<[u8]>>,
    read_at: usize,
    len: usize,
    /// Bytes consumed or cleared since the ring was made: a position in
    /// the stream is `consumed() + offset`.
    consumed: u64,
}

impl Ring {
    /// Bytes consumed (or cleared) since the ring was made.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity of the attached storage (0 while detached).
    pub fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len())
    }

    /// True when storage is attached and has no free byte left.
    pub fn is_full(&self) -> bool {
        self.buf.is_some() && self.len == self.capacity()
    }

    /// Attaches storage from the pool if none is attached.
    pub fn attach(&mut self, pool: &mut BufPool) {
        if self.buf.is_none() {
            self.buf = Some(pool.take());
            self.read_at = 0;
            self.len = 0;
        }
    }

    /// Returns the storage to the pool if the ring is empty.
    pub fn release_if_empty(&mut self, pool: &mut BufPool) {
        if self.len == 0 {
            if let Some(b) = self.buf.take() {
                pool.give(b);
            }
            self.read_at = 0;
        }
    }

    /// Drops everything buffered and returns the storage to the pool.
    pub fn clear(&mut self, pool: &mut BufPool) {
        self.consumed += self.len as u64;
        self.len = 0;
        self.release_if_empty(pool);
    }

    /// Appends into the largest contiguous free region through `f`, which
    /// returns how many bytes it wrote there. Storage must be attached.
    #[must_use]
    pub fn fill_with<R>(&mut self, f: impl FnOnce(&mut [u8]) -> (usize, R)) -> (usize, R) {
        let Some(buf) = self.buf.as_mut() else {
            return f(&mut []);
        };
        let cap = buf.len();
        if self.len == 0 {
            // Empty: rewind so the whole buffer is one free region.
            self.read_at = 0;
        }
        if cap == 0 || self.len == cap {
            return f(&mut []);
        }
        // The free region starts after the newest byte and runs to the end of
        // storage, or to the oldest byte when the data has wrapped.
        let write_at = (self.read_at + self.len) % cap;
        let end = if write_at >= self.read_at { cap } else { self.read_at };
        let slice = &mut buf[write_at..end];
        let (n, r) = f(slice);
        assert!(n <= slice.len(), "fill_with closure overran its slice");
        self.len += n;
        (n, r)
    }

    /// Appends `data` (as much as fits, possibly in two pieces). Returns the
    /// count appended. Storage must be attached.
    #[must_use]
    pub fn push(&mut self, mut data: &[u8]) -> usize {
        let mut total = 0;
        while !data.is_empty() {
            let (n, ()) = self.fill_with(|free| {
                let n = free.len().min(data.len());
                free[..n].copy_from_slice(&data[..n]);
                (n, ())
            });
            if n == 0 {
                break;
            }
            data = &data[n..];
            total += n;
        }
        total
    }

    /// The buffered bytes as at most two slices, oldest first (for `writev`).
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let Some(buf) = self.buf.as_ref() else {
            return (&[], &[]);
        };
        let cap = buf.len();
        let first_end = (self.read_at + self.len).min(cap);
        let first = &buf[self.read_at..first_end];
        let second = &buf[..self.len - first.len()];
        (first, second)
    }

    /// Marks `n` of the oldest bytes consumed.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len, "consumed more than buffered");
        let cap = self.capacity();
        self.len -= n;
        self.consumed += n as u64;
        self.read_at = if self.len == 0 { 0 } else { (self.read_at + n) % cap };
    }

    /// Zeroes the storage not holding buffered bytes, so data already
    /// consumed (a login packet with its token) does not linger in it.
    pub fn scrub(&mut self) {
        let (start, len) = (self.read_at, self.len);
        if let Some(buf) = self.buf.as_mut() {
            let cap = buf.len();
            for i in 0..cap {
                // Offset of byte i from the oldest buffered byte.
                if (i + cap - start) % cap >= len {
                    buf[i] = 0;
                }
            }
        }
    }

    /// Copies up to `out.len()` bytes starting `offset` bytes after the oldest
    /// one, without consuming. Returns the count copied.
    pub fn peek(&self, offset: usize, out: &mut [u8]) -> usize {
        let (a, b) = self.as_slices();
        let mut copied = 0;
        let mut skip = offset;
        for part in [a, b] {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let avail = &part[skip..];
            skip = 0;
            let n = avail.len().min(out.len() - copied);
            out[copied..copied + n].copy_from_slice(&avail[..n]);
            copied += n;
            if copied == out.len() {
                break;
            }
        }
        copied
    }

    /// Byte at `offset` from the oldest one, if buffered.
    pub fn byte_at(&self, offset: usize) -> Option<u8> {
        if offset >= self.len {
            return None;
        }
        let buf = self.buf.as_ref()?;
        Some(buf[(self.read_at + offset) % buf.len()])
    }

    /// Overwrites the byte at `offset` (already buffered).
    pub fn set_byte(&mut self, offset: usize, value: u8) {
        assert!(offset < self.len, "set_byte beyond buffered data");
        if let Some(buf) = self.buf.as_mut() {
            let cap = buf.len();
            buf[(self.read_at + offset) % cap] = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(pool: &mut BufPool) -> Ring {
        let mut r = Ring::default();
        r.attach(pool);
        r
    }

    fn drain_all(r: &mut Ring) -> Vec<u8> {
        let (a, b) = r.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        let n = v.len();
        r.consume(n);
        v
    }

    #[test]
    fn detached_ring_is_empty_and_not_full() {
        let r = Ring::default();
        assert!(r.is_empty());
        assert!(!r.is_full());
        assert_eq!(r.capacity(), 0);
        assert_eq!(r.as_slices(), (&[][..], &[][..]));
    }

    #[test]
    fn fill_exactly_full_then_drain() {
        let mut pool = BufPool::new(8, 4);
        let mut r = ring(&mut pool);
        assert_eq!(r.push(b"abcdefgh"), 8);
        assert!(r.is_full());
        assert_eq!(r.push(b"x"), 0);
        assert_eq!(drain_all(&mut r), b"abcdefgh");
        assert!(r.is_empty());
    }

    #[test]
    fn wraps_around_and_peeks_across_the_seam() {
        let mut pool = BufPool::new(8, 4);
        let mut r = ring(&mut pool);
        assert_eq!(r.push(b"abcdef"), 6);
        r.consume(4); // "ef" left at offsets 4..6
        assert_eq!(r.push(b"123456"), 6); // wraps: "ef123456"
        assert!(r.is_full());
        let (a, b) = r.as_slices();
        assert_eq!(a, b"ef12");
        assert_eq!(b, b"3456");
        let mut out = [0u8; 5];
        assert_eq!(r.peek(1, &mut out), 5);
        assert_eq!(&out, b"f1234");
        assert_eq!(r.byte_at(7), Some(b'6'));
        assert_eq!(r.byte_at(8), None);
        r.set_byte(2, b'X');
        assert_eq!(drain_all(&mut r), b"efX23456");
    }

    #[test]
    fn empty_ring_rewinds_so_the_whole_buffer_is_free() {
        let mut pool = BufPool::new(8, 4);
        let mut r = ring(&mut pool);
        assert_eq!(r.push(b"abc"), 3);
        r.consume(3);
        let (n, ()) = r.fill_with(|free| {
            assert_eq!(free.len(), 8);
            (0, ())
        });
        assert_eq!(n, 0);
    }

    #[test]
    fn scrub_zeroes_only_what_is_not_buffered() {
        let mut pool = BufPool::new(8, 4);
        let mut r = ring(&mut pool);
        assert_eq!(r.push(b"abcdefgh"), 8);
        r.consume(6); // "gh" at offsets 6..8
        assert_eq!(r.push(b"ij"), 2); // wraps: "ghij"
        r.scrub();
        assert_eq!(drain_all(&mut r), b"ghij");
        assert_eq!(&r.buf.as_ref().unwrap()[2..6], &[0, 0, 0, 0]);
    }

    #[test]
    fn storage_returns_to_pool_only_when_empty() {
        let mut pool = BufPool::new(8, 4);
        let mut r = ring(&mut pool);
        assert_eq!(r.push(b"ab"), 2);
        r.release_if_empty(&mut pool);
        assert_eq!(r.capacity(), 8);
        r.consume(2);
        r.release_if_empty(&mut pool);
        assert_eq!(r.capacity(), 0);
        assert_eq!(pool.spare(), 1);
        r.attach(&mut pool);
        assert_eq!(pool.spare(), 0);
    }

    #[test]
    fn pool_keeps_a_bounded_number_of_spares() {
        let mut pool = BufPool::new(8, 1);
        let mut a = ring(&mut pool);
        let mut b = ring(&mut pool);
        a.release_if_empty(&mut pool);
        b.release_if_empty(&mut pool);
        assert_eq!(pool.spare(), 1);
    }

    #[test]
    fn exhaustive_small_sequences_match_a_vecdeque() {
        use std::collections::VecDeque;
        // Every interleaving of pushes and consumes up to depth 6 on a ring of 5.
        fn walk(depth: usize, r: &mut Ring, model: &mut VecDeque<u8>, next: &mut u8) {
            let (a, b) = r.as_slices();
            let got: Vec<u8> = a.iter().chain(b).copied().collect();
            assert_eq!(got, model.iter().copied().collect::<Vec<_>>());
            if depth == 0 {
                return;
            }
            for op in 0..6usize {
                let (saved_buf, saved_at, saved_len) = (r.buf.clone(), r.read_at, r.len);
                let saved_model = model.clone();
                let saved_next = *next;
                if op < 3 {
                    let data: Vec<u8> = (0..op + 1).map(|i| next.wrapping_add(i as u8)).collect();
                    *next = next.wrapping_add(data.len() as u8);
                    let n = r.push(&data);
                    assert_eq!(n, data.len().min(5 - model.len()));
                    model.extend(&data[..n]);
                } else {
                    let n = (op - 2).min(model.len());
                    r.consume(n);
                    model.drain(..n);
                }
                walk(depth - 1, r, model, next);
                r.buf = saved_buf;
                r.read_at = saved_at;
                r.len = saved_len;
                *model = saved_model;
                *next = saved_next;
            }
        }
        let mut pool = BufPool::new(5, 1);
        let mut r = ring(&mut pool);
        walk(6, &mut r, &mut VecDeque::new(), &mut 0);
    }
}
