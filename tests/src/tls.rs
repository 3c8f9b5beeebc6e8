//! TLS for test clusters: a test CA (the operators' own, as it were) and the API
//! certificate it certifies for 127.0.0.1, written to files the nodes read.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The API's certificate files and the CA a client must trust for them.
#[derive(Debug, Clone)]
pub struct ApiFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: String,
    ca_key_pem: String,
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "bcm test operators' CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p
}

impl ApiFiles {
    /// A new test CA and an API certificate for 127.0.0.1 in `dir`.
    pub fn make(dir: &Path) -> ApiFiles {
        std::fs::create_dir_all(dir).expect("create the TLS dir");
        let ca_key = KeyPair::generate().expect("a CA key");
        let ca_cert = ca_params().self_signed(&ca_key).expect("the test CA");
        let files = ApiFiles {
            cert: dir.join("api.crt"),
            key: dir.join("api.key"),
            ca_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
        };
        std::fs::write(dir.join("ca.pem"), &files.ca_pem).expect("write ca.pem");
        files.renew("bcm test API");
        files
    }

    /// Writes a new API certificate (a new key, the CN given) over the old
    /// files, as an operator renewing it would; returns its PEM.
    pub fn renew(&self, common_name: &str) -> String {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).expect("the CA key");
        let issuer = Issuer::new(ca_params(), ca_key);
        let key = KeyPair::generate().expect("a key");
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("names");
        p.distinguished_name.push(DnType::CommonName, common_name);
        let cert = p.signed_by(&key, &issuer).expect("the API certificate");
        // Key first, then the certificate: a reload in between sees a pair that
        // does not fit and keeps the previous one; the next look sees both.
        std::fs::write(&self.key, key.serialize_pem()).expect("write the key");
        std::fs::write(&self.cert, cert.pem()).expect("write the certificate");
        cert.pem()
    }

    /// The CA's PEM file.
    pub fn ca_path(&self) -> PathBuf {
        self.cert.with_file_name("ca.pem")
    }
}
