//! Shaping text from QEMU and QMP for reports.
//!
//! QEMU's stderr can carry ANSI colours and stray control bytes. Those are
//! noise on a terminal and fatal in XML 1.0, which forbids most control
//! characters outright (one NUL makes a JUnit report unparseable), so
//! report text goes through [`clean`]. Text also lands in CDATA sections,
//! which cannot contain "]]>".

/// `text` with only characters XML 1.0 allows. ANSI escape sequences are
/// dropped (they are colour, not content); other forbidden characters
/// become a visible `\xNN` / `\u{NNNN}`.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            // CSI: parameters and intermediates up to a final byte in
            // '@'..='~'.
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
            continue;
        }
        match c {
            '\t' | '\n' | '\r' => out.push(c),
            '\u{0}'..='\u{1f}' => out.push_str(&format!("\\x{:02X}", c as u32)),
            '\u{fffe}' | '\u{ffff}' => out.push_str(&format!("\\u{{{:X}}}", c as u32)),
            _ => out.push(c),
        }
    }
    // Breaks the CDATA terminator without changing what a reader sees
    // much; the one place this shows is a "]]>" quoted from stderr.
    out.replace("]]>", "]] >")
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> &str {
    let trimmed = text.trim_end_matches('\n');
    let start = trimmed.rmatch_indices('\n').nth(n.saturating_sub(1)).map_or(0, |(at, _)| at + 1);
    if n == 0 {
        return "";
    }
    &trimmed[start..]
}

/// `text` on one line: CI tools flatten newlines in failure messages, so
/// we choose how.
pub fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The first column of the Markdown table whose header row is `header`,
/// its rows sorted: README's tables that tests hold against the code.
pub fn table_first_column<'a>(markdown: &'a str, header: &str) -> Option<Vec<&'a str>> {
    let table = &markdown[markdown.find(header)?..];
    let table = &table[..table.find("\n\n").unwrap_or(table.len())];
    let mut cells: Vec<&str> =
        table.lines().skip(2).filter_map(|row| row.split('|').nth(1)).map(str::trim).collect();
    cells.sort();
    Some(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_colours_and_escapes_controls() {
        assert_eq!(clean("\u{1b}[1;31merror\u{1b}[0m: x"), "error: x");
        assert_eq!(clean("a\u{0}b\u{7}c"), "a\\x00b\\x07c");
        assert_eq!(clean("tab\tnl\ncr\r"), "tab\tnl\ncr\r");
        assert_eq!(clean("x]]>y"), "x]] >y");
        assert_eq!(clean("\u{fffe}"), "\\u{FFFE}");
        assert_eq!(clean("lone \u{1b} escape"), "lone \\x1B escape");
    }

    #[test]
    fn tail_lines_counts_from_the_end() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a\nb", 5), "a\nb");
        assert_eq!(tail_lines("a\nb", 0), "");
        assert_eq!(tail_lines("", 3), "");
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("first\r\n  second \n\nthird"), "first | second | third");
    }
}
