//! Withdrawal intake: validate, assess risk, judge by policy, store, release or hold.

use countersign_core::canonical;
use countersign_core::id::{AccountId, AssetCode, NetworkId, OperationId};
use countersign_core::operation::{Action, Destination, Initiator, Operation, ReferenceValue, Withdrawal};
use countersign_core::risk::{BASELINE_SECONDS, RiskAssessment, RiskInput, assess};
use countersign_core::verdict::{Context, Disposition, Verdict, evaluate, velocity_used_percent};
use countersign_core::{Amount, Digest, Timestamp};
use data_encoding::{BASE32_NOPAD, HEXLOWER};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::AppState;
use crate::assets::{MemoRule, check_address};
use crate::error::{Error, Result};
use crate::keys::random_bytes;
use crate::release::release_document;
use crate::store::{ApiKeyRecord, AuditEvent, Inserted, NewOperation, OpState, OperationRecord};

/// The body of `POST /v1/withdrawals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// Account the funds leave.
    pub account: String,
    /// Asset ticker.
    pub asset: String,
    pub network: String,
    /// Decimal string in asset units, e.g. `"12.5"`; numbers are refused.
    pub amount: String,
    pub destination: DestinationRequest,
}

/// Destination in a withdrawal request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationRequest {
    pub address: String,
    /// Memo / destination tag.
    #[serde(default)]
    pub memo: Option<String>,
}

/// A fresh, time-ordered operation id: `op_` + 26 base32 characters (48 bits of
/// seconds, 80 random bits).
///
/// # Errors
/// When the OS has no randomness.
pub fn new_operation_id(now: Timestamp) -> Result<OperationId> {
    let mut raw = [0u8; 16];
    raw[..6].copy_from_slice(&now.unix().to_be_bytes()[2..]);
    raw[6..].copy_from_slice(&random_bytes::<10>().map_err(Error::internal)?);
    let text = BASE32_NOPAD.encode(&raw).to_ascii_lowercase();
    OperationId::new(format!("op_{text}")).map_err(Error::internal)
}

/// Parse a `POST /v1/withdrawals` body strictly (fuzzed by
/// `fuzz/fuzz_targets/withdrawal_body.rs`, with [`validate`]).
///
/// # Errors
/// `request.malformed_json`, `request.invalid_body`.
pub fn parse_request(body: &[u8]) -> Result<WithdrawalRequest> {
    serde_json::from_slice(body).map_err(|e| {
        let code =
            if e.is_syntax() || e.is_eof() { "request.malformed_json" } else { "request.invalid_body" };
        Error::bad_request(code, format!("request body: {e}"))
    })
}

/// Check a withdrawal request against the listed assets: ids, amount and its
/// precision, address format, memo rule. Returns the account, asset, network,
/// amount, destination and value in the reference currency.
///
/// # Errors
/// `request.*` naming the field.
pub fn validate(
    config: &crate::config::Config,
    req: &WithdrawalRequest,
) -> Result<(AccountId, AssetCode, NetworkId, Amount, Destination, Amount)> {
    let field = |name: &'static str, e: countersign_core::Error| {
        Error::bad_request("request.invalid_field", format!("{name}: {e}"))
    };
    let account = AccountId::new(&req.account).map_err(|e| field("account", e))?;
    let asset = AssetCode::new(&req.asset).map_err(|e| field("asset", e))?;
    let network = NetworkId::new(&req.network).map_err(|e| field("network", e))?;
    let listed = config.asset(&asset, &network).ok_or_else(|| {
        Error::bad_request("request.unknown_asset", format!("{asset} on {network} is not a listed asset"))
    })?;
    let amount = Amount::parse_lenient(&req.amount).map_err(|_| {
        Error::bad_request(
            "request.bad_amount",
            format!("amount {:?} is not a non-negative decimal string such as \"12.5\"", req.amount),
        )
    })?;
    if amount.is_zero() {
        return Err(Error::bad_request("request.zero_amount", "amount must be greater than zero"));
    }
    if amount.scale() > listed.decimals {
        return Err(Error::bad_request(
            "request.amount_precision",
            format!("{asset} has {} decimals; {} has {}", listed.decimals, amount, amount.scale()),
        ));
    }
    let destination =
        Destination { address: req.destination.address.clone(), memo: req.destination.memo.clone() };
    check_destination(listed, &network, &destination)?;
    let value = amount
        .checked_mul(listed.price)
        .ok_or_else(|| Error::bad_request("request.bad_amount", "amount too large"))?;
    Ok((account, asset, network, amount, destination, value))
}

