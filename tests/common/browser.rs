//! A real headless Chromium driven over WebDriver (chromedriver, both from Debian's
//! packages `chromium` and `chromium-driver`, which `scripts/test` installs), for the
//! tests of pages the binary writes or serves. Each browser gets a fresh profile and
//! its own chromedriver on a free port; both go when it is dropped.
//!
//! `SUPERHERO_TEST_CHROMIUM` and `SUPERHERO_TEST_CHROMEDRIVER` name the binaries when
//! they are not at /usr/bin. Screenshots go to `SUPERHERO_TEST_ARTIFACTS` (default:
//! `superhero-test-artifacts` under the temporary folder).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

fn binary(var: &str, default: &str) -> String {
    let path = std::env::var(var).unwrap_or_else(|_| default.to_string());
    assert!(
        std::path::Path::new(&path).is_file(),
        "{path} is missing: install Debian's chromium and chromium-driver (scripts/test does), \
         or set {var}"
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub async fn start() -> Self {
        let chromium = binary("SUPERHERO_TEST_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("SUPERHERO_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = super::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile =
            std::env::temp_dir().join(format!("superhero-chromium-{}", uuid::Uuid::new_v4()));
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1200,1800",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("a JSON object"),
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Self {
            client,
            driver,
            profile,
        }
    }

    /// Saves a screenshot of the page as `name`.png among the test artifacts; returns
    /// where.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = std::env::var_os("SUPERHERO_TEST_ARTIFACTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("superhero-test-artifacts"));
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the session and stops the browser.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
