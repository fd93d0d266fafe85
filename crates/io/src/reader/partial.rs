//! Joins the pieces of a long line back into the line the container wrote: json-file stores a
//! line longer than the driver's maximum as several entries, all but the last without `\n`.
//! Pieces are joined per stream (stdout and stderr pieces may interleave); the line keeps the
//! time of its first piece.

use super::entry::Entry;

/// Pieces waiting for the end of their line, one slot per stream.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: [Option<Entry>; 2],
    /// Pass pieces through unjoined ([`super::Query::pieces`]).
    pass: bool,
}

fn slot(e: &Entry) -> usize {
    match e.stream {
        crate::stream::Stream::Stdout => 0,
        crate::stream::Stream::Stderr => 1,
    }
}

impl Joiner {
    /// A joiner; with `pass`, every entry comes out as it goes in.
    pub fn new(pass: bool) -> Joiner {
        Joiner {
            pass,
            ..Joiner::default()
        }
    }

    /// Adds an entry; returns the whole line when this entry ends one.
    pub fn push(&mut self, e: Entry) -> Option<Entry> {
        if self.pass {
            return Some(e);
        }
        let s = slot(&e);
        let partial = e.is_partial();
        let joined = match self.pending[s].take() {
            Some(mut p) => {
                p.line.extend_from_slice(&e.line);
                p
            }
            None => e,
        };
        if partial {
            self.pending[s] = Some(joined);
            None
        } else {
            Some(joined)
        }
    }

    /// The lines still waiting for an end (the output ended without `\n`), oldest first.
    pub fn finish(&mut self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self
            .pending
            .iter_mut()
            .filter_map(Option::take)
            .filter(|e| !e.line.is_empty())
            .collect();
        v.sort_by_key(|e| e.time);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Stream;
    use std::time::{Duration, UNIX_EPOCH};

    fn e(s: Stream, t: u64, l: &str) -> Entry {
        Entry {
            time: UNIX_EPOCH + Duration::from_secs(t),
            stream: s,
            line: l.as_bytes().to_vec(),
        }
    }

    #[test]
    fn joins_per_stream() {
        let mut j = Joiner::default();
        assert_eq!(j.push(e(Stream::Stdout, 1, "ab")), None);
        assert_eq!(j.push(e(Stream::Stderr, 2, "x")), None);
        assert_eq!(j.push(e(Stream::Stdout, 3, "cd")), None);
        assert_eq!(
            j.push(e(Stream::Stdout, 4, "e\n")),
            Some(e(Stream::Stdout, 1, "abcde\n"))
        );
        assert_eq!(
            j.push(e(Stream::Stdout, 5, "f\n")),
            Some(e(Stream::Stdout, 5, "f\n"))
        );
        assert_eq!(j.finish(), vec![e(Stream::Stderr, 2, "x")]);
        assert!(j.finish().is_empty());
    }
}
