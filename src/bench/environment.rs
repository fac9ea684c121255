//! Where a report's numbers come from: this machine, the program, and each broker's
//! server as it names itself, printed at the head of every report so that figures
//! from different machines or versions are not compared unawares.

use procfs::Current;
use serde::Serialize;

/// The machine, the program and the brokers of one evaluation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Environment {
    /// This program and its version.
    pub superhero: String,
    /// When the evaluation started (UTC, RFC 3339).
    pub started: String,
    pub host: String,
    /// The processor's model as the kernel names it.
    pub cpu: String,
    /// Logical processors this process may run on.
    pub cores: usize,
    pub memory_gib: f64,
    /// The operating system and kernel release.
    pub os: String,
    /// Each broker measured and its server's name and version, where it tells them.
    pub brokers: Vec<BrokerVersion>,
}

/// A broker's server, as it names itself.
#[derive(Clone, Debug, Serialize)]
pub struct BrokerVersion {
    pub broker: String,
    pub version: String,
}

impl Environment {
    /// This machine and program now; the brokers are added as they are opened.
    pub fn here() -> Self {
        let cpu = procfs::CpuInfo::current()
            .ok()
            .and_then(|info| info.model_name(0).map(str::to_string))
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let memory_gib = procfs::Meminfo::current()
            .map(|m| m.mem_total as f64 / (1u64 << 30) as f64)
            .unwrap_or(0.0);
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let release = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        Self {
            superhero: format!("superhero {}", env!("CARGO_PKG_VERSION")),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            host: read("/proc/sys/kernel/hostname"),
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            os: format!("{release}, Linux {}", read("/proc/sys/kernel/osrelease")),
            brokers: Vec::new(),
        }
    }

    /// The environment as terms and values, in the order a report prints them.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut lines = vec![
            ("program".to_string(), self.superhero.clone()),
            ("started".to_string(), self.started.clone()),
            (
                "machine".to_string(),
                format!(
                    "{}: {} × {}, {:.1} GiB",
                    self.host, self.cores, self.cpu, self.memory_gib
                ),
            ),
            ("system".to_string(), self.os.clone()),
        ];
        lines.extend(
            self.brokers
                .iter()
                .map(|b| (b.broker.clone(), b.version.clone())),
        );
        lines
    }

    /// The environment as a Markdown list.
    pub fn markdown(&self) -> String {
        let mut md = String::from("Environment:\n\n");
        for (term, value) in self.lines() {
            md.push_str(&format!("- {term}: {value}\n"));
        }
        md.push('\n');
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_described() {
        let env = Environment::here();
        assert!(env.cores >= 1);
        assert!(env.memory_gib > 0.1, "{env:?}");
        assert!(env.os.contains("Linux"), "{env:?}");
        assert!(env.started.ends_with('Z'), "{env:?}");
        let md = env.markdown();
        assert!(md.contains("- program: superhero "), "{md}");
        assert!(md.contains(" GiB"), "{md}");
    }
}