/// Check a destination against its network: the address format and the memo rule
/// (required, optional or none). Used for withdrawals and allowlist entries alike.
///
/// # Errors
/// `request.bad_address`, `request.bad_memo`.
pub fn check_destination(
    listed: &crate::config::AssetConfig,
    network: &NetworkId,
    destination: &Destination,
) -> Result<()> {
    check_address(listed.address_format, &destination.address).map_err(|why| {
        Error::bad_request("request.bad_address", format!("destination.address: {why} for {network}"))
    })?;
    match (listed.memo, &destination.memo) {
        (MemoRule::Required, None) => Err(Error::bad_request(
            "request.bad_memo",
            format!("{network} destinations need a memo / destination tag"),
        )),
        (MemoRule::None, Some(_)) => {
            Err(Error::bad_request("request.bad_memo", format!("{network} has no memo; remove it")))
        }
        _ => Ok(()),
    }
}

/// A new operation with a fresh id, validated before anything is stored.
pub(crate) fn new_operation(
    now: Timestamp,
    expires_at: Timestamp,
    policy_version: u32,
    initiator: Initiator,
    action: Action,
) -> Result<Operation> {
    let operation = Operation {
        id: new_operation_id(now)?,
        created_at: now,
        expires_at,
        policy_version,
        initiator,
        action,
    };
    operation.validate()?;
    Ok(operation)
}

/// What intake answers.
#[derive(Debug)]
pub struct IntakeOutcome {
    /// The stored operation.
    pub record: OperationRecord,
    /// False when an earlier identical request is being answered again.
    pub created: bool,
}

