//! Who sent a request: the client's address as every part of the node sees it
//! (the login limiter, log lines, the audit log). It is the socket's peer, unless
//! that peer is a proxy named in `api.trusted_proxies`: then `X-Forwarded-For` is
//! believed, read from the right (the hop the proxy itself added) to the first
//! address that is not a trusted proxy. A client cannot pick its address by
//! sending the header itself: an untrusted peer's header is ignored, and a trusted
//! proxy appends the address it saw after whatever the client sent.
//!
//! [`resolve`] (a middleware on the public listener) works it out once per request
//! and keeps it in the request as a [`ClientAddr`]; handlers take it as an
//! extractor. The web UI's in-process API calls carry the browser's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::problem::Problem;

/// One network, `10.0.0.0/8` or `2001:db8::/32`; a bare address is itself alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address, with the bits past `prefix` cleared.
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => mask_v4(ip, self.prefix) == net,
            (IpAddr::V6(net), IpAddr::V6(ip)) => mask_v6(ip, self.prefix) == net,
            _ => false,
        }
    }
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(ip);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let bits = u128::from(ip);
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from(bits & mask)
}

/// `ip` with the bits an IPv6 client usually owns cleared (its /64): one client,
/// however many addresses of its network it sends from. IPv4 as it is.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, 64)),
        v4 => v4,
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or a network (a.b.c.d/n, x:y::/n)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        // An IPv4 network written IPv4-mapped (::ffff:a.b.c.d/n) is the IPv4
        // network: that is how an IPv4 peer is compared.
        let (addr, prefix) = match addr.to_canonical() {
            IpAddr::V4(v4) if addr.is_ipv6() => {
                if prefix < 96 {
                    return Err(format!(
                        "{s:?}: an IPv4-mapped network needs a prefix length of 96 to 128"
                    ));
                }
                (IpAddr::V4(v4), prefix - 96)
            }
            _ => (addr, prefix),
        };
        let net = match addr {
            IpAddr::V4(v4) => IpAddr::V4(mask_v4(v4, prefix)),
            IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, prefix)),
        };
        Ok(Cidr { net, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`api.trusted_proxies`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Each entry a network or an address; the problem with the first bad one.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        entries
            .iter()
            .map(|e| e.parse())
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// The client's address for a request that came from `peer` with `headers`.
pub fn client_addr(trusted: &TrustedProxies, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    // Every hop, left to right, over all the header's lines; None for one that is
    // not an address (then nothing left of it can be believed).
    let hops: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(s) => s
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(parse_hop)
                .collect(),
            Err(_) => vec![None],
        })
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(ip) = hop else { return client };
        client = ip;
        if !trusted.contains(ip) {
            return ip;
        }
    }
    client
}

/// `1.2.3.4`, `2001:db8::1`, and the forms some proxies write with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:5678`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The address of the client a request came from (see the module's notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Works the client's address out once, for everything that serves the request.
/// A request that already carries one (the web UI's in-process API calls, which
/// carry the browser's) keeps it.
pub async fn resolve(
    State(trusted): State<Arc<TrustedProxies>>,
    mut req: Request,
    next: Next,
) -> Response {
    if req.extensions().get::<ClientAddr>().is_none() {
        if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
            let addr = client_addr(&trusted, peer.ip(), req.headers());
            req.extensions_mut().insert(ClientAddr(addr));
        }
    }
    next.run(req).await
}

impl ClientAddr {
    /// The request's client address: the one [`resolve`] found, or (served
    /// without it) the socket's peer, no header believed.
    pub fn of(parts: &Parts) -> Option<ClientAddr> {
        parts.extensions.get::<ClientAddr>().copied().or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| ClientAddr(peer.ip().to_canonical()))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientAddr, Problem> {
        ClientAddr::of(parts).ok_or_else(|| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the client's address is unknown (the request came without a connection)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let t = trusted(&[
            "10.0.0.0/8",
            "192.168.1.7",
            "2001:db8::/32",
            "::ffff:172.16.0.1/128",
        ]);
        assert!(t.contains(ip("10.200.3.4")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("192.168.1.7")));
        assert!(!t.contains(ip("192.168.1.8")));
        assert!(t.contains(ip("2001:db8:ffff::1")));
        assert!(!t.contains(ip("2001:db9::1")));
        // An IPv4 client seen through a dual-stack socket is the IPv4 address.
        assert!(t.contains(ip("::ffff:10.1.1.1")));
        assert!(t.contains(ip("172.16.0.1")));
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(trusted(&["0.0.0.0/0"]).contains(ip("8.8.8.8")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "::/129",
            "example.com",
            "10.0.0.0/-1",
            "",
            "::ffff:10.0.0.0/90",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn an_untrusted_peers_header_is_ignored() {
        let t = trusted(&["127.0.0.1"]);
        let h = xff(&["203.0.113.9"]);
        assert_eq!(client_addr(&t, ip("127.0.0.2"), &h), ip("127.0.0.2"));
        assert_eq!(
            client_addr(&TrustedProxies::default(), ip("127.0.0.1"), &h),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let t = trusted(&["10.0.0.0/8"]);
        // The client made up the first entry; the proxies appended the others.
        let h = xff(&["1.1.1.1, 198.51.100.7", "10.0.0.5"]);
        assert_eq!(client_addr(&t, ip("10.0.0.9"), &h), ip("198.51.100.7"));
        // Ports and IPv6 in brackets, as some proxies write them.
        let h = xff(&["[2001:db8::7]:4711, 10.0.0.5:80"]);
        assert_eq!(client_addr(&t, ip("10.0.0.9"), &h), ip("2001:db8::7"));
        // No header: the proxy itself.
        assert_eq!(
            client_addr(&t, ip("10.0.0.9"), &HeaderMap::new()),
            ip("10.0.0.9")
        );
        // Every hop a trusted proxy: the left-most.
        let h = xff(&["10.0.0.1, 10.0.0.2"]);
        assert_eq!(client_addr(&t, ip("10.0.0.9"), &h), ip("10.0.0.1"));
        // Garbage stops the walk at the last hop that could be believed.
        let h = xff(&["198.51.100.7, unknown, 10.0.0.5"]);
        assert_eq!(client_addr(&t, ip("10.0.0.9"), &h), ip("10.0.0.5"));
        let mut h = xff(&["198.51.100.7"]);
        h.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(client_addr(&t, ip("10.0.0.9"), &h), ip("10.0.0.9"));
    }

    #[test]
    fn an_ipv6_client_counts_by_its_network() {
        assert_eq!(network_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(network_of(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(network_of(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
