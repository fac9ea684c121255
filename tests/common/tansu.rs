//! A private tansu (a Kafka-API broker with in-memory storage, from crates.io) on a
//! free port, for a test that needs a consumer group no earlier test has used:
//! tansu 0.6's group coordinator does not always recover a group whose members came
//! and went in earlier tests. `scripts/test` installs tansu; `SUPERHERO_TEST_TANSU`
//! names the binary when it is neither on the PATH nor in `~/.cargo/bin`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running tansu, killed when dropped.
pub struct Tansu {
    child: Child,
    port: u16,
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("SUPERHERO_TEST_TANSU") {
        return path.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
            });
        home.join("bin").join("tansu")
    })
}

impl Tansu {
    /// Starts tansu on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let port = super::free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let path = binary();
        let child = Command::new(&path)
            .args(["broker", "--listener-url", &listener])
            .args(["--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} (scripts/test installs it): {e}",
                    path.display()
                )
            });
        let tansu = Self { child, port };
        let deadline = Instant::now() + super::WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        tansu
    }

    /// Its `kafka://` URL.
    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }
}

/// The Kafka a test of consumer groups uses: the broker SUPERHERO_TEST_KAFKA_URL names,
/// else a private tansu (kept alive by the returned guard).
pub fn group_test_kafka() -> (Option<Tansu>, String) {
    match std::env::var("SUPERHERO_TEST_KAFKA_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let tansu = Tansu::start();
            let url = tansu.url();
            (Some(tansu), url)
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
