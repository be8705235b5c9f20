//! Login and registration attempts, limited so that guessing goes slowly and an attacker cannot turn
//! the limits against an account's owner.
//!
//! A login attempt passes three budgets (the `governor` crate, GCRA):
//! - **per client address** (all accounts): one address cannot spray many accounts;
//! - **per account and address pair**: one address cannot guess one account quickly — and an attacker
//!   exhausting it exhausts only their own pair, never the owner's;
//! - **per account, failed attempts from anywhere**, slow (an hour's budget): bounds guessing spread
//!   over many addresses. When it is spent, only addresses the account has an open session from (a
//!   known device, checked by the caller) may still try. This is OWASP's "device cookie" answer to
//!   lockout attacks with an address instead of a cookie; Synapse's `rc_login.failed_attempts`, by
//!   contrast, locks the account for everyone — the attack issue 19 reproduced.
//!
//! Client addresses are keys as [`httpkit::client::limit_key`] makes them (IPv6 per /64).
//!
//! Writes have per-user budgets too ([`WriteLimiter`]): posts, messages, follows, group changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use httpkit::client::limit_key;

/// The budgets of [`LoginLimiter`].
#[derive(Debug, Clone, Copy)]
pub struct LoginQuota {
    /// Attempts per minute (also the burst) from one client address, at any accounts.
    pub per_address_per_minute: u32,
    /// Attempts per minute (also the burst) at one account from one client address.
    pub per_account_address_per_minute: u32,
    /// Failed attempts per hour (also the burst) at one account from all addresses together.
    pub failures_per_account_per_hour: u32,
}

/// Why an attempt may not go ahead now, and how long until it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This address (or this address at this account) tried too often.
    Address(Duration),
    /// The account's failure budget is spent; only its known addresses may try.
    Account(Duration),
}

pub struct LoginLimiter {
    by_address: AddressLimiter,
    by_pair: DefaultKeyedRateLimiter<(String, IpAddr)>,
    failures: DefaultKeyedRateLimiter<String>,
    /// Accounts whose failure budget is spent, until when: governor cannot tell without spending.
    spent_until: Mutex<HashMap<String, Instant>>,
}

/// Attempts per client address.
pub struct AddressLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl AddressLimiter {
    pub fn per_minute(attempts: u32) -> Self {
        AddressLimiter {
            limiter: RateLimiter::keyed(per_minute(attempts)),
            checks: AtomicU64::new(0),
        }
    }

    /// `Ok` when this attempt may go ahead, `Err(wait)` with how long until the next one may.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        // Keys of quiet addresses are forgotten now and then, so the map stays bounded by the
        // addresses of the last minute.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.limiter.retain_recent();
        }
        let now = DefaultClock::default().now();
        self.limiter
            .check_key(&limit_key(address))
            .map_err(|not_until| not_until.wait_time_from(now))
    }

    /// Whether this check is one of the periodic clean-ups (other limiters follow its rhythm).
    fn cleaning_now(&self) -> bool {
        self.checks.load(Ordering::Relaxed) % 1024 == 1023
    }
}

fn per_minute(attempts: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(attempts.max(1)).unwrap_or(NonZeroU32::MIN))
}

/// A quarter of a minute's budget (15 seconds' worth), at least one.
fn burst(per_minute: u32) -> u32 {
    (per_minute / 4).max(1)
}

/// `per_minute` a minute, at most [`burst`] of it at once.
fn quarter_burst(per_minute: u32) -> Quota {
    let burst = NonZeroU32::new(burst(per_minute)).unwrap_or(NonZeroU32::MIN);
    self::per_minute(per_minute).allow_burst(burst)
}

