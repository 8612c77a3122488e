//! Native vs web differences in one place: where asset files live and how they are read.

use std::path::PathBuf;

/// Where `assets/` is: `SAMEMATH_ASSETS` if set, else next to the executable, else in the
/// current directory (a checkout), else the source tree this binary was built from.
pub fn assets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SAMEMATH_ASSETS") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("assets")))
        .filter(|d| d.is_dir())
    {
        return dir;
    }
    let here = PathBuf::from("assets");
    if here.join("meshes").is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// Read a text asset, with the path in the error so the UI can show it.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_asset_text(relative: &str) -> Result<String, String> {
    let path = assets_dir().join(relative);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// On the web the bundled meshes are compiled in (no file system).
#[cfg(target_arch = "wasm32")]
pub fn read_asset_text(relative: &str) -> Result<String, String> {
    match relative {
        "meshes/teapot.obj" => Ok(include_str!("../assets/meshes/teapot.obj").to_string()),
        "talk/serverless.ron" => Ok(include_str!("../assets/talk/serverless.ron").to_string()),
        other => Err(format!("{other}: not bundled in the web build")),
    }
}

/// Read a user-chosen file (`--mesh`, `--state`, `--talk`). A directory, FIFO or device is
/// refused by name before it is opened: opening a FIFO with no writer never returns, and the
/// app would never show its window.
pub fn read_user_text(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    /// Meshes and state files are far smaller; a bigger file is a mistake, not read whole.
    const MAX_USER_FILE: u64 = 64 << 20;
    let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| shown(&e))?;
    if meta.is_dir() {
        return Err(shown(&"is a directory, not a file"));
    }
    if !meta.is_file() {
        return Err(shown(&"is not a regular file (a FIFO, socket or device?)"));
    }
    let file = std::fs::File::open(path).map_err(|e| shown(&e))?;
    let mut text = String::new();
    file.take(MAX_USER_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| shown(&e))?;
    if text.len() as u64 > MAX_USER_FILE {
        return Err(shown(&format!(
            "larger than {} MiB, the most read",
            MAX_USER_FILE >> 20
        )));
    }
    Ok(text)
}

/// Resident memory of this process in MB (Linux: /proc/self/statm), for the demo loop's log.
pub fn resident_mb() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / 1e6)
}
