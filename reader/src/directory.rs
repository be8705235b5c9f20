//! People and group search: a directory by id and name, ranked — the exact id first, then ids that
//! start with the query, then names containing its words (Chinese anywhere, other words by prefix),
//! then ids and names containing it as a substring (three characters or more, by trigram). Private
//! (`invite`) groups are found only by their members and invitees, as their cards are shown; dissolved
//! groups never.

use authkit::Bearer;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use httpkit::openapi::{BadRequest, InternalError, Unauthorized, Unavailable};
use httpkit::{ApiError, QueryParams};
use schemas::api::{
    decode_rank_cursor, encode_rank_cursor, GroupHit, GroupSearchPage, UserHit, UserSearchPage,
};
use schemas::UserId;
use sqlx::PgPool;

use crate::failure::database_error;
use crate::params::{cursor_param, page_limit, page_of};
use crate::search::query_param;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/search/users", get(users))
        .route("/v1/search/groups", get(groups))
        .with_state(pool)
}

/// The query as ids are written (trimmed), as a `LIKE` substring pattern of the folded query, and as a
/// `tsquery`; `LIKE`'s own characters are escaped.
struct Directory {
    id: String,
    like: String,
    tsquery: String,
}

impl Directory {
    fn parse(params: &QueryParams) -> Result<Directory, ApiError> {
        let (raw, tsquery) = query_param(params)?;
        let folded = schemas::search::fold(raw.trim());
        let escaped: String = folded
            .chars()
            .flat_map(|c| match c {
                '\\' | '%' | '_' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        Ok(Directory {
            id: raw.trim().to_owned(),
            // Substrings only from three characters on: shorter ones match nearly everything, and
            // no trigram index can serve them.
            like: if folded.chars().count() >= 3 {
                format!("%{escaped}%")
            } else {
                String::new()
            },
            tsquery,
        })
    }
}

/// Users by rank then id: $1 id, $2 like pattern ('' for none), $3 tsquery, $4/$5 cursor, $6 rows.
const USERS_SQL: &str = "SELECT h.user_id, u.display_name, min(h.rank) AS rank
     FROM (SELECT user_id, 0 AS rank FROM accounts WHERE user_id = $1
           UNION ALL
           SELECT user_id, 1 FROM accounts WHERE $2 <> '' AND user_id LIKE $2
           UNION ALL
           SELECT user_id, 2 FROM users WHERE search @@ $3::tsquery
           UNION ALL
           SELECT user_id, 3 FROM users WHERE $2 <> '' AND lower(display_name) LIKE $2) AS h
     LEFT JOIN users u ON u.user_id = h.user_id
     GROUP BY h.user_id, u.display_name
     HAVING $4::int IS NULL OR (min(h.rank), h.user_id) > ($4, $5)
     ORDER BY rank, h.user_id
     LIMIT $6";

/// Search people.
///
/// Accounts and profiles by id and display name, ranked: the exact id, ids containing the query, names
/// containing its words, names containing it; then by id.
#[utoipa::path(
    get, path = "/v1/search/users", tag = "search",
    params(
        ("q" = String, Query, description = "An id or a name, 1 to 200 characters, at least one letter or digit."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of people, best first.", body = UserSearchPage),
        BadRequest, Unauthorized, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn users(
    _bearer: Bearer,
    State(pool): State<PgPool>,
    params: QueryParams,
) -> Result<Json<UserSearchPage>, ApiError> {
    let query = Directory::parse(&params)?;
    let limit = page_limit(&params)?;
    let (rank, after) = cursor_param(&params, decode_rank_cursor)?.unzip();
    let rows: Vec<(String, Option<String>, i32)> = sqlx::query_as(USERS_SQL)
        .bind(&query.id)
        .bind(&query.like)
        .bind(&query.tsquery)
        .bind(rank)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&pool)
        .await
        .map_err(database_error)?;
    let (users, next_cursor) = page_of(rows, limit, |(user, _, rank)| {
        encode_rank_cursor(*rank, user)
    });
    Ok(Json(UserSearchPage {
        users: users
            .into_iter()
            .map(|(user, display_name, _)| UserHit { user, display_name })
            .collect(),
        next_cursor,
    }))
}

/// Groups the caller may see, by rank then id: $1 id, $2 like, $3 tsquery, $4/$5 cursor, $6 rows, $7 caller.
const GROUPS_SQL: &str = "SELECT g.group_id, g.name, g.description, g.member_count, g.join_rule,
            min(h.rank) AS rank
     FROM (SELECT group_id, 0 AS rank FROM groups WHERE group_id = $1
           UNION ALL
           SELECT group_id, 1 FROM groups WHERE $2 <> '' AND group_id LIKE $2
           UNION ALL
           SELECT group_id, 2 FROM groups WHERE search @@ $3::tsquery
           UNION ALL
           SELECT group_id, 3 FROM groups WHERE $2 <> '' AND lower(name) LIKE $2) AS h
     JOIN groups g ON g.group_id = h.group_id
     WHERE g.dissolved_at IS NULL
       AND (g.join_rule <> 'invite'
            OR EXISTS (SELECT 1 FROM group_members m
                       WHERE m.group_id = g.group_id AND m.user_id = $7 AND m.active)
            OR EXISTS (SELECT 1 FROM group_pending p
                       WHERE p.group_id = g.group_id AND p.user_id = $7))
     GROUP BY g.group_id
     HAVING $4::int IS NULL OR (min(h.rank), g.group_id) > ($4, $5)
     ORDER BY rank, g.group_id
     LIMIT $6";

/// Search groups.
///
/// Groups by id, name and description, ranked as people are; private (`invite`) groups only for their
/// members and invitees.
#[utoipa::path(
    get, path = "/v1/search/groups", tag = "search",
    params(
        ("q" = String, Query, description = "An id or words of a name or description, 1 to 200 characters."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of groups, best first.", body = GroupSearchPage),
        BadRequest, Unauthorized, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn groups(
    bearer: Bearer,
    State(pool): State<PgPool>,
    params: QueryParams,
) -> Result<Json<GroupSearchPage>, ApiError> {
    let caller = UserId::parse("token", bearer.user())?;
    let query = Directory::parse(&params)?;
    let limit = page_limit(&params)?;
    let (rank, after) = cursor_param(&params, decode_rank_cursor)?.unzip();
    type Row = (String, String, Option<String>, i64, String, i32);
    let rows: Vec<Row> = sqlx::query_as(GROUPS_SQL)
        .bind(&query.id)
        .bind(&query.like)
        .bind(&query.tsquery)
        .bind(rank)
        .bind(after)
        .bind(limit + 1)
        .bind(caller.as_str())
        .fetch_all(&pool)
        .await
        .map_err(database_error)?;
    let (groups, next_cursor) = page_of(rows, limit, |row: &Row| encode_rank_cursor(row.5, &row.0));
    Ok(Json(GroupSearchPage {
        groups: groups
            .into_iter()
            .map(
                |(group, name, description, member_count, join_rule, _)| GroupHit {
                    group,
                    name,
                    description,
                    member_count,
                    join_rule,
                },
            )
            .collect(),
        next_cursor,
    }))
}
