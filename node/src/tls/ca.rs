//! The cluster CA: making one, certifying a successor with it (cross-signing, for
//! rotation), issuing node certificates, and reading a node certificate back.

use std::time::{Duration, SystemTime};

use bcm_raft_store::tls::ClusterCa;
use bcm_raft_store::Millis;
use bcm_raft_store::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::seal::{self, Purpose};
use crate::config::Secret;

/// How long a CA certificate is valid. Rotation replaces it long before.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node certificate is valid; nodes renew theirs after two thirds.
pub const NODE_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// Certificates start this much before they are made: clocks of members differ.
const BACKDATE: Duration = Duration::from_secs(3600);
/// The URI a node certificate names its node by.
const NODE_URI: &str = "urn:bcm:node:";

/// A CA with its signing key in the clear: only in memory, only while issuing.
pub struct CaKey {
    pub cert_pem: String,
    key: KeyPair,
}

fn failed(what: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot {what}: {e}")
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn ca_params(name: &str) -> CertificateParams {
    let now = SystemTime::now();
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "bcm");
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = (now - BACKDATE).into();
    p.not_after = (now + CA_VALIDITY).into();
    p.serial_number = Some(serial());
    p.use_authority_key_identifier_extension = true;
    p
}

impl CaKey {
    /// A new CA, named so that successive CAs of one cluster differ.
    pub fn generate() -> anyhow::Result<CaKey> {
        let key = KeyPair::generate().map_err(|e| failed("make a CA key", e))?;
        let name = format!("bcm cluster CA {:08x}", rand::random::<u32>());
        let cert = ca_params(&name)
            .self_signed(&key)
            .map_err(|e| failed("make the CA certificate", e))?;
        Ok(CaKey {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The CA as the replicated state keeps it: the key sealed under `secret`.
    pub fn sealed(&self, secret: &Secret, cross_pem: Option<String>, now: Millis) -> ClusterCa {
        ClusterCa {
            cert_pem: self.cert_pem.clone(),
            cross_pem,
            sealed_key: seal::seal(secret, Purpose::CaKey, self.key.serialize_pem().as_bytes()),
            created: now,
            retire_at: None,
        }
    }

    /// The CA of the replicated state, its key opened with `secret` (or, after
    /// the cluster secret changed, with the previous one).
    pub fn unseal_any(ca: &ClusterCa, secrets: &[&Secret]) -> anyhow::Result<CaKey> {
        let mut last = None;
        for s in secrets {
            match CaKey::unseal(ca, s) {
                Ok(k) => return Ok(k),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no secret to open the CA key with")))
    }

    /// The CA of the replicated state, its key opened with `secret`.
    pub fn unseal(ca: &ClusterCa, secret: &Secret) -> anyhow::Result<CaKey> {
        let pem = seal::open(secret, Purpose::CaKey, &ca.sealed_key)?;
        let pem = String::from_utf8(pem).map_err(|e| failed("read the CA key", e))?;
        let key = KeyPair::from_pem(&pem).map_err(|e| failed("read the CA key", e))?;
        Ok(CaKey {
            cert_pem: ca.cert_pem.clone(),
            key,
        })
    }

    fn issuer(&self) -> anyhow::Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)
            .map_err(|e| failed("read the CA certificate", e))
    }

    /// `next` (its subject and key) certified by this CA: nodes that trust only
    /// this CA accept certificates `next` issues when this is in their chain.
    pub fn cross_sign(&self, next: &CaKey) -> anyhow::Result<String> {
        let cert = ca_params(&ca_name(&next.cert_pem))
            .signed_by(&next.key, &self.issuer()?)
            .map_err(|e| failed("cross-sign the new CA", e))?;
        Ok(cert.pem())
    }

    /// A certificate for node `id`, reachable at `hosts` (IP addresses or DNS
    /// names), for the key of `csr_der` (whose signature proves it is held).
    pub fn issue_node(
        &self,
        id: NodeId,
        hosts: &[String],
        csr_der: &[u8],
    ) -> anyhow::Result<String> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.into())
            .map_err(|e| failed("read the certificate request", e))?;
        let now = SystemTime::now();
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "bcm");
        dn.push(DnType::CommonName, format!("bcm node {id}"));
        p.distinguished_name = dn;
        let mut sans = vec![SanType::URI(
            format!("{NODE_URI}{id}")
                .try_into()
                .map_err(|e| failed("name the node", e))?,
        )];
        for h in hosts {
            sans.push(match h.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    h.clone()
                        .try_into()
                        .map_err(|e| failed(&format!("use {h:?} as a name"), e))?,
                ),
            });
        }
        p.subject_alt_names = sans;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = (now - BACKDATE).into();
        p.not_after = (now + NODE_VALIDITY).into();
        p.serial_number = Some(serial());
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&csr.public_key, &self.issuer()?)
            .map_err(|e| failed("issue the node certificate", e))?;
        Ok(cert.pem())
    }
}

/// What a node certificate says, as far as bcm cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The node it names (None: not a node certificate of bcm).
    pub node: Option<NodeId>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub issuer: String,
    pub serial: String,
}

/// Reads a certificate (DER).
pub fn facts(der: &[u8]) -> Option<CertFacts> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut node = None;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(id) = uri.strip_prefix(NODE_URI) {
                    node = id.parse().ok();
                }
            }
        }
    }
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    Some(CertFacts {
        node,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        issuer,
        serial: cert.raw_serial_as_string(),
    })
}

/// The CN of a CA certificate (PEM), to name it to operators.
pub fn ca_name(pem: &str) -> String {
    first_der(pem)
        .and_then(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
            let cn = cert
                .subject()
                .iter_common_name()
                .next()?
                .as_str()
                .ok()?
                .to_string();
            Some(cn)
        })
        .unwrap_or_default()
}

/// The certificates of a PEM text, in order.
pub fn pem_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn first_der(pem: &str) -> Option<Vec<u8>> {
    pem_certs(pem).into_iter().next().map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(key: &KeyPair) -> Vec<u8> {
        CertificateParams::default()
            .serialize_request(key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn a_node_certificate_names_its_node_and_hosts_and_the_sealed_ca_opens() {
        let secret = Secret::new("0123456789abcdefXYZ");
        let ca = CaKey::generate().unwrap();
        let sealed = ca.sealed(&secret, None, 5);
        let ca = CaKey::unseal(&sealed, &secret).unwrap();
        let node_key = KeyPair::generate().unwrap();
        let pem = ca
            .issue_node(7, &["127.0.0.1".into(), "bcm1".into()], &csr(&node_key))
            .unwrap();
        let der = first_der(&pem).unwrap();
        let f = facts(&der).unwrap();
        assert_eq!(f.node, Some(7));
        assert!(f.issuer.starts_with("bcm cluster CA"));
        assert!(f.not_after - f.not_before > 80 * 24 * 3600);
        assert!(CaKey::unseal(&sealed, &Secret::new("another-secret-0123")).is_err());
    }

    #[test]
    fn a_cross_signed_successor_keeps_its_subject() {
        let old = CaKey::generate().unwrap();
        let new = CaKey::generate().unwrap();
        let cross = old.cross_sign(&new).unwrap();
        let der = first_der(&cross).unwrap();
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            c.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            ca_name(&new.cert_pem)
        );
        assert_eq!(
            c.issuer()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            ca_name(&old.cert_pem)
        );
    }
}
