//! Where rules live: checks over the gateway's own source, so that a newcomer finds
//! each rule in one place and the layout cannot drift back.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// SQL is written only in `src/store/`: the rest of the gateway asks the store for
/// typed rows, and never holds the pool.
#[test]
fn sql_lives_only_in_the_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 10, "found the sources: {files:?}");
    let mut outside = Vec::new();
    let mut inside = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let in_store = f.strip_prefix(&src).unwrap().starts_with("store");
        for (n, line) in text.lines().enumerate() {
            let sql =
                line.contains("sqlx::query") || line.contains(".pool()") || line.contains("pool.begin(");
            match (sql, in_store) {
                (true, true) => inside += 1,
                (true, false) => outside.push(format!("{}:{}: {}", f.display(), n + 1, line.trim())),
                _ => {}
            }
        }
    }
    assert!(inside > 50, "the store's queries were found ({inside})");
    assert!(outside.is_empty(), "SQL outside src/store/:\n{}", outside.join("\n"));
}
