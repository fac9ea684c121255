//! The backends, one entry each: the URL schemes and the LOGGER_MODULE name that pick
//! it, where it is when only LOGGER_MODULE names it (from the original's variables),
//! and how to open it. A backend turns the command line's [`Tuning`] into its own
//! options type inside its folder. Adding a broker is one folder and one entry of
//! [`BACKENDS`].

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::{Broker, BrokerError, Tuning};

/// Opens a backend at a URL of one of its schemes.
pub type Open = fn(String, Tuning) -> BoxFuture<'static, Result<Arc<dyn Broker>, BrokerError>>;

/// One broker backend.
pub struct Backend {
    /// Its name in reports and in `bench --brokers` (`redis-streams`, `rabbitmq`).
    pub name: &'static str,
    /// The LOGGER_MODULE value that picks it (`rabbit` for RabbitMQ, as the original).
    pub module: &'static str,
    /// The URL schemes that name it; the first is how it is written.
    pub schemes: &'static [&'static str],
    /// It lives inside one process (the embedded broker), so separate processes
    /// cannot share it.
    pub in_process: bool,
    /// Its consumers are served by a middleware that runs in the process opened with
    /// [`super::Tuning::in_process`] (else `superhero fanout`).
    pub middleware: bool,
    /// Its URL when only LOGGER_MODULE names it, from the original's variables.
    pub default_url: fn(&Variables) -> String,
    /// Opens it.
    pub open: Open,
}

/// Every backend, in the order the evaluation measures them.
pub static BACKENDS: [Backend; 8] = [
    Backend {
        name: "memory",
        module: "memory",
        schemes: &["memory"],
        in_process: true,
        middleware: false,
        default_url: |_| "memory://".into(),
        open: super::memory::open,
    },
    Backend {
        name: "redis",
        module: "redis",
        schemes: &["redis", "rediss"],
        in_process: false,
        middleware: false,
        default_url: Variables::redis_url,
        open: super::redis::pubsub::open,
    },
    Backend {
        name: "redis-fanout",
        module: "redis-fanout",
        schemes: &["redis-fanout"],
        in_process: false,
        middleware: true,
        default_url: |v| crate::url::with_scheme(&v.redis_url(), "redis-fanout"),
        open: super::redis::fanout::open,
    },
    Backend {
        name: "redis-streams",
        module: "redis-streams",
        schemes: &["redis-streams"],
        in_process: false,
        middleware: false,
        default_url: |v| crate::url::with_scheme(&v.redis_url(), "redis-streams"),
        open: super::redis::streams::open,
    },
    Backend {
        name: "rabbitmq",
        module: "rabbit",
        schemes: &["amqp"],
        in_process: false,
        middleware: false,
        default_url: |v| {
            format!(
                "amqp://{}@{}:{}/%2f",
                crate::url::userinfo(&v.rabbit_user, &v.rabbit_pass),
                v.amqp_host,
                v.amqp_port
            )
        },
        open: super::rabbitmq::open,
    },
    Backend {
        name: "kafka",
        module: "kafka",
        schemes: &["kafka"],
        in_process: false,
        middleware: false,
        default_url: |v| format!("kafka://{}:{}", v.kafka_host, v.kafka_port),
        open: super::kafka::open,
    },
    Backend {
        name: "nats",
        module: "nats",
        schemes: &["nats"],
        in_process: false,
        middleware: false,
        default_url: |v| v.nats_url.clone(),
        open: super::nats::open,
    },
    Backend {
        name: "nsq",
        module: "nsq",
        schemes: &["nsq"],
        in_process: false,
        middleware: false,
        default_url: |v| format!("nsq://{}", v.nsqd_address),
        open: super::nsq::open,
    },
];

/// The URL schemes and LOGGER_MODULE values that name no broker: records are only
/// printed.
const NO_BROKER: [&str; 2] = ["default", "none"];

/// The original simulator's broker variables (REDIS_*, AMQP_*, RABBIT_*, KAFKA_*, and
/// NATS_URL and NSQD_ADDRESS of ours), from which LOGGER_MODULE's brokers are found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variables {
    /// REDIS_HOST.
    pub redis_host: String,
    /// REDIS_PORT.
    pub redis_port: u16,
    /// REDIS_DB.
    pub redis_db: u32,
    /// AMQP_HOST.
    pub amqp_host: String,
    /// AMQP_PORT.
    pub amqp_port: u16,
    /// RABBIT_USER.
    pub rabbit_user: String,
    /// RABBIT_PASS.
    pub rabbit_pass: String,
    /// NATS_URL (`nats://host:port`).
    pub nats_url: String,
    /// NSQD_ADDRESS (`host:port`).
    pub nsqd_address: String,
    /// KAFKA_HOST.
    pub kafka_host: String,
    /// KAFKA_PORT.
    pub kafka_port: u16,
}

