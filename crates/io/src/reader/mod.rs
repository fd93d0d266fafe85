//! Reading a container's logs back (`scribe logs`): the json-file or `local` files with their
//! rotated `.N` and `.N.gz` generations, oldest first, pieces of long lines joined, filtered by time
//! and stream, the last N lines read backwards, and following across rotations.
//!
//! - [`time`]: the `--since`/`--until` forms (RFC 3339, Unix time, durations back from now);
//! - [`entry`]: one json-file entry decoded, and encoded again for `--format json`;
//! - [`format`]: json-file lines or `local` records: cutting a stream, decoding a record;
//! - [`records`]: a stream cut into records in chunks; `pread` readers;
//! - [`partial`]: pieces joined into lines;
//! - [`backward`]: lines of a file from its end, in blocks;
//! - [`files`]: the files of one log, in age order, opened without following links;
//! - [`read`]: all of it, a time window, or the tail;
//! - [`follow`]: what is written next, across rotation and compression.

pub mod backward;
pub mod entry;
pub mod files;
pub mod follow;
pub mod format;
pub mod partial;
pub mod read;
pub mod records;
pub mod time;

#[cfg(test)]
mod tests;

pub use entry::Entry;
pub use files::FileLog;
pub use follow::{follow, Ended};
pub use format::Format;
pub use read::{read, Position, Query, Sink};
