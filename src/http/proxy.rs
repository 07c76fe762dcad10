//! Forward proxies: which proxy (if any) a request goes through, following
//! curl's rules, and what to say when a proxy is the reason it failed.
//!
//! A server's proxy comes from `--proxy` or the server's `proxy` key, else
//! from the environment: `http_proxy` (or `HTTP_PROXY`, except under CGI)
//! for `http://` URLs, `https_proxy`/`HTTPS_PROXY` for `https://`, and
//! `all_proxy`/`ALL_PROXY` for both. An empty proxy means "no proxy". The
//! hosts that bypass it come from `--noproxy` or `no_proxy`, else from
//! `no_proxy`/`NO_PROXY`, and are matched as curl matches them: `*` alone
//! matches every host, IP addresses and CIDR blocks match IP hosts, and a
//! domain matches itself and its subdomains (a leading dot is ignored).
//!
//! reqwest's own matcher skips `*` for IP hosts (hyper-util 0.1.21), so
//! flagsd decides the route itself and hands reqwest a custom proxy.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::url::{
    FileCredentials, parse_typed, read_credentials_file, redact_credentials, set_credentials, shown, split_credentials,
};
use crate::model::text::capped;

/// A server's proxy settings as given; `None` leaves the environment in
/// charge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ProxySettings {
    /// The proxy URL; empty for none.
    pub proxy: Option<String>,
    /// Hosts that bypass the proxy, comma-separated.
    pub no_proxy: Option<String>,
    /// A file holding the proxy's `user:password`, set on whichever proxy
    /// is in force (given or from the environment).
    pub credentials_file: Option<PathBuf>,
}

/// A proxy: its URL and how it is shown (credentials masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Where to connect, credentials included.
    pub url: reqwest::Url,
    /// The URL with its credentials masked, for messages.
    pub shown: String,
}

impl Proxy {
    /// This proxy, with `credentials` as its user name and password.
    fn with_credentials(mut self, credentials: &FileCredentials) -> Result<Self, String> {
        set_credentials(&mut self.url, credentials).map_err(|e| format!("'{}': {e}", self.shown))?;
        self.shown = shown(&self.url).trim_end_matches('/').to_owned();
        Ok(self)
    }
}

/// Longest part of a proxy's status line kept, in bytes (as a server's
/// reason phrase is).
const MAX_STATUS: usize = 256;

/// curl's port for a proxy URL that names none.
const DEFAULT_PORT: u16 = 1080;

/// Parses a proxy URL as curl reads one: `http://` is assumed without a
/// scheme, port 1080 without a port, and only `http` and `https` proxies
/// are supported. `Ok(None)` for an empty value (no proxy). The reason
/// names the value, credentials masked.
pub fn parse_proxy(value: &str) -> Result<Option<Proxy>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let with_scheme = if value.contains("://") { value.to_owned() } else { format!("http://{value}") };
    let masked = redact_credentials(&with_scheme);
    let mut url =
        parse_typed(&with_scheme).map_err(|e| format!("'{masked}' is not a valid proxy URL: {}", e.reason))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{masked}': only http:// and https:// proxies are supported, not {}://", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{masked}' has no host"));
    }
    if !names_port(&split_credentials(&with_scheme).0) {
        // The URL crate drops a scheme's default port, so set it only when
        // none was written.
        url.set_port(Some(DEFAULT_PORT)).map_err(|()| format!("'{masked}' cannot take a port"))?;
    }
    let display = shown(&url).trim_end_matches('/').to_owned();
    Ok(Some(Proxy { url, shown: display }))
}

/// Whether the authority of `bare` (`scheme://host[:port][/…]`, a URL
/// whose credentials were taken out) writes a port.
fn names_port(bare: &str) -> bool {
    let rest = bare.split_once("://").map_or(bare, |(_, rest)| rest);
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or_default();
    match host_port.rsplit_once(']') {
        Some((_, after)) => after.starts_with(':'),
        None => host_port.contains(':'),
    }
}

