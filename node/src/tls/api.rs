//! HTTPS for the API and the web UI: the operator's certificate and key files,
//! read again when they change on disk or on SIGHUP, so that a renewed
//! certificate is served without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::live::provider;

/// The API's certificate, as last read.
pub struct ApiTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
}

impl std::fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTls").field("cert", &self.cert).finish()
    }
}

fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("cannot read api.tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("api.tls_cert {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("cannot read api.tls_key {}: {e}", key.display()))?;
    let ck = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| anyhow::anyhow!("api.tls_cert and api.tls_key do not fit together: {e}"))?;
    Ok(Arc::new(ck))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl ApiTls {
    /// Reads the files (an error names what is wrong with them).
    pub fn open(cert: &Path, key: &Path) -> anyhow::Result<Arc<ApiTls>> {
        let ck = load(cert, key)?;
        Ok(Arc::new(ApiTls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((ck, modified(cert).max(modified(key)))),
        }))
    }

    /// Reads the files again; a broken pair keeps the certificate in use.
    pub fn reload(&self, why: &str) {
        match load(&self.cert, &self.key) {
            Ok(ck) => {
                let stamp = modified(&self.cert).max(modified(&self.key));
                *self.current.write().expect("api tls lock") = (ck, stamp);
                tracing::info!(cert = %self.cert.display(), "API certificate reloaded ({why})");
            }
            Err(e) => {
                // Remember the stamp anyway: not retried until the files change again.
                self.current.write().expect("api tls lock").1 =
                    modified(&self.cert).max(modified(&self.key));
                tracing::error!("{e:#}; still serving the previous certificate");
            }
        }
    }

    fn changed(&self) -> bool {
        let stamp = modified(&self.cert).max(modified(&self.key));
        stamp != self.current.read().expect("api tls lock").1
    }

    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }

    /// Watches the files (every second) and SIGHUP until shutdown.
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).ok();
        loop {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if self.changed() {
                        self.reload("the files changed");
                    }
                }
                _ = hup_recv => self.reload("SIGHUP"),
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[derive(Debug)]
struct Resolver(Arc<ApiTls>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().expect("api tls lock").0.clone())
    }
}
