//! The `http` grant's allowlist, matched the way Spin matches
//! `allowed_outbound_hosts`: each entry is `scheme://host[:port]`.
//!
//! | entry | allows |
//! | --- | --- |
//! | `https://api.example.com` | `https` to `api.example.com` on port 443 only |
//! | `https://api.example.com:8443` | that host on port 8443 only |
//! | `http://*.example.com` | `http` to any subdomain of `example.com` (not itself), port 80 |
//! | `*://api.example.com:*` | any scheme, any port |
//! | `https://api.example.com:8000..8010` | ports 8000 to 8010 |
//! | `https://*:443` | any host name on 443 (IP addresses need entries of their own) |
//! | `http://10.0.0.5:8080` | that address (and names resolving to it) |
//! | `http://10.0.0.0/8:*` | that range |
//!
//! A port left out is the scheme's own (`*://` needs an explicit one); a
//! path is refused. A name that resolves to a loopback, private, link-local
//! (cloud metadata), shared or otherwise special address is refused unless
//! an entry names that address or its range.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::IpNet;

/// Which schemes an entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Schemes {
    One(String),
    Any,
}

/// Which hosts an entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    Name(String),
    Subdomains(String),
    AnyName,
    Addresses(IpNet),
}

/// Which ports an entry allows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    Range(RangeInclusive<u16>),
    Any,
}

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    schemes: Schemes,
    hosts: Hosts,
    ports: Ports,
}

/// The parsed allowlist of one grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

/// A request's destination: scheme, host as written, port.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub scheme: &'a str,
    pub host: &'a url::Host<&'a str>,
    pub port: u16,
}

impl Allowlist {
    /// Parses every entry; the first bad one is named in the error.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let entries = entries.iter().map(|entry| parse_entry(entry)).collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether some entry allows `destination`.
    pub fn admits(&self, destination: Destination<'_>) -> bool {
        self.entries.iter().any(|entry| entry.admits(destination))
    }

    /// Whether a host name may resolve to `address`: any public address,
    /// or a special one that an entry names (itself or its range).
    pub fn admits_address(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        !is_special(address)
            || self.entries.iter().any(|entry| matches!(&entry.hosts, Hosts::Addresses(net) if net.contains(&address)))
    }
}

impl Entry {
    fn admits(&self, destination: Destination<'_>) -> bool {
        let scheme = match &self.schemes {
            Schemes::One(scheme) => scheme == destination.scheme,
            Schemes::Any => true,
        };
        let port = match &self.ports {
            Ports::Range(range) => range.contains(&destination.port),
            Ports::Any => true,
        };
        scheme && port && self.admits_host(destination.host)
    }

    fn admits_host(&self, host: &url::Host<&str>) -> bool {
        match (host, &self.hosts) {
            (url::Host::Domain(name), Hosts::Name(allowed)) => name.eq_ignore_ascii_case(allowed),
            (url::Host::Domain(name), Hosts::Subdomains(domain)) => {
                let name = name.to_ascii_lowercase();
                name.strip_suffix(domain.as_str()).is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
            }
            (url::Host::Domain(_), Hosts::AnyName) => true,
            (url::Host::Ipv4(address), Hosts::Addresses(net)) => net.contains(&canonical(IpAddr::V4(*address))),
            (url::Host::Ipv6(address), Hosts::Addresses(net)) => net.contains(&canonical(IpAddr::V6(*address))),
            _ => false,
        }
    }
}

fn parse_entry(entry: &str) -> Result<Entry, String> {
    let bad = |why: &str| format!("allow_hosts entry {entry:?}: {why}");
    let (scheme, rest) = entry.split_once("://").ok_or_else(|| bad("write it as scheme://host[:port]"))?;
    let schemes = match scheme {
        "*" => Schemes::Any,
        "http" | "https" => Schemes::One(scheme.to_owned()),
        _ => return Err(bad("the scheme is http, https or *")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = split_port(rest);
    // A `/` belongs to a range (`10.0.0.0/8`) or to a path, which no entry has.
    if port.is_some_and(|port| port.contains('/')) || (host.contains('/') && host.parse::<IpNet>().is_err()) {
        return Err(bad("an entry names no path"));
    }
    let ports = match (port, &schemes) {
        (Some(port), _) => parse_ports(port).ok_or_else(|| bad("the port is a number, a range a..b or *"))?,
        (None, Schemes::One(scheme)) => {
            let default = if scheme == "https" { 443 } else { 80 };
            Ports::Range(default..=default)
        }
        (None, Schemes::Any) => return Err(bad("*:// needs a port (a number, a range or *)")),
    };
    Ok(Entry {
        schemes,
        hosts: parse_hosts(host).ok_or_else(|| bad("the host is a name, *.domain, *, an address or a range"))?,
        ports,
    })
}

/// Splits `host:port`, minding `[v6]:port` and bare v6 addresses.
fn split_port(text: &str) -> (&str, Option<&str>) {
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (text, None),
        };
    }
    match text.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address or range.
        Some((host, _)) if host.contains(':') => (text, None),
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    }
}

fn parse_ports(text: &str) -> Option<Ports> {
    if text == "*" {
        return Some(Ports::Any);
    }
    match text.split_once("..") {
        Some((low, high)) => {
            let (low, high) = (low.parse().ok()?, high.parse().ok()?);
            (low <= high).then_some(Ports::Range(low..=high))
        }
        None => text.parse().ok().map(|port| Ports::Range(port..=port)),
    }
}

