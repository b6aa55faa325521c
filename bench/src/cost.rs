//! The `cost` part: the cost model of `examples/instructions/` (valgrind callgrind:
//! instructions and L1 data read misses per operation, single-threaded, at a small and a large
//! map size), run as a child process and read back from its CSV file, so that its figures
//! stand in the same report as the timings.

use std::path::Path;
use std::process::Command;

/// One cell of the cost model.
#[derive(Clone, Debug, PartialEq)]
pub struct Cost {
    /// The harness's map name, or `loop` for the bare loop around the operations.
    pub map: String,
    /// `get_hit`, `get_miss`, `overwrite`, `insert_new`, `remove`, `iterate`, `rebuild`, ...
    pub operation: String,
    /// Keys in the map.
    pub keys: u64,
    /// Instructions per operation.
    pub instructions: f64,
    /// L1 data read misses per operation in callgrind's cache model ("cache lines").
    pub lines: f64,
}

/// Why the cost model did not run.
#[derive(Debug)]
pub enum CostError {
    /// `valgrind` is not installed: the part is skipped with a warning.
    NoValgrind,
    /// The example failed: a real error.
    Failed(String),
}

/// Parses the example's CSV (`map,operation,keys,ops,instructions,lines`).
pub fn parse(csv: &str) -> Result<Vec<Cost>, String> {
    let mut lines = csv.lines();
    let header = lines.next().ok_or("empty cost-model CSV")?;
    if header.trim() != "map,operation,keys,ops,instructions,lines" {
        return Err(format!("unexpected cost-model CSV header {header:?}"));
    }
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [map, operation, keys, _ops, instructions, lines] = fields[..] else {
                return Err(format!("bad cost-model row {line:?}"));
            };
            let number = |field: &str| {
                field
                    .parse::<f64>()
                    .map_err(|error| format!("bad number {field:?} in {line:?}: {error}"))
            };
            Ok(Cost {
                map: map.to_string(),
                operation: operation.to_string(),
                keys: keys
                    .parse()
                    .map_err(|error| format!("bad key count in {line:?}: {error}"))?,
                instructions: number(instructions)?,
                lines: number(lines)?,
            })
        })
        .collect()
}

/// Runs `cargo run --release --example instructions -- --csv OUT/cost_model.csv` at the
/// workspace root (with `--quick` for a quick run) and parses what it wrote.
pub fn run(root: &Path, out: &Path, quick: bool) -> Result<Vec<Cost>, CostError> {
    let found = Command::new("valgrind").arg("--version").output();
    if !found.is_ok_and(|output| output.status.success()) {
        return Err(CostError::NoValgrind);
    }
    std::fs::create_dir_all(out).map_err(|error| CostError::Failed(error.to_string()))?;
    let csv = out.join("cost_model.csv");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "run",
            "--quiet",
            "--release",
            "--example",
            "instructions",
            "--",
        ])
        .arg("--csv")
        .arg(&csv)
        .current_dir(root);
    if quick {
        command.arg("--quick");
    }
    let output = command
        .output()
        .map_err(|error| CostError::Failed(format!("could not run cargo: {error}")))?;
    if !output.status.success() {
        return Err(CostError::Failed(format!(
            "`cargo run --release --example instructions` failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let text = std::fs::read_to_string(&csv)
        .map_err(|error| CostError::Failed(format!("reading {}: {error}", csv.display())))?;
    parse(&text).map_err(CostError::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_csv() {
        let rows = parse(
            "map,operation,keys,ops,instructions,lines\n\
             dualmap,get_hit,1000,100000,141.3,0.02\n\
             loop,loop,1000,100000,9.0,0.0\n",
        )
        .expect("valid");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].map, "dualmap");
        assert_eq!(rows[0].keys, 1000);
        assert_eq!(rows[0].instructions, 141.3);
        assert!(parse("map,op\n").is_err());
        assert!(parse("map,operation,keys,ops,instructions,lines\nx,y,1,2,three,4\n").is_err());
    }
}
