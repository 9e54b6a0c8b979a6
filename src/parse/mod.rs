//! Parsing: from a decoded [`Record`](crate::vocab::Record) to the JSON document Elasticsearch stores.
//!
//! Owns the merge policy. A message that is a JSON object has its fields merged into the
//! document (Fluentd's `reserve_data true`) or nested under `parse.target`; any other message
//! stays a string in `log`. Field values are copied through as the application wrote them —
//! only the top-level keys are looked at — so nested JSON is never re-serialized.
//!
//! Every document has `@timestamp` (the runtime's time), `stream`, and the fields of its file's
//! pod identity. These names belong to the agent: an application field with one of them is kept
//! as `app_<name>` rather than dropped or allowed to overwrite the agent's (`app_app_<name>` if
//! the application has an `app_<name>` too, and so on). A key the message gives more than once
//! is written once, with its last value, as `JSON.parse` does: a document never has two equal
//! keys, which Elasticsearch would refuse. Finding repeats costs time linear in the number of
//! keys, so a line with thousands of them cannot stall the tailer. Anything the agent
//! did to a line is said in a `logferry` object (`truncated`, `invalid_utf8`, `malformed`,
//! `unterminated`, `time_inferred`), present only when something happened.
//!
//! The pieces, in the order a line goes through them:
//! - `writer`: the [`DocumentWriter`] — the agent's own fields, the message (merged, nested
//!   or kept as a string) and the `logferry` flags;
//! - `fields`: a message read as the top-level members of a JSON object, and the nesting
//!   limit that decides whether it is kept as one;
//! - `keys`: which member of a repeated key is written, and the free `app_…` name of a key
//!   that belongs to the agent;
//! - `view`: the document before it is written, as routing asks about it ([`View`]).

mod fields;
mod keys;
mod view;
mod writer;

#[cfg(test)]
mod tests;

pub use fields::MAX_DEPTH;
pub use view::{Found, View};
pub use writer::{DocumentWriter, Outcome};
