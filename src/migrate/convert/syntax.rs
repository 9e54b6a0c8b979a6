//! Fluentd's configuration syntax (the v1 format of `lib/fluent/config/v1_parser.rb` and
//! `literal_parser.rb`) read into a tree of [`Section`]s whose every parameter keeps the file and
//! line it came from.
//!
//! What is understood, as Fluentd understands it: `<name arg>` … `</name>` sections nested to
//! any depth; `key value` lines, a key without a value being `""`; `#` comments on their own
//! line or after whitespace (a `#` inside a bare word is kept); double-quoted values with `\`
//! escapes and embedded Ruby `#{…}`; single-quoted values (only `\'` and `\\` escape); `[ … ]`
//! and `{ … }` JSON values over several lines; `@include` of files and globs, relative to the
//! including file, anywhere. Embedded Ruby is not run: its common environment forms
//! (`ENV['X']`, `ENV['X'] || 'fallback'`, `ENV.fetch('X', 'fallback')`, `… || use_default`) are
//! recognised and anything else is kept as [`Value::Ruby`] for the mapper to warn about.
//! Malformed input (an unclosed section, a stray end tag, an unterminated string) is an
//! [`Error`], located, and nothing is converted.

pub use super::ruby::EnvUse;
use super::ruby::{Part, Piece, joined_env, ruby};
use super::{Error, Origin, Warning};
use std::path::{Path, PathBuf};

/// One `<name arg>` section, or the file itself (name `ROOT`).
#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    /// What follows the name in the opening tag: a `<match>`'s tag patterns, a `<filter>`'s,
    /// a `<buffer>`'s chunk keys, a `<label>`'s name.
    pub arg: String,
    pub at: Origin,
    pub params: Vec<Param>,
    pub children: Vec<Section>,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub key: String,
    pub value: Value,
    pub at: Origin,
}

/// A parameter's value after Fluentd's quoting rules, with embedded Ruby recognised.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text as logferry's TOML should carry it: `${X}` for an environment variable without a
    /// fallback, the fallback's text where Fluentd had one (listed in `env`), and any literal
    /// `${` of the original doubled (`$${`), which is how logferry's config spells it.
    Text { text: String, env: Vec<EnvUse> },
    /// `use_default`, `use_nil`, or `ENV['X'] || use_default`: Fluentd leaves the parameter unset
    /// (unless the variable named is set).
    Unset { unless_env: Option<String> },
    /// Embedded Ruby beyond the environment forms; the code, as written.
    Ruby(String),
}

impl Value {
    /// The text, if this is text.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Text { text, .. } => Some(text),
            _ => None,
        }
    }
}

/// How deep `@include`s may nest before the converter assumes a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads `path` and every file it includes.
pub fn parse_file(path: &Path, warnings: &mut Vec<Warning>) -> Result<Section, Error> {
    let mut root = Section {
        name: "ROOT".into(),
        arg: String::new(),
        at: Origin::new(path, 1),
        params: Vec::new(),
        children: Vec::new(),
    };
    include_file(path, &mut root, 0, warnings)?;
    Ok(root)
}

fn include_file(
    path: &Path,
    into: &mut Section,
    depth: usize,
    warnings: &mut Vec<Warning>,
) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut scanner = Scanner {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        file: path.to_owned(),
        depth,
    };
    scanner.body(None, into, warnings)
}

/// A cursor over one file's characters that counts lines.
struct Scanner {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    file: PathBuf,
    depth: usize,
}

impl Scanner {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn here(&self) -> Origin {
        Origin::new(&self.file, self.line)
    }

    fn fail(&self, message: impl Into<String>) -> Error {
        Error::Syntax {
            at: self.here(),
            message: message.into(),
        }
    }

