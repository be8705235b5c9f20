//! Request → event conversions: each request body (and the path parts that go with it) becomes its
//! event payload here, checked by the payload's own `validate`, so that every entry point (ingest's
//! HTTP API, the reader's WebSocket) applies the same rules and names the same fields.
//!
//! What a conversion cannot know — who is asking (the token), whether the sender is a member (fanout) —
//! is checked where it is known.

use chrono::Utc;

use crate::api::{
    CreateGroupRequest, CreatePostRequest, EditMessageRequest, EditPostRequest, MuteMemberRequest,
    ProfileRequest, ReadRequest, ReportRequest, SendMessageRequest, UpdateGroupRequest,
};
use crate::events::{
    FollowChange, GroupCreated, MembershipChange, MessageSent, PostCreated, ProfileUpdated,
    ReadMarked, Role,
};
use crate::ids::{ConversationId, GroupId, MessageId, PostId, UserId, ValidationError};
use crate::moderation::ReportFiled;
use crate::revisions::{MessageEdited, PostEdited, Reaction};
use crate::safety::{GroupUpdated, HistoryVisibility, JoinRule, MemberMute};

impl CreatePostRequest {
    /// The `post_created` payload of this request, with a new post id.
    pub fn into_event(self) -> Result<PostCreated, ValidationError> {
        let post = PostCreated {
            post_id: PostId::generate(),
            author: UserId::parse("author", &self.author)?,
            body: self.body,
            content: self.content,
            message_id: self.message_id,
            created_at: Utc::now(),
        };
        post.validate()?;
        Ok(post)
    }
}

impl SendMessageRequest {
    /// The `message_sent` payload of this request, with a new message id: to a user (`to`) or a group
    /// (`group`), exactly one of them.
    pub fn into_event(self) -> Result<MessageSent, ValidationError> {
        let sender = UserId::parse("from", &self.from)?;
        let draft = self.draft;
        let conversation = match (&draft.to, &draft.group) {
            (Some(to), None) => {
                let to = UserId::parse("to", to)?;
                ConversationId::direct(&sender, &to).ok_or_else(|| {
                    ValidationError::new("to", "a message to yourself has nobody to go to")
                })?
            }
            (None, Some(group)) => ConversationId::group(&GroupId::parse("group", group)?),
            _ => {
                return Err(ValidationError::new(
                    "to",
                    "give exactly one of to (a user) and group",
                ))
            }
        };
        let message = MessageSent {
            message_id: MessageId::generate(),
            conversation,
            sender,
            mentions: parse_mentions(&draft.mentions)?,
            body: draft.body,
            content: draft.content,
            client_msg_id: draft.client_msg_id,
            reply_to: draft.reply_to,
            forwarded: draft.forwarded,
            mention_all: draft.mention_all,
            created_at: Utc::now(),
        };
        message.validate()?;
        Ok(message)
    }
}

impl EditMessageRequest {
    /// The `message_edited` payload of this request for `message_id` (a path part).
    pub fn into_event(self, message_id: &str) -> Result<MessageEdited, ValidationError> {
        let edit = MessageEdited {
            message_id: MessageId::parse("message_id", message_id)?,
            conversation: ConversationId::parse("conversation", &self.conversation)?,
            sender: UserId::parse("from", &self.from)?,
            mentions: parse_mentions(&self.mentions)?,
            body: self.body,
            content: self.content,
            mention_all: self.mention_all,
            version: self.version,
            edited_at: Utc::now(),
        };
        edit.validate()?;
        Ok(edit)
    }
}

impl EditPostRequest {
    /// The `post_edited` payload of this request for `post_id` (a path part).
    pub fn into_event(self, post_id: &str) -> Result<PostEdited, ValidationError> {
        let edit = PostEdited {
            post_id: PostId::parse("post_id", post_id)?,
            author: UserId::parse("author", &self.author)?,
            body: self.body,
            content: self.content,
            edited_at: Utc::now(),
        };
        edit.validate()?;
        Ok(edit)
    }
}

/// The `reaction_added`/`reaction_removed` payload: `user` puts `key` on message `seq` of
/// `conversation` (path parts).
pub fn reaction(
    user: &str,
    conversation: &str,
    seq: &str,
    key: &str,
) -> Result<Reaction, ValidationError> {
    let reaction = Reaction {
        conversation: ConversationId::parse("conversation", conversation)?,
        seq: seq
            .parse()
            .map_err(|_| ValidationError::new("seq", "must be a seq, 1 or more"))?,
        user: UserId::parse("user", user)?,
        key: key.to_owned(),
        at: Utc::now(),
    };
    reaction.validate()?;
    Ok(reaction)
}

