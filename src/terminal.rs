//! What a pseudo-terminal's line discipline does, for terminal sessions over a WebSocket: a
//! sandbox has no PTY, yet terminal front-ends (xterm.js, the SDKs' `terminal.send_input`) send
//! raw keystrokes and expect the remote side to echo them, turn Enter (`\r`) into a line, honour
//! backspace, and print `\r\n` line ends. The shell behind it reads whole lines, as it would from
//! a terminal in canonical mode.

/// Canonical-mode input editing and output translation (`icrnl`, `echo`, `onlcr`).
#[derive(Debug, Default)]
pub struct LineDiscipline {
    line: String,
}

/// What one piece of input produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Keystrokes {
    /// Complete lines (each ending in `\n`) for the program's standard input.
    pub input: String,
    /// What the terminal shows in reply (the echo).
    pub echo: String,
    /// Ctrl-D on an empty line: the program's standard input ends.
    pub end_of_input: bool,
}

impl LineDiscipline {
    /// Edits the current line with `data`; completed lines and the echo come back.
    pub fn keystrokes(&mut self, data: &str) -> Keystrokes {
        let mut out = Keystrokes::default();
        for c in data.chars() {
            match c {
                '\r' | '\n' => {
                    self.line.push('\n');
                    out.input.push_str(&self.line);
                    self.line.clear();
                    out.echo.push_str("\r\n");
                }
                // Backspace and DEL erase one character.
                '\u{7f}' | '\u{8}' => {
                    if self.line.pop().is_some() {
                        out.echo.push_str("\u{8} \u{8}");
                    }
                }
                // Ctrl-U erases the line.
                '\u{15}' => {
                    for _ in 0..self.line.chars().count() {
                        out.echo.push_str("\u{8} \u{8}");
                    }
                    self.line.clear();
                }
                // Ctrl-C: the program cannot be signalled; it drops the line being typed.
                '\u{3}' => {
                    self.line.clear();
                    out.echo.push_str("^C\r\n");
                }
                // Ctrl-D: end of input on an empty line, else it sends the line so far.
                '\u{4}' => {
                    if self.line.is_empty() {
                        out.end_of_input = true;
                        break;
                    }
                    out.input.push_str(&self.line);
                    self.line.clear();
                }
                c => {
                    self.line.push(c);
                    if c.is_control() && c != '\t' {
                        out.echo.push('^');
                        out.echo.push(char::from((c as u8) ^ 0x40));
                    } else {
                        out.echo.push(c);
                    }
                }
            }
        }
        out
    }
}

/// Program output as a terminal shows it: bare `\n` becomes `\r\n`.
pub fn terminal_output(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut previous = '\0';
    for c in text.chars() {
        if c == '\n' && previous != '\r' {
            out.push('\r');
        }
        out.push(c);
        previous = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_completes_a_line_and_echoes_crlf() {
        let mut d = LineDiscipline::default();
        let k = d.keystrokes("ls -l");
        assert_eq!(k.input, "");
        assert_eq!(k.echo, "ls -l");
        let k = d.keystrokes("\r");
        assert_eq!(k.input, "ls -l\n");
        assert_eq!(k.echo, "\r\n");
        assert_eq!(d.keystrokes("a\nb\n").input, "a\nb\n");
    }

    #[test]
    fn backspace_and_kill_edit_the_line() {
        let mut d = LineDiscipline::default();
        let k = d.keystrokes("ecx\u{7f}ho\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}echo hi\r");
        assert_eq!(k.input, "echo hi\n");
        let k = d.keystrokes("junk\u{15}pwd\n");
        assert_eq!(k.input, "pwd\n");
        assert!(k.echo.starts_with("junk\u{8} \u{8}"));
    }

    #[test]
    fn ctrl_c_drops_the_line_and_ctrl_d_ends_input() {
        let mut d = LineDiscipline::default();
        let k = d.keystrokes("rm x\u{3}");
        assert_eq!(k.input, "");
        assert_eq!(k.echo, "rm x^C\r\n");
        assert!(!d.keystrokes("partial\u{4}").end_of_input);
        assert!(d.keystrokes("\u{4}").end_of_input);
    }

    #[test]
    fn output_gets_carriage_returns_once() {
        assert_eq!(terminal_output("a\nb\r\nc"), "a\r\nb\r\nc");
    }
}
