//! Addresses as text: masking the password of a URL for logs and errors, putting
//! credentials into one (percent-encoded), and changing its scheme
//! (`redis-streams://h:6379/0` is `redis://h:6379/0` to the Redis client), and the
//! address a URL names, on this machine or not. A leaf: it uses nothing else of the
//! crate.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The scheme of `url` (`redis-streams` for `redis-streams://h`), or the whole text
/// when it has none.
pub fn scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(s, _)| s)
}

/// `url` with its scheme replaced by `scheme`; text without a scheme is returned as is.
pub fn with_scheme(url: &str, scheme: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => url.to_string(),
    }
}

/// `redis://host:port/db`, the Redis the original's REDIS_HOST, REDIS_PORT and
/// REDIS_DB name.
pub fn redis(host: &str, port: u16, db: u32) -> String {
    format!("redis://{host}:{port}/{db}")
}

/// `url` with any password replaced by `***`, and a user name without a password
/// too (NATS's `nats://TOKEN@host` puts a token there).
///
/// The user part ends at the last `@`, not at the first `/`: a password may hold
/// `/`, `?`, `#` or `@` unencoded, and a URL parser would then read part of it as the
/// host or the path and show it. Masking up to an `@` of a path is the safe mistake.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

/// Characters left as they are in a URL's user name or password: RFC 3986's
/// unreserved ones; everything else is percent-encoded.
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `user:password`, each percent-encoded, for the user part of a URL.
pub fn userinfo(user: &str, password: &str) -> String {
    format!(
        "{}:{}",
        utf8_percent_encode(user, USERINFO),
        utf8_percent_encode(password, USERINFO)
    )
}

/// The host and port a broker's or a Redis store's URL names (the first address of a
/// list), with the scheme's usual port when it names none.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', ',']).next()?;
    let address = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = match scheme {
        "redis" | "rediss" | "redis-streams" | "redis-fanout" => 6379,
        "amqp" => 5672,
        "nats" => 4222,
        "kafka" => 9092,
        "nsq" => 4150,
        _ => return None,
    };
    let (host, port) = match address.rsplit_once(':') {
        // An IPv6 address in brackets without a port has colons of its own.
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (address, default),
    };
    Some((host.trim_matches(['[', ']']).to_string(), port))
}

/// Whether `host` names this machine's loopback.
pub fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("redis://:s3cret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672"),
            "amqp://guest:***@127.0.0.1:5672"
        );
        assert_eq!(redact("redis://h:6379/2"), "redis://h:6379/2");
        assert_eq!(redact("not a url"), "not a url");
        // Passwords holding what ends a host or starts a path, query or fragment.
        for password in ["pa/ss", "a?b", "x#y", "p@ss", "a:b", "//@@"] {
            let url = format!("amqp://u:{password}@h:5672/%2f");
            let shown = redact(&url);
            assert_eq!(shown, "amqp://u:***@h:5672/%2f", "{password}");
        }
        // A NATS token in the user name.
        assert_eq!(redact("nats://s3cret@h:4222"), "nats://***@h:4222");
        assert_eq!(redact("nats://u:p@h:4222"), "nats://u:***@h:4222");
    }

    #[test]
    fn credentials_are_percent_encoded() {
        assert_eq!(userinfo("guest", "guest"), "guest:guest");
        assert_eq!(userinfo("a b", "p/w@x:y%"), "a%20b:p%2Fw%40x%3Ay%25");
        let url = format!("amqp://{}@h:5672/%2f", userinfo("me", "p/w@x:y"));
        assert_eq!(redact(&url), "amqp://me:***@h:5672/%2f");
    }

    #[test]
    fn schemes_are_read_and_replaced() {
        assert_eq!(scheme("redis-streams://:pw@x:7/3"), "redis-streams");
        assert_eq!(scheme("memory"), "memory");
        assert_eq!(
            with_scheme("redis-streams://:pw@x:7/3", "redis"),
            "redis://:pw@x:7/3"
        );
        assert_eq!(with_scheme("h:1", "redis"), "h:1");
        assert_eq!(redis("h", 6380, 3), "redis://h:6380/3");
    }

    #[test]
    fn broker_urls_give_their_address() {
        assert_eq!(
            host_port("redis://127.0.0.1:6380/0"),
            Some(("127.0.0.1".into(), 6380))
        );
        assert_eq!(host_port("redis-streams://h/3"), Some(("h".into(), 6379)));
        assert_eq!(
            host_port("amqp://u:p@localhost:5673/%2f"),
            Some(("localhost".into(), 5673))
        );
        assert_eq!(host_port("kafka://a:9093,b:9094"), Some(("a".into(), 9093)));
        assert_eq!(host_port("nsq://[::1]"), Some(("::1".into(), 4150)));
        assert_eq!(host_port("nats://[::1]:4223"), Some(("::1".into(), 4223)));
        assert_eq!(
            host_port("rediss://:pw@db.example/1"),
            Some(("db.example".into(), 6379))
        );
        assert_eq!(host_port("memory://"), None);
        assert!(is_local("localhost") && is_local("::1") && is_local("127.0.0.1"));
        assert!(!is_local("10.1.2.3") && !is_local("broker.example"));
    }
}
