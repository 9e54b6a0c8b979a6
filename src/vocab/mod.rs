//! The words every stage shares, and nothing else: a leaf that imports nothing of the crate.
//!
//! - [`file`]: which file a line came from ([`FileKey`]: inode and a fingerprint of its first
//!   line) and what its records' document ids are made of ([`IdBasis`]); positions in a file are
//!   plain byte offsets next to a key;
//! - [`record`]: one logical log line ([`Record`]) with its stream and its [`Flags`];
//! - [`index`]: the rules an index name pattern follows, and the name a record's time gives;
//! - [`pod`]: what a file's documents carry because of its pod ([`FileMeta`]);
//! - [`clock`]: the monotonic clock liveness is judged by;
//! - [`escape`]: what JSON's two-byte escapes stand for;
//! - [`swar`]: byte classes tested eight bytes at a time, for the scans every line pays.
//!
//! Kept apart so that the stages can speak of the same things without importing each other:
//! `scripts/check-layers` fails the build's tests if anything here imports from the crate.

pub mod clock;
pub mod escape;
pub mod file;
pub mod index;
pub mod pod;
pub mod record;
pub mod swar;

pub use file::{FileKey, IdBasis, node_name, seed};
pub use index::{IndexPattern, Period};
pub use pod::FileMeta;
pub use record::{Flags, Record, Stream};
