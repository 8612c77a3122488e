//! Hostile variants of a valid JSON document, for the tests that feed them to a reader: one to
//! three nodes of the tree replaced by extreme numbers (1e39 reads as an f32 infinity), wrong
//! types, empty or odd arrays and objects; reproducible from a seed.

use llm::sampling::Rng;
use serde_json::{Value, json};

/// `n` variants of `base`, each with one to three of its nodes replaced.
pub fn mutated(base: &Value, seed: u64, n: usize) -> Vec<Value> {
    let replacements = [
        json!(1e39),
        json!(-1e39),
        json!(u64::MAX),
        json!(-1),
        json!(0),
        json!(2.5),
        json!(1e-45),
        Value::Null,
        json!("x"),
        json!(true),
        json!([]),
        json!([1e39]),
        json!({}),
    ];
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let mut v = base.clone();
            for _ in 0..1 + rng.next_u64() % 3 {
                // Counted afresh: a change may drop nodes.
                let at = (rng.next_u64() % count(&v) as u64) as usize;
                let pick = &replacements[(rng.next_u64() % replacements.len() as u64) as usize];
                replace_nth(&mut v, at, pick, &mut 0);
            }
            v
        })
        .collect()
}

/// Nodes of the tree, the root included.
fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// Replace the `n`th node (depth first, parents before children) by `new`; true once done.
fn replace_nth(v: &mut Value, n: usize, new: &Value, seen: &mut usize) -> bool {
    if *seen == n {
        *v = new.clone();
        return true;
    }
    *seen += 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace_nth(x, n, new, seen)),
        Value::Object(o) => o.values_mut().any(|x| replace_nth(x, n, new, seen)),
        _ => false,
    }
}
