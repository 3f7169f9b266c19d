//! Build script of `sqlmcp-codegen`: keeps the cornucopia-generated query
//! functions and the query catalogue in `snapshot/` in step with
//! `queries/` and `migrations/`.
//!
//! - Live mode (`SQLMCP_CODEGEN_DATABASE_URL` set): creates a scratch
//!   database, applies the migrations with refinery, checks every query
//!   against it (PostgreSQL's own errors, with file and line), runs
//!   cornucopia, and rewrites `snapshot/` when its content changed. The crate
//!   includes `snapshot/`, so this very build compiles the fresh code.
//! - Offline mode (no URL): uses `snapshot/` as committed, after checking
//!   that no query, migration or prompt changed since it was generated.
//!
//! The prompts of `prompts/*.md` ([`prompts`]) go into the catalogue too.

mod live;
mod prompts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use sha2::{Digest, Sha256};

use sqlmcp_catalogue::Catalogue;

pub const URL_VAR: &str = "SQLMCP_CODEGEN_DATABASE_URL";
const REFRESH: &str = "scripts/codegen";

pub struct Paths {
    pub workspace: PathBuf,
    pub queries: PathBuf,
    pub migrations: PathBuf,
    pub snapshot: PathBuf,
    pub prompts: PathBuf,
}

fn main() -> ExitCode {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("codegen/ is in the workspace")
        .to_owned();
    let paths = Paths {
        queries: workspace.join("queries"),
        migrations: workspace.join("migrations"),
        snapshot: manifest_dir.join("snapshot"),
        prompts: workspace.join("prompts"),
        workspace,
    };
    for watched in [
        &paths.queries,
        &paths.migrations,
        &paths.snapshot,
        &paths.prompts,
    ] {
        println!("cargo::rerun-if-changed={}", watched.display());
    }
    println!("cargo::rerun-if-changed=build");
    println!("cargo::rerun-if-env-changed={URL_VAR}");
    println!(
        "cargo::metadata=catalogue={}",
        paths.snapshot.join("catalogue.json").display()
    );

    let outcome = match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => live::generate(&url, &paths),
        _ => check_snapshot(&paths),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nerror: {message}\n");
            ExitCode::FAILURE
        }
    }
}

/// sha256 of every `.sql` file under `queries/` and `migrations/` and every
/// `.md` file under `prompts/`, keyed by its path relative to the workspace.
pub fn input_hashes(paths: &Paths) -> Result<BTreeMap<String, String>, String> {
    let mut hashes = BTreeMap::new();
    let sql = [&paths.queries, &paths.migrations].map(|dir| sql_files(dir));
    for files in sql
        .into_iter()
        .chain([prompts::prompt_files(&paths.prompts)])
    {
        for file in files? {
            let bytes = std::fs::read(&file)
                .map_err(|err| format!("cannot read {}: {err}", file.display()))?;
            let hex: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            hashes.insert(relative(paths, &file), hex);
        }
    }
    Ok(hashes)
}

pub fn sql_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    Ok(files)
}

pub fn relative(paths: &Paths, file: &Path) -> String {
    file.strip_prefix(&paths.workspace)
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/")
}

fn check_snapshot(paths: &Paths) -> Result<(), String> {
    let catalogue_path = paths.snapshot.join("catalogue.json");
    let stale = |what: String| {
        format!(
            "{what}\n\
             The generated query code in codegen/snapshot/ is out of date, and this build has no \
             database to regenerate it. Refresh it against a live PostgreSQL with:\n\n    \
             {REFRESH}\n\n\
             (or set {URL_VAR} to a server where you may create databases and build again)"
        )
    };
    let text = std::fs::read_to_string(&catalogue_path)
        .map_err(|_| stale(format!("{} is missing.", catalogue_path.display())))?;
    let catalogue: Catalogue = serde_json::from_str(&text).map_err(|err| {
        stale(format!(
            "{} is unreadable: {err}.",
            catalogue_path.display()
        ))
    })?;
    let current = input_hashes(paths)?;
    let mut changes = Vec::new();
    for (file, hash) in &current {
        match catalogue.inputs.get(file) {
            None => changes.push(format!("  {file} is new")),
            Some(old) if old != hash => changes.push(format!("  {file} changed")),
            Some(_) => {}
        }
    }
    for file in catalogue
        .inputs
        .keys()
        .filter(|f| !current.contains_key(*f))
    {
        changes.push(format!("  {file} was removed"));
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(stale(format!(
            "queries, migrations or prompts changed since codegen/snapshot/ was generated:\n{}",
            changes.join("\n")
        )))
    }
}
