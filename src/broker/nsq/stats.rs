//! nsqd's figures of a channel, read from its HTTP API (`GET /stats?format=json`), the
//! numbers `nsqadmin` shows: messages waiting (`depth`, memory and disk), in flight,
//! deferred, requeued and timed out, and the clients subscribed; and the deletion
//! of a topic (`POST /topic/delete`), which the TCP protocol cannot ask for.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::super::{BrokerError, BrokerStat};

/// How long one reading may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read: one topic and one channel, without their clients, take
/// a few kilobytes.
const MAX_ANSWER: usize = 1 << 20;

/// A client of one nsqd's HTTP API, keeping its connection between readings.
pub(super) struct StatsReader {
    address: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    topics: Option<Vec<TopicStats>>,
}

#[derive(Deserialize)]
struct TopicStats {
    topic_name: String,
    depth: u64,
    #[serde(default)]
    channels: Option<Vec<ChannelStats>>,
}

#[derive(Deserialize)]
struct ChannelStats {
    channel_name: String,
    depth: u64,
    in_flight_count: u64,
    deferred_count: u64,
    requeue_count: u64,
    timeout_count: u64,
    client_count: u64,
}

impl StatsReader {
    /// A reader of the nsqd whose HTTP API listens at `host:port`.
    pub(super) fn new(address: String) -> Self {
        Self {
            address,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The figures of `channel` of `topic`: none while the topic does not exist, the
    /// messages waiting in the topic while the channel does not.
    pub(super) async fn read(
        &self,
        topic: &str,
        channel: &str,
    ) -> Result<Vec<BrokerStat>, BrokerError> {
        // Names are [.a-zA-Z0-9_-], and '#' of an ephemeral channel.
        let uri = format!(
            "http://{}/stats?format=json&include_clients=false&topic={topic}&channel={}",
            self.address,
            channel.replace('#', "%23")
        );
        let uri: hyper::Uri = uri
            .parse()
            .map_err(|e| BrokerError::Config(format!("nsqd's HTTP address: {e}")))?;
        let body = tokio::time::timeout(TIMEOUT, self.get(uri))
            .await
            .map_err(|_| {
                unavailable(format!("{} did not answer in {TIMEOUT:?}", self.address))
            })??;
        let stats: Stats = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("/stats is not nsqd's JSON: {e}")))?;
        Ok(figures(&stats, topic, channel))
    }

    /// nsqd's answer to `/ping` (`OK` while it is healthy).
    pub(super) async fn ping(&self) -> Result<(), BrokerError> {
        let uri: hyper::Uri = format!("http://{}/ping", self.address)
            .parse()
            .map_err(|e| BrokerError::Config(format!("nsqd's HTTP address: {e}")))?;
        tokio::time::timeout(TIMEOUT, self.get(uri))
            .await
            .map_err(|_| unavailable(format!("{} did not answer in {TIMEOUT:?}", self.address)))?
            .map(drop)
    }

    /// nsqd's version, from `/info`.
    pub(super) async fn version(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Info {
            version: String,
        }
        let uri: hyper::Uri = format!("http://{}/info", self.address).parse().ok()?;
        let body = tokio::time::timeout(TIMEOUT, self.get(uri))
            .await
            .ok()?
            .ok()?;
        let info: Info = serde_json::from_slice(&body).ok()?;
        Some(info.version)
    }

    /// Deletes `topic` with its channels and every message they hold; a topic nsqd
    /// does not have is deleted already.
    pub(super) async fn delete_topic(&self, topic: &str) -> Result<(), BrokerError> {
        // Names are [.a-zA-Z0-9_-]: nothing to escape.
        let uri: hyper::Uri = format!("http://{}/topic/delete?topic={topic}", self.address)
            .parse()
            .map_err(|e| BrokerError::Config(format!("nsqd's HTTP address: {e}")))?;
        let asked = tokio::time::timeout(TIMEOUT, self.send(Method::POST, uri))
            .await
            .map_err(|_| unavailable(format!("{} did not answer in {TIMEOUT:?}", self.address)))?;
        match asked {
            Err(Refused {
                status: Some(StatusCode::NOT_FOUND),
                ..
            }) => Ok(()),
            answer => answer.map(drop).map_err(BrokerError::from),
        }
    }

