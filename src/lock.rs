//! Advisory OS file locks: one writer per lake source and per write-ahead
//! log directory. The kernel releases a lock when its process dies, so a
//! crash never leaves a stale one; the file holds the holder's pid for the
//! message the next process prints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::Path;

/// Take the lock on `path` (created if needed): `Ok(Ok(file))` while it is
/// held, `Ok(Err(holder))` when another process holds it.
pub fn try_lock(path: &Path) -> io::Result<Result<File, String>> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0)?;
            f.write_all(format!("pid {}", std::process::id()).as_bytes())?;
            Ok(Ok(f))
        }
        Err(TryLockError::WouldBlock) => Ok(Err(
            std::fs::read_to_string(path).unwrap_or_else(|_| "unknown".into())
        )),
        Err(TryLockError::Error(e)) => Err(e),
    }
}