impl Default for Variables {
    /// The original's defaults.
    fn default() -> Self {
        Self {
            redis_host: "localhost".into(),
            redis_port: 6379,
            redis_db: 0,
            amqp_host: "localhost".into(),
            amqp_port: 5672,
            rabbit_user: "guest".into(),
            rabbit_pass: "guest".into(),
            nats_url: "nats://localhost:4222".into(),
            nsqd_address: "localhost:4150".into(),
            kafka_host: "localhost".into(),
            kafka_port: 9092,
        }
    }
}

impl Variables {
    /// `redis://REDIS_HOST:REDIS_PORT/REDIS_DB`.
    pub fn redis_url(&self) -> String {
        crate::url::redis(&self.redis_host, self.redis_port, self.redis_db)
    }
}

/// A broker to open: its backend and its URL.
#[derive(Clone)]
pub struct BrokerSpec {
    backend: &'static Backend,
    url: String,
}

impl fmt::Debug for BrokerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BrokerSpec({}, {})",
            self.backend.name,
            crate::url::redact(&self.url)
        )
    }
}

impl PartialEq for BrokerSpec {
    fn eq(&self, other: &Self) -> bool {
        self.backend.name == other.backend.name && self.url == other.url
    }
}

impl Eq for BrokerSpec {}

fn listed(names: impl Iterator<Item = String>) -> String {
    let names: Vec<String> = names.collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

impl BrokerSpec {
    /// The broker `--broker URL` names; `None` for `default://` or `none://`.
    pub fn from_url(url: &str) -> Result<Option<Self>, BrokerError> {
        let scheme = crate::url::scheme(url);
        if NO_BROKER.contains(&scheme) {
            return Ok(None);
        }
        match BACKENDS.iter().find(|b| b.schemes.contains(&scheme)) {
            Some(backend) => Ok(Some(Self {
                backend,
                url: url.to_string(),
            })),
            None => Err(BrokerError::Config(format!(
                "unknown broker URL scheme {scheme:?}: expected {}",
                listed(BACKENDS.iter().map(|b| format!("{}://", b.schemes[0])))
            ))),
        }
    }

    /// The broker LOGGER_MODULE names, at the address `vars` give; `None` for
    /// `default`.
    pub fn from_module(module: &str, vars: &Variables) -> Result<Option<Self>, BrokerError> {
        if module.is_empty() || NO_BROKER.contains(&module) {
            return Ok(None);
        }
        match BACKENDS.iter().find(|b| b.module == module) {
            Some(backend) => Ok(Some(Self {
                backend,
                url: (backend.default_url)(vars),
            })),
            None => Err(BrokerError::Config(format!(
                "unknown LOGGER_MODULE {module:?}: expected {}",
                listed(
                    std::iter::once("default".to_string())
                        .chain(BACKENDS.iter().map(|b| b.module.to_string()))
                )
            ))),
        }
    }

    /// `--broker URL` if given, else LOGGER_MODULE.
    pub fn choose(
        url: Option<&str>,
        module: &str,
        vars: &Variables,
    ) -> Result<Option<Self>, BrokerError> {
        match url {
            Some(url) => Self::from_url(url),
            None => Self::from_module(module, vars),
        }
    }

    /// A broker as `bench --brokers` names it: a URL, a backend's name (`rabbitmq`) or
    /// its LOGGER_MODULE name (`rabbit`), at the address `vars` give.
    pub fn from_name(name: &str, vars: &Variables) -> Result<Option<Self>, BrokerError> {
        if name.contains("://") {
            return Self::from_url(name);
        }
        match BACKENDS.iter().find(|b| b.name == name) {
            Some(backend) => Self::from_module(backend.module, vars),
            None => Self::from_module(name, vars),
        }
    }

    /// The backend it names.
    pub fn backend(&self) -> &'static Backend {
        self.backend
    }

    /// The URL, as given (it may hold a password: see [`crate::url::redact`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Refuses a broker that lives inside one process for `command`, which runs
    /// beside other processes.
    pub fn shared_by(self, command: &str) -> Result<Self, BrokerError> {
        if self.backend.in_process {
            return Err(BrokerError::Config(format!(
                "the embedded broker lives inside one process, so `{command}` cannot share it: \
                 use `superhero simulate`, or a network broker such as \
                 --broker redis-streams://HOST:PORT/DB"
            )));
        }
        Ok(self)
    }

    /// Opens the broker.
    pub async fn open(&self, tuning: &Tuning) -> Result<Arc<dyn Broker>, BrokerError> {
        (self.backend.open)(self.url.clone(), tuning.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        Variables {
            redis_host: "h".into(),
            redis_port: 1,
            redis_db: 2,
            amqp_host: "h".into(),
            nats_url: "nats://h:4222".into(),
            nsqd_address: "h:4150".into(),
            kafka_host: "h".into(),
            ..Variables::default()
        }
    }

    fn chosen(url: Option<&str>, module: &str) -> Option<(&'static str, String)> {
        BrokerSpec::choose(url, module, &vars())
            .unwrap()
            .map(|s| (s.backend().name, s.url().to_string()))
    }

    /// RABBIT_USER and RABBIT_PASS reach RabbitMQ as given, whatever they hold: the
    /// URL carries them percent-encoded, and the AMQP client decodes them.
    #[test]
    fn rabbit_credentials_survive_the_url() {
        let mut v = vars();
        v.rabbit_user = "me@home".into();
        v.rabbit_pass = "p/w@x:y?z#%".into();
        let spec = BrokerSpec::choose(None, "rabbit", &v).unwrap().unwrap();
        let uri: lapin::uri::AMQPUri = spec.url().parse().unwrap();
        assert_eq!(uri.authority.userinfo.username, "me@home");
        assert_eq!(uri.authority.userinfo.password, "p/w@x:y?z#%");
        assert_eq!(uri.authority.host, "h");
        assert!(!crate::url::redact(spec.url()).contains("p/w"));
    }

    #[test]
    fn broker_choice_from_url_and_module() {
        assert_eq!(
            chosen(Some("memory://"), "default"),
            Some(("memory", "memory://".into()))
        );
        assert_eq!(chosen(None, "default"), None);
        assert_eq!(chosen(None, "memory"), Some(("memory", "memory://".into())));
        assert_eq!(
            chosen(Some("redis-streams://:pw@x:7/3"), "default"),
            Some(("redis-streams", "redis-streams://:pw@x:7/3".into()))
        );
        assert_eq!(
            chosen(None, "redis-streams"),
            Some(("redis-streams", "redis-streams://h:1/2".into()))
        );
        assert_eq!(
            chosen(None, "redis"),
            Some(("redis", "redis://h:1/2".into()))
        );
        assert_eq!(
            chosen(Some("nats://n:4222"), "default"),
            Some(("nats", "nats://n:4222".into()))
        );
        assert_eq!(chosen(None, "nats"), Some(("nats", "nats://h:4222".into())));
        assert_eq!(
            chosen(None, "rabbit"),
            Some(("rabbitmq", "amqp://guest:guest@h:5672/%2f".into()))
        );
        assert_eq!(chosen(None, "nsq"), Some(("nsq", "nsq://h:4150".into())));
        assert_eq!(
            chosen(Some("nsq://q:1"), "default"),
            Some(("nsq", "nsq://q:1".into()))
        );
        assert_eq!(
            chosen(None, "kafka"),
            Some(("kafka", "kafka://h:9092".into()))
        );
        // --broker wins over LOGGER_MODULE.
        assert_eq!(
            chosen(Some("kafka://k:1"), "nats"),
            Some(("kafka", "kafka://k:1".into()))
        );
        let err = BrokerSpec::choose(Some("bogus://x"), "default", &vars()).unwrap_err();
        assert!(err.to_string().contains("unknown broker URL scheme"));
        assert!(err.to_string().contains("redis-streams://"), "{err}");
        let err = BrokerSpec::choose(None, "carrier-pigeon", &vars()).unwrap_err();
        assert!(err.to_string().contains("LOGGER_MODULE"));
        assert!(err.to_string().contains("rabbit"), "{err}");
    }

    #[test]
    fn bench_names_are_backend_or_module_names() {
        let name = |n: &str| {
            BrokerSpec::from_name(n, &vars())
                .unwrap()
                .map(|s| s.backend().name)
        };
        assert_eq!(name("rabbitmq"), Some("rabbitmq"));
        assert_eq!(name("rabbit"), Some("rabbitmq"));
        assert_eq!(name("redis-fanout"), Some("redis-fanout"));
        assert_eq!(name("nats://x:1"), Some("nats"));
        assert!(BrokerSpec::from_name("carrier-pigeon", &vars()).is_err());
    }

    #[test]
    fn every_backend_is_named_once() {
        let (mut names, mut modules, mut schemes) = (
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
        );
        for b in &BACKENDS {
            assert!(names.insert(b.name), "{}", b.name);
            assert!(modules.insert(b.module), "{}", b.module);
            for s in b.schemes {
                assert!(schemes.insert(s), "scheme {s}");
            }
            // Its default URL is one of its own.
            let spec = BrokerSpec::from_url(&(b.default_url)(&vars()))
                .unwrap()
                .unwrap();
            assert_eq!(spec.backend().name, b.name);
        }
    }

    #[test]
    fn only_network_brokers_are_shared() {
        let memory = BrokerSpec::from_url("memory://").unwrap().unwrap();
        let err = memory.shared_by("worker").unwrap_err().to_string();
        assert!(err.contains("`worker` cannot share it"), "{err}");
        let streams = BrokerSpec::from_url("redis-streams://h:1/0")
            .unwrap()
            .unwrap();
        assert!(streams.shared_by("worker").is_ok());
    }
}
