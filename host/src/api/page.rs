//! Cursor pagination shared by the listings: `limit` (capped) and an opaque
//! `cursor` handed out with the previous page.

use serde::Deserialize;
use utoipa::IntoParams;

use super::problem::ApiError;
use super::state::ApiSettings;

/// `?limit=&cursor=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page: 1 or more, capped at 100 (default 20).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size (capped) and the position after which the page starts.
    pub fn resolve(&self, policy: &ApiSettings) -> Result<(i64, Option<i64>), ApiError> {
        let limit = match self.limit {
            None => policy.default_page,
            Some(limit) if limit < 1 => {
                return Err(ApiError::BadRequest { detail: "limit must be at least 1".into() });
            }
            Some(limit) => limit.min(policy.max_page),
        };
        let position =
            match &self.cursor {
                None => None,
                Some(cursor) => Some(cursor.parse::<i64>().ok().filter(|position| *position > 0).ok_or_else(|| {
                    ApiError::BadRequest { detail: format!("{cursor:?} is not a cursor from this API") }
                })?),
            };
        Ok((limit, position))
    }
}

/// The cursor of the page after `items`, when the page was full.
pub fn next_cursor<T>(items: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<String> {
    (items.len() as i64 == limit).then(|| items.last().map(|item| id(item).to_string())).flatten()
}
