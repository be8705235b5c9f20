//! The write API. Every handler validates, builds one event and answers `202` only after the broker
//! acknowledged it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use chrono::Utc;
use httpkit::{ApiError, JsonBody};
use schemas::api::{Accepted, CreatePostRequest};
use schemas::ids::{validate_body, validate_message_id};
use schemas::{Envelope, FollowChange, PostCreated, PostId, UserId};

use crate::producer::{Acknowledged, EventProducer};

pub fn router(producer: Arc<EventProducer>) -> Router {
    Router::new()
        .route("/v1/posts", post(create_post))
        .route(
            "/v1/users/{user}/following/{target}",
            put(follow).delete(unfollow),
        )
        .with_state(producer)
}

fn accepted(envelope: &Envelope, post_id: Option<&PostId>, ack: Acknowledged) -> Response {
    let body = Accepted {
        post_id: post_id.map(|id| id.as_str().to_owned()),
        event_id: envelope.id.clone(),
        partition: ack.partition,
        offset: ack.offset,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Validates a post request into the event payload.
pub fn validate_post(request: CreatePostRequest) -> Result<PostCreated, ApiError> {
    let author = UserId::parse("author", &request.author)?;
    validate_body("body", &request.body)?;
    if let Some(id) = &request.message_id {
        validate_message_id("message_id", id)?;
    }
    Ok(PostCreated {
        post_id: PostId::generate(),
        author,
        body: request.body,
        message_id: request.message_id,
        created_at: Utc::now(),
    })
}

#[tracing::instrument(skip_all)]
async fn create_post(
    State(producer): State<Arc<EventProducer>>,
    JsonBody(request): JsonBody<CreatePostRequest>,
) -> Result<Response, ApiError> {
    let post = validate_post(request)?;
    let post_id = post.post_id.clone();
    let envelope = Envelope::post_created(post);
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, Some(&post_id), ack))
}

fn follow_change(user: &str, target: &str) -> Result<FollowChange, ApiError> {
    let follower = UserId::parse("user", user)?;
    let followee = UserId::parse("target", target)?;
    if follower == followee {
        return Err(ApiError::bad_field(
            "target",
            "a user cannot follow themselves",
        ));
    }
    Ok(FollowChange { follower, followee })
}

#[tracing::instrument(skip_all)]
async fn follow(
    State(producer): State<Arc<EventProducer>>,
    Path((user, target)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let envelope = Envelope::followed(follow_change(&user, &target)?);
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, None, ack))
}

#[tracing::instrument(skip_all)]
async fn unfollow(
    State(producer): State<Arc<EventProducer>>,
    Path((user, target)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let envelope = Envelope::unfollowed(follow_change(&user, &target)?);
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, None, ack))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(author: &str, body: &str, message_id: Option<&str>) -> CreatePostRequest {
        CreatePostRequest {
            author: author.into(),
            body: body.into(),
            message_id: message_id.map(Into::into),
        }
    }

    #[test]
    fn post_validation_names_the_field() {
        let field = |r| validate_post(r).unwrap_err().field.unwrap();
        assert_eq!(field(request("no spaces", "x", None)), "author");
        assert_eq!(field(request("a", "", None)), "body");
        assert_eq!(field(request("a", "x", Some(""))), "message_id");
        let post = validate_post(request("a", "x", Some("m"))).unwrap();
        assert_eq!(post.author.as_str(), "a");
    }

    #[test]
    fn follow_paths_are_validated() {
        assert_eq!(
            follow_change("a b", "c").unwrap_err().field.unwrap(),
            "user"
        );
        assert_eq!(follow_change("a", "").unwrap_err().field.unwrap(), "target");
        assert_eq!(
            follow_change("a", "a").unwrap_err().field.unwrap(),
            "target"
        );
        assert!(follow_change("a", "b").is_ok());
    }
}
