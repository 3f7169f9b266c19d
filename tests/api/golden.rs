//! Golden files for what the build generates for a representative query
//! (`queries/top_products.sql`): the tool's Rust code and its published
//! definition. After an intended change, accept the new output with
//! `UPDATE_GOLDEN=1 scripts/test golden` and review the diff.

use std::path::Path;

use sqlmcp::tools;

pub(crate) fn compare_with_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        golden == actual,
        "generated output differs from tests/golden/{name}; if the change is intended, \
         run `UPDATE_GOLDEN=1 scripts/test golden` and review the diff.\n--- generated ---\n{actual}"
    );
}

#[test]
fn generated_tool_code_matches_the_golden_file() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/tools/top_products.rs"));
    compare_with_golden("top_products.rs", generated);
}

#[test]
fn published_definition_matches_the_golden_file() {
    let definition = tools::definitions()
        .into_iter()
        .find(|d| d.name == "top_products")
        .expect("top_products is listed");
    let json = serde_json::to_string_pretty(&definition.to_json()).unwrap() + "\n";
    compare_with_golden("top_products.json", &json);
}
