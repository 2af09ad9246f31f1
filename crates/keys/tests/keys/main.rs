//! Round trips through the real CTAP2 layer with the software authenticator below
//! it, verified by `webauthn-rs` as the gateway verifies them; and every PIN, touch
//! and removal path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(feature = "piv")]
mod piv;

use countersign_core::binding::ApprovalBinding;
use countersign_keys::{Cancel, Ceremony, Error, KeyInfo, Pin, PinRequest, Prompt};
use countersign_softkey::{Presence, SoftKey, dev_ca_pem};
use webauthn_rs::prelude::{AttestationCaList, AttestedPasskey, Credential, Uuid};
use webauthn_rs::{Webauthn, WebauthnBuilder};
use webauthn_rs_proto::{CredentialProtectionPolicy, ExtnState};

const ORIGIN: &str = "https://countersign.example";
const PIN: &str = "4821";

/// A person who types the PINs given, in order, and may do something at the touch.
#[derive(Default)]
struct Person {
    pins: Mutex<VecDeque<Option<&'static str>>>,
    confirm_last_retry: bool,
    seen: Mutex<Vec<String>>,
    at_touch: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Person {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Person").field("seen", &self.seen()).finish_non_exhaustive()
    }
}

impl Person {
    fn typing(pins: &[Option<&'static str>]) -> Arc<Person> {
        Arc::new(Person { pins: Mutex::new(pins.iter().copied().collect()), ..Person::default() })
    }
    fn confirming(pins: &[Option<&'static str>]) -> Arc<Person> {
        Arc::new(Person {
            pins: Mutex::new(pins.iter().copied().collect()),
            confirm_last_retry: true,
            ..Person::default()
        })
    }
    fn at_touch(self: &Arc<Self>, f: impl Fn() + Send + Sync + 'static) {
        *self.at_touch.lock().unwrap() = Some(Box::new(f));
    }
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Prompt for Person {
    fn choose_key(&self, _keys: &[KeyInfo]) -> Option<usize> {
        Some(0)
    }
    fn pin(&self, r: &PinRequest) -> Option<Pin> {
        self.seen
            .lock()
            .unwrap()
            .push(format!("pin retries={:?} wrong={}", r.retries_left, r.previous_attempt_wrong));
        self.pins.lock().unwrap().pop_front().flatten().map(|p| Pin::new(p.to_owned()))
    }
    fn confirm_last_retry(&self) -> bool {
        self.seen.lock().unwrap().push("last retry?".into());
        self.confirm_last_retry
    }
    fn touch(&self) {
        self.seen.lock().unwrap().push("touch".into());
        if let Some(f) = &*self.at_touch.lock().unwrap() {
            f();
        }
    }
    fn processing(&self) {
        self.seen.lock().unwrap().push("processing".into());
    }
}

fn relying_party() -> Webauthn {
    let origin = webauthn_rs::prelude::Url::parse(ORIGIN).unwrap();
    WebauthnBuilder::new("countersign.example", &origin).unwrap().build().unwrap()
}

fn trust() -> AttestationCaList {
    AttestationCaList::try_from(dev_ca_pem().unwrap().as_bytes()).unwrap()
}

fn key_with_pin() -> SoftKey {
    let key = SoftKey::new("test key").unwrap();
    key.set_pin(PIN).unwrap();
    key
}

async fn enroll(rp: &Webauthn, key: &SoftKey, person: Arc<Person>) -> Result<AttestedPasskey, Error> {
    let (options, state) = rp
        .start_attested_passkey_registration(Uuid::new_v4(), "alice", "Alice", None, trust(), None)
        .unwrap();
    let credential =
        countersign_keys::register(key.clone(), &Ceremony::new(person), options.public_key, ORIGIN).await?;
    Ok(rp.finish_attested_passkey_registration(&credential, &state).unwrap())
}

fn approval_client_data(challenge: &[u8], digest: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "type": "webauthn.get",
        "challenge": data_encoding::BASE64URL_NOPAD.encode(challenge),
        "origin": ORIGIN,
        "crossOrigin": false,
        "countersign": {"v": 1, "op": "op_01JDX0000000000000000000", "digest": digest, "decision": "approve"},
    }))
    .unwrap()
}

const DIGEST: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA";

