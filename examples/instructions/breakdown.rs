//! Where an operation's instructions go: `instructions --breakdown MAP [--sizes N,...]`.
//!
//! The cost model's cells say how many instructions an operation runs; this splits them by
//! the code that runs them, so that a target can be weighed against what each part costs.
//! Callgrind counts every instruction at its address (`--dump-instr=yes`); `addr2line`
//! (binutils) names the functions, inlined ones included, that each address of this program
//! belongs to; each instruction goes to the innermost of them that is one of the map's own
//! functions (`dualmap::...` for dualmap; the lock's and `HashMap`'s for the lock-based maps:
//! `code_of`), or to `arc_swap` if an `arc_swap` function comes first (dualmap's snapshot
//! guards), or to the benchmark loop. What none of those reaches (a function of a dependency
//! that was not inlined, such as hashbrown's insert under dualmap) goes to that function, and
//! what runs in another object (glibc's `malloc` and `free`) to its function there.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

/// The instructions of one profile: by address, those of the program itself; by function,
/// those of other objects.
#[derive(Default)]
pub(crate) struct Profile {
    own: HashMap<u64, u64>,
    elsewhere: HashMap<String, u64>,
}

/// Reads a callgrind profile written with `--dump-instr=yes`: each cost line's first column
/// (`Ir`, callgrind's first event) at its address, in the object current at that line. The
/// line after a `calls=` line is the inclusive cost of a call, counted where the callee's own
/// lines are, so it is skipped; callgrind's writer does not take its position as the base of
/// the next relative one either (`fprint_jcc` in its `dump.c`).
pub(crate) fn parse(profile: &str, program: &str) -> Profile {
    let mut names: HashMap<(&str, &str), &str> = HashMap::new();
    let mut object = "";
    let mut function = "";
    let mut address = 0u64;
    let mut call_cost_follows = false;
    let mut parsed = Profile::default();
    for line in profile.lines() {
        if let Some((key, value)) = line.split_once('=') {
            if let Some(name) = compressed_name(&mut names, key, value) {
                match key {
                    "ob" => object = name,
                    "fn" => function = name,
                    _ => {}
                }
            }
            call_cost_follows = key == "calls";
            continue;
        }
        let mut columns = line.split_whitespace();
        let Some(position) = columns.next().and_then(|first| position(first, address)) else {
            continue;
        };
        if std::mem::take(&mut call_cost_follows) {
            continue;
        }
        address = position;
        // The columns after the address: its source line, then the costs, `Ir` first.
        let instructions: u64 = columns.nth(1).and_then(|ir| ir.parse().ok()).unwrap_or(0);
        if object == program {
            *parsed.own.entry(address).or_default() += instructions;
        } else {
            let object_name = object.rsplit('/').next().unwrap_or(object);
            *parsed
                .elsewhere
                .entry(format!("{function} ({object_name})"))
                .or_default() += instructions;
        }
    }
    parsed
}

/// A name given as `(id) name` (defining `id`) or `(id)` (using it), callgrind's string
/// compression, kept per kind of name; `None` for a line that names nothing.
fn compressed_name<'a>(
    names: &mut HashMap<(&'a str, &'a str), &'a str>,
    key: &'a str,
    value: &'a str,
) -> Option<&'a str> {
    let kind = match key {
        "ob" | "cob" => "ob",
        "fn" | "cfn" => "fn",
        "fl" | "fi" | "fe" | "cfi" | "cfl" => "fl",
        _ => return None,
    };
    let Some(rest) = value.strip_prefix('(') else {
        return Some(value);
    };
    let (id, name) = rest.split_once(')')?;
    let name = name.trim_start();
    if name.is_empty() {
        names.get(&(kind, id)).copied()
    } else {
        names.insert((kind, id), name);
        Some(name)
    }
}

/// A cost line's address: absolute (`0x...`), relative to the previous one (`+N`, `-N`) or
/// the same (`*`); `None` for a line that is not a cost line.
fn position(text: &str, previous: u64) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()
    } else if let Some(up) = text.strip_prefix('+') {
        Some(previous + up.parse::<u64>().ok()?)
    } else if let Some(down) = text.strip_prefix('-') {
        previous.checked_sub(down.parse().ok()?)
    } else if text == "*" {
        Some(previous)
    } else {
        None
    }
}

