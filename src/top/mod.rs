//! `logferry top`: a terminal view of one running agent, from its own `/metrics` and `/health`.
//!
//! It answers what an operator of a log agent asks first: is it shipping (health per check,
//! documents out), how far behind is it (lag, the oldest buffered record), what is filling (the
//! buffer against `max_size`), and what it costs (CPU, RSS). It needs nothing the agent does
//! not already serve, so it works wherever `/metrics` can be reached, `kubectl port-forward`
//! included.
//!
//! - [`scrape`]: one look at the agent (HTTP GET, the Prometheus text format, `/health`);
//! - [`figures`]: rates, quantiles and gauges from two looks;
//! - [`plain`]: the figures as text (`--once`, or stdout not a terminal), and the number formats;
//! - [`view`]: the live terminal view (ratatui), one look a second, until `q`.
//!
//! It uses [`config`](crate::config) only for the default address, and knows no stage.

pub mod figures;
pub mod plain;
pub mod scrape;
mod view;

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Where `top` looks when neither `--url` nor a config says: the default `api.listen`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:2020";

/// The config path `logferry` uses when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/logferry/logferry.toml";

/// How often the agent is looked at, and the interval of the `--once` rates.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Scrape(#[from] scrape::Error),
    #[error(
        "cannot find the agent's address in the config ({0}); pass --url, e.g. --url {DEFAULT_URL}"
    )]
    Config(#[source] crate::config::Error),
    #[error("the terminal: {0}")]
    Terminal(#[source] std::io::Error),
    #[error("cannot write the snapshot: {0}")]
    Write(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `logferry top`: the live view on a terminal, else (or with `once`) one plain snapshot.
pub fn run(url: Option<&str>, config: &Path, once: bool) -> Result<()> {
    let url = match url {
        Some(u) => u.to_owned(),
        None => url_from_config(config)?,
    };
    let endpoint = scrape::Endpoint::parse(&url)?;
    if once || !std::io::stdout().is_terminal() {
        let text = snapshot_text(&url, &endpoint)?;
        std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()).map_err(Error::Write)
    } else {
        view::run(&url, endpoint, INTERVAL)
    }
}

/// Two looks [`INTERVAL`] apart, as text: rates need an interval.
fn snapshot_text(url: &str, endpoint: &scrape::Endpoint) -> Result<String> {
    let first = scrape::snapshot(endpoint)?;
    std::thread::sleep(INTERVAL);
    let second = scrape::snapshot(endpoint)?;
    Ok(plain::snapshot(
        url,
        &figures::Figures::between(&first, &second),
    ))
}

/// The agent's address from the config's `api.listen`. Without a config at the default path
/// (a laptop, a port-forward), [`DEFAULT_URL`]; a config that is there but does not load is an
/// error, so that `top` never watches some other agent by surprise.
fn url_from_config(config: &Path) -> Result<String> {
    if config == Path::new(DEFAULT_CONFIG) && !config.exists() {
        return Ok(DEFAULT_URL.to_owned());
    }
    let cfg = crate::config::Config::load(config).map_err(Error::Config)?;
    Ok(url_for(cfg.api.listen))
}

/// `http://` + the address, where a wildcard listen address is reached on loopback.
pub fn url_for(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_watched_on_loopback() {
        let url = |s: &str| url_for(s.parse().unwrap());
        assert_eq!(url("0.0.0.0:2020"), "http://127.0.0.1:2020");
        assert_eq!(url("[::]:9000"), "http://127.0.0.1:9000");
        assert_eq!(url("10.1.2.3:2020"), "http://10.1.2.3:2020");
        assert_eq!(url("[::1]:2020"), "http://[::1]:2020");
    }

    #[test]
    fn without_a_config_top_watches_the_default_address() {
        if !Path::new(DEFAULT_CONFIG).exists() {
            assert_eq!(
                url_from_config(Path::new(DEFAULT_CONFIG)).unwrap(),
                DEFAULT_URL
            );
        }
        let missing = Path::new("/nonexistent/logferry.toml");
        assert!(matches!(url_from_config(missing), Err(Error::Config(_))));
    }
}