#[tokio::test]
async fn enroll_and_approve_round_trip_is_verified_by_webauthn_rs() {
    let rp = relying_party();
    let key = key_with_pin();
    let person = Person::typing(&[Some(PIN), Some(PIN)]);
    let passkey = enroll(&rp, &key, person.clone()).await.unwrap();

    let internals: Credential = passkey.clone().into();
    assert!(internals.user_verified, "UV at registration");
    assert!(
        matches!(
            internals.extensions.cred_protect,
            ExtnState::Set(CredentialProtectionPolicy::UserVerificationRequired)
        ),
        "credProtect was requested and applied: {:?}",
        internals.extensions.cred_protect
    );

    let (options, state) = rp.start_attested_passkey_authentication(std::slice::from_ref(&passkey)).unwrap();
    let cdj = approval_client_data(&options.public_key.challenge, DIGEST);
    let assertion =
        countersign_keys::sign(key.clone(), &Ceremony::new(person.clone()), options.public_key, cdj)
            .await
            .unwrap();
    let result = rp.finish_attested_passkey_authentication(&assertion, &state).unwrap();
    assert!(result.user_verified());
    assert_eq!(result.counter(), 2, "one registration and one assertion");
    let binding = ApprovalBinding::from_client_data_json(&assertion.response.client_data_json).unwrap();
    assert_eq!(serde_json::to_value(&binding).unwrap()["digest"], DIGEST);
    assert_eq!(
        person.seen(),
        [
            "pin retries=Some(8) wrong=false",
            "touch",
            "processing",
            "pin retries=Some(8) wrong=false",
            "touch",
            "processing"
        ]
    );
}

