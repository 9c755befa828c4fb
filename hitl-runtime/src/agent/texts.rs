//! The texts a model reads when a call cannot run, in LangChain's wording (prompts and
//! evaluations are tuned to them), and Python's rendering of arguments they quote.

use serde_json::Value;

/// A call to a tool the agent does not have.
pub(crate) fn unknown_tool<'a>(name: &str, tools: impl Iterator<Item = &'a str>) -> String {
    let tools: Vec<&str> = tools.collect();
    format!(
        "Error: {name} is not a valid tool, try one of [{}].",
        tools.join(", ")
    )
}

/// A call whose arguments the tool's decoder rejects.
pub(crate) fn invalid_args(name: &str, args: &Value, error: &str) -> String {
    format!(
        "Error invoking tool '{name}' with kwargs {} with error:\n {error}\n Please fix the error and try again.",
        python_repr(args)
    )
}

/// How Python writes a value: `repr` of the equivalent object, or `json.dumps`.
#[derive(Clone, Copy)]
enum Python {
    Repr,
    JsonDumps,
}

/// A JSON value as Python's `repr` prints the equivalent object (`{'to': 'a', 'n': 1,
/// 'ok': True, 'x': None}`), as LangChain's messages quote arguments.
pub(crate) fn python_repr(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value, Python::Repr);
    out
}

/// A JSON value as Python's `json.dumps` writes it (LangChain's edit notice quotes the
/// executed arguments so): `", "` and `": "` separators, non-ASCII characters escaped
/// as `\uXXXX`.
pub(crate) fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write(&mut out, value, Python::JsonDumps);
    out
}

fn write(out: &mut String, value: &Value, style: Python) {
    let string = |out: &mut String, s: &str| match style {
        Python::Repr => write_str(out, s),
        Python::JsonDumps => write_json_str(out, s),
    };
    match (value, style) {
        (Value::String(s), _) => string(out, s),
        (Value::Array(items), _) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write(out, item, style);
            }
            out.push(']');
        }
        (Value::Object(map), _) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                string(out, k);
                out.push_str(": ");
                write(out, v, style);
            }
            out.push('}');
        }
        (Value::Null, Python::Repr) => out.push_str("None"),
        (Value::Bool(true), Python::Repr) => out.push_str("True"),
        (Value::Bool(false), Python::Repr) => out.push_str("False"),
        (scalar, _) => out.push_str(&scalar.to_string()),
    }
}

/// A string as `json.dumps` quotes it with `ensure_ascii` (its default).
fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// A string as Python quotes it: single quotes, unless it contains a single quote and
/// no double quote.
fn write_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn arguments_are_quoted_as_python_prints_them() {
        assert_eq!(
            python_repr(&json!({"too": 1, "b": [true, null, 1.5], "s": "it's"})),
            r#"{'b': [True, None, 1.5], 's': "it's", 'too': 1}"#
        );
        assert_eq!(python_repr(&json!("a'b\"c\n")), r#"'a\'b"c\n'"#);
    }

    #[test]
    fn executed_arguments_are_written_as_json_dumps_writes_them() {
        assert_eq!(
            python_json(&json!({"to": "bob", "n": [1, 2.5, true, null], "o": {}})),
            r#"{"n": [1, 2.5, true, null], "o": {}, "to": "bob"}"#
        );
        // ensure_ascii: non-ASCII as \uXXXX, astral characters as surrogate pairs.
        assert_eq!(
            python_json(&json!(
                "caf\u{e9} \u{1F600} \"q\" \\ \n\u{1}\u{7f}\u{8}\u{c}"
            )),
            r#""caf\u00e9 \ud83d\ude00 \"q\" \\ \n\u0001\u007f\b\f""#
        );
    }

    #[test]
    fn texts_match_langchain() {
        assert_eq!(
            invalid_args("send_email", &json!({"too": 1}), "to: Field required"),
            "Error invoking tool 'send_email' with kwargs {'too': 1} with error:\n to: Field required\n Please fix the error and try again."
        );
        assert_eq!(
            unknown_tool("format_disk", ["read_file", "send_email"].into_iter()),
            "Error: format_disk is not a valid tool, try one of [read_file, send_email]."
        );
    }
}
