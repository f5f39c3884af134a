//! `sh -i` / `bash -i`: read commands from standard input a line at a time and run each as soon
//! as it is complete, as a terminal session needs (the script mode reads stdin to its end first).
//! The prompt (`$PS1`, else `$ `; `$PS2`, else `> ` inside an unfinished command) goes to stderr,
//! as bash writes it.

use std::io::{BufRead, Write};

use crate::ast::Program;
use crate::exec::{Flow, Shell};
use crate::parse::{ParseError, Parser};

impl Shell {
    /// Runs commands read from stdin until EOF or `exit`; -> the exit status.
    pub fn run_interactive(&mut self) -> i32 {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut pending = String::new();
        loop {
            let prompt = if pending.is_empty() {
                self.get_var("PS1").unwrap_or_else(|| "$ ".into())
            } else {
                self.get_var("PS2").unwrap_or_else(|| "> ".into())
            };
            self.flush_stdout();
            let mut stderr = std::io::stderr();
            let _ = stderr.write_all(prompt.as_bytes());
            let _ = stderr.flush();

            let mut line = String::new();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            pending.push_str(&line);
            let programs = match self.parse_all(&pending) {
                Ok(programs) => programs,
                Err(e) if e.incomplete => continue,
                Err(e) => {
                    self.errmsg(&e.to_string());
                    self.status = 2;
                    pending.clear();
                    continue;
                }
            };
            pending.clear();
            for program in programs {
                match self.exec_program(&program) {
                    Ok(_) | Err(Flow::Break(_)) | Err(Flow::Continue(_)) => {}
                    Err(Flow::Return(n)) => self.status = n,
                    Err(Flow::Exit(n)) => return self.finish(n),
                }
            }
        }
        let status = self.status;
        self.finish(status)
    }

    /// Every complete command of `src`, or the first parse error.
    fn parse_all(&self, src: &str) -> Result<Vec<Program>, ParseError> {
        let mut parser = Parser::new(src);
        if !self.bash {
            parser = parser.posix();
        }
        let mut programs = Vec::new();
        while let Some(program) = parser.next_complete_command()? {
            programs.push(program);
        }
        Ok(programs)
    }
}
