//! myroute: a small, auditable MySQL proxy that authenticates clients
//! itself and routes each connection to a backend pool chosen by user name.
//!
//! The binary (`main.rs`) is a thin command line around [`event_loop`]; the
//! modules are public so the parsers can be fuzzed and tested on their own.

// `unsafe` is denied everywhere but in `sys`, the one small module that
// calls libc directly.
#![deny(unsafe_code)]

pub mod access;
pub mod admin;
pub mod check;
pub mod config;
pub mod errors;
pub mod event_loop;
pub mod exposition;
pub mod handshake;
pub mod http;
pub mod io;
pub mod pair;
pub mod pool;
pub mod proxy_proto;
pub mod report;
pub mod ring;
pub mod scramble;
pub mod stats;
pub mod sys;
pub mod track;
pub mod wire;
