//! One lock per environment, held across a whole operation (provision and sync in one hold).
//!
//! Locally it is an OS file lock (`<stateDir>/envs/<env>.lock`): the kernel releases it when the
//! process dies, so `kill -9` never leaves a stale lock. The file also names the holder (command,
//! pid, host, since) so that a run that gives up can say who it waited for. Environments on a
//! cluster others reach are locked there as well (see [`super::lease`]). With the cluster state
//! backend the lock is a Lease in the management namespace instead (see [`super::kube`]), so a
//! laptop and the daemon in the cluster see each other.

use crate::error::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Who holds a lock, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub command: String,
    pub pid: u32,
    pub host: String,
    pub since: DateTime<Utc>,
    /// The holder's executable, to tell a live holder from a reused pid (absent in locks
    /// written by older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
}

impl Holder {
    /// This process, running `command`.
    pub fn me(command: &str) -> Self {
        Holder {
            command: command.to_string(),
            pid: std::process::id(),
            host: hostname(),
            since: Utc::now(),
            exe: std::env::current_exe()
                .ok()
                .map(|p| p.to_string_lossy().into_owned()),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`sprout {}` (pid {} on {}, since {})",
            self.command,
            self.pid,
            self.host,
            self.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Held while an environment is being changed; released when dropped.
#[derive(Debug)]
pub enum EnvironmentLock {
    /// The file backend's lock: the file closes.
    File(FileLock),
    /// The cluster backend's Lease in the management namespace: given up at once.
    Cluster(Box<super::kube::ClusterLock>),
}

/// An OS lock on `<env>.lock`, held until dropped (or the process dies).
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
}

/// How long to wait for a lock another run holds.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Give up at once (what `gc` does: it skips a busy environment).
    No,
    Upto(Duration),
}

pub(crate) fn lock_path(dir: &Path, env: &str) -> PathBuf {
    dir.join(format!("{env}.lock"))
}

/// Takes `env`'s lock in `dir` for `holder`, waiting as `wait` says; `Error::Busy` names the
/// holder when it gives up.
pub(crate) fn acquire(dir: &Path, env: &str, holder: &Holder, wait: Wait) -> Result<FileLock> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let path = lock_path(dir, env);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let deadline = match wait {
        Wait::No => Instant::now(),
        Wait::Upto(limit) => Instant::now() + limit,
    };
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Busy {
                    env: env.to_string(),
                    holder: read_holder(&mut file).map(|h| h.to_string()),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("cannot lock {}", path.display()), e));
            }
        }
    }
    let text = serde_json::to_string(holder).expect("a holder serializes");
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(text.as_bytes()))
        .and_then(|_| file.flush());
    written.map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok(FileLock { _file: file })
}

/// Whether some process holds `env`'s lock now (without taking it for longer than a check).
pub(crate) fn is_held(dir: &Path, env: &str) -> bool {
    let Ok(file) = std::fs::File::open(lock_path(dir, env)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

fn read_holder(file: &mut std::fs::File) -> Option<Holder> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_then_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "dev", &Holder::me("up dev"), Wait::No).unwrap();
        assert!(is_held(dir.path(), "dev"));
        let started = Instant::now();
        let error = acquire(
            dir.path(),
            "dev",
            &Holder::me("gc"),
            Wait::Upto(Duration::from_millis(300)),
        )
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(error.contains("`sprout up dev` (pid"), "{error}");
        drop(first);
        assert!(!is_held(dir.path(), "dev"));
        acquire(dir.path(), "dev", &Holder::me("gc"), Wait::No).unwrap();
    }

    #[test]
    fn a_waiting_taker_gets_the_lock_when_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "dev", &Holder::me("up"), Wait::No).unwrap();
        let path = dir.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            acquire(
                &path,
                "dev",
                &Holder::me("sync"),
                Wait::Upto(Duration::from_secs(5)),
            )
            .map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
        waiter.join().unwrap().unwrap();
    }
}
