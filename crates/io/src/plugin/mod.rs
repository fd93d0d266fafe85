//! Docker's LogDriver plugin protocol, shared by both sides of it: the shim's plugin driver
//! (Scribe drives a Docker logging plugin, [`crate::drivers`]) and `scribe plugin` (dockerd
//! drives Scribe).
//!
//! The protocol is JSON over HTTP/1.1 `POST /<Method>` on a unix (or TCP) socket, plus a FIFO
//! per container carrying `[u32 BE size][LogEntry]` frames ([`frame`]). [`proto`] holds the
//! JSON bodies with the field names dockerd's Go structs use, and accepts what real plugins
//! answer where the docs differ (`Cap` around Capabilities, `LoggingDriver` in Activate).

pub mod client;
pub mod discovery;
pub mod frame;
pub mod proto;
pub mod readback;