    async fn get(&self, uri: hyper::Uri) -> Result<Bytes, BrokerError> {
        Ok(self.send(Method::GET, uri).await?)
    }

    async fn send(&self, method: Method, uri: hyper::Uri) -> Result<Bytes, Refused> {
        let what = format!("{method} {}", uri.path());
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Empty::new())
            .map_err(|e| Refused::unanswered(format!("{what}: {e}")))?;
        let answer = self
            .client
            .request(request)
            .await
            .map_err(|e| Refused::unanswered(format!("{what} at {}: {e}", self.address)))?;
        let status = answer.status();
        let body = Limited::new(answer.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| Refused::unanswered(format!("reading {what}: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let said = String::from_utf8_lossy(&body[..body.len().min(200)]);
            return Err(Refused {
                status: Some(status),
                why: format!("{what} answered {status}: {said}"),
            });
        }
        Ok(body)
    }
}

/// A request nsqd did not carry out: the status it answered, if it answered.
struct Refused {
    status: Option<StatusCode>,
    why: String,
}

impl Refused {
    fn unanswered(why: String) -> Self {
        Self { status: None, why }
    }
}

impl From<Refused> for BrokerError {
    fn from(r: Refused) -> Self {
        unavailable(r.why)
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    super::unavailable(e)
}

fn figures(stats: &Stats, topic: &str, channel: &str) -> Vec<BrokerStat> {
    let Some(t) = stats
        .topics
        .iter()
        .flatten()
        .find(|t| t.topic_name == topic)
    else {
        return Vec::new();
    };
    match t
        .channels
        .iter()
        .flatten()
        .find(|c| c.channel_name == channel)
    {
        Some(c) => vec![
            BrokerStat::new("depth", c.depth),
            BrokerStat::new("in flight", c.in_flight_count),
            BrokerStat::new("deferred", c.deferred_count),
            BrokerStat::new("requeued", c.requeue_count),
            BrokerStat::new("timed out", c.timeout_count),
            BrokerStat::new("clients", c.client_count),
        ],
        None => vec![BrokerStat::new("topic depth", t.depth)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer of nsqd 1.3.0, cut down to the parts read.
    const ANSWER: &str = r#"{"version":"1.3.0","health":"OK","start_time":1,
        "topics":[{"topic_name":"t","depth":4,"backend_depth":0,"message_count":9,
        "channels":[{"channel_name":"c","depth":3,"backend_depth":1,"in_flight_count":2,
        "deferred_count":0,"message_count":9,"requeue_count":5,"timeout_count":1,
        "client_count":1,"clients":null,"paused":false}]}],"producers":null}"#;

    fn value(stats: &[BrokerStat], name: &str) -> Option<u64> {
        stats.iter().find(|s| s.name == name).map(|s| s.value)
    }

    #[test]
    fn a_channel_gives_its_figures() {
        let stats: Stats = serde_json::from_str(ANSWER).unwrap();
        let got = figures(&stats, "t", "c");
        assert_eq!(value(&got, "depth"), Some(3));
        assert_eq!(value(&got, "in flight"), Some(2));
        assert_eq!(value(&got, "requeued"), Some(5));
        assert_eq!(value(&got, "timed out"), Some(1));
        assert_eq!(value(&got, "clients"), Some(1));
    }

    #[test]
    fn a_missing_channel_or_topic_gives_what_waits() {
        let stats: Stats = serde_json::from_str(ANSWER).unwrap();
        let got = figures(&stats, "t", "other");
        assert_eq!(got.len(), 1);
        assert_eq!(value(&got, "topic depth"), Some(4));
        assert!(figures(&stats, "none", "c").is_empty());
        let empty: Stats = serde_json::from_str(r#"{"topics":null}"#).unwrap();
        assert!(figures(&empty, "t", "c").is_empty());
    }
}
