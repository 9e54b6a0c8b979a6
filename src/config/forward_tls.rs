//! `[input.forward.tls]`: the certificate a forward listener presents, and the CA its clients'
//! certificates must be signed by (mutual TLS) when `ca_file` is set.
//!
//! The files are read and checked here, into the rustls config the listener serves with:
//! `logferry validate` and the start call the same [`ListenerTls::server_config`], so a file
//! that validates is one the listener can use, and a key that does not match its certificate
//! is a config error naming the key and the file, not a handshake that fails for every client.
//! They are read at start only (listeners are not reloaded): a renewed certificate needs a
//! restart.

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// The certificate chain the listener presents (PEM, its own certificate first).
    pub cert_file: PathBuf,
    /// `cert_file`'s private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, a client must present a certificate signed by one of these CAs (PEM), as
    /// Fluentd's `client_cert_auth`; unset, any client that completes TLS may connect.
    pub ca_file: Option<PathBuf>,
}

/// Why a listener's TLS files cannot be used; [`TlsError::key`] names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM {expected}")]
    NotPem {
        key: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{path} is not a usable CA: {source}")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The key does not belong to the certificate, or rustls cannot use the pair.
    #[error("{key_path} cannot serve {cert_path}: {source}")]
    Pair {
        key_path: PathBuf,
        cert_path: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

impl TlsError {
    /// The key under `[input.forward.tls]` whose file is at fault.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Read { key, .. } | TlsError::NotPem { key, .. } => key,
            TlsError::BadCa { .. } => "ca_file",
            TlsError::Pair { .. } => "key_file",
        }
    }
}

impl ListenerTls {
    /// Reads the files into the listener's rustls config (ring, TLS 1.2 and 1.3), checking
    /// that the key matches the certificate.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = pem_certificates("cert_file", &self.cert_file)?;
        let key_pem = read("key_file", &self.key_file)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NotPem {
            key: "key_file",
            path: self.key_file.clone(),
            expected: "private key",
        })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| self.pair_error(source))?;
        let builder = match &self.ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in pem_certificates("ca_file", path)? {
                    roots.add(cert).map_err(|source| TlsError::BadCa {
                        path: path.clone(),
                        source,
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::BadCa {
                        path: path.clone(),
                        source: rustls::Error::General(e.to_string()),
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder
            .with_single_cert(chain, key)
            .map_err(|source| self.pair_error(source))
    }

    fn pair_error(&self, source: rustls::Error) -> TlsError {
        TlsError::Pair {
            key_path: self.key_file.clone(),
            cert_path: self.cert_file.clone(),
            source,
        }
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in the PEM file at `path`; none is an error (a DER file, a key, a typo'd
/// path to some other file).
fn pem_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).flatten().collect();
    if certs.is_empty() {
        return Err(TlsError::NotPem {
            key,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok(certs)
}
