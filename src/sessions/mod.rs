//! Client sessions: the connection pair's state machine and the tracker
//! that follows the backend's replies.
//!
//! Sans-IO: never imports mio and never reads or writes a socket; the
//! runtime moves bytes between sockets and the pair's rings.

pub mod kill;
pub mod pair;
pub mod track;
