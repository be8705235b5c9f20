//! Caps on long-lived requests: open WebSockets and event streams (one budget), and waiting long
//! polls (another), per user and per client address. Each holds memory, a file descriptor and a
//! hub subscription for as long as the client likes, so one token or one address must not open
//! thousands (issue 19 found 1,000 sockets and 100 long polls from one user accepted).
//!
//! Over a cap the request is refused with `429` before anything is opened; the client closes one of
//! its connections or waits. In memory per reader: a user spread over several readers gets the cap on
//! each, which bounds every reader's share — the point of the cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use httpkit::ClientAddress;

/// Open connections of one kind, counted per user and per client address.
pub struct Caps {
    kind: &'static str,
    per_user: usize,
    per_address: usize,
    open: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    users: HashMap<String, usize>,
    addresses: HashMap<IpAddr, usize>,
}

/// A cap that is full: `429` with `Retry-After` and the JSON error naming it.
#[derive(Debug)]
pub struct CapFull(pub String);

impl IntoResponse for CapFull {
    fn into_response(self) -> Response {
        httpkit::error::too_many_requests(&self.0, Duration::from_secs(10))
    }
}

/// One open connection; dropping it frees its place.
pub struct Slot {
    caps: Arc<Caps>,
    user: String,
    address: IpAddr,
}

impl Caps {
    pub fn new(kind: &'static str, per_user: usize, per_address: usize) -> Arc<Caps> {
        Arc::new(Caps {
            kind,
            per_user: per_user.max(1),
            per_address: per_address.max(1),
            open: Mutex::default(),
        })
    }

    /// A place for one more connection of `user` from `client`, or `429` naming the cap that is full.
    pub fn enter(self: &Arc<Self>, user: &str, client: ClientAddress) -> Result<Slot, CapFull> {
        let address = client.limit_key();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let by_user = open.users.get(user).copied().unwrap_or(0);
        let by_address = open.addresses.get(&address).copied().unwrap_or(0);
        let full = if by_user >= self.per_user {
            Some(format!(
                "too many open {} for this user (at most {})",
                self.kind, self.per_user
            ))
        } else if by_address >= self.per_address {
            Some(format!(
                "too many open {} from this address (at most {})",
                self.kind, self.per_address
            ))
        } else {
            None
        };
        if let Some(message) = full {
            tracing::info!(user, %address, kind = self.kind, "connection cap reached");
            return Err(CapFull(message));
        }
        *open.users.entry(user.to_owned()).or_insert(0) += 1;
        *open.addresses.entry(address).or_insert(0) += 1;
        Ok(Slot {
            caps: self.clone(),
            user: user.to_owned(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .caps
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        decrement(&mut open.users, &self.user);
        decrement(&mut open.addresses, &self.address);
    }
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(text: &str) -> ClientAddress {
        ClientAddress(text.parse().unwrap())
    }

    #[test]
    fn users_and_addresses_each_have_their_cap_and_get_places_back() {
        let caps = Caps::new("sockets", 2, 3);
        let a = client("192.0.2.1");
        let first = caps.enter("alice", a).unwrap();
        let _second = caps.enter("alice", a).unwrap();
        let err = caps.enter("alice", client("192.0.2.9")).err().unwrap();
        assert!(err.0.contains("for this user"), "{}", err.0);
        let response = err.into_response();
        assert_eq!(response.status(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "10");
        let _bob = caps.enter("bob", a).unwrap();
        let err = caps.enter("carol", a).err().unwrap();
        assert!(err.0.contains("from this address"), "{}", err.0);
        drop(first);
        assert!(caps.enter("carol", a).is_ok());
    }
}
