//! Redirects that lead inside: a server must not use flagsd to reach
//! addresses it could not reach itself (server-side request forgery).
//!
//! A hostile server answered `302` to the daemon's own admin endpoint on
//! loopback, and flagsd saved the JSON it found there as a flag; a cloud
//! metadata service (`169.254.169.254`) or a service on a private network
//! would do as well. So every address has a class, from the public internet
//! inwards ([`AddressClass`]: public, private, local), and the rule is:
//!
//! **A redirect may not lead to an address of a more internal class than
//! the server that sent it.** The sender's class is that of the address
//! its answer came from (the socket's peer). So along a chain of redirects
//! the class never rises: a public server cannot send flagsd to a private
//! or local address, nor through a public intermediary; a server on a
//! private network may redirect within private networks or to the public
//! internet; a server on loopback may redirect anywhere.
//!
//! The target's class is checked on the address flagsd connects to, after
//! name resolution: a target written as an IP address is checked before it
//! is asked; a name on another host than the sender's goes through a client
//! whose resolver ([`GuardedResolver`], a `reqwest::dns::Resolve`) keeps
//! only the addresses the rule allows, so that a name resolving to
//! `127.0.0.1` (or changing its answer between two lookups) is caught where
//! it would be used. A redirect to the sender's own host name stays on the
//! usual client.
//!
//! Through a proxy, the proxy connects and resolves, not flagsd: the
//! sender's class is that of its URL's host when that is an IP address, and
//! public otherwise; a target written as an IP address is checked as above,
//! a name is not (the proxy's own rules must keep it outside).
//!
//! A server's `allow_internal_redirects` (and `fetch
//! --allow-internal-redirects`) turns the rule off for those who need it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::url::shown;
use crate::model::text::capped;

/// How internal an address is, from the public internet inwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddressClass {
    /// Any address not below.
    Public,
    /// Private networks: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`
    /// (RFC 1918), the shared address space `100.64.0.0/10` (RFC 6598:
    /// carrier-grade NAT, and cloud services such as Alibaba's metadata at
    /// `100.100.100.200`), unique-local `fc00::/7` and the deprecated
    /// site-local `fec0::/10`.
    Private,
    /// This host and its link: loopback (`127.0.0.0/8`, `::1`), link-local
    /// (`169.254.0.0/16`, where cloud metadata services answer, and
    /// `fe80::/10`) and unspecified addresses (`0.0.0.0/8`, `::`, which
    /// reach this host).
    Local,
}

impl AddressClass {
    /// The class of `ip`. An IPv6 address that carries an IPv4 address
    /// (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
    /// `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) is of the IPv4
    /// address's class.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => Self::of_v6(v6),
        }
    }

    fn of_v4(ip: Ipv4Addr) -> Self {
        let [a, b, ..] = ip.octets();
        if ip.is_loopback() || ip.is_link_local() || a == 0 {
            Self::Local
        } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
            Self::Private
        } else {
            Self::Public
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Self {
        if ip.is_loopback() || ip.is_unspecified() {
            return Self::Local;
        }
        if let Some(v4) = embedded_v4(ip) {
            return Self::of_v4(v4);
        }
        let first = ip.segments()[0];
        if first & 0xffc0 == 0xfe80 {
            Self::Local
        } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
            Self::Private
        } else {
            Self::Public
        }
    }

    /// The class in a word, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Local => "local (loopback, link-local or unspecified)",
        }
    }

    /// The class of the host of `url` when it is an IP address.
    pub fn of_literal(url: &reqwest::Url) -> Option<Self> {
        ip_host(url).map(Self::of)
    }
}

/// The host of `url` when it is an IP address.
pub fn ip_host(url: &reqwest::Url) -> Option<IpAddr> {
    url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The IPv4 address an IPv6 address carries, if it carries one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = || Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low()),
        [0x2002, high, low_half, ..] => Some(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low_half))),
        _ => None,
    }
}

/// A redirect that the rule refuses: where it led, and the classes of the
/// target and of the server that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "redirect to {target} refused: {address} is a {} address, more internal than the {} server that sent it \
     (allow_internal_redirects follows it)",
    class.name(),
    sender.name()
)]
pub struct InternalRedirect {
    /// The target, credentials masked and cut (the server chose it).
    pub target: String,
    /// The address it led to.
    pub address: IpAddr,
    /// That address's class.
    pub class: AddressClass,
    /// The class of the server that sent the redirect.
    pub sender: AddressClass,
}