/// The mentioned users, each error naming its place (`mentions[2]`).
fn parse_mentions(raw: &[String]) -> Result<Vec<UserId>, ValidationError> {
    raw.iter()
        .enumerate()
        .map(|(i, user)| {
            UserId::parse("user", user).map_err(|e| e.in_field(format!("mentions[{i}]")))
        })
        .collect()
}

impl ReadRequest {
    /// The `read_marked` payload: `user` has read `conversation` (path parts) up to `seq`.
    pub fn into_event(self, user: &str, conversation: &str) -> Result<ReadMarked, ValidationError> {
        let marker = ReadMarked {
            conversation: ConversationId::parse("conversation", conversation)?,
            user: UserId::parse("user", user)?,
            seq: self.seq,
        };
        marker.validate()?;
        Ok(marker)
    }
}

impl ProfileRequest {
    /// The `profile_updated` payload of `user` (path part): the whole profile.
    pub fn into_event(self, user: &str) -> Result<ProfileUpdated, ValidationError> {
        let profile = ProfileUpdated {
            user: UserId::parse("user", user)?,
            display_name: self.display_name,
            age: self.age,
            gender: self.gender,
            signature: self.signature,
        };
        profile.validate()?;
        Ok(profile)
    }
}

impl CreateGroupRequest {
    /// The `group_created` payload of this request.
    pub fn into_event(self) -> Result<GroupCreated, ValidationError> {
        let group = GroupCreated {
            group: GroupId::parse("group", &self.group)?,
            owner: UserId::parse("owner", &self.owner)?,
            name: self.name,
            group_type: self.group_type,
            description: self.description,
            // New groups are private unless asked otherwise (the safe default); events without a
            // rule come from before rules existed, when every group was open.
            join_rule: Some(self.join_rule.unwrap_or(JoinRule::Invite)),
            history: Some(self.history.unwrap_or(HistoryVisibility::Joined)),
            created_at: Utc::now(),
        };
        group.validate()?;
        Ok(group)
    }
}

impl UpdateGroupRequest {
    /// The `group_updated` payload of this request for the group the path names.
    pub fn into_event(self, group: &str) -> Result<GroupUpdated, ValidationError> {
        let owner = match &self.owner {
            Some(owner) => Some(UserId::parse("owner", owner)?),
            None => None,
        };
        let update = GroupUpdated {
            group: GroupId::parse("group", group)?,
            by: UserId::parse("by", &self.by)?,
            name: self.name,
            description: self.description,
            join_rule: self.join_rule,
            history: self.history,
            owner,
            retention_days: self.retention_days,
        };
        update.validate()?;
        Ok(update)
    }
}

impl ReportRequest {
    /// The `report_filed` payload of this request, with a new report id.
    pub fn into_event(self) -> Result<ReportFiled, ValidationError> {
        let report = ReportFiled {
            report_id: ulid::Ulid::new().to_string(),
            reporter: UserId::parse("reporter", &self.reporter)?,
            kind: self.kind,
            subject: self.subject,
            context: self.context,
            reason: self.reason,
            created_at: Utc::now(),
        };
        report.validate()?;
        Ok(report)
    }
}

/// The longest a member can be muted for at once.
pub const MAX_MUTE_DAYS: i64 = 366;

impl MuteMemberRequest {
    /// The `member_muted` payload of this request for the group and user the path names.
    pub fn into_event(self, group: &str, user: &str) -> Result<MemberMute, ValidationError> {
        let now = Utc::now();
        if self.until <= now {
            return Err(ValidationError::new("until", "must be in the future"));
        }
        if self.until > now + chrono::Duration::days(MAX_MUTE_DAYS) {
            return Err(ValidationError::new(
                "until",
                format!("must be at most {MAX_MUTE_DAYS} days ahead"),
            ));
        }
        Ok(MemberMute {
            group: GroupId::parse("group", group)?,
            user: UserId::parse("user", user)?,
            by: UserId::parse("by", &self.by)?,
            until: Some(self.until),
        })
    }
}

impl FollowChange {
    /// `user` follows (or unfollows) `target`, as the path names them.
    pub fn from_path(user: &str, target: &str) -> Result<FollowChange, ValidationError> {
        let change = FollowChange {
            follower: UserId::parse("user", user)?,
            followee: UserId::parse("target", target)?,
        };
        change.validate().map_err(|err| err.in_field("target"))?;
        Ok(change)
    }
}

