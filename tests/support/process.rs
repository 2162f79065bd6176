//! `vkey` run as a user runs it: the binary, its start-up lines, its one-line errors.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Command;

pub const VKEY: &str = env!("CARGO_BIN_EXE_vkey");

/// A path under the temporary directory for this test process, `vkey-{suite}-{tag}-PID`,
/// with nothing left at it from an earlier run.
pub fn temp_path(suite: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vkey-{suite}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Reads lines (without their line ends) from `vkey serve`'s standard output: at most
/// `max`, until one for which `last` holds, or to the end of the output.
pub fn read_lines(out: &mut impl BufRead, max: usize, last: impl Fn(&str) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    while lines.len() < max {
        let mut l = String::new();
        if out.read_line(&mut l).unwrap() == 0 {
            break;
        }
        let l = l.trim_end().to_string();
        let done = last(&l);
        lines.push(l);
        if done {
            break;
        }
    }
    lines
}

/// Keeps reading `out` in a thread, so that the child never blocks on a full pipe.
pub fn drain(mut out: impl BufRead + Send + 'static) {
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
}

/// `stderr` has exactly one `vkey: error:` line, containing `needle`, and no panic.
pub fn assert_one_error_line(stderr: &str, needle: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("vkey: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(needle), "wanted {needle:?}: {stderr}");
}

/// Runs `cmd` (a `vkey` command) to its end: it must exit with code 1 and one
/// `vkey: error:` line containing `needle`, and no panic. Returns its standard error.
pub fn assert_refused(cmd: &mut Command, needle: &str) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_one_error_line(&stderr, needle);
    stderr
}