/// Longest target quoted in a refusal, in bytes.
const MAX_TARGET: usize = 512;

impl InternalRedirect {
    /// The refusal of a redirect to `target`, which reaches `address`.
    pub fn new(target: &reqwest::Url, address: IpAddr, sender: AddressClass) -> Self {
        let target = capped(&shown(target), MAX_TARGET).into_owned();
        Self { target, address, class: AddressClass::of(address), sender }
    }
}

/// The resolver's refusal of every address of a name: why a request to a
/// guarded name never left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} ({}), the address of {host}, is more internal than {} addresses", class.name(), limit.name())]
pub struct InternalAddress {
    /// The name resolved.
    pub host: String,
    /// Its first address refused.
    pub address: IpAddr,
    /// That address's class.
    pub class: AddressClass,
    /// The most internal class allowed.
    pub limit: AddressClass,
}

/// Resolves names as the system does (`getaddrinfo`, on a blocking thread).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Resolves names with another resolver, then keeps only the addresses no
/// more internal than `limit`; a name with none left is an
/// [`InternalAddress`] error, so the request is never sent.
pub struct GuardedResolver {
    limit: AddressClass,
    inner: Arc<dyn Resolve>,
}

impl GuardedResolver {
    /// A guard of `limit` over the system's resolver.
    pub fn new(limit: AddressClass) -> Self {
        Self::over(limit, Arc::new(SystemResolver))
    }

