//! What operators see and do: the admin console's session, the SHOW
//! tables and `/metrics`, counters, and the access log.
//!
//! Reports read a view the runtime hands them; commands that change
//! anything go back to the runtime, which alone applies them. Nothing here
//! touches a socket or a session's internals.

pub mod access;
pub mod admin;
pub mod exposition;
pub mod http;
pub mod report;
pub mod stats;
