//! The hero collection fetched from the Super Hero API, as the original's `build_db.py
//! pull` does: `GET <base>/<token>/<id>` for id 1, 2, 3… until the API answers
//! `{"response": "error", "error": "invalid id"}`.
//!
//! A good citizen of a free API: a few requests in flight at most, each with a
//! timeout, retried with a doubling pause after a timeout, a connection failure, a
//! 5xx or a 429. A bad token (`access denied`) or an API that cannot be reached
//! stops the pull at once. The token is part of every URL and of nothing this module
//! prints: URLs in messages show `***` in its place.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use thiserror::Error;

use crate::backoff::Backoff;

/// The API's address, before `/<token>/<id>`.
pub const API_URL: &str = "https://www.superheroapi.com/api";

/// How a pull goes.
#[derive(Clone, Debug)]
pub struct PullSettings {
    /// The address before `/<token>/<id>` ([`API_URL`]).
    pub base_url: String,
    /// The user's access token.
    pub token: String,
    /// Requests in flight at most.
    pub in_flight: usize,
    /// How long one request may take.
    pub timeout: Duration,
    /// Attempts per id before it counts as failed.
    pub attempts: u32,
    /// The first pause between attempts (it doubles, up to 30 s).
    pub retry_pause: Duration,
    /// The highest id asked for: a pull that never hears `invalid id` stops there.
    pub max_id: u32,
}

impl PullSettings {
    /// The defaults for `token` on the real API.
    pub fn new(token: String) -> Self {
        Self {
            base_url: API_URL.to_string(),
            token,
            in_flight: 4,
            timeout: Duration::from_secs(10),
            attempts: 5,
            retry_pause: Duration::from_millis(500),
            max_id: 100_000,
        }
    }

    /// The address of `id` as messages show it: the token masked.
    pub fn shown_url(&self, id: u32) -> String {
        format!("{}/***/{id}", self.base_url.trim_end_matches('/'))
    }

    fn url(&self, id: u32) -> String {
        format!(
            "{}/{}/{id}",
            self.base_url.trim_end_matches('/'),
            self.token
        )
    }
}

/// Why a pull stopped.
#[derive(Debug, Error)]
pub enum PullError {
    #[error("the API refused the token (access denied): check API_TOKEN")]
    AccessDenied,
    #[error("the API cannot be reached at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("the API answered {url} with something that is not a hero: {why}")]
    BadReply { url: String, why: String },
    #[error("the API sent no hero: id 1 is already past the last")]
    Empty,
    #[error("no `invalid id` up to id {0}: the API does not end its collection")]
    Endless(u32),
    #[error("the HTTP client cannot be made: {0}")]
    Client(String),
}

/// Ids failing one after the other, after their retries, that stop a pull: past a
/// few, the API is down rather than missing a hero.
const FAILING_IN_A_ROW: u32 = 8;

/// What a pull fetched.
#[derive(Debug, Default)]
pub struct Pulled {
    /// The API's replies, hero objects as it sent them, by id.
    pub heroes: Vec<Value>,
    /// Ids that failed after every attempt, each with why (the collection has a gap
    /// there).
    pub failed: Vec<(u32, String)>,
}

/// What one id came to.
enum Fetched {
    Hero(Value),
    /// Past the last hero.
    End,
    /// Every attempt failed; why the last one did.
    Failed(String),
}

/// Fetches the collection; `progress` is called with each id settled (fetched or
/// failed), in order.
pub async fn pull(settings: &PullSettings, progress: impl Fn(u32)) -> Result<Pulled, PullError> {
    // The TLS provider of the client: ring, as the rest of the crate uses (the first
    // one installed stays).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(concat!("superhero/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PullError::Client(describe(e)))?;
    let client = &client;
    let mut replies = futures_util::stream::iter(1..=settings.max_id)
        .map(|id| async move { (id, fetch(client, settings, id).await) })
        .buffered(settings.in_flight.max(1));
    let mut pulled = Pulled::default();
    let mut failing = 0;
    while let Some((id, fetched)) = replies.next().await {
        match fetched? {
            Fetched::Hero(hero) => {
                pulled.heroes.push(hero);
                failing = 0;
            }
            Fetched::End if pulled.heroes.is_empty() && pulled.failed.is_empty() => {
                return Err(PullError::Empty);
            }
            Fetched::End => return Ok(pulled),
            Fetched::Failed(why) => {
                failing += 1;
                if failing == FAILING_IN_A_ROW {
                    // Not a gap in the collection: the API stopped answering.
                    return Err(PullError::Unreachable {
                        url: settings.shown_url(id),
                        why: format!("{failing} ids in a row failed, the last with: {why}"),
                    });
                }
                pulled.failed.push((id, why));
            }
        }
        progress(id);
    }
    Err(PullError::Endless(settings.max_id))
}

