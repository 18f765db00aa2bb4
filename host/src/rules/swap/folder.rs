//! The components folder: `<slot>.wasm`, its optional `<slot>.toml`, and its
//! golden fixtures in `<slot>.fixtures/`. Files are replaced by writing a
//! temporary file beside them and renaming it over, so a reader never sees
//! half a file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::runtime::{LoadedComponent, Slot};

/// `<slot>.wasm` and `<slot>.toml` in `dir`.
fn files(dir: &Path, slot: Slot) -> (PathBuf, PathBuf) {
    crate::runtime::slot::slot_files(dir, slot)
}

/// The slot's golden fixtures: `<slot>.fixtures/` in `dir`.
pub fn fixtures_dir(dir: &Path, slot: Slot) -> PathBuf {
    dir.join(format!("{}.fixtures", slot.name()))
}

/// Which slot a path in the folder belongs to (its `.wasm` or `.toml`).
pub fn slot_of(path: &Path) -> Option<Slot> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".wasm").or_else(|| name.strip_suffix(".toml"))?;
    stem.parse().ok()
}

async fn read_optional(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The slot's `.wasm` and `.toml` text, if there is a `.wasm`.
pub async fn read_candidate(dir: &Path, slot: Slot) -> std::io::Result<Option<(Vec<u8>, Option<String>)>> {
    let (wasm_path, toml_path) = files(dir, slot);
    let Some(wasm) = read_optional(&wasm_path).await? else { return Ok(None) };
    let config = read_optional(&toml_path).await?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    Ok(Some((wasm, config)))
}

/// Like [`read_candidate`], but `None` while either file was modified less
/// than `settle` ago (a writer may still be at it).
pub async fn read_settled_candidate(
    dir: &Path,
    slot: Slot,
    settle: Duration,
) -> std::io::Result<Option<(Vec<u8>, Option<String>)>> {
    let (wasm_path, toml_path) = files(dir, slot);
    for path in [&wasm_path, &toml_path] {
        let modified = match tokio::fs::metadata(path).await {
            Ok(metadata) => metadata.modified()?,
            Err(error) if error.kind() == ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        if SystemTime::now().duration_since(modified).unwrap_or_default() < settle {
            return Ok(None);
        }
    }
    read_candidate(dir, slot).await
}

/// Replaces `path` with `bytes`, atomically.
async fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&temporary, bytes).await?;
    tokio::fs::rename(&temporary, path).await
}

/// Replaces the slot's fixtures folder with `files` (removes it for `None`):
/// written beside, then renamed into place.
async fn replace_fixtures(dir: &Path, slot: Slot, files: Option<&[(String, Vec<u8>)]>) -> std::io::Result<()> {
    let target = fixtures_dir(dir, slot);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let old = target.with_extension(format!("fixtures.old-{suffix}"));
    let moved_away = match tokio::fs::rename(&target, &old).await {
        Ok(()) => true,
        Err(error) if error.kind() == ErrorKind::NotFound => false,
        Err(error) => return Err(error),
    };
    if let Some(files) = files {
        let fresh = target.with_extension(format!("fixtures.tmp-{suffix}"));
        tokio::fs::create_dir(&fresh).await?;
        for (name, bytes) in files {
            tokio::fs::write(fresh.join(name), bytes).await?;
        }
        tokio::fs::rename(&fresh, &target).await?;
    }
    if moved_away {
        tokio::fs::remove_dir_all(&old).await?;
    }
    Ok(())
}

/// Makes the folder show `component`: its golden fixtures (the ones it
/// passed), its `.toml` (removed when it had none) and its `.wasm`, in the
/// order a drop uses, so a restart gates and loads the same version.
/// Failures are logged; the version serves either way.
pub async fn write_back(dir: &Path, component: &LoadedComponent) {
    let (wasm_path, toml_path) = files(dir, component.slot);
    let fixtures = replace_fixtures(dir, component.slot, component.fixture_files.as_deref()).await;
    let config = match (fixtures, &component.config_text) {
        (Err(error), _) => Err(error),
        (Ok(()), config_text) => match config_text {
            Some(text) => replace(&toml_path, text.as_bytes()).await,
            None => match tokio::fs::remove_file(&toml_path).await {
                Err(error) if error.kind() != ErrorKind::NotFound => Err(error),
                _ => Ok(()),
            },
        },
    };
    let written = match config {
        Ok(()) => replace(&wasm_path, &component.wasm).await,
        Err(error) => Err(error),
    };
    if let Err(error) = written {
        tracing::warn!(slot = component.slot.name(), dir = %dir.display(), %error,
            "cannot write the serving version back to the components folder; a restart would load what is there");
    }
}

/// Renames a rejected `<slot>.wasm` (and its `.toml` and fixtures) to
/// `<slot>.rejected.*`, so what the author dropped is kept for inspection
/// while the folder gets the serving version back.
pub async fn set_aside_rejected(dir: &Path, slot: Slot) {
    let (wasm_path, toml_path) = files(dir, slot);
    let rejected_fixtures = dir.join(format!("{}.rejected.fixtures", slot.name()));
    if let Err(error) = tokio::fs::remove_dir_all(&rejected_fixtures).await
        && error.kind() != ErrorKind::NotFound
    {
        tracing::warn!(slot = slot.name(), %error, "cannot clear the fixtures set aside earlier");
    }
    for (from, extension) in [(wasm_path, "wasm"), (toml_path, "toml"), (fixtures_dir(dir, slot), "fixtures")] {
        let to = dir.join(format!("{}.rejected.{extension}", slot.name()));
        match tokio::fs::rename(&from, &to).await {
            Ok(()) => tracing::info!(slot = slot.name(), file = %to.display(), "rejected file set aside"),
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(slot = slot.name(), %error, "cannot set a rejected file aside"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_files_are_recognised() {
        assert_eq!(slot_of(Path::new("/c/pricing.wasm")), Some(Slot::Pricing));
        assert_eq!(slot_of(Path::new("fulfillment.toml")), Some(Slot::Fulfillment));
        assert_eq!(slot_of(Path::new("pricing.rejected.wasm")), None);
        assert_eq!(slot_of(Path::new("pricing.wasm.tmp-1")), None);
        assert_eq!(slot_of(Path::new("shipping.wasm")), None);
    }
}
