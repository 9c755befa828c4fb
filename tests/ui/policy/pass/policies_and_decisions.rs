use hitl_runtime::{interrupt_on, tool, tools, Decision, DecisionType, HitlResponse, ToolError};

/// Delete a file.
#[tool(interrupt(allowed = [approve, reject]))]
async fn delete_file(path: String) -> Result<String, ToolError> {
    Ok(path)
}

/// Send an email.
#[tool(interrupt(allowed = [approve, edit, reject, respond]))]
async fn send_email(to: String, body: String) -> Result<String, ToolError> {
    Ok(format!("{to}{body}"))
}

/// Read data.
#[tool]
async fn read_data() -> Result<String, ToolError> {
    Ok(String::new())
}

mod other {
    /// A tool in another module.
    #[hitl_runtime::tool]
    pub async fn lookup(key: String) -> String {
        key
    }
}

fn main() {
    let set = tools![read_data, delete_file, send_email, other::lookup];
    assert_eq!(set.names().collect::<Vec<_>>(), ["read_data", "delete_file", "send_email", "lookup"]);

    let policies = interrupt_on! {
        delete_file: [approve, reject],
        send_email: true,
        read_data: false,
        other::lookup: [respond],
    };
    assert!(policies.get("read_data").unwrap().is_none());
    assert_eq!(policies.get("send_email").unwrap().as_ref().unwrap().allowed().iter().count(), 4);
    assert!(policies.get("lookup").unwrap().as_ref().unwrap().allowed().contains(DecisionType::Respond));

    let response = HitlResponse::from([
        Decision::approve::<delete_file>(),
        Decision::reject::<delete_file>("not that one"),
        Decision::edit::<send_email>(SendEmailArgs { to: "bob".into(), body: "hi".into() }),
        Decision::respond::<send_email>("already sent"),
    ]);
    assert_eq!(
        serde_json::to_value(&response).unwrap()["decisions"][2],
        serde_json::json!({"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "bob", "body": "hi"}}})
    );
}
