//! The `[api]` section: the agent's own HTTP server (metrics, health, readiness).

use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Address of the HTTP server for `/metrics`, `/health` and `/ready`.
    pub listen: SocketAddr,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: SocketAddr::from(([127, 0, 0, 1], 2020)),
        }
    }
}
