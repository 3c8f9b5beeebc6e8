//! RFC 9457 problem details: the one error body of every HTTP surface. The body's
//! shape is `bcm_api::Problem` (what clients read); this adds what only the
//! server needs (the `Retry-After` to send) and the response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answer: its problem-details body, and how long to wait before trying
/// again when that is worth saying. Boxed: it travels in every handler's `Err`.
#[derive(Debug, Clone)]
pub struct Problem {
    body: Box<bcm_api::Problem>,
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        let title = status.canonical_reason().unwrap_or("Error");
        Problem {
            body: Box::new(bcm_api::Problem {
                kind: bcm_api::Problem::kind_of(title),
                title: title.to_string(),
                status: status.as_u16(),
                detail: detail.into(),
                field: None,
                quota: None,
            }),
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Problem {
        self.body.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Problem {
        self.retry_after = Some(secs);
        self
    }
}

/// The body's fields: `p.detail`, `p.status`, `p.field`.
impl std::ops::Deref for Problem {
    type Target = bcm_api::Problem;
    fn deref(&self) -> &bcm_api::Problem {
        &self.body
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut bcm_api::Problem {
        &mut self.body
    }
}

/// Documented as the body it sends.
impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <bcm_api::Problem as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Problem {
    fn name() -> std::borrow::Cow<'static, str> {
        <bcm_api::Problem as utoipa::ToSchema>::name()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&*self.body).unwrap_or_default();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names the scheme to use.
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
