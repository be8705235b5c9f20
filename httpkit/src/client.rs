//! Who the client is: its address, taken from the connection or, behind a trusted reverse proxy, from
//! the header that proxy sets — and the key rate limits and caps count it under.
//!
//! Only proxies the operator names are believed: a header from anyone else is ignored, so a client
//! cannot pick a fresh address per request by writing `X-Forwarded-For` itself. Of the addresses in
//! the header, the right-most one that is not a trusted proxy is the client (each proxy appends the
//! address it received the request from; everything left of the last trusted hop is client-written).

use std::net::IpAddr;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::ApiError;

/// The client's address as the request's handlers should see it (set by [`crate::server::serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl ClientAddress {
    /// The key limits count this client under: an IPv4 address, or an IPv6 /64 (one host usually
    /// owns a whole /64, so single IPv6 addresses would be a free supply of fresh budgets).
    pub fn limit_key(self) -> IpAddr {
        limit_key(self.0)
    }
}

/// See [`ClientAddress::limit_key`].
pub fn limit_key(address: IpAddr) -> IpAddr {
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

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientAddress>()
            .copied()
            .ok_or_else(|| {
                tracing::error!("no client address: the router is not served by httpkit::serve");
                ApiError::internal()
            })
    }
}

/// A proxy address or network, as `--trusted-proxy` takes it: `10.0.0.7` or `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet(pub IpNet);

impl FromStr for ProxyNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(ProxyNet(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|address| ProxyNet(IpNet::from(address)))
            .map_err(|_| format!("{text:?} is neither an IP address nor a network like 10.0.0.0/8"))
    }
}

/// The reverse proxies whose client-address header is believed.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: HeaderName,
}

impl TrustedProxies {
    pub fn new(nets: &[ProxyNet], header: HeaderName) -> Self {
        TrustedProxies {
            nets: nets.iter().map(|net| net.0).collect(),
            header,
        }
    }

    /// Nobody is trusted: the connection's address is the client's.
    pub fn none() -> Self {
        TrustedProxies::new(&[], HeaderName::from_static("x-forwarded-for"))
    }

    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.nets.iter().any(|net| net.contains(&address))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        // Every occurrence of the header, in order, as one list (proxies may append a new line).
        let hops: Vec<&str> = headers
            .get_all(&self.header)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(address) if self.trusts(address) => client = address,
                Some(address) => return address,
                // Garbage where an address should be: the last trusted hop is all we know.
                None => return client,
            }
        }
        client
    }
}

/// One entry of `X-Forwarded-For`: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|socket| socket.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        let nets: Vec<ProxyNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        TrustedProxies::new(&nets, HeaderName::from_static("x-forwarded-for"))
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_writes() {
        let p = proxies(&["10.0.0.0/8"]);
        assert_eq!(
            p.client_address(ip("192.0.2.1"), &headers(&["203.0.113.9"])),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = proxies(&["10.0.0.0/8", "192.0.2.7"]);
        // The client wrote 6.6.6.6 itself; 203.0.113.9 is what the first proxy saw.
        let h = headers(&["6.6.6.6, 203.0.113.9", "10.1.1.1"]);
        assert_eq!(p.client_address(ip("192.0.2.7"), &h), ip("203.0.113.9"));
        // Only trusted hops: the left-most of them.
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &headers(&["10.2.2.2"])),
            ip("10.2.2.2")
        );
        // No header: the proxy itself.
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // Ports and IPv4-mapped IPv6 are understood.
        assert_eq!(
            p.client_address(ip("::ffff:10.0.0.1"), &headers(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            p.client_address(ip("10.0.0.1"), &headers(&["1.2.3.4, nonsense, 10.3.3.3"])),
            ip("10.3.3.3")
        );
    }

    #[test]
    fn proxy_nets_parse_addresses_and_networks() {
        assert!("10.0.0.7".parse::<ProxyNet>().is_ok());
        assert!("10.0.0.0/8".parse::<ProxyNet>().is_ok());
        assert!("::1".parse::<ProxyNet>().is_ok());
        let err = "10.0.0.0/99".parse::<ProxyNet>().unwrap_err();
        assert!(err.contains("10.0.0.0/99"), "{err}");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_limit_key() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }
}
