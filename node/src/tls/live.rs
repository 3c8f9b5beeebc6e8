//! A node's TLS material as it is now: its key, its certificate, the CAs it
//! trusts and the nodes it refuses, kept in its data directory and swapped at
//! run time. The rustls configs built here look it up on every handshake, so a
//! renewed certificate or a new CA takes effect without a restart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bcm_raft_store::NodeId;
use rcgen::{CertificateParams, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    ServerConfig, SignatureScheme,
};

use super::ca::{self, CertFacts};
use super::{ALPN_APPEND, ALPN_ENROLL, ALPN_FORWARD};

/// The one crypto provider of bcm's TLS: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One node's TLS material; shared by the listener and the peers' client.
pub struct NodeTls {
    dir: PathBuf,
    key_pem: String,
    live: RwLock<Arc<Live>>,
    /// Nodes whose certificates are refused (decommissioned).
    revoked: RwLock<BTreeSet<NodeId>>,
}

struct Live {
    /// This node's certificate chain and key, once it has one.
    own: Option<Arc<CertifiedKey>>,
    own_facts: Option<CertFacts>,
    own_pem: String,
    /// A throwaway self-signed certificate, shown only to nodes asking for one
    /// (enrollment) while this node has none of its own.
    temp: Arc<CertifiedKey>,
    /// The trusted CAs (PEM), and verifiers built from them.
    anchors: Vec<String>,
    server_verifier: Option<Arc<WebPkiServerVerifier>>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls").field("dir", &self.dir).finish()
    }
}

const KEY_FILE: &str = "node.key";
const CERT_FILE: &str = "node.crt";
const CA_FILE: &str = "ca.crt";

/// Writes `bytes` to `path` for this user only, whole or not at all.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn read_opt(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

impl NodeTls {
    /// Opens (or starts) the material in `dir`: a key is made the first time;
    /// the certificate and the CAs come later (enrollment, see enroll.rs).
    pub fn open(dir: &Path) -> anyhow::Result<Arc<NodeTls>> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => anyhow::bail!("cannot create {}: {e}", dir.display()),
        }
        let key_path = dir.join(KEY_FILE);
        let key_pem = match read_opt(&key_path)? {
            Some(k) => k,
            None => {
                let key = KeyPair::generate()
                    .map_err(|e| anyhow::anyhow!("cannot make the node's key: {e}"))?;
                let pem = key.serialize_pem();
                write_private(&key_path, pem.as_bytes())?;
                pem
            }
        };
        let own_pem = read_opt(&dir.join(CERT_FILE))?.unwrap_or_default();
        let anchors = read_opt(&dir.join(CA_FILE))?
            .map(|s| split_pem(&s))
            .unwrap_or_default();
        let live = build(&key_pem, &own_pem, anchors)?;
        Ok(Arc::new(NodeTls {
            dir: dir.to_path_buf(),
            key_pem,
            live: RwLock::new(Arc::new(live)),
            revoked: RwLock::default(),
        }))
    }

    fn live(&self) -> Arc<Live> {
        self.live.read().expect("tls lock").clone()
    }

    /// Can `node` talk to its peers: no cluster TLS, or a certificate to show.
    pub fn ready(node: &crate::cluster::Node) -> bool {
        node.tls.as_ref().is_none_or(|t| t.certified())
    }

    /// Has this node a certificate of a CA it trusts?
    pub fn certified(&self) -> bool {
        let live = self.live();
        live.own.is_some() && !live.anchors.is_empty()
    }

    /// What this node's certificate says.
    pub fn own_facts(&self) -> Option<CertFacts> {
        self.live().own_facts.clone()
    }

    /// The CAs this node trusts (PEM, one each).
    pub fn anchors(&self) -> Vec<String> {
        self.live().anchors.clone()
    }

    /// A certificate request for this node's key (DER).
    pub fn csr(&self) -> anyhow::Result<Vec<u8>> {
        let key = KeyPair::from_pem(&self.key_pem)
            .map_err(|e| anyhow::anyhow!("cannot read the node's key: {e}"))?;
        let req = CertificateParams::default()
            .serialize_request(&key)
            .map_err(|e| anyhow::anyhow!("cannot make a certificate request: {e}"))?;
        Ok(req.der().to_vec())
    }

    /// Takes a certificate chain for this node's key and the CAs to trust,
    /// keeping both on disk before they are used.
    pub fn install(&self, chain_pem: &str, anchors: Vec<String>) -> anyhow::Result<()> {
        let mut guard = self.live.write().expect("tls lock");
        let live = build(&self.key_pem, chain_pem, anchors)?;
        if live.own.is_none() {
            anyhow::bail!("the certificate given for this node is empty");
        }
        write_private(&self.dir.join(CA_FILE), live.anchors.concat().as_bytes())?;
        write_private(&self.dir.join(CERT_FILE), chain_pem.as_bytes())?;
        *guard = Arc::new(live);
        Ok(())
    }

    /// Trusts exactly `anchors` from now on (a CA added or retired).
    pub fn set_anchors(&self, anchors: Vec<String>) -> anyhow::Result<()> {
        let mut guard = self.live.write().expect("tls lock");
        if guard.anchors == anchors || anchors.is_empty() {
            return Ok(());
        }
        let live = build(&self.key_pem, &guard.own_pem, anchors)?;
        write_private(&self.dir.join(CA_FILE), live.anchors.concat().as_bytes())?;
        *guard = Arc::new(live);
        Ok(())
    }

    /// Refuses certificates of these nodes from now on.
    pub fn set_revoked(&self, nodes: BTreeSet<NodeId>) {
        *self.revoked.write().expect("tls lock") = nodes;
    }

    /// Is this node's certificate refused?
    pub fn is_revoked(&self, node: NodeId) -> bool {
        self.revoked.read().expect("tls lock").contains(&node)
    }

    /// Is this peer certificate (DER) one of a node still welcome? Its node id.
    pub fn check_peer(&self, der: &[u8]) -> Result<NodeId, Error> {
        let facts =
            ca::facts(der).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let Some(node) = facts.node else {
            return Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        };
        if self.revoked.read().expect("tls lock").contains(&node) {
            return Err(Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(node)
    }

    /// The listener's config for node-to-node connections: a client certificate
    /// of a trusted CA, of a node not refused, is required.
    pub fn server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_client_cert_verifier(Arc::new(Dynamic(self.clone())))
            .with_cert_resolver(Arc::new(Dynamic(self.clone())));
        c.alpn_protocols = vec![
            b"http/1.1".to_vec(),
            ALPN_APPEND.to_vec(),
            ALPN_FORWARD.to_vec(),
        ];
        Arc::new(c)
    }

    /// The listener's config for a node asking for its certificate (ALPN
    /// `bcm-enroll/1`): no client certificate; only enrollment is served.
    pub fn enroll_server_config(self: &Arc<Self>) -> Arc<ServerConfig> {
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(EnrollCert(self.clone())));
        c.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
        Arc::new(c)
    }

    /// The peers' client config: this node's certificate, the cluster's CAs.
    pub fn client_config(self: &Arc<Self>) -> ClientConfig {
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Dynamic(self.clone())))
            .with_client_cert_resolver(Arc::new(Dynamic(self.clone())));
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c
    }

    /// The client config of a framed stream (the Raft append stream, ALPN
    /// `bcm-append/1`; the forward stream, `bcm-forward/1`): the same
    /// certificates, that one ALPN protocol.
    pub fn stream_client_config(self: &Arc<Self>, alpn: &[u8]) -> ClientConfig {
        let mut c = self.client_config();
        c.alpn_protocols = vec![alpn.to_vec()];
        c
    }
}