fn per_hour(attempts: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(attempts.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl LoginLimiter {
    pub fn new(quota: LoginQuota) -> Self {
        LoginLimiter {
            by_address: AddressLimiter::per_minute(quota.per_address_per_minute),
            by_pair: RateLimiter::keyed(per_minute(quota.per_account_address_per_minute)),
            failures: RateLimiter::keyed(per_hour(quota.failures_per_account_per_hour)),
            spent_until: Mutex::new(HashMap::new()),
        }
    }

    /// Spends this attempt from the address's and the pair's budgets. `Ok(account_spent)`: the
    /// attempt may go ahead — if `account_spent`, only from an address the account knows.
    pub fn check(&self, account: &str, address: IpAddr) -> Result<bool, Refusal> {
        self.by_address.check(address).map_err(Refusal::Address)?;
        if self.by_address.cleaning_now() {
            self.by_pair.retain_recent();
            self.failures.retain_recent();
            let now = Instant::now();
            self.spent().retain(|_, until| *until > now);
        }
        let now = DefaultClock::default().now();
        self.by_pair
            .check_key(&(account.to_owned(), limit_key(address)))
            .map_err(|not_until| Refusal::Address(not_until.wait_time_from(now)))?;
        Ok(self.account_spent(account).is_some())
    }

    /// How long the account's failure budget stays spent, if it is.
    pub fn account_spent(&self, account: &str) -> Option<Duration> {
        let until = *self.spent().get(account)?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a wrong password against the account's budget.
    pub fn failed(&self, account: &str) {
        let now = DefaultClock::default().now();
        if let Err(not_until) = self.failures.check_key(&account.to_owned()) {
            let wait = not_until.wait_time_from(now);
            self.spent()
                .insert(account.to_owned(), Instant::now() + wait);
        }
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.spent_until.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writes that have a per-user budget (issue 20: one token sent 200 direct messages in 0.4 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Posts and post deletions (a batch counts each post).
    Post,
    /// Messages and recalls, over HTTP or a socket.
    Message,
    /// Follows and unfollows.
    Follow,
    /// Group creations and membership changes.
    Group,
}

impl WriteKind {
    const ALL: [WriteKind; 4] = [
        WriteKind::Post,
        WriteKind::Message,
        WriteKind::Follow,
        WriteKind::Group,
    ];

    pub fn label(self) -> &'static str {
        match self {
            WriteKind::Post => "posts",
            WriteKind::Message => "messages",
            WriteKind::Follow => "follows",
            WriteKind::Group => "group changes",
        }
    }
}

/// Writes per minute and user of each kind; a quarter of a minute's budget may be spent at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteQuota {
    pub posts: u32,
    pub messages: u32,
    pub follows: u32,
    pub groups: u32,
}

/// The write budgets' flags (ingest's and reader's).
#[derive(Debug, Clone, clap::Args)]
pub struct WriteQuotaArgs {
    /// Posts and post deletions per minute and user (a batch counts each post); a quarter of it at once.
    #[arg(long, env = "FANLINE_WRITES_PER_MINUTE_POSTS", default_value_t = 2400)]
    pub writes_per_minute_posts: u32,
    /// Messages and recalls per minute and user (HTTP and sockets); a quarter of it at once.
    #[arg(
        long,
        env = "FANLINE_WRITES_PER_MINUTE_MESSAGES",
        default_value_t = 120
    )]
    pub writes_per_minute_messages: u32,
    /// Follows and unfollows per minute and user; a quarter of it at once.
    #[arg(long, env = "FANLINE_WRITES_PER_MINUTE_FOLLOWS", default_value_t = 120)]
    pub writes_per_minute_follows: u32,
    /// Group creations and membership changes per minute and user; a quarter of it at once.
    #[arg(long, env = "FANLINE_WRITES_PER_MINUTE_GROUPS", default_value_t = 120)]
    pub writes_per_minute_groups: u32,
}

impl WriteQuotaArgs {
    pub fn quota(&self) -> WriteQuota {
        WriteQuota {
            posts: self.writes_per_minute_posts,
            messages: self.writes_per_minute_messages,
            follows: self.writes_per_minute_follows,
            groups: self.writes_per_minute_groups,
        }
    }

    /// No budget worth the name: for tests and benchmarks that measure everything else.
    pub fn unlimited() -> Self {
        WriteQuotaArgs {
            writes_per_minute_posts: u32::MAX,
            writes_per_minute_messages: u32::MAX,
            writes_per_minute_follows: u32::MAX,
            writes_per_minute_groups: u32::MAX,
        }
    }
}

impl WriteQuota {
    pub fn per_minute(self, kind: WriteKind) -> u32 {
        match kind {
            WriteKind::Post => self.posts,
            WriteKind::Message => self.messages,
            WriteKind::Follow => self.follows,
            WriteKind::Group => self.groups,
        }
    }
}

/// Per-user token buckets for writes (GCRA, `governor`), one per [`WriteKind`], in this process: n
/// instances of a service allow n budgets (the bound is per instance, which is what protects it).
pub struct WriteLimiter {
    buckets: Vec<DefaultKeyedRateLimiter<String>>,
    quota: WriteQuota,
    limited: prometheus::IntCounterVec,
    checks: AtomicU64,
}

impl WriteLimiter {
    /// Registers `fanline_<service>_writes_limited_total{kind}`.
    pub fn new(
        quota: WriteQuota,
        registry: &prometheus::Registry,
        service: &str,
    ) -> Result<Self, prometheus::Error> {
        let limited = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                format!("fanline_{service}_writes_limited_total"),
                "Writes refused (429) because the user's budget of their kind was spent.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(limited.clone()))?;
        Ok(WriteLimiter {
            quota,
            buckets: WriteKind::ALL
                .iter()
                .map(|kind| RateLimiter::keyed(quarter_burst(quota.per_minute(*kind))))
                .collect(),
            limited,
            checks: AtomicU64::new(0),
        })
    }

    /// Spends `count` writes of `kind` from `user`'s budget: `Err(wait)` when it does not hold them
    /// (more than the burst at once never passes: a minute is the answer).
    pub fn check(&self, kind: WriteKind, user: &str, count: u32) -> Result<(), Duration> {
        let index = WriteKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let bucket = &self.buckets[index];
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.buckets.iter().for_each(|b| b.retain_recent());
        }
        let now = DefaultClock::default().now();
        let count = NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN);
        let refused = match bucket.check_key_n(&user.to_owned(), count) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => not_until.wait_time_from(now),
            Err(_) => Duration::from_secs(60),
        };
        self.limited.with_label_values(&[kind.label()]).inc();
        Err(refused)
    }

    /// The most writes of `kind` one request may make at once (a quarter of the minute's budget): a
    /// request for more could never pass, so it is a bad request, not a wait.
    pub fn burst(&self, kind: WriteKind) -> u32 {
        burst(self.quota.per_minute(kind))
    }

    /// [`WriteLimiter::check`] for an HTTP handler: [`Limited`] answers `429` with `Retry-After`.
    pub fn admit(&self, kind: WriteKind, user: &str, count: u32) -> Result<(), Limited> {
        self.check(kind, user, count).map_err(|wait| {
            tracing::info!(user, kind = kind.label(), "write rate-limited");
            Limited { kind, wait }
        })
    }
}

