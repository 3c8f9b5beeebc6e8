//! One request the harness sends ([`Req`]) and the answer it gets ([`Reply`]), decoded
//! into the API's own types where the harness reads it.

use std::time::Duration;

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::REQUEST_TIMEOUT;

/// One HTTP answer: status, headers and the raw body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// How long the request took, from sending to the last body byte.
    pub elapsed: Duration,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The body decoded as a `T` (a `bcm_api` view, a `Page` of them, ...); the
    /// error names the type, why it does not decode, and the answer.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("not a {}: {e}; in {self}", std::any::type_name::<T>()))
    }

    /// The body decoded as RFC 9457 problem details.
    pub fn problem(&self) -> Result<bcm_api::Problem, String> {
        self.parse()
    }

    pub fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// Checks the RFC 9457 shape of an error answer: a 4xx, `application/problem+json`,
    /// and a body that decodes as a [`bcm_api::Problem`] (so it has a `title`) whose
    /// `status` equals the HTTP status.
    pub fn check_problem(&self) -> Result<(), String> {
        if !(400..500).contains(&self.status) {
            return Err(format!("expected a 4xx, got {self}"));
        }
        if !self.content_type().starts_with("application/problem+json") {
            return Err(format!(
                "expected content-type application/problem+json, got {:?} in {self}",
                self.content_type()
            ));
        }
        let problem = self.problem()?;
        if problem.status != self.status {
            return Err(format!("problem body has no matching `status`: {self}"));
        }
        Ok(())
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut body = self.body.clone();
        if body.len() > 400 {
            let mut cut = 400;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        write!(
            f,
            "HTTP {} ({}, {:.2}s) {body}",
            self.status,
            self.content_type(),
            self.elapsed.as_secs_f64()
        )
    }
}

/// A request the harness can send; built with [`Api::request`](super::Api::request).
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
    /// The loopback address the request leaves from (another client, as the
    /// node sees it); None: the default, 127.0.0.1.
    pub source: Option<std::net::IpAddr>,
}

impl Req {
    /// A bare request: no headers, no body, the default timeout.
    pub(super) fn new(method: Method, url: String) -> Req {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: None,
            timeout: REQUEST_TIMEOUT,
            source: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A JSON body: a `bcm_api` request type, or any `serde_json::Value`.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.body = Some(serde_json::to_vec(body).unwrap());
        self.header("content-type", "application/json")
    }

    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends from `addr` (a loopback address such as 127.0.0.2): a client of
    /// its own, as far as the node can tell.
    pub fn from_address(mut self, addr: &str) -> Self {
        self.source = Some(addr.parse().expect("an IP address"));
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use reqwest::header::HeaderValue;

    fn reply(status: u16, content_type: &'static str, body: &str) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        Reply {
            status,
            headers,
            body: body.to_string(),
            elapsed: Duration::ZERO,
        }
    }

    const NOT_FOUND: &str = r#"{"type": "https://bcm.dev/problems/not-found",
        "title": "Not Found", "status": 404, "detail": "no setting x"}"#;

    #[test]
    fn bodies_decode_into_the_api_types() {
        let r = reply(
            200,
            "application/json",
            r#"{"key":"k","value":[1],"version":3}"#,
        );
        let entry: bcm_api::ConfigView = r.parse().unwrap();
        assert_eq!((entry.key.as_str(), entry.version), ("k", 3));
        assert_eq!(entry.value, serde_json::json!([1]));

        let e = r.parse::<bcm_api::LeaderView>().unwrap_err();
        assert!(e.contains("LeaderView") && e.contains("term"), "{e}");
        assert!(e.contains(r#""key":"k""#), "names the body: {e}");
    }

    #[test]
    fn problems_are_checked_by_their_decoded_shape() {
        let ok = reply(404, "application/problem+json", NOT_FOUND);
        ok.check_problem().unwrap();
        assert_eq!(ok.problem().unwrap().detail, "no setting x");

        let other_status = reply(409, "application/problem+json", NOT_FOUND);
        let e = other_status.check_problem().unwrap_err();
        assert!(
            e.starts_with("problem body has no matching `status`"),
            "{e}"
        );

        let untitled = reply(400, "application/problem+json", r#"{"status": 400}"#);
        let e = untitled.check_problem().unwrap_err();
        assert!(e.contains("Problem") && e.contains("missing field"), "{e}");

        let plain = reply(404, "application/json", NOT_FOUND);
        assert!(plain.check_problem().unwrap_err().contains("content-type"));
        let server_error = reply(500, "application/problem+json", NOT_FOUND);
        assert!(server_error.check_problem().unwrap_err().contains("a 4xx"));
    }

    #[test]
    fn request_bodies_are_built_from_the_request_types() {
        let login = bcm_api::Login {
            username: "admin".into(),
            password: "pw".into(),
        };
        let req = Req::new(Method::POST, "http://x/login".into()).json(&login);
        let sent: Value = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"username": "admin", "password": "pw"})
        );
        assert!(req
            .headers
            .contains(&("content-type".into(), "application/json".into())));
    }
}
