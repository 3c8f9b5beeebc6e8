//! RFC 9457 problem details: the one error body of every HTTP surface.

use serde::{Deserialize, Serialize};

/// An error (RFC 9457 problem details).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, in words a person can act on.
    pub detail: String,
    /// The request field at fault, for validation errors.
    pub field: Option<String>,
    /// The quota that was reached, for 507 answers (e.g. `config.bytes`).
    pub quota: Option<String>,
}

impl Problem {
    /// The `type` URI for a reason phrase: `Not Found` -> `.../problems/not-found`.
    pub fn kind_of(title: &str) -> String {
        format!(
            "https://bcm.dev/problems/{}",
            title.to_lowercase().replace(' ', "-")
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}
