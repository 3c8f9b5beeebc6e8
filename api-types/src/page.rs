//! Lists: one page of items with the number of all matches, and the window
//! (`limit`, `offset`) that picks the page.

use serde::{Deserialize, Serialize};

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many match, over all pages.
    pub total: usize,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            items: Vec::new(),
            total: 0,
        }
    }
}

/// Which page of a list: `offset` items skipped, at most `limit` returned.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
pub struct Window {
    /// At most this many items (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Skip this many items.
    pub offset: Option<usize>,
}

impl Window {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;

    /// The page of `matching` this window picks, with the count of all of them.
    pub fn page<T>(&self, matching: impl ExactSizeIterator<Item = T>) -> Page<T> {
        let total = matching.len();
        let items = matching.skip(self.offset()).take(self.limit()).collect();
        Page { items, total }
    }

    pub fn limit(&self) -> usize {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .min(Self::MAX_LIMIT)
    }

    pub fn offset(&self) -> usize {
        self.offset.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_picks_its_page_and_counts_all() {
        let w = Window {
            limit: Some(2),
            offset: Some(1),
        };
        assert_eq!(
            w.page(1..6),
            Page {
                items: vec![2, 3],
                total: 5
            }
        );
        let all = Window::default().page(0..2000);
        assert_eq!((all.items.len(), all.total), (100, 2000));
        let max = Window {
            limit: Some(5000),
            offset: None,
        };
        assert_eq!(max.limit(), 1000);
    }
}
