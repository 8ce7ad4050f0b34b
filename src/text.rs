//! Text that reaches a terminal, a log, an event or a status from outside (object names, file
//! names, remote error messages): control characters are escaped, so a newline in a name cannot
//! forge another line.

/// `s` with control characters (except none) written as `\n`, `\t`, `\u{1b}`…
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_cannot_forge_lines() {
        assert_eq!(super::escape_controls("a\nerror: x"), "a\\nerror: x");
        assert_eq!(super::escape_controls("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(super::escape_controls("plain ünïcode"), "plain ünïcode");
    }
}
