//! A user's own records, keyed (on Kafka and in [`crate::watermark`]) by the user id: the account a
//! registration creates (`accounts`: the password hash logins check) and the profile (`users`: display
//! name, age, gender, signature); and the moderation records keyed by a user ([`crate::moderation`]).
//!
//! The first registration of a user id wins; a later one (someone else trying the same id) changes
//! nothing, and its sender's login keeps failing. A password change replaces the hash of an existing
//! account (it follows the registration on the user's partition, so a replay applies both in order). A profile is replaced by every profile event that
//! passes the watermark (an older one never does).

use schemas::{
    AccountModeration, AccountRegistered, PasswordChanged, ProfileUpdated, ReportFiled,
    ReportResolved,
};
use sqlx::{Postgres, Transaction};

use crate::activity;
use crate::moderation;
use crate::outcome::ImOutcome;
use crate::sourced::SourcedEvent;
use crate::watermark;

type Tx = Transaction<'static, Postgres>;

/// The events of a user's own key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UserEvent<'a> {
    Registered(&'a AccountRegistered),
    PasswordChanged(&'a PasswordChanged),
    Profile(&'a ProfileUpdated),
    /// An operator disabled (true) or re-enabled the account.
    Disabled(&'a AccountModeration, bool),
    /// The user reported something.
    Report(&'a ReportFiled),
    /// The user, an operator, resolved a report.
    ReportResolved(&'a ReportResolved),
    /// The user edited one of their posts.
    PostEdited(&'a schemas::PostEdited),
}

/// Applies one of a user's own events (at most once: [`watermark`]).
pub(crate) async fn apply(
    tx: &mut Tx,
    policy: &crate::policy::Policy,
    event: &SourcedEvent,
    user_event: UserEvent<'_>,
) -> Result<ImOutcome, sqlx::Error> {
    if !watermark::advance(tx, event).await? {
        return Ok(ImOutcome::duplicate());
    }
    match user_event {
        UserEvent::Registered(account) => apply_account(tx, event, account).await,
        UserEvent::PasswordChanged(change) => apply_password(tx, event, change).await,
        UserEvent::Profile(profile) => apply_profile(tx, event, profile).await,
        UserEvent::Disabled(change, disabled) => {
            moderation::apply_disabled(tx, event, change, disabled).await
        }
        UserEvent::Report(report) => moderation::apply_report(tx, report).await,
        UserEvent::ReportResolved(resolved) => moderation::apply_resolved(tx, resolved).await,
        UserEvent::PostEdited(edit) => crate::post_edits::apply(tx, policy, edit).await,
    }
}

/// Creates the account unless the user id is taken.
async fn apply_account(
    tx: &mut Tx,
    event: &SourcedEvent,
    account: &AccountRegistered,
) -> Result<ImOutcome, sqlx::Error> {
    // A deleted account's id is never registered again.
    let written = sqlx::query(
        "INSERT INTO accounts (user_id, password_hash, registered_at, src_partition, src_offset)
         SELECT $1, $2, $3, $4, $5
         WHERE NOT fanline_erased($1)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(account.user.as_str())
    .bind(&account.password_hash)
    .bind(event.envelope.ts)
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if written > 0 {
        activity::registered(tx, account.user.as_str(), event.envelope.ts).await?;
    }
    Ok(ImOutcome::applied_if(written > 0))
}

/// Replaces the password hash of the account (none: nothing to change).
async fn apply_password(
    tx: &mut Tx,
    event: &SourcedEvent,
    change: &PasswordChanged,
) -> Result<ImOutcome, sqlx::Error> {
    let written = sqlx::query(
        "UPDATE accounts SET password_hash = $2, src_partition = $3, src_offset = $4
         WHERE user_id = $1",
    )
    .bind(change.user.as_str())
    .bind(&change.password_hash)
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(ImOutcome::applied_if(written > 0))
}

/// Replaces the profile (the row names the event that set it).
async fn apply_profile(
    tx: &mut Tx,
    event: &SourcedEvent,
    profile: &ProfileUpdated,
) -> Result<ImOutcome, sqlx::Error> {
    // A profile in flight when its account was deleted stays erased (crate::erasure).
    let written = sqlx::query(
        "INSERT INTO users (user_id, display_name, age, gender, signature, src_partition, src_offset,
                            search)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8::tsvector WHERE NOT fanline_erased($1)
         ON CONFLICT (user_id) DO UPDATE
         SET display_name = EXCLUDED.display_name, age = EXCLUDED.age, gender = EXCLUDED.gender,
             signature = EXCLUDED.signature, src_partition = EXCLUDED.src_partition,
             src_offset = EXCLUDED.src_offset, updated_at = now(), search = EXCLUDED.search",
    )
    .bind(profile.user.as_str())
    .bind(&profile.display_name)
    .bind(profile.age.map(|age| age as i16))
    .bind(profile.gender.as_deref())
    .bind(profile.signature.as_deref())
    .bind(event.partition)
    .bind(event.offset)
    .bind(schemas::search::document(&profile.display_name))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(ImOutcome::applied_if(written > 0))
}
