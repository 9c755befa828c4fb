//! `#[tool]` at run time: schemas, argument decoding, results and policies.

use hitl_runtime::policy::{AllowsApprove, AllowsReject};
use hitl_runtime::{
    DecisionType, Interrupt, Tool, ToolContext, ToolError, interrupt_on, tool, tools,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Delete a file from the workspace.
#[tool(interrupt(allowed = [approve, reject], description = "Deleting {path} cannot be undone"))]
pub(crate) async fn delete_file(
    /// Path relative to the workspace root.
    path: String,
) -> Result<String, ToolError> {
    Ok(format!("deleted {path}"))
}

/// How urgent an email is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Priority {
    Low,
    High,
}

/// Send an email.
#[tool(interrupt(allowed = [approve, edit, reject]))]
pub(crate) async fn send_email(
    /// The recipient's address.
    to: String,
    /// The text.
    body: String,
    /// Copy to these addresses.
    cc: Option<Vec<String>>,
    priority: Priority,
) -> Result<String, ToolError> {
    Ok(format!(
        "sent to {to} ({priority:?}, {} cc): {body}",
        cc.map_or(0, |c| c.len())
    ))
}

/// Search the knowledge base.
#[tool]
fn search(query: String, limit: u8) -> Vec<String> {
    (0..limit).map(|i| format!("{query} #{i}")).collect()
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct TransferDecision {
    approved: bool,
}

#[derive(Serialize, Interrupt)]
#[interrupt(resume = TransferDecision)]
struct LargeTransfer {
    amount: f64,
    to: String,
}

/// Transfer money; large transfers ask a human.
#[tool]
async fn transfer_money(cx: ToolContext, amount: f64, to: String) -> Result<String, ToolError> {
    if amount > 1000.0 {
        let d = cx
            .interrupt(LargeTransfer {
                amount,
                to: to.clone(),
            })
            .await?;
        if !d.approved {
            return Ok("Transaction cancelled by user".into());
        }
    }
    Ok(format!("Transferred ${amount} to {to}"))
}

/// Fails with its own error type.
#[tool]
async fn flaky(fail: bool) -> Result<String, std::io::Error> {
    if fail {
        return Err(std::io::Error::other("disk on fire"));
    }
    Ok("fine".into())
}

fn check_samples(schema: &Value, accepted: Value, rejected: Value) {
    assert!(
        hitl_runtime::validate_json(schema, &accepted).is_ok(),
        "{accepted} should match {schema}"
    );
    let validator = jsonschema::validator_for(schema).unwrap();
    assert!(validator.is_valid(&accepted));
    assert!(
        !validator.is_valid(&rejected),
        "{rejected} should not match"
    );
}

#[test]
fn every_generated_schema_is_snapshotted_and_validates_samples() {
    let schemas = [
        (delete_file::NAME, delete_file::args_schema()),
        (send_email::NAME, send_email::args_schema()),
        (search::NAME, search::args_schema()),
        (transfer_money::NAME, transfer_money::args_schema()),
        (flaky::NAME, flaky::args_schema()),
    ];
    for (name, schema) in &schemas {
        insta::assert_json_snapshot!(format!("schema_{name}"), **schema);
    }
    check_samples(
        &schemas[0].1,
        json!({"path": "a.txt"}),
        json!({"path": "a.txt", "force": true}),
    );
    check_samples(
        &schemas[1].1,
        json!({"to": "a@b.c", "body": "hi", "priority": "high"}),
        json!({"to": "a@b.c", "body": "hi", "priority": "urgent"}),
    );
    check_samples(
        &schemas[2].1,
        json!({"query": "x", "limit": 3}),
        json!({"query": "x", "limit": 300}),
    );
    check_samples(
        &schemas[3].1,
        json!({"amount": 5.5, "to": "acme"}),
        json!({"amount": "5", "to": "acme"}),
    );
    check_samples(&schemas[4].1, json!({"fail": false}), json!({}));
}

#[test]
fn specs_carry_name_description_and_parameter_docs() {
    let spec = send_email::spec();
    assert_eq!(spec.name, "send_email");
    assert_eq!(spec.description, "Send an email.");
    assert_eq!(
        spec.parameters["properties"]["to"]["description"],
        "The recipient's address."
    );
    let set = tools![delete_file, send_email, search];
    assert_eq!(set.specs().len(), 3);
    assert_eq!(
        set.get("search").unwrap().spec().description,
        "Search the knowledge base."
    );
}

async fn call(name: &str, args: Value) -> Result<Value, ToolError> {
    let set = tools![delete_file, send_email, search, transfer_money, flaky];
    let tool = set.get(name).unwrap().clone();
    tool.call(args, ToolContext::detached(name, "call_1", []))
        .await
}

#[tokio::test]
async fn bad_arguments_are_errors_the_model_can_read_naming_the_field() {
    let err = call(
        "send_email",
        json!({"to": 1, "body": "x", "priority": "low"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid arguments for `send_email`: to: invalid type: integer `1`, expected a string"
    );
    let err = call(
        "send_email",
        json!({"to": "a", "body": "x", "priority": "urgent"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid arguments for `send_email`: priority: unknown variant `urgent`, expected `low` or `high`"
    );
    let err = call("delete_file", json!({"pth": "a"})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid arguments for `delete_file`: unknown field `pth`, expected `path`"
    );
    let err = call("delete_file", json!({})).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid arguments for `delete_file`: missing field `path`"
    );
    let err = call("search", json!({"query": "q", "limit": 300}))
        .await
        .unwrap_err();
    assert!(matches!(err, ToolError::InvalidArgs { .. }), "{err}");
}

#[tokio::test]
async fn results_and_errors_convert() {
    assert_eq!(
        call("delete_file", json!({"path": "a.txt"})).await.unwrap(),
        json!("deleted a.txt")
    );
    assert_eq!(
        call("search", json!({"query": "q", "limit": 2}))
            .await
            .unwrap(),
        json!(["q #0", "q #1"])
    );
    assert_eq!(
        call("flaky", json!({"fail": false})).await.unwrap(),
        json!("fine")
    );
    assert_eq!(
        call("flaky", json!({"fail": true})).await.unwrap_err(),
        ToolError::Failed("disk on fire".into())
    );
    // The function itself is still callable directly.
    assert_eq!(delete_file("x".into()).await.unwrap(), "deleted x");
}

#[tokio::test]
async fn a_detached_context_answers_typed_interrupts_in_order() {
    let set = tools![transfer_money];
    let tool = set.get("transfer_money").unwrap().clone();
    let small = tool
        .call(
            json!({"amount": 10.0, "to": "bob"}),
            ToolContext::detached("transfer_money", "c1", []),
        )
        .await
        .unwrap();
    assert_eq!(small, json!("Transferred $10 to bob"));
    let paused = tool
        .call(
            json!({"amount": 5000.0, "to": "bob"}),
            ToolContext::detached("transfer_money", "c2", []),
        )
        .await
        .unwrap_err();
    assert_eq!(paused, ToolError::Interrupted);
    let declined = tool
        .call(
            json!({"amount": 5000.0, "to": "bob"}),
            ToolContext::detached("transfer_money", "c3", [json!({"approved": false})]),
        )
        .await
        .unwrap();
    assert_eq!(declined, json!("Transaction cancelled by user"));
}

#[test]
fn attribute_policies_and_interrupt_on_overrides() {
    fn allows<T: AllowsApprove + AllowsReject>() {}
    allows::<delete_file>();
    let p = delete_file::policy().unwrap();
    assert_eq!(
        p.allowed().iter().collect::<Vec<_>>(),
        [DecisionType::Approve, DecisionType::Reject]
    );
    assert_eq!(
        p.describe(&json!({"path": "notes.txt"})).as_deref(),
        Some("Deleting notes.txt cannot be undone")
    );
    assert!(search::policy().is_none());
    let map = interrupt_on! {
        search: [approve],
        delete_file: false,
    };
    assert_eq!(
        map.get("search")
            .unwrap()
            .as_ref()
            .unwrap()
            .allowed()
            .iter()
            .collect::<Vec<_>>(),
        [DecisionType::Approve]
    );
    assert!(map.get("delete_file").unwrap().is_none());
    assert!(
        map.get("send_email").is_none(),
        "tools not in the map keep their own policy"
    );
}
