//! When a json-file log loses output, and when it stops losing it: the reports a shim turns
//! into records (the io crate knows nothing of record formats; see `drivers::DriverReporter`).
//!
//! A full disk rarely fails cleanly. The file system allocates whole blocks (tmpfs: pages), so
//! after the first `ENOSPC` small entries still fit into the last block's slack while bigger
//! batches do not: writes flap between failing and succeeding until the slack is gone. Reporting
//! every flip would bury the one fact that matters under dozens of records, so [`DropTracker`]
//! only calls writing "resumed" after it has worked for [`SETTLE`]; drops during that time fold
//! into the same episode. Every dropped entry is still counted exactly once, in a
//! [`JsonFileReport::Resumed`] or in the [`JsonFileReport::Closed`] summary.

use std::time::{Duration, Instant};

use super::DropCounts;

/// How long writes must keep succeeding after drops before the log counts as writable again.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Something about a json-file log's health worth telling a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonFileReport {
    /// Entries started to be dropped. `error` names the step, the file and the OS error
    /// (e.g. `json-file write /x/c-json.log: No space left on device (os error 28)`).
    Dropping {
        /// The first error of the episode.
        error: String,
    },
    /// Writes have worked again for [`SETTLE`]; `lost` is what the episode dropped.
    Resumed {
        /// Entries and output bytes dropped since the `Dropping` report.
        lost: DropCounts,
    },
    /// Rotating or compressing failed; the entries themselves were kept.
    Warning {
        /// What failed, with the file and the OS error.
        error: String,
    },
    /// The log was closed (the process and every holder of its output exited) after losing
    /// output at some point. Only sent when something was dropped.
    Closed {
        /// Drops not yet reported in a `Resumed` (the last episode, if it did not settle).
        unreported: DropCounts,
        /// Everything dropped over the life of the log.
        total: DropCounts,
        /// Whether the last episode was still open: the last write failed, or writes had not
        /// worked for [`SETTLE`] since the last drop.
        still_dropping: bool,
    },
}

/// Where a log is in a drop episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing dropped since the last report.
    Healthy,
    /// The last write failed.
    Dropping,
    /// Writes work again since `since`, not yet for [`SETTLE`].
    Settling { since: Instant },
}

/// Turns write outcomes into [`JsonFileReport`]s: one `Dropping` when an episode starts, one
/// `Resumed` when writing has worked for [`SETTLE`], one `Closed` at the end if anything was lost.
/// Feed it the outcomes in the order they happened.
#[derive(Debug, Clone)]
pub struct DropTracker {
    settle: Duration,
    phase: Phase,
    /// Drops of the current episode, not reported yet.
    pending: DropCounts,
    /// Everything dropped so far.
    total: DropCounts,
}

impl Default for DropTracker {
    fn default() -> Self {
        DropTracker {
            settle: SETTLE,
            phase: Phase::Healthy,
            pending: DropCounts::default(),
            total: DropCounts::default(),
        }
    }
}

impl DropTracker {
    /// A tracker for a log that has lost nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long writes must work after drops before `Resumed` (default [`SETTLE`]).
    pub fn with_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Some entries were dropped because of `error`.
    pub fn dropped(&mut self, lost: DropCounts, error: &str) -> Option<JsonFileReport> {
        add(&mut self.pending, lost);
        add(&mut self.total, lost);
        let was = self.phase;
        self.phase = Phase::Dropping;
        match was {
            Phase::Healthy => Some(JsonFileReport::Dropping {
                error: error.to_owned(),
            }),
            // A flip back during an episode (block slack used up, or the disk filled again
            // before writes settled): the same episode goes on.
            Phase::Dropping | Phase::Settling { .. } => None,
        }
    }

    /// Entries were written at `now`.
    pub fn written(&mut self, now: Instant) -> Option<JsonFileReport> {
        match self.phase {
            Phase::Healthy => None,
            Phase::Dropping => {
                self.phase = Phase::Settling { since: now };
                None
            }
            Phase::Settling { since } if now.saturating_duration_since(since) >= self.settle => {
                self.phase = Phase::Healthy;
                Some(JsonFileReport::Resumed {
                    lost: std::mem::take(&mut self.pending),
                })
            }
            Phase::Settling { .. } => None,
        }
    }

