//! The connection to the cluster: the HTTP client with its TLS setup (rustls; no OpenSSL), and
//! the `Authorization` header. Both are built from files — CA bundle, client certificate and
//! key, secret files — and rebuilt when those files change, as a mounted Kubernetes Secret does
//! when it is rotated, without a restart.
//!
//! Secrets never leave this module except as a header value marked sensitive: errors name the
//! file, never its content.

use crate::config::{self, Secret};
use base64::Engine;
use reqwest::header::HeaderValue;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} holds no usable PEM {expected}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("the {what} contains characters an HTTP header cannot carry")]
    Header { what: &'static str },
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS setup: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    #[error("no trusted CA: ca_file is unset and the system has no readable roots")]
    NoRoots,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// What a request is made with.
pub struct Endpoint {
    pub client: reqwest::Client,
    pub auth: Option<HeaderValue>,
}

/// The current [`Endpoint`], and what it was built from.
pub struct Connector {
    /// Changed by a config reload ([`Connector::install`]).
    cfg: Mutex<config::Elasticsearch>,
    current: RwLock<Arc<Endpoint>>,
    /// A hash of every file the endpoint was built from, to notice a change.
    built_from: Mutex<u64>,
    /// A rebuild failed and was logged; said again only once it works.
    failing: Mutex<bool>,
    /// Signalled after a rebuild, so a shipper waiting out a refusal tries again at once.
    pub changed: tokio::sync::Notify,
    /// Signalled by each reload's install: the files to watch may be others now.
    installed: tokio::sync::Notify,
}

impl Connector {
    /// Builds the first endpoint; a missing or unreadable file is an error here (the agent
    /// does not start), and only a warning at a later reload (the old endpoint stays).
    pub fn new(cfg: &config::Elasticsearch) -> Result<Connector, Error> {
        if !cfg.tls.verify {
            tracing::warn!(
                "elasticsearch.tls.verify = false: the server's certificate and name are NOT checked; anyone on the path can read and alter what is shipped"
            );
        }
        let endpoint = build(cfg)?;
        if endpoint.auth.is_some() && cfg.hosts.iter().any(|h| h.starts_with("http://")) {
            tracing::warn!("credentials are sent to an http:// host, unencrypted");
        }
        Ok(Connector {
            cfg: Mutex::new(cfg.clone()),
            current: RwLock::new(Arc::new(endpoint)),
            built_from: Mutex::new(files_hash(cfg)),
            failing: Mutex::new(false),
            changed: tokio::sync::Notify::new(),
            installed: tokio::sync::Notify::new(),
        })
    }

    pub fn current(&self) -> Arc<Endpoint> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// For a config reload: the endpoint `cfg` asks for, built now so that an unreadable
    /// certificate or secret refuses the reload while the running one goes on. `None` when
    /// nothing it is built from changed.
    pub fn prepare(&self, cfg: &config::Elasticsearch) -> Result<Option<Endpoint>, Error> {
        let built_from = *self
            .built_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self
            .cfg
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let same = old.tls == cfg.tls
            && old.auth == cfg.auth
            && old.request_timeout == cfg.request_timeout
            && old.hosts == cfg.hosts
            && files_hash(cfg) == built_from;
        if same {
            return Ok(None);
        }
        build(cfg).map(Some)
    }

    /// Takes a reloaded config and the endpoint [`Connector::prepare`] built for it.
    pub fn install(&self, cfg: &config::Elasticsearch, endpoint: Option<Endpoint>) {
        let mut built_from = self
            .built_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *self.cfg.lock().unwrap_or_else(PoisonError::into_inner) = cfg.clone();
        if let Some(endpoint) = endpoint {
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(endpoint);
            *built_from = files_hash(cfg);
            self.changed.notify_waiters();
        }
        // One watcher: a permit kept for it if it is not waiting yet.
        self.installed.notify_one();
    }

    /// Rebuilds the endpoint if any of its files changed. True when it did.
    pub fn reload_if_changed(&self) -> bool {
        // `built_from` first, as in `install`: a config installed meanwhile is the one read.
        let mut built_from = self
            .built_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cfg = self
            .cfg
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let hash = files_hash(&cfg);
        if hash == *built_from {
            return false;
        }
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        match build(&cfg) {
            Ok(endpoint) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(endpoint);
                *built_from = hash;
                *failing = false;
                tracing::info!("TLS or credential files changed: reloaded them");
                self.changed.notify_waiters();
                true
            }
            Err(e) => {
                if !*failing {
                    *failing = true;
                    tracing::error!(error = %e, "TLS or credential files changed but cannot be used; keeping the previous ones");
                }
                false
            }
        }
    }

    /// A `GET` of `url` with the current client and credentials (sniffing asks `_nodes/http`).
    pub fn get(&self, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    /// A request with the current client and credentials (setup's `PUT`s).
    pub fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        let endpoint = self.current();
        let req = endpoint.client.request(method, url);
        match &endpoint.auth {
            Some(auth) => req.header(reqwest::header::AUTHORIZATION, auth.clone()),
            None => req,
        }
    }

    /// Checks the files every `every` until the process ends. A config that names none has
    /// nothing to check until a reload installs one that does: on a quiet node, the tick every
    /// 5 s and its trip to the blocking pool were most of what the runtime woke for.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let none = files(&self.cfg.lock().unwrap_or_else(PoisonError::into_inner))
                .next()
                .is_none();
            if none {
                self.installed.notified().await;
                continue;
            }
            tick.tick().await;
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
        }
    }
}

/// Every file the endpoint depends on.
fn files(cfg: &config::Elasticsearch) -> impl Iterator<Item = &PathBuf> {
    let (t, a) = (&cfg.tls, &cfg.auth);
    [
        &t.ca_file,
        &t.cert_file,
        &t.key_file,
        &a.password_file,
        &a.api_key_file,
        &a.token_file,
    ]
    .into_iter()
    .flatten()
}

