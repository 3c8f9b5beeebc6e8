//! The JSON API, called in process: the requests the pages send, the answers they
//! read, and the API's refusals as the pages show them (`UiError`).

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use bcm_web_ui::Flash;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tower::ServiceExt;

use super::{Session, Ui};

/// A refused API call, as the page shows it.
#[derive(Debug, Clone)]
pub struct UiError {
    pub status: StatusCode,
    pub detail: String,
    pub field: Option<String>,
}

impl UiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> UiError {
        UiError {
            status,
            detail: detail.into(),
            field: None,
        }
    }

    /// A refused form field, the form's own check before the API's.
    pub fn of_field(field: &str, detail: impl Into<String>) -> UiError {
        UiError {
            field: Some(field.into()),
            ..UiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
        }
    }

    /// The refusal in plain words, saying what to do about it.
    pub fn text(&self) -> String {
        let d = &self.detail;
        match self.status.as_u16() {
            400 | 422 => format!("Please correct this: {d}."),
            401 => format!("Your session has ended: {d}."),
            403 => format!("You are not allowed to do that: {d}."),
            404 => format!("Not found: {d}."),
            409 => format!("Refused: {d}."),
            412 => format!(
                "Someone changed this meanwhile ({d}); reload the page to see the new value."
            ),
            429 => format!("Too many attempts: {d}."),
            503 => format!(
                "The cluster cannot do this right now: {d}. It usually recovers within \
                 seconds (a new leader is being elected); try again."
            ),
            _ => format!("Something went wrong on the server: {d}."),
        }
    }

    pub fn flash(&self) -> Flash {
        Flash::error(self.text(), self.field.clone())
    }
}

impl Ui {
    /// Sends one request to the JSON API in process, as the session's user.
    pub async fn call(
        &self,
        s: Option<&Session>,
        method: Method,
        uri: &str,
        body: Option<Value>,
        extra: &[(header::HeaderName, String)],
    ) -> Result<Value, UiError> {
        let mut req = request(method, uri, s.map(|s| s.token.as_str()), body, extra)?;
        if let Some(client) = s.and_then(|s| s.client) {
            req.extensions_mut().insert(client);
        }
        self.answer(req).await
    }

    /// The API's answer to `req`: its JSON body, or its refusal (the API's problem
    /// details).
    pub async fn answer(&self, req: Request<Body>) -> Result<Value, UiError> {
        let resp = self
            .api
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|never| match never {});
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 * 1024 * 1024)
            .await
            .unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
        Err(match serde_json::from_slice::<bcm_api::Problem>(&bytes) {
            Ok(p) => UiError {
                status,
                detail: p.detail,
                field: p.field,
            },
            Err(_) => UiError::new(status, status.canonical_reason().unwrap_or("error")),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, s: &Session, uri: &str) -> Result<T, UiError> {
        decode(uri, self.call(Some(s), Method::GET, uri, None, &[]).await?)
    }

    /// Sends `body`, one of the API's request types.
    pub async fn send(
        &self,
        s: &Session,
        method: Method,
        uri: &str,
        body: &impl Serialize,
    ) -> Result<Value, UiError> {
        self.call(Some(s), method, uri, Some(json_of(body)?), &[])
            .await
    }

    pub async fn delete(&self, s: &Session, uri: &str) -> Result<Value, UiError> {
        self.call(Some(s), Method::DELETE, uri, None, &[]).await
    }
}

/// A request to the API, with a bearer token and a JSON body if given.
pub fn request(
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(header::HeaderName, String)],
) -> Result<Request<Body>, UiError> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    req.body(body)
        .map_err(|e| UiError::new(StatusCode::BAD_REQUEST, format!("bad request: {e}")))
}

/// The API's answer to `uri` as the type it should be.
pub fn decode<T: DeserializeOwned>(uri: &str, answer: Value) -> Result<T, UiError> {
    serde_json::from_value(answer).map_err(|e| {
        UiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the API answered {uri} in an unexpected shape: {e}"),
        )
    })
}

/// One of the API's request types as the JSON it sends.
pub fn json_of(body: &impl Serialize) -> Result<Value, UiError> {
    serde_json::to_value(body).map_err(|e| {
        UiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request could not be written as JSON: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_plain_words() {
        let e = UiError::new(
            StatusCode::FORBIDDEN,
            "user \"v\" lacks the permission \"users.write\"",
        );
        assert!(e.text().starts_with("You are not allowed to do that"));
        let e = UiError::new(StatusCode::SERVICE_UNAVAILABLE, "no leader");
        assert!(e.text().contains("try again"));
    }
}