#[tokio::test]
async fn a_changed_countersign_member_breaks_the_signature() {
    let rp = relying_party();
    let key = key_with_pin();
    let passkey = enroll(&rp, &key, Person::typing(&[Some(PIN)])).await.unwrap();
    let (options, state) = rp.start_attested_passkey_authentication(std::slice::from_ref(&passkey)).unwrap();
    let cdj = approval_client_data(&options.public_key.challenge, DIGEST);
    let mut assertion =
        countersign_keys::sign(key, &Ceremony::new(Person::typing(&[Some(PIN)])), options.public_key, cdj)
            .await
            .unwrap();
    let other =
        approval_client_data(
            &data_encoding::BASE64URL_NOPAD
                .decode(
                    serde_json::from_slice::<serde_json::Value>(&assertion.response.client_data_json)
                        .unwrap()["challenge"]
                        .as_str()
                        .unwrap()
                        .as_bytes(),
                )
                .unwrap(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
    assertion.response.client_data_json = other;
    assert!(rp.finish_attested_passkey_authentication(&assertion, &state).is_err());
}

#[tokio::test]
async fn a_wrong_pin_is_asked_again_with_the_retries_left() {
    let rp = relying_party();
    let key = key_with_pin();
    let person = Person::typing(&[Some("0000"), Some(PIN)]);
    enroll(&rp, &key, person.clone()).await.unwrap();
    assert_eq!(person.seen()[..2], ["pin retries=Some(8) wrong=false", "pin retries=Some(7) wrong=true"]);
    assert_eq!(key.pin_retries(), 8, "a right PIN restores the retries");
}

#[tokio::test]
async fn cancelling_at_the_pin_prompt_spends_nothing_more() {
    let rp = relying_party();
    let key = key_with_pin();
    let err = enroll(&rp, &key, Person::typing(&[Some("0000"), None])).await.unwrap_err();
    assert_eq!(err, Error::Cancelled);
    assert_eq!(key.pin_retries(), 7);
}

#[tokio::test]
async fn three_wrong_pins_need_the_key_reinserted() {
    let rp = relying_party();
    let key = key_with_pin();
    let err = enroll(&rp, &key, Person::typing(&[Some("0000"), Some("1111"), Some("2222"), Some(PIN)]))
        .await
        .unwrap_err();
    assert_eq!(err, Error::PinAuthBlocked);
    assert_eq!(key.pin_retries(), 5);
    // Reinserted: the right PIN works again.
    key.plug_in();
    enroll(&rp, &key, Person::typing(&[Some(PIN)])).await.unwrap();
}

#[tokio::test]
async fn the_last_pin_retry_is_never_spent_without_confirmation() {
    let rp = relying_party();
    let key = key_with_pin();
    for _ in 0..2 {
        let wrong = Person::typing(&[Some("0000"), Some("0000"), Some("0000")]);
        assert_eq!(enroll(&rp, &key, wrong).await.unwrap_err(), Error::PinAuthBlocked);
        key.plug_in();
    }
    let err = enroll(&rp, &key, Person::typing(&[Some("0000"), Some(PIN)])).await.unwrap_err();
    assert_eq!(err, Error::LastRetryNotConfirmed, "one retry left after 7 wrong PINs");
    assert_eq!(key.pin_retries(), 1);

    let refusing = Person::typing(&[Some(PIN)]);
    assert_eq!(enroll(&rp, &key, refusing.clone()).await.unwrap_err(), Error::LastRetryNotConfirmed);
    assert_eq!(refusing.seen(), ["last retry?"], "not even asked for the PIN");
    assert_eq!(key.pin_retries(), 1, "nothing spent");

    let err = enroll(&rp, &key, Person::confirming(&[Some("9999")])).await.unwrap_err();
    assert_eq!(err, Error::PinBlocked);
    assert_eq!(key.pin_retries(), 0);
    let err = enroll(&rp, &key, Person::confirming(&[Some(PIN)])).await.unwrap_err();
    assert_eq!(err, Error::PinBlocked, "blocked for good, even with the right PIN");
}

#[tokio::test]
async fn an_untouched_key_times_out() {
    let rp = relying_party();
    let key = key_with_pin();
    key.set_presence(Presence::Never);
    let (options, _) =
        rp.start_attested_passkey_registration(Uuid::new_v4(), "a", "A", None, trust(), None).unwrap();
    let person = Person::typing(&[Some(PIN)]);
    let ceremony = Ceremony::new(person.clone()).touch_timeout(Duration::from_millis(300));
    let err = countersign_keys::register(key, &ceremony, options.public_key, ORIGIN).await.unwrap_err();
    assert_eq!(err, Error::TouchTimeout);
    assert!(person.seen().contains(&"touch".to_owned()), "the person was asked to touch");
}

#[tokio::test]
async fn a_pending_touch_can_be_cancelled() {
    let rp = relying_party();
    let key = key_with_pin();
    key.set_presence(Presence::Never);
    let (options, _) =
        rp.start_attested_passkey_registration(Uuid::new_v4(), "a", "A", None, trust(), None).unwrap();
    let person = Person::typing(&[Some(PIN)]);
    let ceremony = Ceremony::new(person.clone());
    let cancel: Cancel = ceremony.cancel_handle();
    person.at_touch(move || cancel.cancel());
    let err = countersign_keys::register(key, &ceremony, options.public_key, ORIGIN).await.unwrap_err();
    assert_eq!(err, Error::Cancelled);
}

#[tokio::test]
async fn a_key_removed_mid_ceremony_says_so() {
    let rp = relying_party();
    let key = key_with_pin();
    key.set_presence(Presence::Never);
    let (options, _) =
        rp.start_attested_passkey_registration(Uuid::new_v4(), "a", "A", None, trust(), None).unwrap();
    let person = Person::typing(&[Some(PIN)]);
    let pulled = key.clone();
    person.at_touch(move || pulled.unplug());
    let err = countersign_keys::register(key, &Ceremony::new(person), options.public_key, ORIGIN)
        .await
        .unwrap_err();
    assert_eq!(err, Error::KeyRemoved);
}

#[tokio::test]
async fn another_key_does_not_hold_the_credential() {
    let rp = relying_party();
    let passkey = enroll(&rp, &key_with_pin(), Person::typing(&[Some(PIN)])).await.unwrap();
    let (options, _) = rp.start_attested_passkey_authentication(&[passkey]).unwrap();
    let cdj = approval_client_data(&options.public_key.challenge, DIGEST);
    let err = countersign_keys::sign(
        key_with_pin(),
        &Ceremony::new(Person::typing(&[Some(PIN)])),
        options.public_key,
        cdj,
    )
    .await
    .unwrap_err();
    assert_eq!(err, Error::CredentialNotOnThisKey);
}

#[tokio::test]
async fn a_key_without_a_pin_is_refused_and_an_enrolled_key_is_excluded() {
    let rp = relying_party();
    let no_pin = SoftKey::new("no pin").unwrap();
    assert_eq!(enroll(&rp, &no_pin, Person::typing(&[])).await.unwrap_err(), Error::PinNotSet);

    let key = key_with_pin();
    let passkey = enroll(&rp, &key, Person::typing(&[Some(PIN)])).await.unwrap();
    let (options, _) = rp
        .start_attested_passkey_registration(
            Uuid::new_v4(),
            "a",
            "A",
            Some(vec![passkey.cred_id().clone()]),
            trust(),
            None,
        )
        .unwrap();
    let err = countersign_keys::register(
        key,
        &Ceremony::new(Person::typing(&[Some(PIN)])),
        options.public_key,
        ORIGIN,
    )
    .await
    .unwrap_err();
    assert_eq!(err, Error::AlreadyEnrolled);
}

#[tokio::test]
async fn state_survives_in_its_file_and_describe_tells_what_the_key_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("softkey.json");
    let rp = relying_party();
    let key = SoftKey::create(&path, "demo key").unwrap();
    key.set_pin(PIN).unwrap();
    let passkey = enroll(&rp, &key, Person::typing(&[Some("0000"), Some(PIN)])).await.unwrap();
    drop(key);

    let mut reopened = SoftKey::open(&path).unwrap();
    assert_eq!(reopened.counter(), 1);
    let info = countersign_keys::describe(&mut reopened, "demo key".into()).await.unwrap();
    assert!(info.software && info.pin_set && info.cred_protect);
    assert_eq!(info.pin_retries, Some(8));
    assert_eq!(info.aaguid.unwrap().to_string(), countersign_core::SOFTWARE_AUTHENTICATOR_AAGUID);
    assert!(info.versions.contains(&"FIDO_2_1".to_owned()));

    let (options, state) = rp.start_attested_passkey_authentication(&[passkey]).unwrap();
    let assertion = countersign_keys::sign_standard(
        reopened,
        &Ceremony::new(Person::typing(&[Some(PIN)])),
        options.public_key,
        ORIGIN,
    )
    .await
    .unwrap();
    assert_eq!(rp.finish_attested_passkey_authentication(&assertion, &state).unwrap().counter(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
