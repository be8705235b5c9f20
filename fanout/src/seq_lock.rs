//! The sync seq lock: sync sequence numbers come from the `sync_seq` sequence, drawn only while the
//! transaction holds [`SYNC_SEQ_LOCK`] (a transaction-scoped advisory lock, released at commit).
//! Transactions that assign seqs therefore commit one at a time in seq order, so a reader that saw seq N
//! of a user can never later see a smaller seq of that user appear.
//!
//! The rule is a type: every function that draws from `sync_seq` takes a [`SeqLockHeld`], and the only
//! way to get one is [`SeqLock::acquire`], which takes the lock in the transaction. A token cannot
//! outlive the transaction's [`SeqLock`] (it borrows it), and there is one `SeqLock` per transaction.

use std::marker::PhantomData;

use sqlx::{Postgres, Transaction};

/// Key of the transaction-scoped advisory lock that serialises seq assignment ("FANLSYNC").
pub const SYNC_SEQ_LOCK: i64 = 0x4641_4e4c_5359_4e43;

/// Takes the seq lock once per transaction, right before the first seq is drawn (a transaction that
/// draws none never waits for it). Create one per transaction.
#[derive(Default)]
pub(crate) struct SeqLock {
    held: bool,
}

/// Proof that the transaction holds [`SYNC_SEQ_LOCK`]: required by everything that draws a sync seq.
/// Only [`SeqLock::acquire`] makes one.
#[derive(Clone, Copy)]
pub(crate) struct SeqLockHeld<'lock> {
    lock: PhantomData<&'lock mut SeqLock>,
}

impl SeqLock {
    /// Takes the lock in `tx` unless this transaction already holds it.
    pub(crate) async fn acquire(
        &mut self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<SeqLockHeld<'_>, sqlx::Error> {
        if !self.held {
            // From here to commit, this transaction is the only one drawing seqs.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SYNC_SEQ_LOCK)
                .execute(&mut **tx)
                .await?;
            self.held = true;
        }
        Ok(SeqLockHeld { lock: PhantomData })
    }
}
