//! containerd's filter syntax, as `ctr snapshots ls` and the Snapshots List call use it.
//!
//! ```text
//! selectors := selector ("," selector)*        all must match
//! selector  := fieldpath (operator value)?     no operator: the field is present
//! fieldpath := field ("." field)*
//! field     := quoted | [A-Za-z_][A-Za-z0-9_]*
//! operator  := "==" | "!=" | "~="              ~= is a regular expression
//! value     := quoted | [^\s,]+
//! quoted    := text between " or / or |, with backslash escapes of the quote
//! ```
//!
//! Several filter strings match when any one does. Snapshot fields: `kind`, `name`,
//! `parent`, `labels.<key>`. This module parses and matches; it does not read the store.

use regex::Regex;

use crate::info::Info;
use crate::{Error, Result};

/// A parsed list of filters: matches when any of them does; the empty list matches all.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    any: Vec<Vec<Selector>>,
}

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

impl Filters {
    /// Parses each string; an empty string matches everything.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Filters> {
        let any = filters
            .iter()
            .map(|f| {
                Parser { input: f.as_ref(), at: 0 }.selectors().map_err(|message| {
                    Error::InvalidArgument(format!("filter {:?}: {message}", f.as_ref()))
                })
            })
            .collect::<Result<_>>()?;
        Ok(Filters { any })
    }

    /// True when `info` matches.
    pub fn matches(&self, info: &Info) -> bool {
        self.any.is_empty()
            || self.any.iter().any(|all| all.iter().all(|selector| selector.matches(info)))
    }
}

impl Selector {
    fn matches(&self, info: &Info) -> bool {
        let value = field(info, &self.path);
        match (&self.test, value) {
            (Test::Present, value) => value.is_some_and(|v| !v.is_empty()),
            (Test::Equal(want), value) => value == Some(want.as_str()),
            (Test::NotEqual(want), value) => value != Some(want.as_str()),
            (Test::Matches(re), Some(value)) => re.is_match(value),
            (Test::Matches(_), None) => false,
        }
    }
}

fn field<'a>(info: &'a Info, path: &[String]) -> Option<&'a str> {
    match path {
        [one] if one == "kind" => Some(info.kind.as_str()),
        [one] if one == "name" => Some(&info.name),
        [one] if one == "parent" => Some(&info.parent),
        [labels, key] if labels == "labels" => info.labels.get(key).map(String::as_str),
        _ => None,
    }
}

struct Parser<'a> {
    input: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn selectors(&mut self) -> Result<Vec<Selector>, String> {
        let mut all = Vec::new();
        if self.input.trim().is_empty() {
            return Ok(all);
        }
        loop {
            all.push(self.selector()?);
            self.skip_space();
            match self.peek() {
                None => return Ok(all),
                Some(',') => self.at += 1,
                Some(c) => return Err(format!("unexpected {c:?} at {}", self.at)),
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, String> {
        let mut path = vec![self.field()?];
        while self.peek() == Some('.') {
            self.at += 1;
            path.push(self.field()?);
        }
        self.skip_space();
        let test = match self.peek() {
            None | Some(',') => Test::Present,
            Some(_) => {
                let op = self.operator()?;
                self.skip_space();
                let value = self.value()?;
                match op {
                    "==" => Test::Equal(value),
                    "!=" => Test::NotEqual(value),
                    _ => Test::Matches(
                        Regex::new(&value)
                            .map_err(|err| format!("bad regular expression: {err}"))?,
                    ),
                }
            }
        };
        Ok(Selector { path, test })
    }

    fn field(&mut self) -> Result<String, String> {
        self.skip_space();
        match self.peek() {
            Some(q) if is_quote(q) => self.quoted(q),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                Ok(self.take_while(|c| c.is_ascii_alphanumeric() || c == '_').to_string())
            }
            Some(c) => Err(format!("expected a field name at {}, found {c:?}", self.at)),
            None => Err("expected a field name, found the end".into()),
        }
    }

    fn operator(&mut self) -> Result<&'static str, String> {
        let rest = &self.input[self.at..];
        for op in ["==", "!=", "~="] {
            if rest.starts_with(op) {
                self.at += 2;
                return Ok(op);
            }
        }
        Err(format!("expected ==, != or ~= at {}", self.at))
    }

    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(q) if is_quote(q) => self.quoted(q),
            Some(_) => {
                let value = self.take_while(|c| c != ',' && !c.is_whitespace());
                if value.is_empty() {
                    return Err(format!("expected a value at {}", self.at));
                }
                Ok(value.to_string())
            }
            None => Err("expected a value, found the end".into()),
        }
    }

    fn quoted(&mut self, quote: char) -> Result<String, String> {
        let start = self.at;
        self.at += quote.len_utf8();
        let mut out = String::new();
        let mut chars = self.input[self.at..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == quote => {
                    self.at += i + c.len_utf8();
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, next)) if next == quote || (quote == '"' && next == '\\') => {
                        out.push(next);
                    }
                    Some((_, 'n')) if quote == '"' => out.push('\n'),
                    Some((_, 't')) if quote == '"' => out.push('\t'),
                    Some((_, next)) => {
                        out.push('\\');
                        out.push(next);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(format!("unterminated quoted string starting at {start}"))
    }

    fn peek(&self) -> Option<char> {
        self.input[self.at..].chars().next()
    }

    fn skip_space(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &str {
        let rest = &self.input[self.at..];
        let len = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }
}

fn is_quote(c: char) -> bool {
    matches!(c, '"' | '/' | '|')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use super::*;
    use crate::info::Kind;

    fn info(name: &str, kind: Kind, labels: &[(&str, &str)]) -> Info {
        Info {
            name: name.into(),
            parent: "base".into(),
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
        }
    }

    fn matches(filters: &[&str], info: &Info) -> bool {
        Filters::parse(filters).unwrap().matches(info)
    }

    #[test]
    fn selectors_and_alternatives() {
        let a = info("layer-a", Kind::Active, &[("team", "storage"), ("dotted.key", "1")]);
        assert!(matches(&[], &a));
        assert!(matches(&[""], &a));
        assert!(matches(&["kind==active"], &a));
        assert!(!matches(&["kind==committed"], &a));
        assert!(matches(&["kind==committed", "name==layer-a"], &a));
        assert!(matches(&["kind==active,labels.team==storage"], &a));
        assert!(!matches(&["kind==active,labels.team!=storage"], &a));
        assert!(matches(&["labels.team"], &a));
        assert!(!matches(&["labels.owner"], &a));
        assert!(matches(&["labels.\"dotted.key\"==1"], &a));
        assert!(matches(&["name~=/^layer-[a-z]$/"], &a));
        assert!(matches(&["name~=^layer"], &a));
        assert!(matches(&["parent==base"], &a));
        assert!(matches(&[" kind == active , name == \"layer-a\" "], &a));
    }

    #[test]
    fn malformed_filters_are_invalid_arguments() {
        for bad in ["kind=active", "kind==", "==x", "name~=/(/", "labels.\"open", "kind==a b"] {
            let err = Filters::parse(&[bad]).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}