/// The hosts that bypass a proxy, matched as curl matches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bypass {
    every_host: bool,
    networks: Vec<IpNet>,
    domains: Vec<String>,
}

impl Bypass {
    /// Parses a comma- or space-separated list.
    pub fn parse(list: &str) -> Self {
        let mut bypass = Self::default();
        for entry in list.split([',', ' ', '\t']).map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                bypass.every_host = true;
            } else if let Ok(net) = entry.parse::<IpNet>() {
                bypass.networks.push(net);
            } else if let Ok(ip) = entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
                bypass.networks.push(IpNet::from(ip));
            } else {
                bypass.domains.push(entry.trim_start_matches('.').to_ascii_lowercase());
            }
        }
        bypass
    }

    /// Whether `host` (a name, or an IP address with or without brackets)
    /// goes direct.
    pub fn matches(&self, host: &str) -> bool {
        if self.every_host {
            return true;
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.networks.iter().any(|net| net.contains(&ip));
        }
        let host = bare.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| host == *d || host.strip_suffix(d.as_str()).is_some_and(|s| s.ends_with('.')))
    }
}

/// Where the requests of one client go: a proxy per scheme, and the hosts
/// that bypass them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    http: Option<Proxy>,
    https: Option<Proxy>,
    bypass: Bypass,
}

impl Routes {
    /// Routes from `settings`, then from the environment read by `env`. The
    /// error names the option or variable at fault.
    pub fn resolve(settings: &ProxySettings, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let first = |names: &[&'static str]| names.iter().find_map(|n| env(n).map(|v| (*n, v)));
        let parse = |(name, value): (&str, String)| parse_proxy(&value).map_err(|e| format!("{name}: {e}"));
        let (http, https) = match &settings.proxy {
            Some(value) => {
                let proxy = parse(("proxy", value.clone()))?;
                (proxy.clone(), proxy)
            }
            None => {
                let all = first(&["all_proxy", "ALL_PROXY"]);
                // HTTP_PROXY can be set by a request header under CGI (httpoxy).
                let http_names: &[&str] =
                    if env("REQUEST_METHOD").is_some() { &["http_proxy"] } else { &["http_proxy", "HTTP_PROXY"] };
                let http = first(http_names).or_else(|| all.clone()).map(parse).transpose()?.flatten();
                let https = first(&["https_proxy", "HTTPS_PROXY"]).or(all).map(parse).transpose()?.flatten();
                (http, https)
            }
        };
        let (http, https) = match &settings.credentials_file {
            Some(path) => {
                let credentials = read_credentials_file(path).map_err(|e| format!("proxy_credentials_file: {e}"))?;
                let with = |proxy: Option<Proxy>| proxy.map(|p| p.with_credentials(&credentials)).transpose();
                (with(http)?, with(https)?)
            }
            None => (http, https),
        };
        let list = settings.no_proxy.clone().or_else(|| env("no_proxy")).or_else(|| env("NO_PROXY"));
        Ok(Self { http, https, bypass: Bypass::parse(list.as_deref().unwrap_or_default()) })
    }

    /// Whether any request can go through a proxy.
    pub fn any(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }

    /// The proxy a request to `url` goes through, if any.
    pub fn proxy_for(&self, url: &reqwest::Url) -> Option<&Proxy> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        }?;
        (!self.bypass.matches(url.host_str().unwrap_or_default())).then_some(proxy)
    }
}

/// What a proxy said when asked again for the tunnel a failed request
/// needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tunnel {
    /// The proxy could not be reached: the request's error says why.
    Unreachable,
    /// The proxy answered with this status (`403 Forbidden`).
    Refused(String),
    /// The proxy opened the tunnel, or could not be asked (an https proxy,
    /// or no answer in time): the failure lies beyond it.
    Open,
}