impl MembershipChange {
    /// The change a path and its `by` and `role` parameters describe. `by` defaults to the user: a
    /// join or a leave. `role` is only given to an addition.
    pub fn from_path(
        group: &str,
        user: &str,
        by: Option<&str>,
        role: Option<&str>,
    ) -> Result<MembershipChange, ValidationError> {
        let group = GroupId::parse("group", group)?;
        let user = UserId::parse("user", user)?;
        let by = match by {
            Some(by) => UserId::parse("by", by)?,
            None => user.clone(),
        };
        let role = match role {
            None => None,
            Some("member") => Some(Role::Member),
            Some("admin") => Some(Role::Admin),
            Some(_) => {
                return Err(ValidationError::new(
                    "role",
                    "must be member or admin (the owner is whoever created the group)",
                ))
            }
        };
        Ok(MembershipChange {
            group,
            user,
            by,
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MessageDraft;

    fn post(author: &str, body: &str, message_id: Option<&str>) -> CreatePostRequest {
        CreatePostRequest {
            author: author.into(),
            body: body.into(),
            content: Default::default(),
            message_id: message_id.map(Into::into),
        }
    }

    #[test]
    fn post_validation_names_the_field() {
        let field = |r: CreatePostRequest| r.into_event().unwrap_err().field;
        assert_eq!(field(post("no spaces", "x", None)), "author");
        assert_eq!(field(post("a", "", None)), "body");
        assert_eq!(field(post("a", "x", Some(""))), "message_id");
        let created = post("a", "x", Some("m")).into_event().unwrap();
        assert_eq!(created.author.as_str(), "a");
    }

    fn message(
        from: &str,
        to: Option<&str>,
        group: Option<&str>,
        body: &str,
    ) -> SendMessageRequest {
        SendMessageRequest {
            from: from.into(),
            draft: MessageDraft {
                to: to.map(Into::into),
                group: group.map(Into::into),
                body: body.into(),
                ..MessageDraft::default()
            },
        }
    }

    #[test]
    fn messages_name_the_field_at_fault() {
        let field = |r: SendMessageRequest| r.into_event().unwrap_err().field;
        assert_eq!(field(message("a b", Some("bob"), None, "hi")), "from");
        assert_eq!(field(message("alice", Some("alice"), None, "hi")), "to");
        assert_eq!(field(message("alice", None, None, "hi")), "to");
        assert_eq!(
            field(message("alice", Some("bob"), Some("team"), "hi")),
            "to"
        );
        assert_eq!(field(message("alice", None, Some("a/b"), "hi")), "group");
        assert_eq!(field(message("alice", Some("bob"), None, " ")), "body");
        let ok = message("bob", Some("alice"), None, "hi")
            .into_event()
            .unwrap();
        assert_eq!(ok.conversation.as_str(), "d:alice:bob");
        let group = message("bob", None, Some("team"), "hi")
            .into_event()
            .unwrap();
        assert_eq!(group.conversation.as_str(), "g:team");
    }

    #[test]
    fn read_markers_and_follows_name_their_path_parts() {
        let read = |user, conversation, seq| {
            ReadRequest { seq }
                .into_event(user, conversation)
                .map_err(|e| e.field)
        };
        assert_eq!(read("alice", "d:alice:bob", -1).unwrap_err(), "seq");
        assert_eq!(read("alice", "d:bob:alice", 1).unwrap_err(), "conversation");
        assert_eq!(read("a b", "g:team", 1).unwrap_err(), "user");
        assert!(read("alice", "g:team", 0).is_ok());
        let follow = |u, t| FollowChange::from_path(u, t).map_err(|e| e.field);
        assert_eq!(follow("a b", "c").unwrap_err(), "user");
        assert_eq!(follow("a", "").unwrap_err(), "target");
        assert_eq!(follow("a", "a").unwrap_err(), "target");
        assert!(follow("a", "b").is_ok());
    }

    #[test]
    fn membership_paths_default_to_the_user_and_check_the_role() {
        let join = MembershipChange::from_path("team", "bob", None, None).unwrap();
        assert_eq!(join.by, join.user);
        let change = |by, role| MembershipChange::from_path("team", "bob", by, role);
        assert_eq!(change(Some("x y"), None).unwrap_err().field, "by");
        assert_eq!(change(None, Some("owner")).unwrap_err().field, "role");
        assert_eq!(
            change(Some("alice"), Some("admin")).unwrap().role,
            Some(Role::Admin)
        );
    }
}
