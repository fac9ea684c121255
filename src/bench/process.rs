//! The broker's own process, watched while a workload runs: found by the TCP port it
//! listens on, on this machine, its CPU time and resident memory read from /proc. A
//! broker on another host, one this user may not look into, or a system without
//! /proc shows no figures rather than wrong ones.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::url::{host_port, is_local};

/// How often the process is sampled while a workload runs.
const EVERY: Duration = Duration::from_millis(250);

/// What the broker's process used while one workload ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessUsage {
    pub pid: i32,
    /// Its command name (`redis-server`, `beam.smp`, `java`, ...).
    pub command: String,
    /// CPU time over wall time: 1.0 is one core kept busy, on average.
    pub cpu_cores: f64,
    /// The busiest sampling interval's share, the same way (the average, when the
    /// run was shorter than one interval).
    pub cpu_cores_peak: f64,
    /// Resident memory at its highest, in MiB.
    pub rss_mib_max: f64,
    /// The whole machine's busy CPU over the same time, in cores (every process:
    /// the broker, this program, its helpers, anything else running), when /proc/stat
    /// could be read: near [`ProcessUsage::machine_cores`], the machine, not the
    /// broker, was the limit.
    pub machine_busy_cores: Option<f64>,
    /// The cores the machine has, as `/proc/stat` counts them.
    pub machine_cores: usize,
}

/// The process listening on a broker's port on this machine.
#[derive(Debug)]
pub struct BrokerProcess {
    process: procfs::process::Process,
    command: String,
}

/// One reading of a process: CPU seconds so far and resident bytes.
struct Reading {
    at: Instant,
    cpu_s: f64,
    rss: u64,
}

impl BrokerProcess {
    /// The local process behind `url` (`redis://127.0.0.1:6379/0`, `amqp://...`), if
    /// the broker is on this machine and its listener can be found.
    pub fn find(url: &str) -> Option<Self> {
        let (host, port) = host_port(url)?;
        if !is_local(&host) {
            return None;
        }
        let pid = listener_pid(port)?;
        let process = procfs::process::Process::new(pid).ok()?;
        let command = process.stat().ok()?.comm;
        Some(Self { process, command })
    }

    fn read(&self) -> Option<Reading> {
        let stat = self.process.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        Some(Reading {
            at: Instant::now(),
            cpu_s: (stat.utime + stat.stime) as f64 / ticks,
            rss: stat.rss * procfs::page_size(),
        })
    }
}

/// Runs `work`, sampling `process` (if any) meanwhile; what it used, if it could be
/// read from start to end.
pub async fn watch<T>(
    process: Option<&BrokerProcess>,
    work: impl Future<Output = T>,
) -> (T, Option<ProcessUsage>) {
    let Some(process) = process else {
        return (work.await, None);
    };
    let Some(first) = process.read() else {
        return (work.await, None);
    };
    let mut usage = ProcessUsage {
        pid: process.process.pid(),
        command: process.command.clone(),
        rss_mib_max: mib(first.rss),
        ..ProcessUsage::default()
    };
    let machine_start = machine_busy_s();
    let mut last = first;
    let (start, start_cpu) = (last.at, last.cpu_s);
    // The first sample one interval in: a share over a sliver of time would be
    // all rounding (the kernel counts CPU time in ticks of 10 ms or so).
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    let out = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = ticks.tick() => {
                let Some(now) = process.read() else { return (work.await, None) };
                usage.cpu_cores_peak = usage.cpu_cores_peak.max(share(&last, &now));
                usage.rss_mib_max = usage.rss_mib_max.max(mib(now.rss));
                last = now;
            }
        }
    };
    let Some(end) = process.read() else {
        return (out, None);
    };
    usage.rss_mib_max = usage.rss_mib_max.max(mib(end.rss));
    let wall = end.at.duration_since(start).as_secs_f64();
    if wall > 0.0 {
        usage.cpu_cores = (end.cpu_s - start_cpu) / wall;
        if let Some(((before, _), (after, cores))) = machine_start.zip(machine_busy_s()) {
            usage.machine_busy_cores = Some((after - before) / wall);
            usage.machine_cores = cores;
        }
    }
    // A run shorter than one interval has no sample of its own, and the tail after
    // the last sample is in the average only: the busiest interval is never below it.
    usage.cpu_cores_peak = usage.cpu_cores_peak.max(usage.cpu_cores);
    (out, Some(usage))
}

/// The CPU seconds every core of this machine has spent busy since boot (user,
/// nice, system, interrupts; not idle, waiting for the disk, or taken by the host),
/// and how many cores `/proc/stat` counts them over (all the machine's, whatever
/// share of them this process may use).
fn machine_busy_s() -> Option<(f64, usize)> {
    use procfs::CurrentSI;
    let stats = procfs::KernelStats::current().ok()?;
    let total = stats.total;
    let ticks = total.user
        + total.nice
        + total.system
        + total.irq.unwrap_or(0)
        + total.softirq.unwrap_or(0);
    let busy = ticks as f64 / procfs::ticks_per_second() as f64;
    Some((busy, stats.cpu_time.len()))
}

/// CPU share between two readings.
fn share(before: &Reading, after: &Reading) -> f64 {
    let wall = after.at.duration_since(before.at).as_secs_f64();
    if wall > 0.0 {
        (after.cpu_s - before.cpu_s) / wall
    } else {
        0.0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The process holding the listening socket of `port` (IPv4 or IPv6).
pub(super) fn listener_pid(port: u16) -> Option<i32> {
    let listening =
        |entries: procfs::ProcResult<Vec<procfs::net::TcpNetEntry>>| {
            entries.ok().into_iter().flatten().find(|e| {
                e.state == procfs::net::TcpState::Listen && e.local_address.port() == port
            })
        };
    let inode = listening(procfs::net::tcp())
        .or_else(|| listening(procfs::net::tcp6()))?
        .inode;
    procfs::process::all_processes()
        .ok()?
        .flatten()
        .find_map(|p| {
            let holds =
                p.fd().ok()?.flatten().any(
                    |fd| matches!(fd.target, procfs::process::FDTarget::Socket(i) if i == inode),
                );
            holds.then(|| p.pid())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener of this very process is found, and watching it while it works
    /// measures its CPU.
    #[tokio::test]
    async fn the_process_behind_a_port_is_found_and_measured() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let found = BrokerProcess::find(&format!("redis://127.0.0.1:{port}/0"))
            .expect("this process listens on the port");
        assert_eq!(found.process.pid(), std::process::id() as i32);
        let busy = async {
            let until = Instant::now() + Duration::from_millis(600);
            let mut x = 0u64;
            while Instant::now() < until {
                x = x.wrapping_mul(31).wrapping_add(7);
                tokio::task::yield_now().await;
            }
            x
        };
        let (_, usage) = watch(Some(&found), busy).await;
        let usage = usage.expect("figures");
        // Busy for 600 ms: some CPU time, however loaded the machine.
        assert!(usage.cpu_cores > 0.0, "{usage:?}");
        assert!(usage.rss_mib_max > 1.0, "{usage:?}");
        // The machine was at least as busy as this process, and no busier than all
        // its cores (a few ticks of rounding either way).
        let machine = usage.machine_busy_cores.expect("/proc/stat is read");
        assert!(machine + 0.1 >= usage.cpu_cores, "{usage:?}");
        assert!(machine <= usage.machine_cores as f64 + 0.1, "{usage:?}");
        assert!(BrokerProcess::find("redis://10.255.255.1:1/0").is_none());
    }
}
