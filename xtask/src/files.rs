//! Small file and time helpers shared by the commands.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

/// Writes through a temporary file in the same directory, then renames it
/// over `path`: a reader, or a failure half-way, sees the old content or
/// the new, never part of one. An existing file keeps its permissions.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().context("a file to write has a parent directory")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())
        .with_context(|| format!("writing a temporary file in {}", dir.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes a JUnit report of one testsuite, `name`, stamped now, to `path`.
pub fn write_junit(path: &Path, name: &str, testcases: Vec<junit_report::TestCase>) -> Result<()> {
    let mut suite = junit_report::TestSuiteBuilder::new(name);
    // Whole seconds, as qmp-tests writes them: JUnit readers choke on
    // nanoseconds.
    let now = time::OffsetDateTime::now_utc();
    suite.set_timestamp(now.replace_nanosecond(0).unwrap_or(now)).add_testcases(testcases);
    let mut xml = Vec::new();
    let report = junit_report::ReportBuilder::new().add_testsuite(suite.build()).build();
    report.write_xml(&mut xml).with_context(|| format!("rendering {}", path.display()))?;
    let text = String::from_utf8(xml).context("the JUnit report is UTF-8")?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(path, &text)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, in UTC.
pub fn iso(t: SystemTime) -> String {
    utc(t).format(ISO).expect("a UTC date formats")
}

/// `YYYYMMDD-HHMMSS` in UTC, for file names.
pub fn compact(t: SystemTime) -> String {
    utc(t).format(COMPACT).expect("a UTC date formats")
}

const ISO: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
const COMPACT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]-[hour][minute][second]");

fn utc(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_in_utc() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(iso(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(iso(at(951_782_400 + 3661)), "2000-02-29T01:01:01Z");
        assert_eq!(compact(at(1_735_689_599)), "20241231-235959");
    }
}
