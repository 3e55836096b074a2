//! Plain-text output of `pvegate ops`: aligned tables, key/value lists, byte sizes.

use serde_json::Value;

/// An aligned table with a header row; empty columns are kept so scripts can count them.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                let pad = widths[i] - c.chars().count() + 2;
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = vec![line(header.to_vec())];
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

/// `key  value` lines of a JSON object, sorted by key; nested values as compact JSON.
pub fn kv_table(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return v.to_string();
    };
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    let rows: Vec<Vec<String>> = keys
        .into_iter()
        .map(|k| {
            let val = match &obj[k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![k.clone(), val]
        })
        .collect();
    table(&["KEY", "VALUE"], &rows)
}

/// `34359738368` → `32.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n == 0 {
        return String::new();
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["VMID", "NAME"],
            &[
                vec!["104".into(), "doc1".into()],
                vec!["9001".into(), "".into()],
            ],
        );
        assert_eq!(t, "VMID  NAME\n104   doc1\n9001");
        assert_eq!(human_bytes(34_359_738_368), "32.0 GiB");
        assert_eq!(human_bytes(0), "");
        let kv = kv_table(&serde_json::json!({"b": 1, "a": "x"}));
        assert_eq!(kv, "KEY  VALUE\na    x\nb    1");
    }
}