fn parse_hosts(host: &str) -> Option<Hosts> {
    if host == "*" {
        return Some(Hosts::AnyName);
    }
    if let Ok(net) = host.parse::<IpNet>() {
        return Some(Hosts::Addresses(net.trunc()));
    }
    if let Ok(address) = host.parse::<IpAddr>() {
        return Some(Hosts::Addresses(IpNet::from(canonical(address))));
    }
    let name = host.to_ascii_lowercase();
    let valid = |name: &str| {
        !name.is_empty() && name.split('.').all(|label| !label.is_empty() && label.bytes().all(is_name_byte))
    };
    match name.strip_prefix("*.") {
        Some(domain) if valid(domain) => Some(Hosts::Subdomains(domain.to_owned())),
        None if valid(&name) => Some(Hosts::Name(name)),
        _ => None,
    }
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is that IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// Ranges a name must not lead to by itself.
const SPECIAL_RANGES: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // shared (carrier-grade NAT)
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // protocol assignments
    "192.0.2.0/24",    // documentation
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation
    "203.0.113.0/24",  // documentation
    "224.0.0.0/3",     // multicast, reserved, broadcast
    "::/128",          // unspecified
    "::1/128",         // loopback
    "::/96",           // IPv4-compatible (deprecated): could hide any IPv4 address
    "64:ff9b::/96",    // NAT64: could reach any IPv4 address
    "64:ff9b:1::/48",  // local NAT64
    "100::/64",        // discard
    "2001::/23",       // protocol assignments, Teredo (hides an IPv4 address)
    "2001:db8::/32",   // documentation
    "2002::/16",       // 6to4: could reach any IPv4 address
    "fc00::/7",        // unique local (cloud metadata fd00:ec2::254)
    "fe80::/10",       // link-local
    "fec0::/10",       // site-local (deprecated)
    "ff00::/8",        // multicast
];

/// Whether `address` is in a range that a name must not lead to.
pub fn is_special(address: IpAddr) -> bool {
    let address = canonical(address);
    SPECIAL_RANGES.iter().any(|range| range.parse::<IpNet>().is_ok_and(|net| net.contains(&address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(&entries.iter().map(|entry| entry.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn admits(list: &Allowlist, url: &str) -> bool {
        let url = url::Url::parse(url).unwrap();
        let host = url.host().unwrap();
        list.admits(Destination { scheme: url.scheme(), host: &host, port: url.port_or_known_default().unwrap() })
    }

    #[test]
    fn scheme_host_and_port_all_match() {
        let list = list(&["https://api.example.com", "http://local.test:8080", "*://any.test:*"]);
        assert!(admits(&list, "https://API.example.com/v1"));
        assert!(admits(&list, "https://api.example.com:443/"));
        assert!(!admits(&list, "http://api.example.com/"), "the scheme is part of the entry");
        assert!(!admits(&list, "https://api.example.com:8443/"), "the default port only");
        assert!(admits(&list, "http://local.test:8080/"));
        assert!(!admits(&list, "http://local.test/"), "an explicit port is the only one");
        assert!(admits(&list, "http://any.test:1234/") && admits(&list, "https://any.test/"));
        assert!(!admits(&list, "https://api.example.com.evil.test/"));
        assert!(!admits(&list, "https://evilapi.example.com/"));
    }

    #[test]
    fn wildcards_ranges_and_addresses() {
        let list =
            list(&["https://*.rates.test", "http://ports.test:8000..8010", "http://10.0.0.0/8:*", "https://*:443"]);
        assert!(admits(&list, "https://eu.rates.test/"));
        assert!(!admits(&list, "https://rates.test:444/"), "the domain itself is not its subdomain");
        assert!(admits(&list, "http://ports.test:8005/") && !admits(&list, "http://ports.test:8011/"));
        assert!(admits(&list, "http://10.1.2.3:9999/"));
        assert!(admits(&list, "https://whatever.test/"), "* is any name");
        assert!(!admits(&list, "https://192.168.1.1/"), "* is not any address");
        assert!(!admits(&list, "https://[::ffff:192.168.1.1]/"));
    }

    #[test]
    fn bad_entries_are_refused_with_their_text() {
        for bad in [
            "api.example.com",
            "ftp://x.test",
            "https://x.test/path",
            "*://x.test",
            "http://x.test:99999",
            "https://*evil.test",
            "http://a..b",
        ] {
            let error = Allowlist::parse(&[bad.to_string()]).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn special_addresses_need_an_entry_that_names_them() {
        let plain = list(&["https://rates.test"]);
        for address in [
            "127.0.0.1",
            "10.2.3.4",
            "169.254.169.254",
            "192.168.0.1",
            "::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "fe80::1",
            "64:ff9b::a9fe:a9fe",
            "0.0.0.0",
        ] {
            assert!(!plain.admits_address(address.parse().unwrap()), "{address}");
        }
        assert!(plain.admits_address("93.184.216.34".parse().unwrap()));
        assert!(plain.admits_address("2606:4700::1111".parse().unwrap()));
        let named = list(&["https://rates.test", "http://127.0.0.1:8080", "http://10.0.0.0/8:*"]);
        assert!(named.admits_address("127.0.0.1".parse().unwrap()));
        assert!(named.admits_address("::ffff:127.0.0.1".parse().unwrap()));
        assert!(named.admits_address("10.9.9.9".parse().unwrap()));
        assert!(!named.admits_address("127.0.0.2".parse().unwrap()));
        assert!(!named.admits_address("169.254.169.254".parse().unwrap()));
    }
}
