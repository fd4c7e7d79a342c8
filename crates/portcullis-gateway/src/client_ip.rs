//! Client address attribution, for rate limits and logs.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Returns the client address of a request.
///
/// The socket peer is the client unless it is a trusted proxy. Then the
/// `X-Forwarded-For` chain is read from the right, skipping trusted hops,
/// and the first untrusted hop is the client. A malformed hop stops the
/// walk at the last address that was trusted, so a client cannot choose
/// its own attribution by sending garbage.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }

    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>();
    for hop in hops.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(address) = hop.trim().parse::<IpAddr>() else {
            return client;
        };
        client = address.to_canonical();
        if !is_trusted(client, trusted) {
            return client;
        }
    }
    client
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    #[test]
    fn untrusted_peer_is_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = client_ip(
            "192.0.2.1".parse().unwrap(),
            &headers(&["198.51.100.7"]),
            &trusted,
        );
        assert_eq!(ip, "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_peer_uses_first_untrusted_hop_from_right() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = client_ip(
            "10.0.0.5".parse().unwrap(),
            &headers(&["203.0.113.9, 198.51.100.7", "10.1.1.1"]),
            &trusted,
        );
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_hop_stops_walk() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = client_ip(
            "10.0.0.5".parse().unwrap(),
            &headers(&["1.2.3.4, nonsense"]),
            &trusted,
        );
        assert_eq!(ip, "10.0.0.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn no_trusted_proxies_ignores_header() {
        let ip = client_ip(
            "127.0.0.1".parse().unwrap(),
            &headers(&["203.0.113.9"]),
            &[],
        );
        assert_eq!(ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
