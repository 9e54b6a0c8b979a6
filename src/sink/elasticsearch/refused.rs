//! Items the cluster will never accept: written to the dead-letter file (retried until the
//! write works: an item neither indexed nor dead-lettered must not be acknowledged), counted
//! in `logferry_dead_letters_total` under a bounded `reason`, and, with `dead_letter_index`,
//! indexed there too as a wrapped copy under the original id.

use super::{Route, Shipper, deadletter, response};
use crate::buffer::Batch;
use crate::config;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

/// Dead letters as documents for `index`, each under its original id (so a replay is a 409):
/// the agent's own fields, the whole original document as one string, and why it was refused.
fn wrap_dead_letters(items: &[Vec<u8>], refused: &[Refusal<'_>], index: &str) -> Batch {
    let (mut body, mut starts) = (Vec::new(), Vec::new());
    for (r, item) in refused.iter().zip(items) {
        let (status, reason, error) = (r.status, r.reason, r.error);
        let text = String::from_utf8_lossy(item);
        let mut lines = text.splitn(2, '\n');
        let action: serde_json::Value =
            serde_json::from_str(lines.next().unwrap_or("")).unwrap_or_default();
        let original = lines.next().unwrap_or("").trim_end();
        let (target, id) = action
            .as_object()
            .and_then(|a| a.values().next())
            .map(|m| (m["_index"].clone(), m["_id"].clone()))
            .unwrap_or_default();
        let mut doc = serde_json::Map::new();
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(original) {
            for (k, v) in fields {
                if config::AGENT_KEYS.contains(&k.as_str()) {
                    doc.insert(k, v);
                }
            }
        }
        doc.insert(
            "dead_letter".into(),
            serde_json::json!({
                "reason": reason,
                "status": status,
                "index": target,
                "error": error.map(|e| e.get().to_owned()),
                "document": original,
            }),
        );
        let mut action = serde_json::json!({"create": {"_index": index}});
        if !id.is_null() {
            action["create"]["_id"] = id;
        }
        starts.push(body.len() as u32);
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut body, &action);
        body.push(b'\n');
        let _ = serde_json::to_writer(&mut body, &doc);
        body.push(b'\n');
    }
    Batch::in_memory(body, &starts)
}

/// An item the cluster will never accept, and why.
pub(super) struct Refusal<'a> {
    pub item: usize,
    pub status: u16,
    /// The cluster's error type, or the agent's own reason (`retry_timeout`, …).
    pub reason: &'a str,
    pub error: Option<&'a RawValue>,
}

impl Refusal<'static> {
    pub fn all(items: &[usize], status: u16, reason: &'static str) -> Vec<Refusal<'static>> {
        items
            .iter()
            .map(|&item| Refusal {
                item,
                status,
                reason,
                error: None,
            })
            .collect()
    }
}

impl Shipper {
    /// Writes refused items to the dead-letter file, all in one write; retries that write
    /// until it succeeds, because an item that is neither indexed nor dead-lettered must not be
    /// acknowledged. Then, if `dead_letter_index` is set, indexes them there too, in one request
    /// (a dead letter of that index only goes to the file).
    pub(super) async fn dead_letter(&self, batch: &Batch, refused: &[Refusal<'_>], route: Route) {
        if refused.is_empty() {
            return;
        }
        if route == Route::DeadLetterIndex {
            // Already in the dead-letter file; the fallback index refused its copy too.
            tracing::warn!(
                items = refused.len(),
                reason = refused[0].reason,
                "the dead_letter_index refused dead letters; they are in the dead-letter file"
            );
            return;
        }
        let items = self.read_items(batch, refused).await;
        let entries: Vec<deadletter::Entry> = refused
            .iter()
            .zip(&items)
            .map(|(r, item)| deadletter::Entry {
                item: item.clone(),
                status: r.status,
                reason: r.reason.to_owned(),
                error: r.error.map(|e| e.get().to_owned()),
            })
            .collect();
        self.dead_letter_file(Arc::new(entries)).await;
        for r in refused {
            self.metrics
                .dead_letters
                .get_or_create(&vec![(
                    "reason",
                    response::dead_letter_label(r.reason).to_owned(),
                )])
                .inc();
        }
        if let Some(index) = &self.live().dead_letter_index {
            let wrapped = wrap_dead_letters(&items, refused, index);
            let all = (0..wrapped.len()).collect();
            Box::pin(self.deliver(&wrapped, all, Route::DeadLetterIndex)).await;
        }
    }

    /// The refused items' bytes, read back from the buffer. Retried until the read works: an
    /// item must be neither dropped nor acknowledged unread.
    pub(super) async fn read_items(&self, batch: &Batch, refused: &[Refusal<'_>]) -> Vec<Vec<u8>> {
        let mut failures = 0u64;
        loop {
            match refused.iter().map(|r| batch.item(r.item)).collect() {
                Ok(items) => return items,
                Err(e) if failures == 0 => {
                    tracing::error!(error = %e, "cannot read refused items back from the buffer; retrying");
                }
                Err(_) => {}
            }
            failures += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn dead_letter_file(&self, entries: Arc<Vec<deadletter::Entry>>) {
        let mut wait = Duration::from_secs(1);
        let mut failures = 0u64;
        loop {
            let (dead, batch) = (self.dead.clone(), entries.clone());
            let res = tokio::task::spawn_blocking(move || dead.write(&batch)).await;
            match res {
                Ok(Ok(())) => {
                    self.metrics
                        .documents
                        .get_or_create(&[("outcome", "dead_lettered")])
                        .inc_by(entries.len() as u64);
                    if failures > 0 {
                        tracing::info!(failures, "the dead-letter file is writable again");
                    }
                    return;
                }
                Ok(Err(e)) if failures == 0 => {
                    tracing::error!(error = %e, "cannot write the dead-letter file; shipping waits for it and retries")
                }
                Err(e) if failures == 0 => tracing::error!(error = %e, "dead-letter writer failed"),
                _ => {}
            }
            failures += 1;
            self.promise_after(wait);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }
}
