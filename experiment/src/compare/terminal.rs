//! What `compare` prints to a terminal. Its text comes from files anyone can write (series
//! names, point labels, notes, CPU models, the paths of the runs), so every line is stripped of
//! terminal control characters first: a crafted `results.json` must not move the cursor,
//! rewrite the lines above, retitle the window or hide a verdict. Escape sequences (CSI, OSC,
//! DCS, ...) go whole, recognised by anstream's VT parser (the one clap's output goes through);
//! then every other control character but newline and tab goes: the rest of C0 (carriage
//! return, backspace, bell, ...), DEL and C1.

/// `text` with every terminal escape sequence and control character removed, but `\n` and `\t`.
pub fn printable(text: &str) -> String {
    let without_escapes = anstream::adapter::strip_str(text).to_string();
    without_escapes.chars().filter(|&c| c == '\n' || c == '\t' || !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_controls_go_text_and_layout_stay() {
        // CSI: colour, cursor up and erase line; OSC: a window title ended by BEL, and a
        // hyperlink ended by ST (ESC \).
        let crafted = "load=0.9\x1b[31m red\x1b[0m\x1b[1A\x1b[2K\x1b]0;owned\x07 \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\";
        assert_eq!(printable(crafted), "load=0.9 red link");
        // Carriage return (overwrites the line), backspace, bell, NUL, DEL, and the C1 CSI
        // (U+009B) and NEL (U+0085).
        assert_eq!(printable("worse\rbetter\x08\x07\0\x7f \u{9b}2J\u{85}x"), "worsebetter 2Jx");
        assert_eq!(printable("a\tb\nc é ρ ≈ → µs"), "a\tb\nc é ρ ≈ → µs", "text and layout are kept");
    }
}
