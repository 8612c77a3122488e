//! Where things are in a talk file's text, for its error messages: the field an error position
//! falls in, and the line of a step's field. A small scanner over RON's surface (strings with
//! escapes, `//` and `/* */` comments, brackets), no second parser.

/// One field name seen in the text: `name:` outside strings and comments, at bracket depth
/// `depth`, starting on `line` (1-based), at byte `at`.
#[derive(Debug, Clone, PartialEq)]
struct FieldMark {
    name: String,
    depth: usize,
    line: usize,
    at: usize,
    /// Which step it belongs to (the index of the enclosing step's parentheses), if any.
    step: Option<usize>,
}

/// Every `name:` of the file, in order.
fn fields(text: &str) -> Vec<FieldMark> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line, mut depth) = (0usize, 1usize, 0usize);
    // The depth of the `steps: [` list once seen, and the index of the step being read.
    let mut steps_depth: Option<usize> = None;
    let mut steps_seen = 0usize;
    let mut step: Option<usize> = None;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => line += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    line += usize::from(bytes[i] == b'\n');
                    i += 1;
                }
                i += 2;
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    line += usize::from(bytes[i] == b'\n');
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if c == b'(' && steps_depth.is_some_and(|d| depth == d + 1) {
                    step = Some(steps_seen);
                    steps_seen += 1;
                }
            }
            b')' | b']' | b'}' => {
                if steps_depth.is_some_and(|d| depth == d + 1) && c == b')' {
                    step = None;
                }
                if steps_depth == Some(depth) {
                    steps_depth = None;
                }
                depth = depth.saturating_sub(1);
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let mut j = i;
                while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                    j += 1;
                }
                if bytes.get(j) == Some(&b':') {
                    let name = text[start..i].to_string();
                    if name == "steps" && steps_depth.is_none() {
                        // The list opens at the next bracket: one deeper than here.
                        steps_depth = Some(depth + 1);
                    }
                    out.push(FieldMark {
                        name,
                        depth,
                        line,
                        at: start,
                        step,
                    });
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The byte offset of a 1-based line and column (columns count characters).
fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (n, l) in text.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            return offset
                + l.char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    text.len()
}

/// The field an error at `line`, `col` is in: the last `name:` before it.
pub fn field_at(text: &str, line: usize, col: usize) -> Option<String> {
    let at = offset_of(text, line, col);
    fields(text)
        .into_iter()
        .take_while(|f| f.at <= at)
        .last()
        .map(|f| f.name)
}

/// The line of `field` in step `step` (0-based), or of the step's first field when it does not
/// name that field.
pub fn line_of(text: &str, step: usize, field: &str) -> Option<usize> {
    let marks: Vec<FieldMark> = fields(text)
        .into_iter()
        .filter(|f| f.step == Some(step))
        .collect();
    let depth = marks.iter().map(|f| f.depth).min()?;
    marks
        .iter()
        .find(|f| f.name == field && f.depth == depth)
        .or(marks.first())
        .map(|f| f.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "// a: comment\n(\n title: \"a: b\",\n steps: [\n  (caption: \"one\\\" x: y\",\n   scene: Some(llm)),\n  (caption: \"two\",\n   /* neuron: */ neuron: Some((1, 2))),\n ],\n)";

    #[test]
    fn fields_skip_strings_and_comments_and_know_their_step() {
        let marks = fields(TEXT);
        let names: Vec<(&str, usize, Option<usize>)> = marks
            .iter()
            .map(|f| (f.name.as_str(), f.line, f.step))
            .collect();
        assert_eq!(
            names,
            [
                ("title", 3, None),
                ("steps", 4, None),
                ("caption", 5, Some(0)),
                ("scene", 6, Some(0)),
                ("caption", 7, Some(1)),
                ("neuron", 8, Some(1)),
            ]
        );
    }

    #[test]
    fn an_error_position_names_its_field_and_a_step_field_its_line() {
        // Line 6, column 16 is inside `Some(llm)`.
        assert_eq!(field_at(TEXT, 6, 16).as_deref(), Some("scene"));
        assert_eq!(line_of(TEXT, 1, "neuron"), Some(8));
        assert_eq!(line_of(TEXT, 1, "view"), Some(7), "the step's first line");
        assert_eq!(line_of(TEXT, 5, "view"), None);
    }
}
