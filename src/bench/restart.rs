//! Restarting a broker's server mid-run: the process listening on the broker's port
//! on this machine is asked to stop (SIGTERM, SIGKILL if it has not gone within
//! [`STOP_WAIT`]) and started again as it was: the same program, arguments, working
//! folder, environment, user and group, as the kernel tells them under /proc. The
//! bench restarts only what it can start again faithfully; a broker on another host
//! or a process it may not look into is left alone, and the report says why.
//!
//! Redis rewrites its own command line (its process title reads
//! `redis-server 127.0.0.1:6379`), so its arguments are rebuilt from what the server
//! says of its settings (`CONFIG GET`): address, persistence, files, password and
//! memory limits.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::process::listener_pid;
use crate::url::{host_port, is_local};

/// How long a broker may take to stop before it is killed.
pub const STOP_WAIT: Duration = Duration::from_secs(60);
/// How long a broker may take to accept connections again.
pub const START_WAIT: Duration = Duration::from_secs(180);
/// How often the stop and the start are looked at.
const POLL: Duration = Duration::from_millis(20);
/// The Redis settings a restarted server gets back.
const REDIS_SETTINGS: [&str; 14] = [
    "bind",
    "port",
    "save",
    "appendonly",
    "appendfsync",
    "dir",
    "dbfilename",
    "logfile",
    "requirepass",
    "databases",
    "maxmemory",
    "maxmemory-policy",
    "protected-mode",
    "notify-keyspace-events",
];

/// How a process was started, as the kernel tells it.
#[derive(Debug)]
struct Launch {
    exe: PathBuf,
    argv: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    uid: u32,
    gid: u32,
}

/// A broker that was restarted.
#[derive(Debug)]
pub struct Restarted {
    /// The old process and the new one.
    pub pids: (i32, i32),
    /// How it stopped: `SIGTERM`, or `SIGKILL` after [`STOP_WAIT`].
    pub stopped_by: &'static str,
    /// From the signal to the port accepting connections again.
    pub down: Duration,
    /// When the port accepted connections again.
    pub up_at: Instant,
    /// Where the new process's output goes.
    pub log: PathBuf,
}

/// Whether the broker at `url` can be restarted by this program, and if not why.
pub fn can_restart(url: &str) -> Result<(), String> {
    locate(url).map(drop)
}

fn locate(url: &str) -> Result<(String, u16, i32), String> {
    let (host, port) = host_port(url).ok_or("its URL names no TCP address")?;
    if !is_local(&host) {
        return Err(format!("it runs on {host}, not on this machine"));
    }
    let pid = listener_pid(port).ok_or_else(|| {
        format!("no process of this machine that this user may see listens on port {port}")
    })?;
    Ok((host, port, pid))
}

