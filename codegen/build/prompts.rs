//! The prompts of `prompts/*.md`, read for the catalogue: each file checked
//! on its own ([`prompt_file::parse`], errors with the file and line) and
//! against the tools the catalogue has.

use std::path::{Path, PathBuf};

use sqlmcp_catalogue::{BUILT_IN_TOOLS, Prompt, Query, prompt_file};

use crate::{Paths, relative};

/// The `.md` files of `prompts/`, in name order; none if there is no
/// such directory.
pub fn prompt_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(dir).map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    Ok(files)
}

/// Every prompt, in name order. A prompt may chain the tools of `queries`
/// and the built-in ones.
pub fn read(paths: &Paths, queries: &[Query]) -> Result<Vec<Prompt>, String> {
    let tools: Vec<&str> = queries
        .iter()
        .map(|query| query.name.as_str())
        .chain(BUILT_IN_TOOLS)
        .collect();
    let mut prompts: Vec<Prompt> = Vec::new();
    for file in prompt_files(&paths.prompts)? {
        let rel = relative(paths, &file);
        let text =
            std::fs::read_to_string(&file).map_err(|err| format!("cannot read {rel}: {err}"))?;
        let prompt =
            prompt_file::parse(&text, &rel, &tools).map_err(|err| format!("{rel}: {err}"))?;
        if let Some(first) = prompts.iter().find(|p| p.name == prompt.name) {
            return Err(format!(
                "{rel}: line 1: a second prompt named `{}` (the first is {}); prompts are told \
                 apart by name, so rename one (`name` in the front matter, or the file)",
                prompt.name, first.file
            ));
        }
        prompts.push(prompt);
    }
    prompts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(prompts)
}
