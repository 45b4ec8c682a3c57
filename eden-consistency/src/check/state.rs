//! The incremental re-check's state file (see `docs/incremental.md`): one JSON document,
//! versioned, written atomically (a temporary file in the same folder, then a rename),
//! holding per database, table and scope (whole table or shard) what the last pass learned
//! in every region: the chunk bounds, each chunk's row count and digest, the time from
//! which changes must be looked for, the server's identity and the table's storage files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::source::merkle::ChunkSummary;

/// The state file's format version; another version is ignored (every table gets a full
/// pass and the file is rewritten).
pub(crate) const STATE_VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StateFile {
    /// [`STATE_VERSION`].
    pub(crate) version: u32,
    /// Entries by [`entry_key`].
    pub(crate) tables: BTreeMap<String, TableState>,
}

/// What one pass over one table left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableState {
    /// The database (as in the report).
    pub(crate) database: String,
    /// Schema-qualified table.
    pub(crate) table: String,
    /// `all`, or the shard (`I/N`) this entry is for.
    pub(crate) scope: String,
    /// Hash of everything the digests depend on: compared columns and their types, key,
    /// `--where`, shard range, mode, tracking column, regions, the tool's version.
    pub(crate) fingerprint: String,
    /// Chunk bounds as PostgreSQL prints them (chunk `i` holds `bounds[i-1] <= k < bounds[i]`);
    /// for chunks of a whole composite key, each bound a JSON array of its columns' texts.
    pub(crate) bounds: Vec<String>,
    /// Integer bounds evenly spaced, `lo + i·width` for `i < count`, stored as these three
    /// numbers instead of [`TableState::bounds`] (which is then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) even_bounds: Option<EvenBounds>,
    /// One entry per region, in the run's region order.
    pub(crate) regions: Vec<RegionState>,
    /// When the last full pass ran.
    pub(crate) last_full_pass_at: chrono::DateTime<chrono::Utc>,
    /// Incremental passes since then.
    pub(crate) runs_since_full: u32,
    /// When this entry was written.
    pub(crate) checked_at: chrono::DateTime<chrono::Utc>,
}

/// Evenly spaced integer bounds (see [`TableState::even_bounds`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct EvenBounds {
    pub(crate) lo: i64,
    pub(crate) width: i64,
    pub(crate) count: usize,
}

/// One region's part of a [`TableState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RegionState {
    /// The region's name.
    pub(crate) region: String,
    /// The server's system identifier, when readable.
    pub(crate) system_id: Option<String>,
    /// The table's storage file nodes (changed by TRUNCATE, VACUUM FULL, CLUSTER, restore).
    pub(crate) filenodes: String,
    /// Changes after the pass have a tracking value at least this (microseconds since the
    /// Unix epoch): the earliest of the snapshot's time, the oldest running write
    /// transaction's start and the newest tracking value then.
    pub(crate) changes_since_us: i64,
    /// Per chunk: row count (u64 LE) and digest (u128 LE), 24 bytes each, base64.
    pub(crate) summaries: String,
}

impl RegionState {
    /// Packs chunk summaries.
    pub(crate) fn pack(summaries: &[ChunkSummary]) -> String {
        let mut b = Vec::with_capacity(summaries.len() * 24);
        for s in summaries {
            b.extend_from_slice(&s.count.to_le_bytes());
            b.extend_from_slice(&s.hash.to_le_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// Unpacks [`RegionState::summaries`]; `None` when malformed.
    pub(crate) fn unpack(&self) -> Option<Vec<ChunkSummary>> {
        let b = base64::engine::general_purpose::STANDARD
            .decode(&self.summaries)
            .ok()?;
        if b.len() % 24 != 0 {
            return None;
        }
        Some(
            b.chunks_exact(24)
                .map(|c| ChunkSummary {
                    count: u64::from_le_bytes(c[..8].try_into().unwrap_or_default()),
                    hash: u128::from_le_bytes(c[8..].try_into().unwrap_or_default()),
                })
                .collect(),
        )
    }
}

/// The key of a table's entry.
pub(crate) fn entry_key(database: &str, table: &str, scope: &str) -> String {
    format!("{database}|{table}|{scope}")
}

/// The default state file: `$EDEN_RECONCILE_STATE`, else
/// `$XDG_STATE_HOME/eden-reconcile/check-state.json`, else
/// `$HOME/.local/state/eden-reconcile/check-state.json`, else `./eden-reconcile-state.json`.
pub(crate) fn default_path() -> PathBuf {
    if let Some(p) = std::env::var_os("EDEN_RECONCILE_STATE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|p| !p.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        });
    match base {
        Some(b) => b.join("eden-reconcile").join("check-state.json"),
        None => PathBuf::from("eden-reconcile-state.json"),
    }
}

impl StateFile {
    /// Reads the file: `Ok(None)` when it does not exist; `Err(reason)` (a sentence) when
    /// it cannot be used, which makes every table take a full pass.
    pub(crate) fn load(path: &Path) -> std::result::Result<Option<StateFile>, String> {
        // Parsed as it is read: the file is not held twice.
        let file = match std::fs::File::open(path) {
            Ok(f) => std::io::BufReader::with_capacity(1 << 20, f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "the state file {} could not be read ({e})",
                    path.display()
                ));
            }
        };
        let f: StateFile = serde_json::from_reader(file).map_err(|e| {
            format!(
                "the state file {} is not a valid state file ({e})",
                path.display()
            )
        })?;
        if f.version != STATE_VERSION {
            return Err(format!(
                "the state file {} has format version {} (this tool writes {STATE_VERSION})",
                path.display(),
                f.version
            ));
        }
        Ok(Some(f))
    }

    /// Writes the file atomically: a temporary file in the same folder, synced, then
    /// renamed over the old one. Creates the folder when missing.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let io = |e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            message: format!("writing the incremental state: {e}"),
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "state".into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let res = (|| {
            let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
            serde_json::to_writer(&mut f, self).map_err(std::io::Error::other)?;
            f.flush()?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_round_trip() {
        let s = vec![
            ChunkSummary {
                count: 3,
                hash: u128::MAX - 5,
            },
            ChunkSummary::default(),
        ];
        let r = RegionState {
            region: "a".into(),
            system_id: None,
            filenodes: String::new(),
            changes_since_us: 0,
            summaries: RegionState::pack(&s),
        };
        assert_eq!(r.unpack().unwrap(), s);
    }

    #[test]
    fn save_is_atomic_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("eden-state-{}", uuid::Uuid::new_v4()));
        let p = dir.join("sub").join("state.json");
        assert!(StateFile::load(&p).unwrap().is_none());
        let f = StateFile {
            version: STATE_VERSION,
            tables: BTreeMap::new(),
        };
        f.save(&p).unwrap();
        assert!(StateFile::load(&p).unwrap().is_some());
        std::fs::write(&p, b"{not json").unwrap();
        assert!(StateFile::load(&p).is_err());
        std::fs::write(&p, br#"{"version": 99, "tables": {}}"#).unwrap();
        assert!(StateFile::load(&p).unwrap_err().contains("version 99"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
