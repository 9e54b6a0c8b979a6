//! Certificates made in the test (rcgen), and a TLS-terminating proxy in front of osmem-server
//! that can require a client certificate and check the `Authorization` header, answering 401
//! like Elasticsearch when it is wrong.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for these DNS names or IP addresses, signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

#[derive(Default)]
struct Seen {
    handshake_failures: AtomicU64,
    client_certificates: AtomicU64,
    unauthorized: AtomicU64,
}

pub struct TlsProxy {
    /// `https://<name>:<port>` as asked for at start.
    pub url: String,
    expect_auth: Arc<Mutex<Option<String>>>,
    seen: Arc<Seen>,
    _runtime: tokio::runtime::Runtime,
}

impl TlsProxy {
    /// Listens on 127.0.0.1; `host` is the name put in `url`. With `client_ca`, a client
    /// certificate signed by it is required.
    pub fn start(upstream: &str, host: &str, server: &Leaf, client_ca: Option<&Ca>) -> TlsProxy {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(server.cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca.issuer.der().clone()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let expect_auth = Arc::new(Mutex::new(None::<String>));
        let seen = Arc::new(Seen::default());
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let upstream = upstream.trim_end_matches('/').to_owned();
        let client = reqwest::Client::new();
        {
            let (expect_auth, seen) = (expect_auth.clone(), seen.clone());
            runtime.spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, expect_auth, seen, upstream, client) = (
                        acceptor.clone(),
                        expect_auth.clone(),
                        seen.clone(),
                        upstream.clone(),
                        client.clone(),
                    );
                    tokio::spawn(async move {
                        let tls = match acceptor.accept(tcp).await {
                            Ok(t) => t,
                            Err(_) => {
                                seen.handshake_failures.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        };
                        if tls.get_ref().1.peer_certificates().is_some() {
                            seen.client_certificates.fetch_add(1, Ordering::Relaxed);
                        }
                        let svc = hyper::service::service_fn(move |req| {
                            forward(
                                req,
                                upstream.clone(),
                                client.clone(),
                                expect_auth.clone(),
                                seen.clone(),
                            )
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                            .await;
                    });
                }
            });
        }
        TlsProxy {
            url: format!("https://{host}:{port}"),
            expect_auth,
            seen,
            _runtime: runtime,
        }
    }

    /// From now on, requests without exactly this `Authorization` header get a 401.
    pub fn require_auth(&self, header: &str) {
        *self.expect_auth.lock().unwrap() = Some(header.to_owned());
    }

    pub fn handshake_failures(&self) -> u64 {
        self.seen.handshake_failures.load(Ordering::Relaxed)
    }

    pub fn client_certificates(&self) -> u64 {
        self.seen.client_certificates.load(Ordering::Relaxed)
    }

    pub fn unauthorized(&self) -> u64 {
        self.seen.unauthorized.load(Ordering::Relaxed)
    }
}

async fn forward(
    req: hyper::Request<hyper::body::Incoming>,
    upstream: String,
    client: reqwest::Client,
    expect_auth: Arc<Mutex<Option<String>>>,
    seen: Arc<Seen>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let expected = expect_auth.lock().unwrap().clone();
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            seen.unauthorized.fetch_add(1, Ordering::Relaxed);
            let body = r#"{"error":{"type":"security_exception","reason":"unable to authenticate"},"status":401}"#;
            let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
            return Ok(r);
        }
    }
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |p| p.to_string());
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut out = client.request(method, format!("{upstream}{path}"));
    for name in ["content-type", "content-encoding"] {
        if let Some(v) = headers.get(name) {
            out = out.header(name, v.clone());
        }
    }
    let (status, body) = match out.body(body).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap_or_default())
        }
        Err(_) => (502, Bytes::new()),
    };
    let mut r = hyper::Response::new(Full::new(body));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(r)
}