/// A write over its user's budget.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub kind: WriteKind,
    pub wait: Duration,
}

impl axum::response::IntoResponse for Limited {
    fn into_response(self) -> axum::response::Response {
        httpkit::error::too_many_requests(
            &format!(
                "too many {} from this user: wait and try again",
                self.kind.label()
            ),
            self.wait,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(LoginQuota {
            per_address_per_minute: 5,
            per_account_address_per_minute: 3,
            failures_per_account_per_hour: 4,
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn one_address_guessing_an_account_does_not_touch_the_owners_address() {
        let limiter = limiter();
        let (attacker, owner) = (ip("192.0.2.66"), ip("198.51.100.7"));
        for _ in 0..3 {
            assert_eq!(limiter.check("alice", attacker), Ok(false));
            limiter.failed("alice");
        }
        assert!(matches!(
            limiter.check("alice", attacker),
            Err(Refusal::Address(_))
        ));
        assert_eq!(limiter.check("alice", owner), Ok(false));
        // The attacker's address still has room for other accounts, up to its own budget.
        assert_eq!(limiter.check("bob", attacker), Ok(false));
        assert!(matches!(
            limiter.check("carol", attacker),
            Err(Refusal::Address(_))
        ));
    }

    #[test]
    fn spent_failures_of_an_account_are_reported_until_they_refill() {
        let limiter = limiter();
        for n in 0..5 {
            let address = ip(&format!("192.0.2.{n}"));
            assert_eq!(limiter.check("alice", address), Ok(false));
            limiter.failed("alice");
        }
        let wait = limiter.account_spent("alice").expect("spent");
        // 4 an hour: one failure back every 15 minutes.
        assert!(wait > Duration::from_secs(14 * 60) && wait <= Duration::from_secs(15 * 60));
        assert_eq!(limiter.check("alice", ip("198.51.100.7")), Ok(true));
        assert_eq!(limiter.account_spent("bob"), None);
    }

    #[test]
    fn each_user_and_kind_has_its_own_write_budget() {
        let registry = prometheus::Registry::new();
        let quota = WriteQuota {
            posts: 20,
            messages: 12,
            follows: 8,
            groups: 8,
        };
        let limiter = WriteLimiter::new(quota, &registry, "test").unwrap();
        for _ in 0..3 {
            assert!(limiter.check(WriteKind::Message, "alice", 1).is_ok());
        }
        let wait = limiter.check(WriteKind::Message, "alice", 1).unwrap_err();
        // 12 a minute: one back every 5 s.
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
        assert!(limiter.check(WriteKind::Message, "bob", 1).is_ok());
        assert!(limiter.check(WriteKind::Post, "alice", 5).is_ok());
        assert!(limiter.check(WriteKind::Post, "alice", 1).is_err());
        // More than the burst (a quarter of the minute's budget) at once can never pass.
        assert!(limiter.check(WriteKind::Follow, "carol", 3).is_err());
        assert!(limiter.check(WriteKind::Follow, "carol", 2).is_ok());
        assert_eq!(limiter.limited.with_label_values(&["messages"]).get(), 1);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        let limiter = AddressLimiter::per_minute(2);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limiter.check(one).is_ok());
        assert!(limiter.check(same_64).is_ok());
        assert!(limiter.check(one).is_err());
        assert!(limiter.check(other_64).is_ok());
    }
}