    /// Whitespace, newlines and comments.
    fn spacing(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.bump();
            } else if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    fn blanks(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.bump();
        }
    }

    /// Fluentd's `line_end`: blanks, an optional comment, then a newline or the end.
    fn line_end(&mut self, after: &str) -> Result<(), Error> {
        self.blanks();
        if self.peek() == Some('#') {
            while self.peek().is_some_and(|c| c != '\n') {
                self.bump();
            }
        }
        match self.peek() {
            None => Ok(()),
            Some('\r') | Some('\n') => {
                self.bump();
                Ok(())
            }
            Some(c) => Err(self.fail(format!(
                "expected the end of the line after {after}, found {c:?}"
            ))),
        }
    }

    fn word(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            s.push(c);
            self.bump();
        }
        s
    }

    /// The parameters and sections up to `</name>` (or the end of the file at the top).
    fn body(
        &mut self,
        name: Option<(&str, usize)>,
        into: &mut Section,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), Error> {
        loop {
            self.spacing();
            let Some(c) = self.peek() else {
                return match name {
                    None => Ok(()),
                    Some((n, line)) => Err(Error::Syntax {
                        at: Origin::new(&self.file, line),
                        message: format!(
                            "<{n}> is never closed (expected </{n}> before the end of the file)"
                        ),
                    }),
                };
            };
            if c == '<' && self.peek_at(1) == Some('/') {
                let at = self.here();
                self.bump();
                self.bump();
                let end = self.word();
                self.blanks();
                if self.bump() != Some('>') {
                    return Err(self.fail(format!("</{end}: expected '>'")));
                }
                self.line_end(&format!("</{end}>"))?;
                let message = match name {
                    Some((n, _)) if n == end => return Ok(()),
                    Some((n, line)) => {
                        format!("</{end}> does not close <{n}> (opened at line {line})")
                    }
                    None => format!("</{end}> closes no open section"),
                };
                return Err(Error::Syntax { at, message });
            } else if c == '<' {
                let child = self.section(warnings)?;
                into.children.push(child);
            } else {
                self.parameter(into, warnings)?;
            }
        }
    }

    fn section(&mut self, warnings: &mut Vec<Warning>) -> Result<Section, Error> {
        let at = self.here();
        self.bump();
        let name = self.word();
        if name.is_empty() {
            return Err(self.fail("expected a section name after '<'"));
        }
        let mut arg = String::new();
        while let Some(c) = self.peek().filter(|c| *c != '>' && *c != '\n') {
            arg.push(c);
            self.bump();
        }
        if self.bump() != Some('>') {
            return Err(self.fail(format!("<{name}: expected '>' on the same line")));
        }
        self.line_end(&format!("<{name}>"))?;
        let arg = arg.trim().trim_matches('"').to_owned();
        let mut section = Section {
            name,
            arg,
            at,
            params: Vec::new(),
            children: Vec::new(),
        };
        let name = section.name.clone();
        self.body(Some((&name, section.at.line)), &mut section, warnings)?;
        Ok(section)
    }

    fn parameter(&mut self, into: &mut Section, warnings: &mut Vec<Warning>) -> Result<(), Error> {
        let at = self.here();
        let mut key = String::new();
        while let Some(c) = self.peek().filter(|c| !c.is_whitespace()) {
            key.push(c);
            self.bump();
        }
        self.blanks();
        let value = match self.peek() {
            None | Some('\n') | Some('\r') => Value::Text {
                text: String::new(),
                env: vec![],
            },
            _ => {
                let v = self.literal()?;
                self.line_end(&key)?;
                v
            }
        };
        if key == "@include" || key == "include" {
            return self.include(&at, &value, into, warnings);
        }
        into.params.push(Param { key, value, at });
        Ok(())
    }

    fn include(
        &mut self,
        at: &Origin,
        value: &Value,
        into: &mut Section,
        warnings: &mut Vec<Warning>,
    ) -> Result<(), Error> {
        let Some(target) = value.text().filter(|t| !t.contains("${")) else {
            warnings.push(Warning::new(at, "@include", "the path comes from embedded Ruby or an environment variable the converter cannot resolve; not included"));
            return Ok(());
        };
        if target.contains("://") {
            warnings.push(Warning::new(
                at,
                "@include",
                "remote includes are not fetched; not included",
            ));
            return Ok(());
        }
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(Error::Syntax {
                at: at.clone(),
                message: format!(
                    "@include {target}: includes nest more than {MAX_INCLUDE_DEPTH} deep (a loop?)"
                ),
            });
        }
        let base = self.file.parent().unwrap_or(Path::new(""));
        let pattern = base.join(target);
        let mut files: Vec<PathBuf> = match glob::glob(&pattern.to_string_lossy()) {
            Ok(paths) => paths.filter_map(Result::ok).collect(),
            Err(e) => {
                return Err(Error::Syntax {
                    at: at.clone(),
                    message: format!("@include {target}: {e}"),
                });
            }
        };
        files.sort();
        if files.is_empty() {
            warnings.push(Warning::new(
                at,
                &format!("@include {target}"),
                "matches no file; nothing included",
            ));
        }
        for file in files {
            include_file(&file, into, self.depth + 1, warnings)?;
        }
        Ok(())
    }

    /// A value: JSON, double-quoted, single-quoted or bare.
    fn literal(&mut self) -> Result<Value, Error> {
        match self.peek() {
            Some('[') | Some('{') => self.json(),
            Some('"') => self.double_quoted(),
            Some('\'') => self.single_quoted(),
            _ => Ok(self.bare()),
        }
    }

    fn bare(&mut self) -> Value {
        let mut s = String::new();
        while let Some(c) = self.peek().filter(|c| *c != '\n' && *c != '\r') {
            // `#` after whitespace starts a comment; inside a word it is a character.
            if c == '#' && s.ends_with([' ', '\t']) {
                break;
            }
            s.push(c);
            self.bump();
        }
        plain(s.trim_end())
    }

    fn single_quoted(&mut self) -> Result<Value, Error> {
        let start = self.here();
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                Some('\'') => return Ok(plain(&s)),
                Some('\\') if matches!(self.peek(), Some('\'') | Some('\\')) => {
                    s.extend(self.bump());
                }
                Some(c) => s.push(c),
                None => return Err(unterminated(&start, "single")),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<Value, Error> {
        let start = self.here();
        self.bump();
        let mut text = String::new();
        let mut env = Vec::new();
        let mut outcome: Option<Value> = None;
        loop {
            match self.bump() {
                Some('"') => break,
                Some('\\') => {
                    let c = self.bump().ok_or_else(|| unterminated(&start, "double"))?;
                    // A backslash at the end of a line continues the value on the next one.
                    if c == '\n' {
                        continue;
                    }
                    let real = match c {
                        'r' => '\r',
                        'n' => '\n',
                        't' => '\t',
                        'f' => '\u{c}',
                        'b' => '\u{8}',
                        '0' => '\0',
                        c if c.is_ascii_alphanumeric() => {
                            return Err(self
                                .fail(format!("unknown escape \\{c} in a double-quoted string")));
                        }
                        c => c,
                    };
                    push_literal(&mut text, real);
                }
                Some('#') if self.peek() == Some('{') => {
                    self.bump();
                    let code = self.embedded_code(&start)?;
                    match ruby(&code) {
                        Piece::Env(use_) => {
                            match &use_.fallback {
                                None => text.push_str(&format!("${{{}}}", use_.name)),
                                Some(f) => f.chars().for_each(|c| push_literal(&mut text, c)),
                            }
                            env.push(use_);
                        }
                        Piece::Joined(parts) => {
                            for part in parts {
                                match part {
                                    Part::Text(t) => {
                                        t.chars().for_each(|c| push_literal(&mut text, c))
                                    }
                                    Part::Env(name) => text.push_str(&format!("${{{name}}}")),
                                }
                            }
                            env.extend(joined_env(&code));
                        }
                        unset @ Piece::Unset(_) => {
                            if let Piece::Unset(unless_env) = unset {
                                outcome.get_or_insert(Value::Unset { unless_env });
                            }
                        }
                        Piece::Ruby => {
                            outcome = Some(Value::Ruby(code));
                        }
                    }
                }
                Some(c) => push_literal(&mut text, c),
                None => return Err(unterminated(&start, "double")),
            }
        }
        Ok(outcome.unwrap_or(Value::Text { text, env }))
    }

    /// The code of `#{…}` up to its matching brace (the `#{` already read).
    fn embedded_code(&mut self, start: &Origin) -> Result<String, Error> {
        let mut depth = 0usize;
        let mut quote: Option<char> = None;
        let mut code = String::new();
        loop {
            let c = self.bump().ok_or_else(|| unterminated(start, "double"))?;
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '{') => depth += 1,
                (None, '}') if depth == 0 => return Ok(code),
                (None, '}') => depth -= 1,
                _ => {}
            }
            code.push(c);
        }
    }

    /// A JSON array or object, possibly over several lines with `#` comments, kept as compact
    /// JSON text.
    fn json(&mut self) -> Result<Value, Error> {
        let start = self.here();
        let mut buf = String::new();
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        while let Some(c) = self.bump() {
            if in_string {
                buf.push(c);
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                    continue;
                }
                '"' => in_string = true,
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            buf.push(c);
            if depth == 0 {
                return match serde_json::from_str::<serde_json::Value>(&buf) {
                    Ok(v) => Ok(plain(&v.to_string())),
                    Err(e) => Err(Error::Syntax {
                        at: start,
                        message: format!("invalid JSON value: {e}"),
                    }),
                };
            }
        }
        Err(Error::Syntax {
            at: start,
            message: "a JSON value is never closed".into(),
        })
    }
}

fn unterminated(start: &Origin, kind: &str) -> Error {
    Error::Syntax {
        at: start.clone(),
        message: format!("a {kind}-quoted string is never closed"),
    }
}

/// Literal text, with `${` doubled as logferry's config spells a literal one.
fn plain(s: &str) -> Value {
    let mut text = String::new();
    s.chars().for_each(|c| push_literal(&mut text, c));
    Value::Text { text, env: vec![] }
}

fn push_literal(text: &mut String, c: char) {
    if c == '{' && text.ends_with('$') && !text.ends_with("$$") {
        text.push('$');
    }
    text.push(c);
}
