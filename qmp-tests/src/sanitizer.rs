//! Sanitizer reports in QEMU's stderr fail a scenario even when every QMP
//! exchange went right: the bugs they catch rarely show on the wire.

const MARKERS: [&str; 4] = [
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    // LeakSanitizer that could not run its check (e.g. no ptrace in a
    // container) would otherwise let every leak pass unseen.
    "LeakSanitizer has encountered a fatal error",
    // UBSan reports as "file:line:col: runtime error: ...".
    "runtime error:",
];

/// Lines of a report quoted in the failure body.
const EXCERPT_LINES: usize = 30;

pub struct Report {
    /// The line that names the problem.
    pub headline: String,
    /// That line and what follows, for the failure body.
    pub excerpt: String,
}

/// The first sanitizer report in `stderr`, if any.
pub fn find_report(stderr: &str) -> Option<Report> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines.iter().position(|line| MARKERS.iter().any(|marker| line.contains(marker)))?;
    let excerpt = lines[start..].iter().take(EXCERPT_LINES).copied().collect::<Vec<_>>();
    Some(Report {
        headline: strip_pid_prefix(lines[start]).trim().to_string(),
        excerpt: excerpt.join("\n"),
    })
}

/// ASan prefixes its lines with "==PID==", which only makes equal
/// failures look different from run to run.
fn strip_pid_prefix(line: &str) -> &str {
    let Some(rest) = line.strip_prefix("==") else {
        return line;
    };
    match rest.find("==") {
        Some(end) if rest[..end].bytes().all(|b| b.is_ascii_digit()) => &rest[end + 2..],
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_asan_ubsan_and_lsan() {
        let asan =
            "noise\n==1234==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n#0 foo\n";
        let report = find_report(asan).unwrap();
        assert_eq!(report.headline, "ERROR: AddressSanitizer: heap-use-after-free on address 0x1");
        assert!(report.excerpt.contains("#0 foo"));

        let ubsan = "../monitor/qmp.c:12:5: runtime error: member access within null pointer\n";
        assert!(find_report(ubsan).unwrap().headline.contains("runtime error"));

        let lsan = "==9==ERROR: LeakSanitizer: detected memory leaks\n";
        assert!(find_report(lsan).unwrap().headline.starts_with("ERROR: LeakSanitizer"));

        let lsan_failed = "==9==LeakSanitizer has encountered a fatal error.\n";
        assert!(find_report(lsan_failed).unwrap().headline.contains("fatal error"));

        assert!(find_report("qemu-system-x86_64: terminating on signal 15\n").is_none());
    }
}