    /// A guard of `limit` over `inner`.
    pub fn over(limit: AddressClass, inner: Arc<dyn Resolve>) -> Self {
        Self { limit, inner }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (limit, host) = (self.limit, name.as_str().to_owned());
        let resolving = self.inner.resolve(name);
        Box::pin(async move {
            let (kept, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                resolving.await?.partition(|addr| AddressClass::of(addr.ip()) <= limit);
            match (kept.is_empty(), refused.first()) {
                (true, Some(first)) => {
                    let address = first.ip();
                    let refused: Box<dyn std::error::Error + Send + Sync> =
                        Box::new(InternalAddress { host, address, class: AddressClass::of(address), limit });
                    Err(refused)
                }
                _ => Ok(Box::new(kept.into_iter()) as Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::http::causes::find_source;

    fn class(text: &str) -> AddressClass {
        AddressClass::of(text.parse().expect("an address"))
    }

    #[test]
    fn addresses_are_classed_from_the_internet_inwards() {
        use AddressClass::*;
        for (address, expected) in [
            ("8.8.8.8", Public),
            ("203.0.113.7", Public),
            ("100.63.255.255", Public),
            ("100.128.0.1", Public),
            ("172.15.255.255", Public),
            ("172.32.0.1", Public),
            ("2001:db8::1", Public),
            ("2606:4700::1111", Public),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.100.100.200", Private),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("127.0.0.1", Local),
            ("127.0.0.2", Local),
            ("169.254.169.254", Local),
            ("0.0.0.0", Local),
            ("0.1.2.3", Local),
            ("::1", Local),
            ("::", Local),
            ("fe80::1", Local),
            ("febf::1", Local),
            ("::ffff:127.0.0.1", Local),
            ("::ffff:169.254.169.254", Local),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:8.8.8.8", Public),
            ("::127.0.0.1", Local),
            ("64:ff9b::a9fe:a9fe", Local),
            ("64:ff9b::a00:1", Private),
            ("2002:a9fe:a9fe::1", Local),
            ("2002:808:808::1", Public),
        ] {
            assert_eq!(class(address), expected, "{address}");
        }
        assert!(AddressClass::Public < AddressClass::Private && AddressClass::Private < AddressClass::Local);
        let literal = |url: &str| AddressClass::of_literal(&reqwest::Url::parse(url).expect("a URL"));
        assert_eq!(literal("http://[::ffff:7f00:1]:80/"), Some(Local));
        assert_eq!(literal("http://10.0.0.1/"), Some(Private));
        assert_eq!(literal("http://metadata.example/"), None);
    }

    #[test]
    fn a_refusal_names_the_target_masked_and_both_classes() {
        let target = reqwest::Url::parse("http://user:s3cret@169.254.169.254/latest/meta-data").expect("a URL");
        let refusal = InternalRedirect::new(&target, target_ip(&target), AddressClass::Public);
        assert_eq!(
            refusal.to_string(),
            "redirect to http://***@169.254.169.254/latest/meta-data refused: 169.254.169.254 is a local (loopback, \
             link-local or unspecified) address, more internal than the public server that sent it \
             (allow_internal_redirects follows it)"
        );
        let long = reqwest::Url::parse(&format!("http://10.0.0.1/{}", "x".repeat(5000))).expect("a URL");
        assert!(InternalRedirect::new(&long, target_ip(&long), AddressClass::Public).target.len() <= MAX_TARGET + 3);
    }

    fn target_ip(url: &reqwest::Url) -> IpAddr {
        url.host_str().and_then(|h| h.parse().ok()).expect("an IP address")
    }

    /// A resolver with a fixed answer per name, as a hostile DNS gives.
    struct Fake(HashMap<&'static str, Vec<&'static str>>);

    impl Resolve for Fake {
        fn resolve(&self, name: Name) -> Resolving {
            let addrs: Vec<SocketAddr> = self
                .0
                .get(name.as_str())
                .into_iter()
                .flatten()
                .map(|ip| SocketAddr::new(ip.parse().expect("an address"), 0))
                .collect();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    fn fake() -> Arc<dyn Resolve> {
        Arc::new(Fake(HashMap::from([
            ("metadata.example", vec!["169.254.169.254"]),
            ("loop.example", vec!["127.0.0.1"]),
            ("intranet.example", vec!["10.9.8.7"]),
            ("mixed.example", vec!["10.0.0.1", "93.184.216.34"]),
            ("nowhere.example", vec![]),
        ])))
    }

    /// What `limit`'s guard over the fake resolver makes of `name`: the
    /// addresses kept, or the first address refused and its class.
    async fn guarded(limit: AddressClass, name: &str) -> Result<Vec<String>, (String, AddressClass)> {
        let resolver = GuardedResolver::over(limit, fake());
        match resolver.resolve(name.parse().expect("a name")).await {
            Ok(addrs) => Ok(addrs.map(|a| a.ip().to_string()).collect()),
            Err(error) => {
                let refused = error.downcast_ref::<InternalAddress>().expect("the guard's error");
                assert_eq!((refused.host.as_str(), refused.limit), (name, limit));
                Err((refused.address.to_string(), refused.class))
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_resolver_keeps_only_addresses_within_its_limit() {
        use AddressClass::*;
        let refused = |address: &str, class| Err((address.to_owned(), class));
        let kept = |addresses: &[&str]| Ok(addresses.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
        assert_eq!(guarded(Public, "metadata.example").await, refused("169.254.169.254", Local));
        assert_eq!(guarded(Private, "metadata.example").await, refused("169.254.169.254", Local));
        assert_eq!(guarded(Local, "metadata.example").await, kept(&["169.254.169.254"]));
        assert_eq!(guarded(Public, "loop.example").await, refused("127.0.0.1", Local));
        assert_eq!(guarded(Public, "intranet.example").await, refused("10.9.8.7", Private));
        assert_eq!(guarded(Private, "intranet.example").await, kept(&["10.9.8.7"]));
        assert_eq!(guarded(Public, "mixed.example").await, kept(&["93.184.216.34"]));
        assert_eq!(guarded(Private, "mixed.example").await, kept(&["10.0.0.1", "93.184.216.34"]));
        assert_eq!(guarded(Public, "nowhere.example").await, kept(&[]));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_with_the_guard_never_connects_to_a_refused_address() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("a listener");
        let port = listener.local_addr().expect("an address").port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream.read(&mut [0u8; 1024]).await;
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            }
        });
        let url = format!("http://loop.example:{port}/secret");
        let client = |limit| {
            reqwest::Client::builder()
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver::over(limit, fake())))
                .build()
                .expect("a client")
        };
        let error = client(AddressClass::Public).get(&url).send().await.expect_err("refused");
        let internal = find_source::<InternalAddress>(&error).expect("the guard's error among the causes");
        assert_eq!((internal.host.as_str(), internal.class), ("loop.example", AddressClass::Local));
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "the request left");
        let answer = client(AddressClass::Local).get(&url).send().await.expect("allowed");
        assert_eq!(answer.text().await.expect("a body"), "ok");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
