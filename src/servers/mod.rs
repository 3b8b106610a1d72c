//! The backend servers: pools, health state and least-connections routing
//! (`pool`), and the probe: the short session of health checks and side
//! connections (`probe`).
//!
//! Sans-IO: counts, states and bytes; the runtime owns the sockets.

pub mod pool;
pub mod probe;
