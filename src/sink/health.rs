//! Shipping's own check, named after the output (`elasticsearch`, `kafka`): unhealthy when records wait and no request has
//! been made for longer than the grace past the shippers' own promised next attempt (a stall a
//! restart would fix); degraded while the cluster refuses or fails (a restart would not).

use super::SinkState;
use crate::buffer::Buffer;
use crate::observe::health::{Check, Level};
use std::sync::Arc;
use std::time::Duration;

pub struct ShippingCheck {
    /// `elasticsearch` or `kafka`: where records go.
    pub name: &'static str,
    /// Whether `/ready` says what `/health` says (Kafka: a node whose brokers cannot be
    /// reached is not ready to hand its records on); degraded, never unhealthy there.
    pub in_ready: bool,
    pub sink: Arc<SinkState>,
    /// Whether records wait.
    pub buffer: Arc<Buffer>,
    /// How long past its own deadline shipping may be, while records wait, before it counts as
    /// stalled.
    pub grace: Duration,
}

impl Check for ShippingCheck {
    fn name(&self) -> &'static str {
        self.name
    }

    fn ready(&self) -> Option<(Level, String)> {
        if !self.in_ready {
            return None;
        }
        Some(match self.sink.describe() {
            (true, detail) => (Level::Healthy, detail),
            (false, detail) => (Level::Degraded, detail),
        })
    }

    /// `now` and the shippers' deadline are both monotonic readings.
    fn health(&self, now: u64) -> (Level, String) {
        let records = self.buffer.stats().records;
        let late = now.saturating_sub(self.sink.deadline_ms());
        if records > 0 && u128::from(late) > self.grace.as_millis() {
            return (
                Level::Unhealthy,
                format!(
                    "shipping stalled: {records} records wait and no request has been made for {} s past its time",
                    late / 1000
                ),
            );
        }
        match self.sink.describe() {
            (true, detail) => (Level::Healthy, detail),
            (false, detail) => (Level::Degraded, detail),
        }
    }
}