/// One id, retried; a refused token, a reply that is no hero and an unreachable
/// API end the pull (an API down for every attempt of one id is down).
async fn fetch(
    client: &reqwest::Client,
    settings: &PullSettings,
    id: u32,
) -> Result<Fetched, PullError> {
    let url = settings.url(id);
    let shown = settings.shown_url(id);
    let mut backoff = Backoff::new(settings.retry_pause, Duration::from_secs(30));
    let mut last = String::new();
    for attempt in 1..=settings.attempts.max(1) {
        if attempt > 1 {
            backoff.wait().await;
        }
        let answer = match client.get(&url).send().await {
            Ok(answer) => answer,
            Err(e) => {
                let connect = e.is_connect();
                last = describe(e);
                if connect && attempt == settings.attempts.max(1) {
                    return Err(PullError::Unreachable {
                        url: shown,
                        why: last,
                    });
                }
                continue;
            }
        };
        let status = answer.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            last = format!("HTTP {status}");
            continue;
        }
        let body = match answer.bytes().await {
            Ok(body) => body,
            Err(e) => {
                last = describe(e);
                continue;
            }
        };
        return reply(&body, status, &shown);
    }
    tracing::warn!("{shown}: {last} after {} attempts", settings.attempts);
    Ok(Fetched::Failed(last))
}

/// A client error with its causes (`error sending request: … : connection refused`),
/// without the URL, which holds the token.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// What the API's reply to one id says.
fn reply(body: &[u8], status: reqwest::StatusCode, shown: &str) -> Result<Fetched, PullError> {
    let bad = |why: String| PullError::BadReply {
        url: shown.to_string(),
        why,
    };
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let start = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
        bad(format!("HTTP {status}, not JSON ({e}): {start:?}"))
    })?;
    match value.get("response").and_then(Value::as_str) {
        Some("success") if value.get("powerstats").is_some() => Ok(Fetched::Hero(value)),
        Some("error") => match value.get("error").and_then(Value::as_str) {
            Some("invalid id") => Ok(Fetched::End),
            Some("access denied") => Err(PullError::AccessDenied),
            other => Err(bad(format!("error {other:?}"))),
        },
        _ => Err(bad(format!("HTTP {status}, no hero in the reply"))),
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never
/// a part: a temporary beside it, fsynced, renamed over it, its folder fsynced.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "roster".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_as_the_api_means_them() {
        let ok = reqwest::StatusCode::OK;
        let hero = br#"{"response":"success","id":"1","name":"A","powerstats":{}}"#;
        assert!(matches!(reply(hero, ok, "u"), Ok(Fetched::Hero(_))));
        let end = br#"{"response":"error","error":"invalid id"}"#;
        assert!(matches!(reply(end, ok, "u"), Ok(Fetched::End)));
        let denied = br#"{"response":"error","error":"access denied"}"#;
        assert!(matches!(
            reply(denied, ok, "u"),
            Err(PullError::AccessDenied)
        ));
        assert!(matches!(
            reply(b"<html>", ok, "u"),
            Err(PullError::BadReply { .. })
        ));
        assert!(matches!(
            reply(br#"{"response":"success"}"#, ok, "u"),
            Err(PullError::BadReply { .. })
        ));
    }

    #[test]
    fn urls_shown_hide_the_token() {
        let settings = PullSettings::new("s3cr3t-token".into());
        assert_eq!(
            settings.shown_url(7),
            "https://www.superheroapi.com/api/***/7"
        );
        assert!(settings.url(7).contains("s3cr3t-token"));
    }
}
