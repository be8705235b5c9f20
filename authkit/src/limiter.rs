//! Login attempts, limited per account and per client address, so that neither guessing one account's
//! password from many addresses nor many accounts' passwords from one address goes fast.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Attempts per minute (also the burst) for each key.
#[derive(Debug, Clone, Copy)]
pub struct LoginQuota {
    pub per_account_per_minute: u32,
    pub per_address_per_minute: u32,
}

pub struct LoginLimiter {
    by_account: DefaultKeyedRateLimiter<String>,
    by_address: AddressLimiter,
}

/// Attempts per client address: an IPv4 address, or an IPv6 /64 (one host usually owns a whole /64,
/// so single IPv6 addresses would be a free supply of fresh budgets).
pub struct AddressLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
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
            .check_key(&address_key(address))
            .map_err(|not_until| not_until.wait_time_from(now))
    }
}

fn per_minute(attempts: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(attempts.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl LoginLimiter {
    pub fn new(quota: LoginQuota) -> Self {
        LoginLimiter {
            by_account: RateLimiter::keyed(per_minute(quota.per_account_per_minute)),
            by_address: AddressLimiter::per_minute(quota.per_address_per_minute),
        }
    }

    /// `Ok` when this attempt may go ahead, `Err(wait)` with how long until the next one may.
    pub fn check(&self, account: &str, address: IpAddr) -> Result<(), Duration> {
        self.by_address.check(address)?;
        // Quiet accounts are forgotten now and then (the address limiter counts the checks).
        if self.by_address.checks.load(Ordering::Relaxed) % 1024 == 1023 {
            self.by_account.retain_recent();
        }
        let now = DefaultClock::default().now();
        self.by_account
            .check_key(&account.to_owned())
            .map_err(|not_until| not_until.wait_time_from(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_and_each_address_has_its_own_budget() {
        let limiter = LoginLimiter::new(LoginQuota {
            per_account_per_minute: 3,
            per_address_per_minute: 5,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check("alice", a).is_ok());
        }
        let wait = limiter.check("alice", b).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(limiter.check("bob", a).is_ok());
        // Address a has used 4 + 1 (the refused alice attempt from b counted against b, not a).
        assert!(limiter.check("carol", a).is_ok());
        assert!(limiter.check("dave", a).is_err());
        assert!(limiter.check("dave", b).is_ok());
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
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.check(mapped).is_ok());
        assert!(limiter.check(v4).is_ok());
        assert!(limiter.check(v4).is_err());
    }
}