/// The CAs of a PEM text, one PEM each.
pub fn split_pem(pem: &str) -> Vec<String> {
    ca::pem_certs(pem).iter().map(to_pem).collect()
}

/// One certificate as PEM.
pub fn to_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

fn build(key_pem: &str, own_pem: &str, anchors: Vec<String>) -> anyhow::Result<Live> {
    let provider = provider();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot read the node's key: {e}"))?;
    let chain = ca::pem_certs(own_pem);
    let own = if chain.is_empty() {
        None
    } else {
        Some(Arc::new(
            CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider)
                .map_err(|e| anyhow::anyhow!("the node's certificate does not fit its key: {e}"))?,
        ))
    };
    let own_facts = chain.first().and_then(|c| ca::facts(c));
    // The throwaway certificate for enrollment answers.
    let temp_key = KeyPair::from_pem(key_pem)
        .map_err(|e| anyhow::anyhow!("cannot read the node's key: {e}"))?;
    let temp = CertificateParams::new(vec!["bcm-enroll".to_string()])
        .and_then(|p| p.self_signed(&temp_key))
        .map_err(|e| anyhow::anyhow!("cannot make a certificate: {e}"))?;
    let temp = Arc::new(
        CertifiedKey::from_der(vec![temp.der().clone()], key, &provider)
            .map_err(|e| anyhow::anyhow!("cannot use the node's key: {e}"))?,
    );
    let mut roots = RootCertStore::empty();
    for a in &anchors {
        for der in ca::pem_certs(a) {
            roots
                .add(der)
                .map_err(|e| anyhow::anyhow!("cannot trust a cluster CA: {e}"))?;
        }
    }
    let (server_verifier, client_verifier) = if roots.is_empty() {
        (None, None)
    } else {
        let roots = Arc::new(roots);
        let s = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot verify with the cluster CAs: {e}"))?;
        let c = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot verify with the cluster CAs: {e}"))?;
        (Some(s), Some(c))
    };
    Ok(Live {
        own,
        own_facts,
        own_pem: own_pem.to_string(),
        temp,
        anchors,
        server_verifier,
        client_verifier,
    })
}

/// Handshake signatures, checked with ring's algorithms (every verifier here).
fn tls12_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}

/// The rustls hooks that read the live material on every handshake.
#[derive(Debug)]
struct Dynamic(Arc<NodeTls>);

fn no_ca() -> Error {
    Error::General("this node has no cluster CA yet".into())
}

impl ResolvesServerCert for Dynamic {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.live().own.clone()
    }
}

impl ResolvesClientCert for Dynamic {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.live().own.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.live().own.is_some()
    }
}

impl ServerCertVerifier for Dynamic {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let live = self.0.live();
        let v = live.server_verifier.as_ref().ok_or_else(no_ca)?;
        let ok = v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        self.0.check_peer(end_entity)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

impl ClientCertVerifier for Dynamic {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let live = self.0.live();
        let v = live.client_verifier.as_ref().ok_or_else(no_ca)?;
        let ok = v.verify_client_cert(end_entity, intermediates, now)?;
        self.0.check_peer(end_entity)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

/// The certificate an enrollment answer is given under: the node's own, or
/// the throwaway one while it has none.
#[derive(Debug)]
struct EnrollCert(Arc<NodeTls>);

impl ResolvesServerCert for EnrollCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let live = self.0.live();
        Some(live.own.clone().unwrap_or_else(|| live.temp.clone()))
    }
}

/// The enrollment client's config: it cannot check the server's certificate
/// (it has no CA yet); the answer is authenticated by the cluster secret instead
/// (see enroll.rs).
pub fn enroll_client_config() -> ClientConfig {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
    c.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    c
}

#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}