/// The inlined call chain of each address of `program`, innermost function first, from
/// `addr2line`.
pub(crate) fn frames(
    program: &str,
    addresses: impl Iterator<Item = u64>,
) -> Result<HashMap<u64, Vec<String>>, String> {
    let mut child = Command::new("addr2line")
        .args(["-a", "-i", "-f", "-C", "-e", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| {
            format!("addr2line (binutils, e.g. `apt-get install binutils`): {error}")
        })?;
    let mut input = String::new();
    for address in addresses {
        input.push_str(&format!("{address:#x}\n"));
    }
    let mut stdin = child.stdin.take().expect("piped");
    // Written from another thread: addr2line answers as it reads, and a large profile's
    // answers would fill the pipe while this thread still writes.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|error| error.to_string())?;
    writer
        .join()
        .expect("the writer does not panic")
        .map_err(|error| format!("writing to addr2line: {error}"))?;
    if !output.status.success() {
        return Err(format!("addr2line: {}", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut frames: HashMap<u64, Vec<String>> = HashMap::new();
    let mut current = None;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(hex) = line.strip_prefix("0x") {
            current = u64::from_str_radix(hex, 16).ok();
            continue;
        }
        // A function's line, then its location's.
        let _location = lines.next();
        if let Some(address) = current {
            frames.entry(address).or_default().push(line.to_string());
        }
    }
    Ok(frames)
}

/// Where the code of a map lives.
enum Code {
    /// A crate of its own, whose name its parts go without.
    Crate(&'static str),
    /// The lock's and `HashMap`'s paths of a lock-based map, which its parts keep.
    Paths(&'static [&'static str]),
}

/// Where the code of `map` lives.
fn code_of(map: &str) -> Code {
    const HASH_MAP: [&str; 2] = ["std::collections::hash::map::", "hashbrown::"];
    match map {
        "dualmap" | "dualmap-reader" => Code::Crate("dualmap::"),
        "dashmap" => Code::Crate("dashmap::"),
        "papaya" => Code::Crate("papaya::"),
        "scc" => Code::Crate("scc::"),
        "rwlock-hashmap" => Code::Paths(&["lock_api::", "parking_lot::", HASH_MAP[0], HASH_MAP[1]]),
        "mutex-hashmap" => Code::Paths(&["std::sync::", HASH_MAP[0], HASH_MAP[1]]),
        _ => Code::Paths(&HASH_MAP),
    }
}

/// The part of the program an instruction with the inlined call chain `frames` (innermost
/// first) is counted to, for a profile of `map`.
fn part(frames: &[String], map: &str) -> String {
    for frame in frames {
        let frame = without_generics(frame);
        // A trait method, `<Type as Trait>::method`: the benchmark's adapter if the trait is
        // this program's, else the type's method.
        let (frame, trait_path) = match frame
            .strip_prefix('<')
            .and_then(|rest| rest.split_once(" as "))
            .and_then(|(ty, rest)| Some((ty, rest.split_once(">::")?)))
        {
            Some((ty, (trait_path, method))) => (format!("{ty}::{method}"), trait_path),
            None => (frame.clone(), ""),
        };
        if frame.starts_with("instructions::") || trait_path.starts_with("instructions::") {
            return "the benchmark loop".into();
        }
        if map.starts_with("dualmap") && frame.starts_with("arc_swap::") {
            return "arc_swap (the snapshot guard)".into();
        }
        match code_of(map) {
            Code::Crate(root) => {
                if let Some(function) = frame.strip_prefix(root) {
                    return function.to_string();
                }
            }
            Code::Paths(paths) => {
                if paths.iter().any(|path| frame.starts_with(path)) {
                    return frame;
                }
            }
        }
    }
    frames
        .last()
        .map_or_else(|| "?".into(), |outer| without_generics(outer))
}

/// A function's path without its generic arguments: `raw::RawMap<K,V>::insert` reads
/// `raw::RawMap::insert` (the `<` that opens a trait method's `<Type as Trait>` stays).
fn without_generics(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '<' if depth > 0 || out.ends_with(|c: char| c.is_alphanumeric() || c == '_') => {
                depth += 1
            }
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The instructions of `profile` per part of the program (see [`part`]), largest first.
pub(crate) fn by_part(
    profile: &Profile,
    frames: &HashMap<u64, Vec<String>>,
    map: &str,
) -> Vec<(String, u64)> {
    let mut parts: HashMap<String, u64> = HashMap::new();
    for (address, &instructions) in &profile.own {
        let frames = frames.get(address).map_or(&[][..], Vec::as_slice);
        *parts.entry(part(frames, map)).or_default() += instructions;
    }
    for (function, &instructions) in &profile.elsewhere {
        *parts.entry(function.clone()).or_default() += instructions;
    }
    let mut parts: Vec<(String, u64)> = parts.into_iter().collect();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    parts
}

/// Every address of the program that `profiles` ran.
pub(crate) fn addresses<'a>(profiles: impl Iterator<Item = &'a Profile>) -> Vec<u64> {
    let mut addresses: Vec<u64> = profiles
        .flat_map(|profile| profile.own.keys().copied())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_compressed_names_relative_addresses_and_skips_call_costs() {
        let profile = "events: Ir D1mr\n\
                       ob=(1) /bin/me\nfn=(1) f\n0x10 3 5 1\n+2 4 7\n\
                       cob=(2) /lib/libc.so.6\ncfn=(2) malloc\ncalls=1 0x99 0\n0x50 4 100\n\
                       -1 5 2\nob=(2)\nfn=(2)\n0x99 0 40\n";
        let parsed = parse(profile, "/bin/me");
        assert_eq!(parsed.own.get(&0x10), Some(&5));
        assert_eq!(
            parsed.own.get(&0x12),
            Some(&7),
            "+2 from 0x10; the call's 100 skipped"
        );
        assert_eq!(
            parsed.own.get(&0x11),
            Some(&2),
            "-1 from the call line's 0x12"
        );
        assert_eq!(parsed.elsewhere.get("malloc (libc.so.6)"), Some(&40));
    }

    #[test]
    fn parts_are_the_innermost_own_functions_without_generics() {
        let frames = |names: &[&str]| {
            names
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>()
        };
        let inlined = frames(&[
            "hashbrown::raw::RawTableInner::find_inner",
            "dualmap::table::Table<K,V>::entry_of",
            "dualmap::raw::RawMap<K,V>::insert",
        ]);
        assert_eq!(part(&inlined, "dualmap"), "table::Table::entry_of");
        let guard = frames(&[
            "<arc_swap::strategy::hybrid::HybridStrategy<Cfg> as arc_swap::strategy::sealed::InnerStrategy<T>>::load::{{closure}}",
            "dualmap::raw::RawMap<K,V>::insert",
        ]);
        assert_eq!(part(&guard, "dualmap"), "arc_swap (the snapshot guard)");
        let alone = frames(&["hashbrown::raw::RawTable<T,A>::insert"]);
        assert_eq!(part(&alone, "dualmap"), "hashbrown::raw::RawTable::insert");
        assert_eq!(
            part(&frames(&["dashmap::DashMap<K,V,S>::insert"]), "dashmap"),
            "DashMap::insert"
        );
        let deref =
            frames(&["<dualmap::entry::ListedEntry<K,V> as core::ops::deref::Deref>::deref"]);
        assert_eq!(part(&deref, "dualmap"), "entry::ListedEntry::deref");
        let adapter = frames(&[
            "dualmap::map::DualMap<K,V,S>::insert",
            "<dualmap::map::DualMap<u64,u64> as instructions::Map>::insert",
        ]);
        assert_eq!(part(&adapter, "dualmap"), "map::DualMap::insert");
        let adapter =
            frames(&["<dualmap::map::DualMap<u64,u64> as instructions::Map>::getter::{{closure}}"]);
        assert_eq!(part(&adapter, "dualmap"), "the benchmark loop");
        let std_map = frames(&[
            "hashbrown::raw::RawTableInner::find_inner",
            "std::collections::hash::map::HashMap<K,V,S>::get",
            "<instructions::RwLockMap as instructions::Map>::getter::{{closure}}",
        ]);
        assert_eq!(
            part(&std_map, "rwlock-hashmap"),
            "hashbrown::raw::RawTableInner::find_inner"
        );
        let lock = frames(&[
            "lock_api::rwlock::RwLock<R,T>::read",
            "<instructions::RwLockMap as instructions::Map>::getter::{{closure}}",
        ]);
        assert_eq!(
            part(&lock, "rwlock-hashmap"),
            "lock_api::rwlock::RwLock::read"
        );
    }
}
