//! The query parameters every page shares: `limit` and `cursor`, parsed one way for every paged route.

use httpkit::{ApiError, QueryParams};
use schemas::api::{decode_cursor, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use schemas::PostId;

/// `limit` of any page: 1 to [`MAX_PAGE_LIMIT`], [`DEFAULT_PAGE_LIMIT`] when not given.
pub(crate) fn page_limit(params: &QueryParams) -> Result<i64, ApiError> {
    Ok(params
        .int_in("limit", 1, MAX_PAGE_LIMIT)?
        .unwrap_or(DEFAULT_PAGE_LIMIT))
}

/// `cursor` of any page, decoded by the page's own format: none when absent or empty, 400 when it is
/// not a cursor this API returned.
pub(crate) fn cursor_param<T>(
    params: &QueryParams,
    decode: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match params.get("cursor") {
        None | Some("") => Ok(None),
        Some(raw) => decode(raw)
            .map(Some)
            .ok_or_else(|| ApiError::bad_field("cursor", "not a cursor returned by this API")),
    }
}

/// Splits the `limit + 1` rows a keyed page query fetched: the page's first `limit` items, and the
/// cursor after the last of them when the extra row shows that more follow.
pub(crate) fn page_of<T>(
    mut items: Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let has_more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = items.last().filter(|_| has_more).map(cursor_of);
    (items, next_cursor)
}

/// `limit` and `cursor` of a feed or store-timeline page: one struct documents them (utoipa) and
/// parses them, so the document and the checks cannot part.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 20 when not given.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page; the first page without it.
    #[param(value_type = Option<String>)]
    cursor: Option<PostId>,
}

impl PageQuery {
    pub(crate) fn parse(params: &QueryParams) -> Result<Self, ApiError> {
        Ok(PageQuery {
            limit: params.int_in("limit", 1, MAX_PAGE_LIMIT)?,
            cursor: cursor_param(params, decode_cursor)?,
        })
    }

    pub(crate) fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_PAGE_LIMIT)
    }

    pub(crate) fn cursor(&self) -> Option<&str> {
        self.cursor.as_ref().map(PostId::as_str)
    }
}
