//! myroute: a small, auditable MySQL proxy that authenticates clients
//! itself and routes each connection to a backend pool chosen by user name.
//!
//! The binary (`main.rs`) is a thin command line around [`runtime`]; the
//! modules are public so the parsers can be fuzzed and tested on their own.
//!
//! The folders follow the roles, each depending only on those above it:
//!
//! | folder | what lives there | what it may not touch |
//! |---|---|---|
//! | [`protocol`] | MySQL wire format, login exchanges, scramble math, errors | sockets, clocks, config, logs |
//! | [`config`] | the key table and the file parser | sockets, name resolution |
//! | [`servers`] | pools, routing, health, the probe session | sockets |
//! | [`operations`] | console, reports, metrics, counters, access log | sessions, sockets |
//! | [`sessions`] | the connection pair and its reply tracker | mio, sockets |
//! | [`runtime`] | the poll loop, sockets, TLS, signals, the OS | (everything may be used here) |

// `unsafe` is denied everywhere but in `runtime::sys`, the one small module
// that calls libc directly.
#![deny(unsafe_code)]

pub mod config;
pub mod operations;
pub mod protocol;
pub mod runtime;
pub mod servers;
pub mod sessions;