/// Asks `proxy` for a tunnel to `target` (`host:port`), as the failed
/// request did (with the proxy's credentials), giving up after `limit`.
pub async fn ask_tunnel(proxy: &Proxy, target: &str, limit: Duration) -> Tunnel {
    let (Some(proxy_host), Some(proxy_port)) = (proxy.url.host_str(), proxy.url.port_or_known_default()) else {
        return Tunnel::Open;
    };
    if proxy.url.scheme() != "http" {
        return Tunnel::Open;
    }
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if !proxy.url.username().is_empty() {
        let user = percent_decode(proxy.url.username());
        let password = percent_decode(proxy.url.password().unwrap_or_default());
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Proxy-Authorization: Basic {credentials}\r\n"));
    }
    request.push_str("\r\n");
    let ask = async {
        let host = proxy_host.trim_start_matches('[').trim_end_matches(']');
        let mut stream = match tokio::net::TcpStream::connect((host, proxy_port)).await {
            Ok(stream) => stream,
            Err(_) => return Tunnel::Unreachable,
        };
        let mut head = Vec::with_capacity(256);
        let mut buffer = [0u8; 256];
        if stream.write_all(request.as_bytes()).await.is_err() {
            return Tunnel::Open;
        }
        while !head.contains(&b'\n') && head.len() < 1024 {
            match stream.read(&mut buffer).await {
                Ok(read) if read > 0 => head.extend_from_slice(&buffer[..read]),
                _ => return Tunnel::Open,
            }
        }
        let text = String::from_utf8_lossy(&head);
        let status = text.lines().next().and_then(|line| line.trim().split_once(' ')).map(|(_, s)| s.trim());
        match status {
            Some(status) if !status.starts_with('2') => Tunnel::Refused(capped(status, MAX_STATUS).into_owned()),
            _ => Tunnel::Open,
        }
    };
    tokio::time::timeout(limit, ask).await.unwrap_or(Tunnel::Open)
}

/// A request through a proxy failed.
#[derive(Debug)]
pub struct ProxyFailure {
    /// The proxy, credentials masked.
    pub proxy: String,
    /// The requested `host:port`.
    pub target: String,
    /// What the proxy is known to have done.
    pub tunnel: Tunnel,
    /// The request's error.
    pub error: reqwest::Error,
}

impl ProxyFailure {
    /// The failure in words, given the request error's own `detail`.
    pub fn describe(&self, detail: &str) -> String {
        let (proxy, target) = (&self.proxy, &self.target);
        match &self.tunnel {
            Tunnel::Unreachable => format!("cannot reach proxy {proxy}: {detail}"),
            Tunnel::Refused(status) => format!("proxy {proxy} refused the tunnel to {target}: {status}"),
            Tunnel::Open => format!("{detail} (through proxy {proxy})"),
        }
    }
}

