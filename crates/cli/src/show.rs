//! How an operation and its decisions read in a terminal.

use countersign_client::VerifiedOperation;
use serde_json::Value;

/// One recorded decision and what its signature says about it.
pub fn decision_line(d: &countersign_client::CheckedDecision) -> String {
    use countersign_core::certificate::DecisionCheck;
    let verdict = match &d.check {
        DecisionCheck::Signed => "signed by their key".to_owned(),
        DecisionCheck::ReasonAltered => "ALTERED: their key signed a different reason".to_owned(),
        DecisionCheck::ReasonUnsigned => "the reason is not signed (older client)".to_owned(),
        DecisionCheck::KeyNotInRegistry => "cannot check: the key is not in the registry".to_owned(),
        DecisionCheck::Invalid { problem } => format!("INVALID signature: {problem}"),
    };
    let reason = d.reason.as_deref().map(|r| format!(" \"{r}\"")).unwrap_or_default();
    format!("  {} {} at {}{reason}  [{verdict}]", d.approver, d.decision, d.decided_at)
}

/// One line per operation: id, state, what, fingerprint.
pub fn summary(op: &VerifiedOperation) -> String {
    let v = serde_json::to_value(&op.operation).unwrap_or(Value::Null);
    let (kind, details) = (v["action"]["kind"].as_str().unwrap_or("operation"), &v["action"]["details"]);
    let what = match (details["amount"].as_str(), details["asset"].as_str()) {
        (Some(amount), Some(asset)) => {
            let to = details["destination"]["address"].as_str().unwrap_or("?");
            format!("{kind} {amount} {asset} to {to}")
        }
        _ => kind.to_owned(),
    };
    format!("{}  {:<9} {}  [{}]", op.operation.id, op.state, what, op.fingerprint)
}

/// Every field as `path: value` lines.
pub fn fields(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                fields(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                fields(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out
            .push(format!("  {prefix}: {}", other.as_str().map_or_else(|| other.to_string(), str::to_owned))),
    }
}
