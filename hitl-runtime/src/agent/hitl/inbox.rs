//! Answers in Agent Inbox's form, translated to decisions.
//!
//! Agent Inbox shows a v1 review but answers it with its older `HumanResponse` list,
//! `[{"type": "accept" | "edit" | "response" | "ignore", "args": ..}]`, one per action
//! request, which LangChain's middleware refuses. hitl translates it, per call and per
//! the policy's allowed decisions, before the answer is checked and stored (what is
//! stored is the translated `{"decisions": [..]}`):
//!
//! | `HumanResponse` | decision |
//! |---|---|
//! | `accept` | `approve` |
//! | `edit`, `args: {"action": name, "args": {..}}` | `edit` with that action |
//! | `response`, `args: "text"` | `reject` with the text as its message if the policy allows `reject`, else `respond` with it |
//! | `ignore` | `reject` without a message |
//!
//! A translated decision is then checked like any other: one the policy does not allow,
//! or an edit whose arguments do not fit the tool, is refused with the usual error and
//! nothing is stored.

use serde_json::{Value, json};

use crate::policy::DecisionType;

/// The answer's `HumanResponse` items, if it is in that form: a list of objects whose
/// `type` is one of the four, or one such object. Cheap: checked before anything else
/// is read for the translation.
pub(super) fn human_responses(answer: &Value) -> Option<&[Value]> {
    let responses = match answer {
        Value::Array(list) => list.as_slice(),
        // One response for a one-call review.
        Value::Object(_) => std::slice::from_ref(answer),
        _ => return None,
    };
    let typed = |r: &Value| {
        matches!(
            r.get("type").and_then(Value::as_str),
            Some("accept" | "edit" | "response" | "ignore")
        )
    };
    (!responses.is_empty() && responses.iter().all(typed)).then_some(responses)
}

/// The decisions for these `HumanResponse` items, given the decisions the review
/// allows per call; `None` if an item's `args` do not fit its type.
pub(super) fn translate(allowed: &[Vec<DecisionType>], responses: &[Value]) -> Option<Value> {
    let decisions: Option<Vec<Value>> = responses
        .iter()
        .enumerate()
        .map(|(k, r)| {
            let allows = |d| allowed.get(k).is_some_and(|a| a.contains(&d));
            let args = r.get("args");
            Some(match r.get("type")?.as_str()? {
                "accept" => json!({"type": "approve"}),
                "edit" => {
                    let action = args?;
                    json!({"type": "edit", "edited_action": {
                        "name": action.get("action")?,
                        "args": action.get("args")?,
                    }})
                }
                "response" => {
                    let text = args?.as_str()?;
                    if allows(DecisionType::Reject) || !allows(DecisionType::Respond) {
                        json!({"type": "reject", "message": text})
                    } else {
                        json!({"type": "respond", "message": text})
                    }
                }
                "ignore" => json!({"type": "reject"}),
                _ => return None,
            })
        })
        .collect();
    Some(json!({ "decisions": decisions? }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use DecisionType::*;

    #[test]
    fn human_responses_become_decisions_per_policy() {
        let allowed = vec![
            vec![Approve, Edit, Reject],
            vec![Approve, Respond],
            vec![Approve, Reject],
        ];
        let answer = json!([
            {"type": "edit", "args": {"action": "send_email", "args": {"to": "bob"}}},
            {"type": "response", "args": "already done"},
            {"type": "response", "args": "not now"},
        ]);
        assert_eq!(
            translate(&allowed, human_responses(&answer).unwrap()).unwrap(),
            json!({"decisions": [
                {"type": "edit", "edited_action": {"name": "send_email", "args": {"to": "bob"}}},
                {"type": "respond", "message": "already done"},
                {"type": "reject", "message": "not now"},
            ]})
        );
        let one = json!({"type": "accept", "args": null});
        let ignore = json!([{"type": "ignore", "args": null}]);
        assert_eq!(
            translate(&allowed[..1], human_responses(&one).unwrap()).unwrap(),
            json!({"decisions": [{"type": "approve"}]})
        );
        assert_eq!(
            translate(&allowed[..1], human_responses(&ignore).unwrap()).unwrap(),
            json!({"decisions": [{"type": "reject"}]})
        );
        // Not this form: left as given (and checked as given).
        for other in [
            json!({"decisions": []}),
            json!({"type": "approve"}),
            json!([]),
            json!([{"type": "maybe"}]),
            json!([{"type": "accept"}, {"type": "approve"}]),
        ] {
            assert_eq!(human_responses(&other), None, "{other}");
        }
        // The form, with args that do not fit.
        let bad = json!([{"type": "edit", "args": {}}]);
        assert_eq!(translate(&allowed, human_responses(&bad).unwrap()), None);
    }
}
