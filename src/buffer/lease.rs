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
    read_into: bool,
}

impl Lease {
    /// Whether the batch's items went to the [`ReadInto`] it was leased with, all of them in
    /// order; false for a batch given back by another shipper, which was not read again.
    pub fn read_into(&self) -> bool {
        self.read_into
    }

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
        self.lease_into(limit, &mut ()).await
    }

    /// [`Buffer::lease`], handing a new batch's items to `into` as they are read (see
    /// [`Lease::read_into`]). Whatever `into` does with them is done under the reading lock,
    /// off the runtime's queue: the next lease waits for it, as it waits for the reading.
    pub async fn lease_into(
        self: &Arc<Self>,
        limit: usize,
        into: &mut dyn ReadInto,
    ) -> Option<Lease> {
        let blocking = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        loop {
            let notified = self.data.notified();
            let returned = {
                let mut st = self.state();
                if st.closed || st.fatal.is_some() {
                    return None;
                }
                st.returned.pop_front()
            };
            let read_into = returned.is_none();
            let batch = returned.or_else(|| {
                let mut read = || self.read_batch_into(limit, &mut *into).map(Arc::new);
                if blocking {
                    tokio::task::block_in_place(read)
                } else {
                    read()
                }
            });
            if let Some(batch) = batch {
                // Another shipper may be idle, and there may be more.
                self.data.notify_one();
                return Some(Lease {
                    batch: Some(batch),
                    buffer: self.clone(),
                    read_into,
                });
            }
            self.wait_for_data(notified).await;
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
