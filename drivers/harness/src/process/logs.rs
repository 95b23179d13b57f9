//! A process's log file: what it printed, headed by the command line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Opens (appending) the log at `path` in `dir`, and writes the spawn line.
pub(crate) fn open(dir: &Path, path: &Path, command: &str) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "# testbed: {} spawn: {command}", timestamp())?;
    Ok(file)
}

/// The last `n` lines of the file at `path` (empty if unreadable).
pub fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Wall-clock time as `seconds.millis` since the Unix epoch.
pub fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}
