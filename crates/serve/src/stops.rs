//! Stop strings (OpenAI's `stop`, Ollama's `options.stop`): the answer ends before the first
//! one it produces, and a streamed answer holds back only the text that could still become one.

use serde_json::Value;

/// At most this many stop strings a request (OpenAI's own limit).
pub(crate) const MAX_STOPS: usize = 4;
/// At most this many bytes each.
pub(crate) const MAX_STOP_BYTES: usize = 64;

/// The request's stop strings and the generated text not yet handed out.
#[derive(Debug, Default)]
pub(crate) struct Stops {
    stops: Vec<String>,
    pending: String,
}

impl Stops {
    /// Read `stop` (a string, a list of strings, or null) from `options` when the request has
    /// an `options` object (Ollama), else from the top level (OpenAI).
    pub(crate) fn read(v: &Value) -> Result<Self, String> {
        let field = if v["options"].is_object() {
            &v["options"]["stop"]
        } else {
            &v["stop"]
        };
        let stops: Vec<String> = match field {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s.clone()],
            Value::Array(a) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            _ => return Err("stop: a string or a list of strings".to_string()),
        };
        let stops: Vec<String> = stops.into_iter().filter(|s| !s.is_empty()).collect();
        if stops.len() > MAX_STOPS {
            return Err(format!(
                "stop: {} strings; this server takes at most {MAX_STOPS}",
                stops.len()
            ));
        }
        if stops.iter().any(|s| s.len() > MAX_STOP_BYTES) {
            return Err(format!("stop: a string longer than {MAX_STOP_BYTES} bytes"));
        }
        Ok(Self {
            stops,
            pending: String::new(),
        })
    }

    /// Take a generated piece: the text that can go out now, and whether a stop string was
    /// reached (the answer ends there; the stop string itself is not part of it).
    pub(crate) fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (piece.to_string(), false);
        }
        self.pending.push_str(piece);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest tail that is the start of a stop string.
        let held = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.pending.len());
        let out = self.pending[..held].to_string();
        self.pending.drain(..held);
        (out, false)
    }

    /// The text still held back when the answer ends without reaching a stop string.
    pub(crate) fn rest(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stops(list: &[&str]) -> Stops {
        Stops::read(&json!({ "stop": list })).unwrap()
    }

    #[test]
    fn text_before_the_stop_string_goes_out_and_the_answer_ends_there() {
        let mut s = stops(&["\n\n", "END"]);
        assert_eq!(s.push("Hello"), ("Hello".into(), false));
        // "E" could start "END": held back, then given out when it does not.
        assert_eq!(s.push(" E"), (" ".into(), false));
        assert_eq!(s.push("ast."), ("East.".into(), false));
        assert_eq!(s.push("\n"), ("".into(), false));
        assert_eq!(s.push("\nNext"), ("".into(), true));
        // Across pieces, and in the middle of one.
        let mut s = stops(&["END"]);
        assert_eq!(s.push("aE"), ("a".into(), false));
        assert_eq!(s.push("NDb"), ("".into(), true));
        let mut s = stops(&["."]);
        assert_eq!(s.push("Paris. It"), ("Paris".into(), true));
    }

    #[test]
    fn held_text_comes_out_at_the_end_and_multibyte_text_is_cut_on_characters() {
        let mut s = stops(&["é!"]);
        assert_eq!(s.push("café"), ("caf".into(), false));
        assert_eq!(s.rest(), "é");
        let mut s = stops(&[]);
        assert_eq!(s.push("x\n"), ("x\n".into(), false));
        assert_eq!(s.rest(), "");
    }

    #[test]
    fn ollama_reads_them_from_options_and_bad_lists_are_refused() {
        let s = Stops::read(&json!({"options": {"stop": ["a", "b"]}, "stop": "c"})).unwrap();
        assert_eq!(s.stops, ["a", "b"]);
        let s = Stops::read(&json!({"stop": "c"})).unwrap();
        assert_eq!(s.stops, ["c"]);
        assert!(Stops::read(&json!({"stop": ["a", 1]})).is_err());
        assert!(Stops::read(&json!({"stop": 5})).is_err());
        assert!(Stops::read(&json!({"stop": ["a", "b", "c", "d", "e"]})).is_err());
        assert!(Stops::read(&json!({"stop": "x".repeat(65)})).is_err());
        // Empty strings would end every answer at once: they are left out.
        assert!(
            Stops::read(&json!({"stop": [""]}))
                .unwrap()
                .stops
                .is_empty()
        );
    }
}
