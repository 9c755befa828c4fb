//! The review's rules, schemas and texts.

use serde_json::json;

use super::rules::*;
use super::*;
use crate::interrupt::ResumeKind;

fn keys(v: &serde_json::Map<String, Value>) -> Vec<&str> {
    v.keys().map(String::as_str).collect()
}

fn request() -> Value {
    json!({
        "action_requests": [
            {"name": "send_email", "args": {"to": "a"}, "description": "d"},
            {"name": "delete_file", "args": {"path": "x"}, "description": "d"}
        ],
        "review_configs": [
            {"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject"],
             "args_schema": {"type": "object", "properties": {"to": {"type": "string"}},
                             "required": ["to"], "additionalProperties": false}},
            {"action_name": "delete_file", "allowed_decisions": ["approve", "reject"]}
        ]
    })
}

#[test]
fn batched_resumes_are_checked_with_messages_naming_the_problem() {
    let p = request();
    let ok = json!({"decisions": [
        {"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "b"}}},
        {"type": "reject", "message": "no"}
    ]});
    assert_eq!(validate::<Batched>(&ToolSet::new(), &p, &ok), Ok(()));
    let cases = [
        (
            json!("yes"),
            "expected {\"decisions\": [..]} with one decision per action request, got \"yes\"",
        ),
        (
            json!({"decision": []}),
            "missing `decisions`: expected {\"decisions\": [..]} with one decision per action request",
        ),
        (
            json!({"decisions": [{"type": "approve"}]}),
            "1 decision for 2 action requests: give exactly one decision per action request, in order",
        ),
        (
            json!({"decisions": [{"type": "respond", "message": "x"}, {"type": "approve"}]}),
            "decision 0 (`send_email`): `respond` is not allowed for this tool; allowed: `approve`, `edit`, `reject`",
        ),
        (
            json!({"decisions": [{"type": "maybe"}, {"type": "approve"}]}),
            "decision 0 (`send_email`): unknown decision type `maybe`; expected one of `approve`, `edit`, `reject`",
        ),
        (
            json!({"decisions": [{"type": "edit"}, {"type": "approve"}]}),
            "decision 0 (`send_email`): an edit needs `edited_action`: {\"name\": \"send_email\", \"args\": {..}}",
        ),
        (
            json!({"decisions": [{"type": "edit", "edited_action": {"name": "draft_email", "args": {"to": "b"}}}, {"type": "approve"}]}),
            "decision 0 (`send_email`): an edit may not switch tools: `send_email` was edited to `draft_email`",
        ),
        (
            json!({"decisions": [{"type": "edit", "edited_action": {"name": "send_email", "args": {"too": 1}}}, {"type": "approve"}]}),
            "decision 0 (`send_email`): the edited arguments do not match the tool's schema",
        ),
    ];
    for (value, expected) in cases {
        let problems = validate::<Batched>(&ToolSet::new(), &p, &value).unwrap_err();
        assert!(
            problems.iter().any(|m| m.starts_with(expected)),
            "{value}: {problems:?}"
        );
    }
}

#[test]
fn the_published_schema_agrees_with_the_validator() {
    let p = request();
    let req: HitlRequest = serde_json::from_value(request()).unwrap();
    let schema = batched_schema_of(
        req.review_configs
            .iter()
            .map(|c| decision_schema(&c.action_name, &c.allowed_decisions))
            .collect(),
    );
    assert_eq!(
        ReviewKind::<Batched>::new(ToolSet::new(), Default::default())
            .schema(&p)
            .as_deref(),
        Some(&schema),
        "the schema derived from a stored payload is the one published"
    );
    let good = json!({"decisions": [{"type": "approve"}, {"type": "reject"}]});
    let bad = json!({"decisions": [{"type": "approve"}, {"type": "edit", "edited_action": {"name": "delete_file", "args": {}}}]});
    assert!(crate::schema::validate(&schema, &good).is_ok());
    assert!(validate::<Batched>(&ToolSet::new(), &p, &good).is_ok());
    assert!(crate::schema::validate(&schema, &bad).is_err());
    assert!(validate::<Batched>(&ToolSet::new(), &p, &bad).is_err());
    assert_eq!(
        keys(schema.as_object().unwrap()),
        ["additionalProperties", "properties", "required", "type"]
    );
}

#[test]
fn default_descriptions_and_reject_texts_are_langchains() {
    let hitl = HumanInTheLoop::from_tools();
    let call = ToolCall::new("send_email", json!({"to": "a", "body": "b"}), "c1");
    assert_eq!(
        hitl.describe(&call, &InterruptPolicy::all()),
        "Tool execution requires approval\n\nTool: send_email\nArgs: {'body': 'b', 'to': 'a'}"
    );
    assert_eq!(
        reject_text("send_email", "c1", Some("no")),
        "User rejected the tool call for `send_email` with reason: no"
    );
    assert!(reject_text("send_email", "c1", Some("")).starts_with(
        "User rejected the tool call for `send_email` with id c1. The tool was not executed."
    ));
}

#[test]
fn requests_built_from_parts_are_their_serialization() {
    let request: HitlRequest = serde_json::from_value(request()).unwrap();
    let parts = HitlRequest::json_of(
        request
            .action_requests
            .iter()
            .cloned()
            .map(ActionRequest::into_json)
            .collect(),
        request
            .review_configs
            .iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect(),
    );
    // The interrupt value is this `Value` (its text, stored or sent, follows from it).
    assert_eq!(parts, serde_json::to_value(&request).unwrap());
}