/// Stops the broker at `url` and starts it again; returns once its port accepts
/// connections.
pub async fn restart(url: &str) -> Result<Restarted, String> {
    let (host, port, pid) = locate(url)?;
    let mut launch = read_launch(pid)?;
    if rewrites_its_title(&launch) {
        launch.argv = redis_argv(url).await?;
    }
    let log = std::env::temp_dir().join(format!("superhero-bench-restarted-{port}.log"));
    let began = Instant::now();
    let stopped_by = stop(pid).await?;
    let new = start(&launch, &log)?;
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let deadline = began + START_WAIT;
    loop {
        if tokio::net::TcpStream::connect(&address).await.is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "it did not accept connections within {START_WAIT:?} of its restart (see {})",
                log.display()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let up_at = Instant::now();
    Ok(Restarted {
        pids: (pid, new),
        stopped_by,
        down: up_at - began,
        up_at,
        log,
    })
}

fn read_launch(pid: i32) -> Result<Launch, String> {
    let cannot =
        |what: &str, e: procfs::ProcError| format!("cannot read the {what} of process {pid}: {e}");
    let p = procfs::process::Process::new(pid).map_err(|e| cannot("status", e))?;
    let argv: Vec<OsString> = p
        .cmdline()
        .map_err(|e| cannot("command line", e))?
        .into_iter()
        .map(OsString::from)
        .collect();
    if argv.is_empty() {
        return Err(format!("process {pid} shows no command line"));
    }
    let status = p.status().map_err(|e| cannot("status", e))?;
    Ok(Launch {
        exe: p.exe().map_err(|e| cannot("program", e))?,
        cwd: p.cwd().map_err(|e| cannot("working folder", e))?,
        env: p
            .environ()
            .map_err(|e| cannot("environment", e))?
            .into_iter()
            .collect(),
        argv,
        uid: status.ruid,
        gid: status.rgid,
    })
}

/// Redis's command line, rewritten into a title: one word-spaced string.
fn rewrites_its_title(launch: &Launch) -> bool {
    let first = launch.argv[0].to_string_lossy();
    launch.argv.len() == 1 && first.starts_with("redis-server ")
}

/// Redis's arguments, from its settings (relative paths among them are from its
/// working folder, which stays).
async fn redis_argv(url: &str) -> Result<Vec<OsString>, String> {
    let plain =
        url.replacen("redis-streams://", "redis://", 1)
            .replacen("redis-fanout://", "redis://", 1);
    let client = crate::redis_client::client(&plain)?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot ask Redis for its settings: {e}"))?;
    let mut argv = vec![OsString::from("redis-server")];
    for key in REDIS_SETTINGS {
        let pairs: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("cannot ask Redis for its {key}: {e}"))?;
        if let [_, value] = pairs.as_slice() {
            argv.push(format!("--{key}").into());
            argv.push(value.into());
        }
    }
    Ok(argv)
}

/// Asks `pid` to stop, then makes it; how it went.
async fn stop(pid: i32) -> Result<&'static str, String> {
    let target = rustix::process::Pid::from_raw(pid).ok_or("process 0")?;
    rustix::process::kill_process(target, rustix::process::Signal::TERM)
        .map_err(|e| format!("cannot stop process {pid}: {e}"))?;
    let asked = Instant::now();
    let mut by = "SIGTERM";
    while !gone(pid) {
        if by == "SIGTERM" && asked.elapsed() >= STOP_WAIT {
            let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
            by = "SIGKILL";
        } else if asked.elapsed() >= STOP_WAIT * 2 {
            return Err(format!("process {pid} did not go even when killed"));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(by)
}

/// Whether `pid` has exited (or is a zombie no one reaped).
fn gone(pid: i32) -> bool {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .map_or(true, |s| s.state == 'Z' || s.state == 'X')
}

/// Starts the process again, in a process group of its own so that a Ctrl-C of the
/// bench does not reach it; its pid.
fn start(launch: &Launch, log: &PathBuf) -> Result<i32, String> {
    let out =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log.display()))?;
    let mut command = std::process::Command::new(&launch.exe);
    command
        .arg0(&launch.argv[0])
        .args(&launch.argv[1..])
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    // Under the user it ran as: only root may choose.
    if rustix::process::geteuid().is_root() {
        command.uid(launch.uid).gid(launch.gid);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {} again: {e}", launch.exe.display()))?;
    let pid = child.id() as i32;
    // Reaped when it exits (a later restart stops it too), so no zombie is left
    // behind while the bench runs on.
    std::thread::spawn(move || child.wait());
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_title_is_told_from_a_command_line() {
        let launch = |argv: &[&str]| Launch {
            exe: "/usr/bin/x".into(),
            argv: argv.iter().map(OsString::from).collect(),
            cwd: "/".into(),
            env: Vec::new(),
            uid: 0,
            gid: 0,
        };
        assert!(rewrites_its_title(&launch(&[
            "redis-server 127.0.0.1:6379"
        ])));
        assert!(!rewrites_its_title(&launch(&[
            "nats-server",
            "-js",
            "-p",
            "4222"
        ])));
        assert!(!rewrites_its_title(&launch(&[
            "redis-server",
            "--port",
            "1"
        ])));
    }

    #[test]
    fn remote_brokers_are_left_alone() {
        let e = can_restart("nats://example.org:4222").unwrap_err();
        assert!(e.contains("example.org"), "{e}");
        assert!(can_restart("memory://").is_err());
    }
}
