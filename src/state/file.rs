//! The file backend: one JSON record per environment in `<stateDir>/envs/<env>.json`, written
//! atomically (temporary file, fsync, rename, fsync of the folder), so a crash at any point
//! leaves either the old record or the new one, never half of one.

use super::lock::{self, EnvironmentLock, Holder, Wait};
use super::{EnvironmentState, RECORD_VERSION};
use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(state_dir: &Path) -> Self {
        FileStore {
            dir: state_dir.join("envs"),
        }
    }

    pub fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }

    fn path(&self, env: &str) -> PathBuf {
        self.dir.join(format!("{env}.json"))
    }

    /// The environment's record; none yet is a new one.
    pub fn load(&self, env: &str) -> Result<EnvironmentState> {
        let path = self.path(env);
        let unreadable = |message: String| {
            Error::io(
                format!("{} is unreadable", path.display()),
                std::io::Error::other(message),
            )
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut state: EnvironmentState =
                    serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
                if state.version > RECORD_VERSION {
                    return Err(unreadable(format!(
                        "record version {} is newer than this sprout's ({RECORD_VERSION}); upgrade sprout",
                        state.version
                    )));
                }
                // Older layouts read as this one (every added field has a default).
                state.version = RECORD_VERSION;
                Ok(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EnvironmentState::new(env)),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
        }
    }

    /// Names of the environments that have a record, sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("cannot read {}", self.dir.display()), e)),
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    /// Writes the record. Callers hold the environment's lock (see [`FileStore::lock`]).
    pub fn save(&self, state: &EnvironmentState) -> Result<()> {
        let io = |what: &str, e| Error::io(format!("{what} {}", self.dir.display()), e);
        std::fs::create_dir_all(&self.dir).map_err(|e| io("cannot create", e))?;
        let mut file =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| io("cannot write into", e))?;
        let mut record = state.clone();
        record.version = RECORD_VERSION;
        // One write, not one per JSON token.
        let text = serde_json::to_vec_pretty(&record)
            .map_err(|e| io("cannot write into", std::io::Error::other(e)))?;
        file.write_all(&text)
            .and_then(|_| file.flush())
            .and_then(|_| file.as_file().sync_all())
            .map_err(|e| io("cannot write into", e))?;
        file.persist(self.path(&state.environment))
            .map_err(|e| io("cannot write into", e.error))?;
        // The rename is durable only once the folder itself is on disk.
        std::fs::File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io("cannot sync", e))?;
        Ok(())
    }

    pub fn remove(&self, env: &str) -> Result<()> {
        for path in [self.path(env), lock::lock_path(&self.dir, env)] {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("cannot remove {}", path.display()), e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Takes the environment's lock for `command`, waiting as `wait` says.
    pub fn lock(&self, env: &str, command: &str, wait: Wait) -> Result<EnvironmentLock> {
        lock::acquire(&self.dir, env, &Holder::me(command), wait).map(EnvironmentLock::File)
    }

    /// Whether a running operation holds the environment's lock.
    pub fn is_locked(&self, env: &str) -> bool {
        lock::is_held(&self.dir, env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Phase;

    #[test]
    fn records_of_the_first_layout_are_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        std::fs::create_dir_all(dir.path().join("envs")).unwrap();
        std::fs::write(
            dir.path().join("envs/dev.json"),
            r#"{"environment":"dev","phase":"synced","createdAt":"2026-11-25T08:00:00Z","syncedAt":"2026-11-25T08:01:00Z","counts":{"created":1,"configured":0,"unchanged":0,"pruned":0}}"#,
        )
        .unwrap();
        let state = store.load("dev").unwrap();
        assert_eq!(state.phase, Phase::Synced);
        assert_eq!(
            state.timeline.created_at.unwrap().to_rfc3339(),
            "2026-11-25T08:00:00+00:00"
        );
        store.save(&state).unwrap();
        let text = std::fs::read_to_string(dir.path().join("envs/dev.json")).unwrap();
        assert!(
            text.contains(&format!("\"version\": {RECORD_VERSION}")),
            "{text}"
        );
    }

    #[test]
    fn a_record_of_a_newer_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("envs")).unwrap();
        std::fs::write(
            dir.path().join("envs/dev.json"),
            r#"{"version":99,"environment":"dev","phase":"synced"}"#,
        )
        .unwrap();
        let error = FileStore::new(dir.path()).load("dev").unwrap_err();
        assert!(error.to_string().contains("upgrade sprout"), "{error}");
    }
}
