//! Which address is the client, and its canonical form before hashing.
//!
//! - **Canonical form**: `IP:port`, `[v6]:port` and `[v6]` lose port and brackets; IPv6 is
//!   written in RFC 5952 form (`2001:DB8:0::1` → `2001:db8::1`); host names (NASA logs them
//!   in `%h`) are lower-cased. So one client hashes to one pseudonym however the server
//!   wrote it — a port that changes per connection would otherwise make every request a
//!   new visitor.
//! - **Forwarded-for**: behind a load balancer the connecting peer is the proxy. Only when
//!   the peer is in `trusted_proxies` is `X-Forwarded-For` consulted, right to left,
//!   skipping trusted proxies; the first untrusted address is the client (what nginx's
//!   `real_ip_recursive on` does). Without trusted proxies the header is ignored: anyone
//!   can send it.

use std::io::Write as _;
use std::net::IpAddr;

/// A network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    /// Parses addresses and CIDR networks (`10.0.0.0/8`, `192.0.2.1`, `2001:db8::/32`).
    /// `Err` names the entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut nets = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref().trim();
            let (addr, prefix) = match entry.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (entry, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{entry}` is not an IP address or CIDR network"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("`{entry}`: prefix must be 0 to {max}"))?,
            };
            nets.push(Network { addr, prefix });
        }
        Ok(Self(nets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The bytes that identify the client: the peer, or — when the peer is a trusted
    /// proxy — the right-most untrusted `X-Forwarded-For` entry.
    pub fn client<'a>(
        &self,
        peer: Option<&'a [u8]>,
        forwarded_for: Option<&'a [u8]>,
    ) -> Option<&'a [u8]> {
        if self.is_empty() {
            return peer;
        }
        let (Some(xff), Some(peer_ip)) = (forwarded_for, peer.and_then(parse_ip)) else {
            return peer;
        };
        if !self.trusts(peer_ip) {
            return peer;
        }
        let mut leftmost = peer;
        for entry in xff.rsplit(|&b| b == b',') {
            let entry = entry.trim_ascii();
            if entry.is_empty() {
                continue;
            }
            match parse_ip(entry) {
                Some(ip) if self.trusts(ip) => leftmost = Some(entry),
                // Untrusted or unparsable: this is as far as the chain can be believed.
                _ => return Some(entry),
            }
        }
        leftmost
    }
}

/// How the client is chosen and how coarse its network prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPolicy {
    pub trusted_proxies: TrustedProxies,
    /// `ip_prefix` length for IPv4 (at most 24).
    pub ipv4_prefix: u8,
    /// `ip_prefix` length for IPv6 (at most 64).
    pub ipv6_prefix: u8,
}

/// The longest prefixes allowed: shorter networks hold many households.
pub const MAX_IPV4_PREFIX: u8 = 24;
pub const MAX_IPV6_PREFIX: u8 = 64;

impl Default for ClientPolicy {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::default(),
            ipv4_prefix: 24,
            ipv6_prefix: 48,
        }
    }
}

/// A client's network, truncated at parse time: `192.0.2.0/24`, `2001:db8:1::/48`.
///
/// Built only by [`IpPrefix::of`], whose lengths are capped at /24 and /64, so it never
/// holds a whole address — or decoded from an event batch an edge built that way
/// ([`crate::wire`]), which checks the same cap and that no host bit is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    network: IpAddr,
    len: u8,
}

impl IpPrefix {
    pub fn of(ip: IpAddr, policy: &ClientPolicy) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let len = policy.ipv4_prefix.min(MAX_IPV4_PREFIX);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Self {
                    network: IpAddr::V4((u32::from(v4) & mask).into()),
                    len,
                }
            }
            IpAddr::V6(v6) => {
                // An IPv4-mapped address is an IPv4 client.
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return Self::of(IpAddr::V4(v4), policy);
                }
                let len = policy.ipv6_prefix.min(MAX_IPV6_PREFIX);
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Self {
                    network: IpAddr::V6((u128::from(v6) & mask).into()),
                    len,
                }
            }
        }
    }
}

impl IpPrefix {
    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits (at most [`MAX_IPV4_PREFIX`] or [`MAX_IPV6_PREFIX`]).
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// A prefix read back from an event batch ([`crate::wire`]), which an edge built with
    /// [`IpPrefix::of`]. Only the decoder calls this. `None` unless it could have come from
    /// there: a length over the cap ([`MAX_IPV4_PREFIX`], [`MAX_IPV6_PREFIX`]) or a host
    /// bit set would be (part of) an address, not a network.
    pub(crate) fn from_wire(network: IpAddr, len: u8) -> Option<Self> {
        let clean = match network {
            IpAddr::V4(v4) => {
                len <= MAX_IPV4_PREFIX
                    && u32::from(v4) & !u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0) == 0
            }
            IpAddr::V6(v6) => {
                len <= MAX_IPV6_PREFIX
                    && u128::from(v6) & !u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
                        == 0
            }
        };
        clean.then_some(Self { network, len })
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// An IP address from `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
pub fn parse_ip(bytes: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']')?;
        let after = &rest[close + 1..];
        if !after.is_empty()
            && !after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
        {
            return None;
        }
        return rest[..close].parse().ok();
    }
    // `a.b.c.d:port` (one colon only: more would be IPv6).
    let (host, port) = text.rsplit_once(':')?;
    if host.contains(':') || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Writes the canonical form of a client identifier into `buf` and returns it.
