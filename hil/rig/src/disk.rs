//! Offline inspection of the virtual board's disk after a power cut: on a
//! copy of the raw ext4 image, replay the journal as the next boot's kernel
//! would (`e2fsck -E journal_only`), require a clean forced check
//! (`e2fsck -fn`), copy the SQLite databases out with `debugfs` (with their
//! `-wal`/`-journal` files, so SQLite recovers them exactly as the daemon
//! would) and run `PRAGMA integrity_check` on them.
//!
//! This module must never write to the board's own image: everything runs
//! on a copy, so the next boot recovers from what the power cut left.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why an inspection could not be completed or failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A tool could not be started.
    #[error("cannot run {tool}: {source} (install e2fsprogs)")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A tool reported a failure.
    #[error("{tool} failed ({status}): {output}")]
    Tool {
        /// The tool and its arguments.
        tool: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// The file system is not clean after journal recovery.
    #[error("file system not clean after journal recovery: {0}")]
    NotClean(String),
    /// A database is missing from the image.
    #[error("{path} is not on the board's disk")]
    Missing {
        /// The path on the board.
        path: String,
    },
    /// A database failed its integrity check.
    #[error("{path}: integrity_check says: {result}")]
    Corrupt {
        /// The path on the board.
        path: String,
        /// SQLite's report.
        result: String,
    },
    /// SQLite could not open or read the database.
    #[error("{path}: {source}")]
    Sqlite {
        /// The path on the board.
        path: String,
        /// The error.
        source: rusqlite::Error,
    },
    /// Local file handling failed.
    #[error("inspection i/o on {path}: {source}")]
    Io {
        /// The local path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What an inspection found (all clean, or it would be an error).
#[derive(Debug, Clone, Default)]
pub struct DiskReport {
    /// What journal recovery did (e2fsck's words).
    pub journal: String,
    /// Databases checked: (path on the board, files copied, integrity
    /// result).
    pub databases: Vec<(String, Vec<String>, String)>,
}

fn run(tool: &'static str, args: &[&str]) -> Result<(i32, String), DiskError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|source| DiskError::Spawn { tool, source })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text.trim().to_string()))
}

/// Inspects `image` using `work` for the copy; the copy is removed at the
/// end.
///
/// # Errors
/// [`DiskError`] if the file system is not clean after recovery, a database
/// is missing or fails its integrity check, or a tool fails.
pub fn inspect(image: &Path, work: &Path, sqlite: &[String]) -> Result<DiskReport, DiskError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DiskError::Io { path, source }
    };
    std::fs::create_dir_all(work).map_err(io(work))?;
    let copy = work.join("inspect.img");
    let copy_s = copy.to_string_lossy().into_owned();
    let (code, out) = run(
        "cp",
        &["--sparse=always", &image.to_string_lossy(), &copy_s],
    )?;
    if code != 0 {
        return Err(DiskError::Tool {
            tool: "cp".into(),
            status: code.to_string(),
            output: out,
        });
    }
    let result = inspect_copy(&copy, work, sqlite);
    let _ = std::fs::remove_file(&copy);
    result
}

fn inspect_copy(copy: &Path, work: &Path, sqlite: &[String]) -> Result<DiskReport, DiskError> {
    let copy_s = copy.to_string_lossy().into_owned();
    // 0: nothing to do, 1: the journal was replayed (expected after a cut).
    let (code, journal) = run("e2fsck", &["-y", "-E", "journal_only", &copy_s])?;
    if code > 1 {
        return Err(DiskError::Tool {
            tool: "e2fsck -E journal_only".into(),
            status: code.to_string(),
            output: journal,
        });
    }
    let (code, check) = run("e2fsck", &["-f", "-n", &copy_s])?;
    if code != 0 {
        return Err(DiskError::NotClean(check));
    }
    let mut report = DiskReport {
        journal: if journal.contains("recovering journal") {
            "journal replayed".into()
        } else {
            "journal clean".into()
        },
        databases: Vec::new(),
    };
    for (i, db) in sqlite.iter().enumerate() {
        let dir = work.join(format!("db{i}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| DiskError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = Path::new(db)
            .file_name()
            .map_or_else(|| "db".into(), |n| n.to_string_lossy().into_owned());
        let mut copied = Vec::new();
        for suffix in ["", "-wal", "-journal"] {
            let src = format!("{db}{suffix}");
            let dst = dir.join(format!("{name}{suffix}"));
            let (_, out) = run(
                "debugfs",
                &[
                    "-R",
                    &format!("dump -p {src} {}", dst.to_string_lossy()),
                    &copy_s,
                ],
            )?;
            let found = dst.exists() && !out.contains("not found");
            if !found {
                let _ = std::fs::remove_file(&dst);
                if suffix.is_empty() {
                    return Err(DiskError::Missing { path: db.clone() });
                }
                continue;
            }
            copied.push(format!("{name}{suffix}"));
        }
        let sq = |source| DiskError::Sqlite {
            path: db.clone(),
            source,
        };
        let conn = rusqlite::Connection::open(dir.join(&name)).map_err(sq)?;
        let mut stmt = conn.prepare("PRAGMA integrity_check").map_err(sq)?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(sq)?
            .collect::<Result<_, _>>()
            .map_err(sq)?;
        let result = rows.join("; ");
        if result != "ok" {
            return Err(DiskError::Corrupt {
                path: db.clone(),
                result,
            });
        }
        report.databases.push((db.clone(), copied, result));
        drop(stmt);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report)
}
