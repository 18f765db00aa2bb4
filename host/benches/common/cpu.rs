//! The CPU time a runtime's threads spend, read from Linux's per-thread
//! scheduler statistics: what the server itself costs per request, apart
//! from the load generator, PostgreSQL and Redis that share the machine.
#![allow(dead_code)] // Each benchmark uses its own part of this folder.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Collects the threads of a runtime as they start (see [`Self::register`]).
#[derive(Clone, Default)]
pub struct ThreadClock {
    threads: Arc<Mutex<Vec<u32>>>,
}

impl ThreadClock {
    /// For `Builder::on_thread_start`: counts the calling thread in.
    pub fn register(&self) -> impl Fn() + Send + Sync + 'static {
        let threads = self.threads.clone();
        move || {
            if let Some(id) = current_thread() {
                threads.lock().unwrap().push(id);
            }
        }
    }

    /// CPU time the registered threads have used so far (threads that have
    /// exited are not counted: keep the runtime's threads alive).
    pub fn used(&self) -> Duration {
        let threads = self.threads.lock().unwrap();
        Duration::from_nanos(threads.iter().filter_map(|&id| on_cpu(id)).sum())
    }
}

/// The calling thread's id, from `/proc/thread-self` (`<pid>/task/<tid>`).
fn current_thread() -> Option<u32> {
    std::fs::read_link("/proc/thread-self").ok()?.file_name()?.to_str()?.parse().ok()
}

/// Nanoseconds thread `id` of this process has run (first field of schedstat).
fn on_cpu(id: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/self/task/{id}/schedstat")).ok()?.split_whitespace().next()?.parse().ok()
}

/// CPU time (user and system, every thread) process `pid` has used so far,
/// from `/proc/<pid>/stat` (ticks of Linux's fixed 100 Hz user clock).
pub fn process_cpu(pid: u32) -> Duration {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| ticks(&stat)).unwrap_or_default()
}

/// CPU time every live process named `name` (e.g. `postgres`: the server
/// and its backends) has used so far. A process that exits takes its share
/// with it: measure across windows where the same ones live.
pub fn named_cpu(name: &str) -> Duration {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Duration::ZERO };
    entries
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .filter(|stat| command_of(stat) == Some(name))
        .filter_map(|stat| ticks(&stat))
        .sum()
}

/// The command name in a `stat` line (between the parentheses).
fn command_of(stat: &str) -> Option<&str> {
    Some(&stat[stat.find('(')? + 1..stat.rfind(')')?])
}

/// utime + stime of a `stat` line: the 14th and 15th fields, counted after
/// the command name (which may hold spaces).
fn ticks(stat: &str) -> Option<Duration> {
    let mut fields = stat[stat.rfind(')')? + 2..].split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}