pub fn canonical_client<'b>(client: &[u8], buf: &'b mut [u8; 256]) -> &'b [u8] {
    if let Some(ip) = parse_ip(client) {
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        if write!(cursor, "{ip}").is_ok() {
            let n = cursor.position() as usize;
            return &buf[..n];
        }
    }
    let n = client.len().min(buf.len());
    if client.len() <= buf.len() {
        for (dst, src) in buf[..n].iter_mut().zip(client) {
            *dst = src.to_ascii_lowercase();
        }
        return &buf[..n];
    }
    // Longer than any host name may be: hash it as logged (still keyed, never stored).
    client_fallback(client, buf)
}

fn client_fallback<'b>(client: &[u8], buf: &'b mut [u8; 256]) -> &'b [u8] {
    let digest = blake3::hash(client);
    buf[..32].copy_from_slice(digest.as_bytes());
    &buf[..32]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        let mut buf = [0u8; 256];
        String::from_utf8_lossy(canonical_client(s.as_bytes(), &mut buf)).into_owned()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canon("192.0.2.1"), "192.0.2.1");
        assert_eq!(canon("192.0.2.1:51234"), "192.0.2.1");
        assert_eq!(canon("2001:DB8:0:0::1"), "2001:db8::1");
        assert_eq!(canon("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(canon("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(canon("Frank.MTSU.edu"), "frank.mtsu.edu");
        assert_eq!(canon("host:notaport"), "host:notaport");
    }

    #[test]
    fn forwarded_for_only_behind_trusted_proxies() {
        let none = TrustedProxies::default();
        let lb = TrustedProxies::parse(&["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap();
        let xff = Some(&b"198.51.100.7, 10.1.1.1"[..]);
        assert_eq!(
            none.client(Some(b"10.0.0.5"), xff),
            Some(&b"10.0.0.5"[..]),
            "no trust configured"
        );
        assert_eq!(
            lb.client(Some(b"10.0.0.5"), xff),
            Some(&b"198.51.100.7"[..]),
            "skips the trusted hop"
        );
        assert_eq!(
            lb.client(Some(b"203.0.113.9"), xff),
            Some(&b"203.0.113.9"[..]),
            "untrusted peer: header ignored"
        );
        assert_eq!(
            lb.client(Some(b"10.0.0.5"), Some(b"spoof, 203.0.113.1")),
            Some(&b"203.0.113.1"[..]),
            "right-most untrusted wins"
        );
        assert_eq!(
            lb.client(Some(b"10.0.0.5"), Some(b"10.2.2.2, 10.3.3.3")),
            Some(&b"10.2.2.2"[..]),
            "all trusted: left-most"
        );
        assert_eq!(lb.client(Some(b"10.0.0.5"), None), Some(&b"10.0.0.5"[..]));
        assert_eq!(
            lb.client(Some(b"[2001:db8:ffff::1]:80"), Some(b"2001:db8:1::9")),
            Some(&b"2001:db8:1::9"[..])
        );
    }

    #[test]
    fn prefixes_truncate_and_are_capped() {
        let p = ClientPolicy::default();
        let ip = |s: &str| parse_ip(s.as_bytes()).unwrap();
        assert_eq!(
            IpPrefix::of(ip("192.0.2.77"), &p).to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            IpPrefix::of(ip("2001:db8:1:2:3::4"), &p).to_string(),
            "2001:db8:1::/48"
        );
        assert_eq!(
            IpPrefix::of(ip("::ffff:198.51.100.9"), &p).to_string(),
            "198.51.100.0/24"
        );
        let wide = ClientPolicy {
            ipv4_prefix: 32,
            ipv6_prefix: 128,
            ..ClientPolicy::default()
        };
        assert_eq!(
            IpPrefix::of(ip("192.0.2.77"), &wide).to_string(),
            "192.0.2.0/24",
            "never a whole address"
        );
        assert_eq!(
            IpPrefix::of(ip("2001:db8::1"), &wide).to_string(),
            "2001:db8::/64"
        );
        let coarse = ClientPolicy {
            ipv4_prefix: 16,
            ..ClientPolicy::default()
        };
        assert_eq!(
            IpPrefix::of(ip("192.0.2.77"), &coarse).to_string(),
            "192.0.0.0/16"
        );
    }

    #[test]
    fn wire_prefixes_are_capped_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = IpPrefix::from_wire(ip("192.0.2.0"), 24).unwrap();
        assert_eq!((p.network(), p.prefix_len()), (ip("192.0.2.0"), 24));
        assert_eq!(p, IpPrefix::of(ip("192.0.2.77"), &ClientPolicy::default()));
        assert!(IpPrefix::from_wire(ip("0.0.0.0"), 0).is_some());
        assert!(
            IpPrefix::from_wire(ip("192.0.2.0"), 25).is_none(),
            "over the cap"
        );
        assert!(
            IpPrefix::from_wire(ip("192.0.2.1"), 24).is_none(),
            "host bit"
        );
        assert!(IpPrefix::from_wire(ip("192.0.0.0"), 16).is_some());
        assert!(
            IpPrefix::from_wire(ip("192.0.2.0"), 16).is_none(),
            "host bit"
        );
        assert!(IpPrefix::from_wire(ip("2001:db8::"), 64).is_some());
        assert!(IpPrefix::from_wire(ip("2001:db8::"), 65).is_none());
        assert!(IpPrefix::from_wire(ip("2001:db8::1"), 64).is_none());
        assert!(IpPrefix::from_wire(ip("::ffff:192.0.2.0"), 64).is_none());
        assert!(IpPrefix::from_wire(ip("::"), 0).is_some());
    }

    #[test]
    fn bad_proxy_entries_are_named() {
        assert!(
            TrustedProxies::parse(&["10.0.0.0/33"])
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(
            TrustedProxies::parse(&["lb.example"])
                .unwrap_err()
                .contains("`lb.example`")
        );
    }
}
