//! Property tests: canonical round-trip, and any change to any field changes the digest.

use std::net::IpAddr;

use countersign_core::canonical::{self, Digest};
use countersign_core::operation::*;
use countersign_core::{Amount, Timestamp};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,24}"
}

fn amount() -> impl Strategy<Value = Amount> {
    (1u64..u64::MAX, 0u32..=18)
        .prop_map(|(m, scale)| Amount::from_decimal(Decimal::new(m as i64 & i64::MAX, scale)).unwrap())
        .prop_filter("positive", |a| !a.is_zero())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800).prop_map(|s| Timestamp::from_unix(s).unwrap())
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from)]
}

prop_compose! {
    fn withdrawal_op()(
        op_id in ident(), key in ident(), owner in ident(), account in ident(), asset in "[A-Z]{2,6}",
        network in "[a-z]{3,10}", amount in amount(), usd in amount(), address in "[!-~]{1,64}",
        memo in proptest::option::of("[0-9]{1,12}"), created in timestamp(), ttl in 1i64..2_592_000,
        policy_version in any::<u32>(), source_ip in ip(),
    ) -> Operation {
        Operation {
            id: op_id.parse().unwrap(),
            created_at: created,
            expires_at: created.plus_seconds(ttl),
            policy_version,
            initiator: Initiator::ApiKey { key_id: key.parse().unwrap(), owner: owner.parse().unwrap(), source_ip },
            action: Action::Withdrawal(Withdrawal {
                account: account.parse().unwrap(),
                asset: asset.parse().unwrap(),
                network: network.parse().unwrap(),
                amount,
                destination: Destination { address, memo },
                reference_value: ReferenceValue { currency: "USD".parse().unwrap(), amount: usd },
            }),
        }
    }
}

/// Change field number `which` (mod the field count) to a value that differs.
fn mutate(op: &mut Operation, which: usize, salt: u8) {
    let bump_id = |s: &str| format!("{s}{}", char::from(b'a' + salt % 26));
    let w = match &mut op.action {
        Action::Withdrawal(w) => w,
        _ => unreachable!(),
    };
    match which % 15 {
        0 => op.id = bump_id(op.id.as_str()).parse().unwrap(),
        1 => op.created_at = op.created_at.minus_seconds(1),
        2 => op.expires_at = op.expires_at.plus_seconds(1),
        3 => op.policy_version = op.policy_version.wrapping_add(1),
        4..=6 => {
            let Initiator::ApiKey { key_id, owner, source_ip } = &mut op.initiator else { unreachable!() };
            match which % 15 {
                4 => *key_id = bump_id(key_id.as_str()).parse().unwrap(),
                5 => *owner = bump_id(owner.as_str()).parse().unwrap(),
                _ => {
                    *source_ip = match source_ip {
                        IpAddr::V4(a) => IpAddr::from(u32::from(*a).wrapping_add(1).to_be_bytes()),
                        IpAddr::V6(a) => IpAddr::from(u128::from(*a).wrapping_add(1).to_be_bytes()),
                    }
                }
            }
        }
        7 => w.account = bump_id(w.account.as_str()).parse().unwrap(),
        8 => w.asset = bump_id(w.asset.as_str()).parse().unwrap(),
        9 => w.network = bump_id(w.network.as_str()).parse().unwrap(),
        10 => {
            let tiny = Amount::from_decimal(Decimal::new(1, 28)).unwrap();
            w.amount = w.amount.checked_add(tiny).unwrap_or(Amount::parse("1").unwrap());
        }
        11 => w.destination.address.push('x'),
        12 => {
            w.destination.memo = match &w.destination.memo {
                Some(m) if m.len() > 1 => Some(m[1..].to_owned()),
                Some(_) => None,
                None => Some("0".into()),
            }
        }
        13 => w.reference_value.currency = "EUR".parse().unwrap(),
        _ => {
            let one = Amount::parse("1").unwrap();
            w.reference_value.amount = w.reference_value.amount.checked_add(one).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn canonical_round_trip(op in withdrawal_op()) {
        let bytes = canonical::encode(&op).unwrap();
        prop_assert_eq!(canonical::decode(&bytes).unwrap(), op.clone());
        prop_assert_eq!(canonical::encode(&canonical::decode(&bytes).unwrap()).unwrap(), bytes);
    }

    #[test]
    fn any_change_to_any_field_changes_the_digest(op in withdrawal_op(), which in 0usize..15, salt in any::<u8>()) {
        let before = Digest::of(&op).unwrap();
        let mut changed = op.clone();
        mutate(&mut changed, which, salt);
        prop_assume!(changed != op, "mutation {} was a no-op", which);
        prop_assert_ne!(Digest::of(&changed).unwrap(), before);
    }

    #[test]
    fn a_flipped_byte_never_decodes_to_the_same_operation(op in withdrawal_op(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = canonical::encode(&op).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if let Ok(decoded) = canonical::decode(&bytes) {
            prop_assert_ne!(&decoded, &op);
            // Anything accepted is canonical: it re-encodes to exactly the input.
            prop_assert_eq!(canonical::encode(&decoded).unwrap(), bytes);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = canonical::decode(&bytes);
    }
}