/// Handle one authenticated withdrawal request.
///
/// # Errors
/// `request.*` for bad input (nothing stored); `request.idempotency_conflict` when
/// the idempotency key was used for a different body; store errors.
pub async fn submit(
    state: &AppState,
    key: &ApiKeyRecord,
    idempotency_key: &str,
    body: &[u8],
    source_ip: std::net::IpAddr,
    now: Timestamp,
) -> Result<IntakeOutcome> {
    let request_hash = HEXLOWER.encode(&Sha256::digest(body));
    if let Some(existing) = state.store.operation_by_idempotency(key.id.as_str(), idempotency_key).await? {
        return replay(existing, &request_hash);
    }
    let req = parse_request(body)?;
    let (account, asset, network, amount, destination, value) = validate(&state.config, &req)?;
    let policy = state.store.current_policy().await?.ok_or_else(|| Error::internal("no policy stored"))?;
    let initiator = Initiator::ApiKey { key_id: key.id.clone(), owner: key.owner.clone(), source_ip };
    let withdrawal = Withdrawal {
        account: account.clone(),
        asset,
        network: network.clone(),
        amount,
        destination: destination.clone(),
        reference_value: ReferenceValue { currency: policy.reference_currency.clone(), amount: value },
    };

    let longest_window = policy.velocity.iter().map(|v| v.window_seconds).max().unwrap_or(0);
    let velocity_since = now.minus_seconds(i64::try_from(longest_window).unwrap_or(i64::MAX));
    // From here to the insert, one transaction locked on this key and account: two
    // concurrent requests cannot both spend the same velocity budget.
    let mut tx = state.store.begin_intake(key.id.as_str(), account.as_str()).await?;
    let (recent, history) = state
        .store
        .recent_withdrawals(
            &mut tx,
            key.id.as_str(),
            account.as_str(),
            velocity_since,
            now.minus_seconds(BASELINE_SECONDS),
        )
        .await?;
    let destination_used_before =
        state.store.destination_used(&mut tx, account.as_str(), network.as_str(), &destination).await?;
    let destination_status = state.store.allowlist_status(&mut tx, &account, &network, &destination).await?;
    state.race_windows.pause(crate::race::Window::Intake).await;
    let risk: RiskAssessment = assess(
        &RiskInput {
            key_created_at: key.created_at,
            history: &history,
            destination_used_before,
            source_ip,
            reference_value: value,
            velocity_used_percent: velocity_used_percent(&policy, &initiator, &withdrawal, &recent, now),
        },
        now,
    );
    let action = Action::Withdrawal(withdrawal);
    let ctx = Context {
        destination: destination_status,
        recent: &recent,
        risk_score: risk.score,
        key_limit: key.max_reference_value,
    };
    let verdict = evaluate(&policy, &initiator, &action, &ctx, now);
    if matches!(verdict, Verdict::RequireApproval { .. })
        && state.store.pending_for_key(&mut tx, key.id.as_str()).await? >= state.config.max_pending_per_key
    {
        drop(tx); // release the lock (and SQLite's one connection) before auditing
        let event = AuditEvent::new(format!("api_key:{}", key.id), "intake.rate_limited")
            .detail("key_id", key.id.as_str())
            .detail("max_pending", state.config.max_pending_per_key);
        state.store.audit(&event, now).await?;
        return Err(Error::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "intake.too_many_pending",
            format!(
                "this API key already has {} operations waiting for approval; nothing was stored",
                state.config.max_pending_per_key
            ),
        ));
    }
    let ttl = i64::try_from(policy.approval_ttl_seconds).unwrap_or(i64::MAX);
    let (state_after, expires_at) = match verdict.disposition() {
        Disposition::Release => (OpState::Released, now.plus_seconds(ttl)),
        Disposition::Hold { expires_at } => (OpState::Pending, expires_at),
        Disposition::Deny => (OpState::Denied, now.plus_seconds(ttl)),
    };
    let operation = new_operation(now, expires_at, policy.version, initiator, action)?;
    let digest = Digest::of(&operation)?;
    let digest_hex = digest.to_hex();
    let actor = format!("api_key:{}", key.id);
    let verdict_json = serde_json::to_value(&verdict).map_err(Error::internal)?;
    let risk_json = serde_json::to_value(&risk).map_err(Error::internal)?;
    let mut events = vec![
        AuditEvent::new(actor.clone(), "operation.received")
            .operation(&operation.id, &digest_hex)
            .detail("source_ip", source_ip.to_string())
            .detail("risk_score", risk.score),
    ];
    events.push(
        AuditEvent::new(actor, state_after.audit_event())
            .operation(&operation.id, &digest_hex)
            .detail("verdict", verdict_json.to_string()),
    );
    let cert = match state_after {
        OpState::Released => {
            Some(release_document(&operation, &state.keys, crate::authority::head(state)?, now)?)
        }
        _ => None,
    };
    let new = NewOperation {
        operation,
        state: state_after,
        verdict: verdict_json,
        risk: Some(risk_json),
        idempotency_key: Some(idempotency_key.to_owned()),
        request_hash: Some(request_hash.clone()),
    };
    match state.store.insert_operation_in(tx, new, &events, cert.as_ref(), now).await? {
        Inserted::New(record) => {
            state.metrics.withdrawal(record.state);
            Ok(IntakeOutcome { record, created: true })
        }
        // Another request with the same idempotency key won a race.
        Inserted::Existing(existing) => replay(existing, &request_hash),
    }
}

fn replay(existing: OperationRecord, request_hash: &str) -> Result<IntakeOutcome> {
    if existing.request_hash.as_deref() != Some(request_hash) {
        return Err(Error::conflict(
            "request.idempotency_conflict",
            "this idempotency key was already used with a different request body",
        ));
    }
    Ok(IntakeOutcome { record: existing, created: false })
}

/// The JSON an initiator (or approver) sees for an operation.
#[must_use]
pub fn operation_view(record: &OperationRecord) -> Value {
    let fingerprint = Digest::of(&record.operation).map(|d| d.fingerprint().to_string()).unwrap_or_default();
    let canonical = canonical::encode(&record.operation).ok().and_then(|b| String::from_utf8(b).ok());
    json!({
        "state": record.state,
        "operation": record.operation,
        "canonical": canonical,
        "digest": record.digest,
        "fingerprint": fingerprint,
        "verdict": record.verdict,
        "risk": record.risk,
        "updated_at": record.updated_at,
    })
}

/// What the initiating API key sees: the operation view without the risk
/// assessment, which would teach a thief the key's baseline.
#[must_use]
pub fn initiator_view(record: &OperationRecord) -> Value {
    let mut view = operation_view(record);
    if let Value::Object(map) = &mut view {
        map.remove("risk");
    }
    view
}
