//! Plain HTTP redirected to the HTTPS API (`api.http_redirect_listen`).
//!
//! Every request, whatever its method, is answered 308 with the same path and
//! query on `node.api_advertise`: the location is built from the configured
//! address, never from the request's `Host`, so the listener cannot be made to
//! send anyone elsewhere. 308 keeps the method and body, so a client that
//! follows it repeats a POST as a POST (over HTTPS this time); a browser that
//! once reached the HTTPS API has its HSTS answer and no longer asks here.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// The redirect listener's routes: everything, to `api_advertise`.
pub fn router(api_advertise: &str) -> Router {
    let base = api_advertise.trim_end_matches('/').to_string();
    Router::new().fallback(move |uri: Uri| {
        let base = base.clone();
        async move { redirect(&base, &uri) }
    })
}

fn redirect(base: &str, uri: &Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("{base}{path}");
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location.clone())],
        format!("this API is served over HTTPS: {location}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_is_the_advertised_address_with_the_requests_path() {
        let uri: Uri = "/api/v1/config/a?consistency=linearizable".parse().unwrap();
        let r = redirect("https://bcm.example:8443", &uri);
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://bcm.example:8443/api/v1/config/a?consistency=linearizable"
        );
        // An absolute-form request target does not move the redirect elsewhere.
        let uri: Uri = "http://evil.example/login".parse().unwrap();
        let r = redirect("https://bcm.example:8443", &uri);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://bcm.example:8443/login"
        );
    }
}
