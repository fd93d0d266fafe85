//! Identifiers of split lines: Docker gives every piece of a line longer than 16 KiB the same
//! random id (`partial_log_metadata.id`), an ordinal and a `last` flag. json-file stores none of
//! it; `local`, fluentd and plugins carry it.

use std::fmt;

/// Where a piece sits in its split line, and which line that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partial {
    /// Shared by all pieces of one line, unique within the shim.
    pub id: PartialId,
    /// 1-based position of the piece.
    pub ordinal: u32,
    /// The piece that ends the line.
    pub last: bool,
}

/// A split line's id: printed as 64 hex digits, as Docker's `stringid.GenerateRandomID`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PartialId {
    seed: [u8; 24],
    counter: u64,
}

impl fmt::Display for PartialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.seed {
            write!(f, "{b:02x}")?;
        }
        write!(f, "{:016x}", self.counter)
    }
}

impl fmt::Debug for PartialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Hands out [`PartialId`]s: a random seed read once per stream plus a counter, so a split line
/// costs no system call.
#[derive(Debug, Clone)]
pub struct PartialIds {
    seed: [u8; 24],
    counter: u64,
}

impl PartialIds {
    /// A generator seeded from the kernel's random pool (falls back to time and pid, which
    /// still keeps ids unique within the shim).
    pub fn new() -> PartialIds {
        let mut seed = [0u8; 24];
        if getrandom_fill(&mut seed).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            seed[..16].copy_from_slice(&now.to_le_bytes());
            seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
        }
        PartialIds { seed, counter: 0 }
    }

    /// The id of the next split line.
    pub fn next_id(&mut self) -> PartialId {
        self.counter += 1;
        PartialId {
            seed: self.seed,
            counter: self.counter,
        }
    }
}

impl Default for PartialIds {
    fn default() -> Self {
        PartialIds::new()
    }
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == buf.len() as isize {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let mut g = PartialIds::new();
        let a = g.next_id().to_string();
        let b = g.next_id().to_string();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(PartialIds::new().next_id(), PartialIds::new().next_id());
    }
}