/// A URL's user name or password as sent: percent-escapes decoded.
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).expect("a URL")
    }

    #[test]
    fn proxy_urls_are_read_as_curl_reads_them() {
        let proxy = parse_proxy("127.0.0.1:3128").unwrap().unwrap();
        assert_eq!(proxy.url.as_str(), "http://127.0.0.1:3128/");
        assert_eq!(parse_proxy("http://proxy.example").unwrap().unwrap().url.port(), Some(1080));
        assert_eq!(parse_proxy("http://proxy.example:80").unwrap().unwrap().url.port_or_known_default(), Some(80));
        let secret = parse_proxy("http://user:s3cret@[::1]:8080").unwrap().unwrap();
        assert_eq!(secret.shown, "http://***@[::1]:8080");
        assert_eq!(parse_proxy("  ").unwrap(), None);
        let socks = parse_proxy("socks5://user:pw@h:1").unwrap_err();
        assert!(socks.ends_with("are supported, not socks5://") && !socks.contains("pw"), "{socks}");
        assert!(parse_proxy("http://:80").is_err());
        for typed in ["http://user:pa#ss@127.0.0.1:3128", "user:pa/ss@127.0.0.1:3128", "http://u:p?s@127.0.0.1:3128"] {
            let proxy = parse_proxy(typed).unwrap().unwrap();
            assert_eq!(proxy.shown, "http://***@127.0.0.1:3128", "{typed}");
            assert_eq!(proxy.url.port(), Some(3128), "{typed}");
        }
        let no_port = parse_proxy("http://user:1234/x@127.0.0.1").unwrap().unwrap();
        assert_eq!((no_port.url.host_str(), no_port.url.port()), (Some("127.0.0.1"), Some(1080)));
        assert_eq!(percent_decode(no_port.url.password().unwrap_or_default()), "1234/x");
    }

    #[test]
    fn no_proxy_matches_as_curl_does() {
        let star = Bypass::parse("*");
        assert!(star.matches("127.0.0.1") && star.matches("[::1]") && star.matches("example.com"));
        let list = Bypass::parse(".example.com, 10.0.0.0/8 ::1,192.168.1.7");
        assert!(list.matches("example.com") && list.matches("a.b.EXAMPLE.com."));
        assert!(!list.matches("badexample.com") && !list.matches("example.org"));
        assert!(list.matches("10.2.3.4") && list.matches("[::1]") && list.matches("192.168.1.7"));
        assert!(!list.matches("192.168.1.8") && !list.matches("11.0.0.1"));
        assert!(!Bypass::parse("").matches("127.0.0.1"));
        assert!(!Bypass::parse("*.example.com").matches("127.0.0.1"));
    }

    #[test]
    fn settings_win_over_the_environment() {
        let vars = env(&[("http_proxy", "http://env:1"), ("NO_PROXY", "*"), ("ALL_PROXY", "http://all:2")]);
        let from_env = Routes::resolve(&ProxySettings::default(), &vars).unwrap();
        assert_eq!(from_env.proxy_for(&url("http://127.0.0.1/")), None);
        let no_list = ProxySettings { proxy: None, no_proxy: Some(String::new()), credentials_file: None };
        let routes = Routes::resolve(&no_list, &vars).unwrap();
        assert_eq!(routes.proxy_for(&url("http://127.0.0.1/")).unwrap().url.as_str(), "http://env:1/");
        assert_eq!(routes.proxy_for(&url("https://127.0.0.1/")).unwrap().url.as_str(), "http://all:2/");
        let direct =
            ProxySettings { proxy: Some(String::new()), no_proxy: Some(String::new()), credentials_file: None };
        assert!(!Routes::resolve(&direct, &vars).unwrap().any());
        let explicit =
            ProxySettings { proxy: Some("p:3".into()), no_proxy: Some("localhost".into()), credentials_file: None };
        let routes = Routes::resolve(&explicit, &vars).unwrap();
        assert_eq!(routes.proxy_for(&url("https://h/")).unwrap().url.as_str(), "http://p:3/");
        assert_eq!(routes.proxy_for(&url("https://localhost:8/")), None);
    }

    #[test]
    fn upper_case_http_proxy_is_ignored_under_cgi() {
        let cgi = env(&[("HTTP_PROXY", "http://attacker:1"), ("REQUEST_METHOD", "GET")]);
        assert!(!Routes::resolve(&ProxySettings::default(), cgi).unwrap().any());
        let plain = env(&[("HTTP_PROXY", "http://proxy:1")]);
        assert!(Routes::resolve(&ProxySettings::default(), plain).unwrap().any());
    }

    #[test]
    fn a_bad_environment_proxy_names_the_variable() {
        let bad = env(&[("https_proxy", "ftp://x:1")]);
        let message = Routes::resolve(&ProxySettings::default(), bad).unwrap_err();
        assert!(message.starts_with("https_proxy: "), "{message}");
    }

    #[test]
    fn credentials_are_decoded_for_the_tunnel_probe() {
        assert_eq!(percent_decode("a%40b%3Ac%zz%4"), "a@b:c%zz%4");
    }
}