fn files_hash(cfg: &config::Elasticsearch) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for path in files(cfg) {
        h.update(path.as_os_str().as_encoded_bytes());
        // An unreadable file hashes as empty: its change back to readable is a change.
        h.update(&std::fs::read(path).unwrap_or_default());
        h.update(&[0xff]);
    }
    h.digest()
}

fn build(cfg: &config::Elasticsearch) -> Result<Endpoint, Error> {
    // reqwest sets up rustls even for http:// hosts, from the process-wide provider: ring, the
    // same one the https config below is built with. Installing twice is a harmless error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(cfg.request_timeout.0)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("logferry/", env!("CARGO_PKG_VERSION")));
    if cfg.hosts.iter().any(|h| h.starts_with("https://")) {
        builder = builder.tls_backend_preconfigured(tls_config(&cfg.tls)?);
    }
    Ok(Endpoint {
        client: builder.build().map_err(Error::Client)?,
        auth: auth_header(&cfg.auth)?,
    })
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::File {
        what,
        path: path.to_owned(),
        source,
    })
}

fn tls_config(t: &config::Tls) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &t.ca_file {
        Some(path) => {
            let pem = read("ca_file", path)?;
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                roots.add(cert)?;
            }
            if roots.is_empty() {
                return Err(Error::Pem {
                    what: "ca_file",
                    path: path.clone(),
                    expected: "certificate",
                });
            }
        }
        None => {
            // Unreadable entries in the system store are skipped, as every TLS client does.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(Error::NoRoots);
            }
        }
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (&t.server_name, t.verify) {
        (_, false) => Arc::new(AcceptAnything(provider.clone())),
        (Some(name), true) => Arc::new(ExpectName {
            inner: webpki,
            name: ServerName::try_from(name.clone()).map_err(|_| {
                rustls::Error::General(format!("server_name {name:?} is not a DNS name or IP"))
            })?,
        }),
        (None, true) => webpki,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => {
            let pem = read("cert_file", cert)?;
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(&pem).flatten().collect();
            if chain.is_empty() {
                return Err(Error::Pem {
                    what: "cert_file",
                    path: cert.clone(),
                    expected: "certificate",
                });
            }
            let key_pem = read("key_file", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| Error::Pem {
                what: "key_file",
                path: key.clone(),
                expected: "private key",
            })?;
            builder.with_client_auth_cert(chain, key_der)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn secret(
    what: &'static str,
    file: &Option<PathBuf>,
    inline: &Option<Secret>,
) -> Result<Option<Secret>, Error> {
    if let Some(path) = file {
        let bytes = read(what, path)?;
        // Secret files usually end with a newline nobody meant.
        let text = String::from_utf8_lossy(&bytes)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        return Ok(Some(Secret::new(text)));
    }
    Ok(inline.clone())
}

fn auth_header(a: &config::Auth) -> Result<Option<HeaderValue>, Error> {
    let value = if let Some(user) = &a.user {
        let password = secret("password_file", &a.password_file, &a.password)?;
        let pair = format!("{user}:{}", password.as_ref().map_or("", |p| p.expose()));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        Secret::new(format!("Basic {encoded}"))
    } else if let Some(key) = secret("api_key_file", &a.api_key_file, &a.api_key)? {
        Secret::new(format!("ApiKey {}", key.expose()))
    } else if let Some(token) = secret("token_file", &a.token_file, &a.token)? {
        Secret::new(format!("Bearer {}", token.expose()))
    } else {
        return Ok(None);
    };
    let mut header =
        HeaderValue::from_str(value.expose()).map_err(|_| Error::Header { what: "credential" })?;
    // Keeps it out of HTTP/2 header tables and out of the client's debug output.
    header.set_sensitive(true);
    Ok(Some(header))
}

/// Checks the certificate against `name` instead of the host in the URL.
#[derive(Debug)]
struct ExpectName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_host: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `verify = false`: any certificate, any name. The handshake signatures are still checked, so
/// the connection is at least with the holder of the certificate shown.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_credential_makes_its_header_and_debug_shows_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3cr3t-value\n").unwrap();
        let basic = config::Auth {
            user: Some("elastic".into()),
            password_file: Some(file.clone()),
            ..Default::default()
        };
        let h = auth_header(&basic).unwrap().unwrap();
        assert_eq!(
            h.to_str().unwrap(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("elastic:s3cr3t-value")
            )
        );
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("s3cr3t"), "{h:?}");
        let key = config::Auth {
            api_key_file: Some(file.clone()),
            ..Default::default()
        };
        assert_eq!(
            auth_header(&key).unwrap().unwrap().to_str().unwrap(),
            "ApiKey s3cr3t-value"
        );
        let token = config::Auth {
            token: Some(Secret::new("tok".into())),
            ..Default::default()
        };
        assert_eq!(
            auth_header(&token).unwrap().unwrap().to_str().unwrap(),
            "Bearer tok"
        );
        assert!(!format!("{basic:?}{key:?}{token:?}").contains("tok\""));
        assert!(auth_header(&config::Auth::default()).unwrap().is_none());
    }

    #[test]
    fn a_missing_secret_file_is_named_and_its_content_never_is() {
        let a = config::Auth {
            token_file: Some("/nonexistent/token".into()),
            ..Default::default()
        };
        let e = auth_header(&a).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/token"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "bad\u{7}value").unwrap();
        let a = config::Auth {
            token_file: Some(file),
            ..Default::default()
        };
        let e = auth_header(&a).unwrap_err().to_string();
        assert!(!e.contains("bad"), "{e}");
    }
}
