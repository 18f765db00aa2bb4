//! A PostgreSQL cluster of a test's own (`initdb` into a temporary folder,
//! run as the `postgres` user when the test runs as root), on a free port,
//! so it can be restarted under load without touching the shared server.
#![allow(dead_code)] // Each user needs its own part of this file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the server's programs are (Debian's layout), unless `PG_BIN` says.
fn program(name: &str) -> PathBuf {
    let bin = std::env::var_os("PG_BIN").map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), PathBuf::from);
    bin.join(name)
}

/// Runs a server program as the `postgres` user (PostgreSQL refuses root).
fn run(name: &str, args: &[&str]) {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program(name));
        command
    } else {
        Command::new(program(name))
    };
    // Its progress lines are noise in a test's output; failures are told by the status.
    let status =
        command.args(args).stdout(Stdio::null()).status().unwrap_or_else(|error| panic!("{name} runs: {error}"));
    assert!(status.success(), "{name} {args:?} failed: {status}");
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// A private PostgreSQL server, stopped and removed when dropped.
pub struct PrivatePostgres {
    port: u16,
    dir: PathBuf,
}

impl PrivatePostgres {
    /// Creates and starts a cluster with trust authentication.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("orderly-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let chowned = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().unwrap();
            assert!(chowned.success(), "the folder is given to postgres");
        }
        let data = dir.join("data");
        run("initdb", &["-D", path(&data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        let server = Self { port, dir };
        server.ctl(&["start"]);
        server
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Restarts it the way an operator does (`pg_ctl restart -m fast`):
    /// every session is ended with `57P01 admin_shutdown`.
    pub fn restart(&self) {
        self.ctl(&["-m", "fast", "restart"]);
    }

    fn ctl(&self, action: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            path(&self.dir)
        );
        let (data, log) = (self.dir.join("data"), self.dir.join("server.log"));
        let mut args = vec!["-D", path(&data), "-l", path(&log), "-w", "-o", &options];
        args.extend_from_slice(action);
        run("pg_ctl", &args);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let stop = ["-D", path(&data), "-m", "immediate", "-w", "stop"];
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program("pg_ctl"));
            command
        } else {
            Command::new(program("pg_ctl"))
        };
        let _ = command.args(stop).stdout(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
