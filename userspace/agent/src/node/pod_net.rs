//! A pod's addresses, read from its sandbox's network namespace (`/proc/<pause>/net`) when the
//! sandbox starts: resets they send are connections the pod refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses of a pod at most (a pod has one or two; a hostile netns could list many).
const MAX_ADDRS: usize = 8;

/// The non-loopback addresses of the network namespace of `pid`; none when it is this agent's
/// own namespace (a hostNetwork pod: the node's addresses are not the pod's alone).
pub fn sandbox_addresses(pid: u32) -> Vec<IpAddr> {
    let ns = |p: &str| std::fs::read_link(p).ok();
    let theirs = ns(&format!("/proc/{pid}/ns/net"));
    if theirs.is_none() || theirs == ns("/proc/self/ns/net") {
        return Vec::new();
    }
    let read =
        |f: &str| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default();
    let mut addrs = local_ipv4(&read("fib_trie"));
    addrs.extend(global_ipv6(&read("if_inet6")));
    addrs.truncate(MAX_ADDRS);
    addrs
}

/// Local IPv4 addresses of a `fib_trie`: a `|-- a.b.c.d` line followed by `/32 host LOCAL`.
pub fn local_ipv4(fib_trie: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(a) = line.strip_prefix("|-- ") {
            last = a.parse().ok();
        } else if line == "/32 host LOCAL" {
            if let Some(a) = last.filter(|a| !a.is_loopback()) {
                if !out.contains(&IpAddr::V4(a)) && out.len() < MAX_ADDRS {
                    out.push(IpAddr::V4(a));
                }
            }
        }
    }
    out
}

/// Global-scope IPv6 addresses of an `if_inet6` (address, ifindex, prefix, scope, flags, name).
pub fn global_ipv6(if_inet6: &str) -> Vec<IpAddr> {
    if_inet6
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let hex = f.next()?;
            let scope = f.nth(2)?;
            if scope != "00" || hex.len() != 32 {
                return None;
            }
            let v = u128::from_str_radix(hex, 16).ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(v)))
        })
        .take(MAX_ADDRS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/<pause>/net/fib_trie` of a pod on a CNI bridge (kernel 6.18).
    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.231.7.0/24 2 0 2
        |-- 10.231.7.0
           /24 link UNICAST
        |-- 10.231.7.3
           /32 host LOCAL
        |-- 10.231.7.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 10.231.7.3
           /32 host LOCAL
";

    #[test]
    fn pod_addresses_from_fib_trie_and_if_inet6() {
        assert_eq!(
            local_ipv4(FIB_TRIE),
            vec!["10.231.7.3".parse::<IpAddr>().unwrap()]
        );
        let inet6 = "fd00000000000000000000000000000a 02 40 00 80 eth0\n\
                     fe80000000000000a8b0c3fffe0d1234 02 40 20 80 eth0\n\
                     00000000000000000000000000000001 01 80 10 80 lo\n";
        assert_eq!(
            global_ipv6(inet6),
            vec!["fd00::a".parse::<IpAddr>().unwrap()]
        );
        assert!(local_ipv4("garbage\n|-- not-an-ip\n/32 host LOCAL\n").is_empty());
        assert!(global_ipv6("zz 1\n\n").is_empty());
    }

    #[test]
    fn the_agent_s_own_namespace_is_no_pod_s() {
        assert!(sandbox_addresses(std::process::id()).is_empty());
    }
}
