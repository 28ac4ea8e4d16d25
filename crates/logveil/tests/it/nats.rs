//! A throwaway NATS server with `JetStream` for the scale-out tests: `nats-server -js` on a
//! random loopback port with its store in a temporary directory, killed when dropped (also
//! when the test fails). No monitoring port (2.9 opens one only with `-m`/`--http_port`).
//!
//! Needs `nats-server` on `PATH` or in `/usr/sbin` (Debian's package `nats-server`,
//! installed by `scripts/setup-nats`). Without it [`NatsServer::start`] returns `None` after
//! a notice, except under CI (`CI` set and non-empty), where the test fails.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server -js`; its store and log live in a temporary directory removed
/// after the server is killed.
pub struct NatsServer {
    /// `nats://127.0.0.1:PORT`, for `--nats`.
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    child: Option<Child>,
    /// Holds `store/` (the `-sd` directory) and `server.log`.
    dir: tempfile::TempDir,
}

/// Whether tests must not skip what needs `nats-server` (`CI` set and non-empty).
fn required() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn find_bin() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

/// A loopback port that was free a moment ago (the server binds it right after).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// A running server, or `None` (after a notice on stderr) when `nats-server` is not
    /// installed and this is not CI.
    pub fn start() -> Option<NatsServer> {
        let Some(bin) = find_bin() else {
            assert!(
                !required(),
                "nats-server is not installed (not on PATH nor in /usr/sbin), and CI must run \
                 the scale-out tests: run scripts/setup-nats"
            );
            eprintln!(
                "notice: nats-server not installed (run scripts/setup-nats); skipping the scale-out test"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("logveil-nats-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        let mut server = NatsServer {
            url: String::new(),
            port: 0,
            bin,
            child: None,
            dir,
        };
        // A port taken between `free_port` and the server's bind: try another.
        for attempt in 0..5 {
            server.port = free_port();
            server.url = format!("nats://127.0.0.1:{}", server.port);
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) if attempt < 4 => eprintln!("nats-server: {e}; trying another port"),
                Err(e) => panic!("nats-server did not start: {e}\n{}", server.log()),
            }
        }
        unreachable!()
    }

    /// The `JetStream` store (`-sd`): `jetstream/$G/streams/<STREAM>/msgs/*.blk` hold the
    /// stored messages.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Everything the server logged, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The exact command line (for reports).
    pub fn command_line(&self) -> String {
        let mut line = self.bin.display().to_string();
        for arg in self.args() {
            line.push(' ');
            line.push_str(&arg);
        }
        line
    }

    /// SIGKILLs the server and starts it again on the same port with the same store. What
    /// `JetStream` acknowledged survives: it is in the block files (written before the ack; a
    /// killed process loses nothing the kernel already holds).
    pub fn restart(&mut self) {
        self.kill();
        let start = Instant::now();
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old socket may linger a moment.
                Err(e) if start.elapsed() < Duration::from_secs(10) => {
                    eprintln!("nats-server restart: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("nats-server did not restart: {e}\n{}", self.log()),
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn args(&self) -> Vec<String> {
        vec![
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-sd".into(),
            self.store_dir().display().to_string(),
        ]
    }

    /// Starts the server and waits until it greets a client with an `INFO` that offers
    /// `JetStream`.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = Command::new(&self.bin)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("exited at start ({status})"));
            }
            if let Some(info) = greeting(&addr) {
                if info.contains("\"jetstream\":true") {
                    self.child = Some(child);
                    return Ok(());
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no JetStream on {addr}: {info}"));
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{addr} did not accept connections within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The server's first protocol line (`INFO {...}`), if it accepts a connection.
fn greeting(addr: &SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.starts_with("INFO ").then_some(line)
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every file under the server's store, for scans of what it keeps.
pub fn store_files(store: &Path) -> Vec<PathBuf> {
    crate::util::files_under(store)
        .into_iter()
        .map(|f| store.join(f))
        .collect()
}

#[test]
fn fixture_serves_jetstream_on_loopback_and_restarts_on_the_same_port_and_store() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port));
    assert!(greeting(&addr).is_some_and(|i| i.contains("\"jetstream\":true")));
    assert!(
        server.url.starts_with("nats://127.0.0.1:"),
        "{}",
        server.url
    );
    assert!(
        server.command_line().contains(" -js -a 127.0.0.1 -p "),
        "{}",
        server.command_line()
    );
    let store = server.store_dir();
    assert!(store.join("jetstream").is_dir(), "{}", server.log());
    server.restart();
    assert!(greeting(&addr).is_some_and(|i| i.contains("\"jetstream\":true")));
    assert_eq!(server.store_dir(), store);
    drop(server);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "the server is gone once dropped"
    );
    assert!(!store.exists(), "the store is removed");
}
