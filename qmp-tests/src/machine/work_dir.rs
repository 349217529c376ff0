use std::{fs, os::unix::fs::PermissionsExt, path::Path, sync::Arc};

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::janitor::Janitor;

/// A private temp dir under the system temp dir (short paths matter for
/// sockets), removed on drop.
pub(super) struct WorkDir {
    dir: Option<TempDir>,
    janitor: Option<Arc<Janitor>>,
}

impl WorkDir {
    pub(super) fn create(janitor: Option<Arc<Janitor>>) -> Result<WorkDir> {
        let parent = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix("qmp-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .with_context(|| format!("creating a temp dir in {}", parent.display()))?;
        if let Some(janitor) = &janitor {
            janitor.register_dir(dir.path());
        }
        Ok(WorkDir { dir: Some(dir), janitor })
    }

    pub(super) fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let path = dir.path().to_path_buf();
        let _ = dir.close();
        if let Some(janitor) = &self.janitor {
            janitor.unregister_dir(&path);
        }
    }
}
