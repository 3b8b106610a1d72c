//! The one thread: the mio poll loop, every socket read and write, signals
//! and the few direct OS calls.
//!
//! This is the only folder that imports mio or touches a socket; the rest
//! of myroute is handed bytes and events.

pub mod console;
pub mod event_loop;
pub mod io;
pub mod pairs;
pub mod probes;
pub mod sys;
#[cfg(feature = "tls")]
pub mod tls;
