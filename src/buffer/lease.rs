//! A batch on loan to a shipper: acknowledged, or given back.
//!
//! A shipper that fails (a panic anywhere in it) drops what it holds while unwinding. A batch it
//! held would otherwise stay in flight for ever, pinning the ack cursor, so no segment behind it
//! could be freed. A [`Lease`] gives its batch back to the buffer when dropped unacknowledged,
//! and the next shipper to ask gets it first, under the same `seq` (its records come back as
//! 409s where they had already arrived).

use super::*;

/// A batch handed to a shipper. [`Lease::acknowledge`] ends it; dropping it gives the batch back.
#[must_use = "a lease dropped unacknowledged gives its batch back to the buffer"]
pub struct Lease {
    batch: Option<Arc<Batch>>,
    buffer: Arc<Buffer>,
}

impl Lease {
    pub fn batch(&self) -> &Arc<Batch> {
        // Only `acknowledge` (which consumes the lease) and `drop` take the batch out.
        self.batch.as_ref().unwrap_or_else(|| unreachable!())
    }

    /// Every record in the batch is indexed, a duplicate, or dead-lettered.
    pub fn acknowledge(mut self) {
        if let Some(b) = self.batch.take() {
            self.buffer.acknowledge(b.seq);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(b) = self.batch.take() {
            self.buffer.give_back(b);
        }
    }
}

impl Buffer {
    /// The next batch, as a lease: a batch given back by a failed shipper first, then new ones
    /// as [`Buffer::next_batch`] takes them. `None` once the buffer is closed.
    pub async fn lease(self: &Arc<Self>, limit: usize) -> Option<Lease> {
        loop {
            let notified = self.data.notified();
            let returned = {
                let mut st = self.state();
                if st.closed || st.fatal.is_some() {
                    return None;
                }
                st.returned.pop_front()
            };
            let batch = returned.or_else(|| self.read_batch(limit).map(Arc::new));
            if let Some(batch) = batch {
                // Another shipper may be idle, and there may be more.
                self.data.notify_one();
                return Some(Lease {
                    batch: Some(batch),
                    buffer: self.clone(),
                });
            }
            // Woken by new data or a batch given back, or after a while anyway: a read that
            // failed is tried again.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    fn give_back(&self, batch: Arc<Batch>) {
        let mut st = self.state();
        if st.in_flight.contains_key(&batch.seq) {
            st.returned.push_back(batch);
            drop(st);
            self.data.notify_one();
        }
    }
}
