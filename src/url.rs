//! Addresses as text: masking the password of a URL for logs and errors, and
//! changing its scheme (`redis-streams://h:6379/0` is `redis://h:6379/0` to the Redis
//! client). A leaf: it uses nothing else of the crate.

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

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_string(),
    }
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
}
