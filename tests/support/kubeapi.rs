//! The fake Kubernetes API server lives in the harness, where the benchmark uses it too.
// Not every test binary that includes `support` uses it.
#![allow(unused_imports)]

pub use logferry_harness::kubeapi::*;