    /// The log is closed: the summary, if anything was ever dropped.
    pub fn closed(&mut self) -> Option<JsonFileReport> {
        if self.total == DropCounts::default() {
            return None;
        }
        let report = JsonFileReport::Closed {
            unreported: std::mem::take(&mut self.pending),
            total: self.total,
            still_dropping: self.phase != Phase::Healthy,
        };
        self.phase = Phase::Healthy;
        Some(report)
    }

    /// Whether no episode is open (nothing to settle: [`DropTracker::written`] would say nothing).
    pub fn is_healthy(&self) -> bool {
        self.phase == Phase::Healthy
    }

    /// Everything dropped so far.
    pub fn total(&self) -> DropCounts {
        self.total
    }
}

fn add(to: &mut DropCounts, more: DropCounts) {
    to.entries += more.entries;
    to.bytes += more.bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: u64, bytes: u64) -> DropCounts {
        DropCounts { entries, bytes }
    }

    const ERR: &str = "json-file write /l/c-json.log: No space left on device (os error 28)";

    #[test]
    fn nothing_dropped_means_no_report_at_all() {
        let mut t = DropTracker::new();
        let now = Instant::now();
        assert_eq!(t.written(now), None);
        assert_eq!(t.written(now + SETTLE * 3), None);
        assert_eq!(t.closed(), None);
    }

    #[test]
    fn an_episode_is_reported_once_when_it_starts_and_once_when_it_settles() {
        let mut t = DropTracker::new();
        let t0 = Instant::now();
        assert_eq!(
            t.dropped(counts(2, 20), ERR),
            Some(JsonFileReport::Dropping { error: ERR.into() })
        );
        assert_eq!(t.dropped(counts(3, 30), "other"), None, "same episode");
        // Writes work again, but not for long enough yet.
        assert_eq!(t.written(t0 + Duration::from_millis(10)), None);
        assert_eq!(t.written(t0 + Duration::from_millis(500)), None);
        assert_eq!(
            t.written(t0 + Duration::from_millis(10) + SETTLE),
            Some(JsonFileReport::Resumed {
                lost: counts(5, 50)
            })
        );
        assert_eq!(t.written(t0 + SETTLE * 5), None, "healthy again");
        // Everything was reported already; the summary still gives the total.
        assert_eq!(
            t.closed(),
            Some(JsonFileReport::Closed {
                unreported: counts(0, 0),
                total: counts(5, 50),
                still_dropping: false
            })
        );
    }

    #[test]
    fn flapping_at_the_end_of_the_disk_stays_one_episode() {
        let mut t = DropTracker::new();
        let t0 = Instant::now();
        let mut reports = Vec::new();
        // fail, succeed, fail, succeed ... within SETTLE: block slack being used up
        for i in 0..20u32 {
            let at = t0 + Duration::from_millis(u64::from(i) * 20);
            reports.extend(t.dropped(counts(1, 10), ERR));
            reports.extend(t.written(at + Duration::from_millis(5)));
        }
        assert_eq!(
            reports,
            [JsonFileReport::Dropping { error: ERR.into() }],
            "one record for the whole episode"
        );
        reports.extend(t.written(t0 + Duration::from_secs(5)));
        assert_eq!(
            reports.last(),
            Some(&JsonFileReport::Resumed {
                lost: counts(20, 200)
            })
        );
    }

    #[test]
    fn a_new_episode_after_settling_is_reported_again() {
        let mut t = DropTracker::new();
        let t0 = Instant::now();
        assert!(t.dropped(counts(1, 5), ERR).is_some());
        t.written(t0);
        assert!(matches!(
            t.written(t0 + SETTLE),
            Some(JsonFileReport::Resumed { .. })
        ));
        assert_eq!(
            t.dropped(counts(4, 40), "again"),
            Some(JsonFileReport::Dropping {
                error: "again".into()
            })
        );
        assert_eq!(
            t.closed(),
            Some(JsonFileReport::Closed {
                unreported: counts(4, 40),
                total: counts(5, 45),
                still_dropping: true
            })
        );
        assert_eq!(t.total(), counts(5, 45));
    }

    /// A last small write that fits the slack of a full disk does not end the episode.
    #[test]
    fn closing_while_settling_reports_the_unsettled_drops_as_still_dropping() {
        let mut t = DropTracker::new();
        let t0 = Instant::now();
        t.dropped(counts(7, 70), ERR);
        t.written(t0 + Duration::from_millis(1));
        assert_eq!(
            t.closed(),
            Some(JsonFileReport::Closed {
                unreported: counts(7, 70),
                total: counts(7, 70),
                still_dropping: true
            })
        );
    }
}
