//! One output stream's side of the driver pipeline: frames the stream once and hands every
//! read's messages to each driver, so that no driver waits on another.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Batch, Drivers, LogDriver, Partial, PartialId, PartialIds, Record};
use crate::framing::{LineFramer, Message};
use crate::stream::Stream;

/// The framer of one stream and the drivers its messages go to.
pub struct DriverFeed {
    framer: LineFramer,
    ids: PartialIds,
    /// The id of the split line in progress.
    line_id: Option<PartialId>,
    drivers: Vec<Arc<dyn LogDriver>>,
    stream: Stream,
    /// The messages of one read, copied out of the framer (which lends them only inside its
    /// callback), kept in one buffer so a batch costs no allocation once warm.
    bytes: Vec<u8>,
    spans: Vec<(usize, Option<Partial>)>,
    /// How many messages of the current batch each driver took.
    taken: Vec<usize>,
}

/// Largest batch buffer kept between reads; a bigger one (after a huge read) is released.
const KEEP: usize = 64 * 1024;

impl DriverFeed {
    /// A feed for `stream` into `drivers`; `None` when there is no driver.
    pub fn new(drivers: &Drivers, stream: Stream) -> Option<DriverFeed> {
        if drivers.is_empty() {
            return None;
        }
        Some(DriverFeed {
            framer: LineFramer::new(drivers.max_line()),
            ids: PartialIds::new(),
            line_id: None,
            drivers: drivers.iter().cloned().collect(),
            stream,
            bytes: Vec::new(),
            spans: Vec::new(),
            taken: Vec::new(),
        })
    }

    /// Frames `chunk` and delivers its complete messages to every driver.
    pub async fn push(&mut self, chunk: &[u8]) {
        self.clear();
        let (bytes, spans, ids, line_id) = (
            &mut self.bytes,
            &mut self.spans,
            &mut self.ids,
            &mut self.line_id,
        );
        self.framer
            .push(chunk, |m| collect(bytes, spans, ids, line_id, m));
        self.deliver().await;
    }

    /// Delivers what the framer still holds (a last line without a newline).
    pub async fn finish(&mut self) {
        self.clear();
        let (bytes, spans, ids, line_id) = (
            &mut self.bytes,
            &mut self.spans,
            &mut self.ids,
            &mut self.line_id,
        );
        self.framer
            .finish(|m| collect(bytes, spans, ids, line_id, m));
        self.deliver().await;
    }

    fn clear(&mut self) {
        if self.bytes.capacity() > KEEP {
            self.bytes = Vec::new();
            self.spans = Vec::new();
        }
        self.bytes.clear();
        self.spans.clear();
    }

    /// Hands the batch to every driver: each takes what it can, and the feed waits only for a
    /// driver that took less (back-pressure from that driver), after every other driver had
    /// its share.
    async fn deliver(&mut self) {
        if self.spans.is_empty() {
            return;
        }
        let mut records = Vec::with_capacity(self.spans.len());
        let mut start = 0;
        for &(end, partial) in &self.spans {
            records.push(Record {
                line: &self.bytes[start..end],
                partial,
            });
            start = end;
        }
        let time = SystemTime::now();
        self.taken.clear();
        self.taken.resize(self.drivers.len(), 0);
        loop {
            let mut waiting = None;
            for (i, driver) in self.drivers.iter().enumerate() {
                let done = &mut self.taken[i];
                if *done < records.len() {
                    let batch = Batch {
                        stream: self.stream,
                        time,
                        records: &records[*done..],
                    };
                    *done += driver.log(&batch).min(records.len() - *done);
                    if *done < records.len() && waiting.is_none() {
                        waiting = Some(i);
                    }
                }
            }
            match waiting {
                None => return,
                Some(i) => self.drivers[i].room().await,
            }
        }
    }
}

fn collect(
    bytes: &mut Vec<u8>,
    spans: &mut Vec<(usize, Option<Partial>)>,
    ids: &mut PartialIds,
    line_id: &mut Option<PartialId>,
    m: Message<'_>,
) {
    let partial = m.partial.map(|p| {
        let id = match (*line_id, p.ordinal) {
            (Some(id), n) if n > 1 => id,
            _ => ids.next_id(),
        };
        *line_id = (!p.last).then_some(id);
        Partial {
            id,
            ordinal: p.ordinal,
            last: p.last,
        }
    });
    bytes.extend_from_slice(m.bytes);
    spans.push((bytes.len(), partial));
}
