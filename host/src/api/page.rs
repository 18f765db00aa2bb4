//! Cursor pagination shared by the listings: `limit` and an opaque `cursor`
//! handed out with the previous page. The bounds below are the ones the
//! OpenAPI document states; a value outside them is a 400, never clamped.

use serde::Deserialize;
use utoipa::IntoParams;

use super::problem::ApiError;

/// Largest page of a listing.
pub const MAX_PAGE: i64 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: i64 = 20;
/// A cursor: the position a page ended at, as digits (no sign, no leading
/// zero, at most 18 digits, so it always fits the database's integer).
pub const CURSOR_PATTERN: &str = "^[1-9][0-9]{0,17}$";

/// `?limit=&cursor=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size and the position after which the page starts.
    pub fn resolve(&self) -> Result<(i64, Option<i64>), ApiError> {
        let limit = match self.limit {
            None => DEFAULT_PAGE,
            Some(limit) if (1..=MAX_PAGE).contains(&limit) => limit,
            Some(_) => {
                return Err(ApiError::BadRequest { detail: format!("limit must be from 1 to {MAX_PAGE}") });
            }
        };
        let position = self.cursor.as_deref().map(cursor_position).transpose()?;
        Ok((limit, position))
    }
}

/// The position a cursor names, if it is one this API hands out.
fn cursor_position(cursor: &str) -> Result<i64, ApiError> {
    let digits = cursor.as_bytes();
    let well_formed = (1..=18).contains(&digits.len()) && digits[0] != b'0' && digits.iter().all(u8::is_ascii_digit);
    let position = well_formed.then(|| cursor.parse::<i64>().ok()).flatten();
    position.ok_or_else(|| ApiError::BadRequest { detail: format!("{cursor:?} is not a cursor from this API") })
}

/// The cursor of the page after `items`, when the page was full.
pub fn next_cursor<T>(items: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<String> {
    (items.len() as i64 == limit).then(|| items.last().map(|item| id(item).to_string())).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: Option<i64>, cursor: Option<&str>) -> Result<(i64, Option<i64>), ApiError> {
        PageQuery { limit, cursor: cursor.map(str::to_owned) }.resolve()
    }

    #[test]
    fn limits_outside_the_documented_bounds_are_refused() {
        assert_eq!(page(None, None).unwrap(), (DEFAULT_PAGE, None));
        assert_eq!(page(Some(MAX_PAGE), None).unwrap().0, MAX_PAGE);
        for limit in [0, -1, MAX_PAGE + 1, i64::MAX] {
            assert!(page(Some(limit), None).is_err(), "{limit}");
        }
    }

    #[test]
    fn cursors_match_the_documented_pattern_exactly() {
        // What `CURSOR_PATTERN` accepts, case by case.
        let cases = [
            ("1", true),
            ("42", true),
            ("999999999999999999", true),
            ("0", false),
            ("01", false),
            ("+5", false),
            ("-5", false),
            (" 5", false),
            ("1e3", false),
            ("", false),
            ("1234567890123456789", false),
            ("\u{663}", false),
        ];
        for (cursor, accepted) in cases {
            assert_eq!(page(None, Some(cursor)).is_ok(), accepted, "{cursor:?}");
        }
    }
}
