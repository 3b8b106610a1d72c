//! The MySQL client/server protocol as bytes: framing, the connection-phase
//! messages, the native-password arithmetic, the errors myroute sends, and
//! PROXY protocol headers.
//!
//! Pure: functions take bytes and return values or `Result`s. Nothing here
//! touches a socket, a clock, the configuration or the log.

pub mod accept;
pub mod constants;
pub mod dial;
pub mod errors;
pub mod handshake;
pub mod proxy_proto;
pub mod ring;
pub mod scramble;
pub mod wire;
