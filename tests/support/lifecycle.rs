//! The lifecycle stand-in lives in the harness, where the demo uses it too.
// Not every test binary that includes `support` uses it.
#![allow(unused_imports)]

pub use logferry_harness::lifecycle::*;
