//! The fake Kubernetes API server lives in the harness, where the benchmark uses it too.

pub use logferry_harness::kubeapi::*;
