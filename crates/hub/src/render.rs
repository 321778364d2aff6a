//! Text drawings for people: a volume set's history as a graph, and the fields of a
//! sync conflict side by side.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::{Branch, Snapshot};
use crate::transfer::Conflict;

/// Draws `snaps` newest first, one column per line of descent, like `git log --graph`:
/// each line a snapshot's short id, the `branches` whose tip it is, its name and
/// description. Children always come before their parents, whatever the clocks said.
pub fn graph(snaps: &[Snapshot], branches: &[Branch]) -> String {
    let mut order: Vec<&Snapshot> = snaps.iter().collect();
    order.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.depth.cmp(&a.depth)));
    // Children before parents, whatever the clocks said.
    let mut placed = HashSet::new();
    let mut sorted: Vec<&Snapshot> = Vec::new();
    let children: HashMap<&str, usize> =
        snaps.iter().filter_map(|s| s.parent_id.as_deref()).fold(HashMap::new(), |mut m, p| {
            *m.entry(p).or_insert(0) += 1;
            m
        });
    let mut pending = children.clone();
    while sorted.len() < order.len() {
        let before = sorted.len();
        for s in &order {
            if !placed.contains(s.id.as_str())
                && pending.get(s.id.as_str()).copied().unwrap_or(0) == 0
            {
                placed.insert(s.id.as_str());
                sorted.push(s);
                if let Some(n) = s.parent_id.as_deref().and_then(|p| pending.get_mut(p)) {
                    *n -= 1;
                }
                break;
            }
        }
        if sorted.len() == before {
            break;
        }
    }
    let labels: BTreeMap<&str, Vec<&str>> = branches.iter().fold(BTreeMap::new(), |mut m, b| {
        m.entry(b.tip.as_str()).or_insert_with(Vec::new).push(if b.name.is_empty() {
            "(unnamed)"
        } else {
            b.name.as_str()
        });
        m
    });
    let mut columns: Vec<Option<String>> = Vec::new();
    let mut out = String::new();
    let row = |columns: &[Option<String>], mark: Option<usize>, merged: &[usize]| -> String {
        let mut line: Vec<char> = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            let mark = if Some(i) == mark {
                '*'
            } else if c.is_some() && !merged.contains(&i) {
                '|'
            } else {
                ' '
            };
            line.extend([mark, ' ']);
        }
        // A merged line of descent leans into the column on its left.
        for &m in merged {
            if m > 0 {
                line[2 * m - 1] = '/';
            }
        }
        line.into_iter().collect::<String>()
    };
    for s in sorted {
        let waiting: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_deref() == Some(s.id.as_str()))
            .map(|(i, _)| i)
            .collect();
        let col = match waiting.first() {
            Some(&c) => c,
            None => match columns.iter().position(Option::is_none) {
                Some(free) => free,
                None => {
                    columns.push(None);
                    columns.len() - 1
                }
            },
        };
        if waiting.len() > 1 {
            let merged = &waiting[1..];
            out.push_str(row(&columns, None, merged).trim_end());
            out.push('\n');
            for &m in merged {
                columns[m] = None;
            }
            while columns.last().is_some_and(Option::is_none) {
                columns.pop();
            }
        }
        columns[col] = Some(s.id.clone());
        let mut line = row(&columns, Some(col), &[]);
        line.push_str(short(&s.id));
        line.push(' ');
        if let Some(names) = labels.get(s.id.as_str()) {
            line.push_str(&format!("({}) ", names.join(", ")));
        }
        line.push_str(&s.name);
        if !s.description.is_empty() {
            line.push_str(&format!(" — {}", s.description));
        }
        out.push_str(line.trim_end());
        out.push('\n');
        columns[col] = s.parent_id.clone();
        while columns.last().is_some_and(Option::is_none) {
            columns.pop();
        }
    }
    out
}

/// An id's first eight characters, as `git log --oneline` shortens hashes.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl Conflict {
    /// The fields that differ as a table: field, initial, current, target; each row indented
    /// two spaces.
    pub fn table(&self) -> String {
        let (init, cur, tgt) = (&self.initial, &self.current, &self.target);
        let field = |v: &serde_json::Value, k: &str| -> String {
            match v.get(k) {
                None => "-".into(),
                Some(serde_json::Value::String(s)) => format!("{s:?}"),
                Some(other) => other.to_string(),
            }
        };
        let mut keys: Vec<String> = Vec::new();
        for v in [init, cur, tgt] {
            if let Some(obj) = v.as_object() {
                for k in obj.keys() {
                    if !keys.contains(k) {
                        keys.push(k.clone());
                    }
                }
            }
        }
        let mut rows =
            vec![["field".to_string(), "initial".into(), "current".into(), "target".into()]];
        for k in keys {
            let row = [k.clone(), field(init, &k), field(cur, &k), field(tgt, &k)];
            if row[1] != row[2] || row[2] != row[3] {
                rows.push(row);
            }
        }
        let widths: Vec<usize> =
            (0..4).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
        rows.iter()
            .map(|r| {
                let cells: Vec<String> =
                    (0..4).map(|i| format!("{:<w$}", r[i], w = widths[i])).collect();
                format!("  {}", cells.join("  ").trim_end())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, parent: Option<&str>, at: u64) -> Snapshot {
        Snapshot {
            id: id.into(),
            parent_id: parent.map(String::from),
            volset_id: "vs".into(),
            name: format!("n{id}"),
            description: String::new(),
            attrs: Default::default(),
            size: 0,
            creator: String::new(),
            owner: String::new(),
            created_at: at,
            updated_at: at,
            blob_id: None,
            prev_blob_id: None,
            depth: 0,
        }
    }

    #[test]
    fn graph_draws_a_fork() {
        let snaps = [
            snap("1", None, 1),
            snap("2", Some("1"), 2),
            snap("3", Some("2"), 3),
            snap("4", Some("1"), 4),
        ];
        let branches = [
            Branch {
                id: "b".into(),
                volset_id: "vs".into(),
                name: "main".into(),
                tip: "3".into(),
                attrs: Default::default(),
            },
            Branch {
                id: "c".into(),
                volset_id: "vs".into(),
                name: "dev".into(),
                tip: "4".into(),
                attrs: Default::default(),
            },
        ];
        let text = graph(&snaps, &branches);
        assert_eq!(text, "* 4 (dev) n4\n| * 3 (main) n3\n| * 2 n2\n|/\n* 1 n1\n");
    }
}
