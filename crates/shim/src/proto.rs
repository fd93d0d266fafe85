//! Code generated at build time from the project's `proto/` files (see `build.rs`).

#![allow(clippy::all, missing_docs, unused_qualifications)]

include!(concat!(env!("OUT_DIR"), "/proto/mod.rs"));
