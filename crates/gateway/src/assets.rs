//! Listed assets and destination address checks per network.
//!
//! The checks catch typos and addresses for the wrong network before anyone is
//! asked to approve: EVM addresses are 20 bytes of hex and, when mixed-case, must
//! carry a valid EIP-55 checksum; Bitcoin, XRPL, Solana and Tron addresses must use
//! their alphabet and length. (Base58Check and bech32 checksums are not verified
//! yet.)

use serde::Deserialize;
use sha3::{Digest as _, Keccak256};

/// How a network writes addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressFormat {
    /// Ethereum and other EVM chains: `0x` + 40 hex digits, EIP-55 when mixed-case.
    Evm,
    /// Bitcoin mainnet: bech32 `bc1…` or base58 `1…`/`3…`.
    Bitcoin,
    /// XRP Ledger classic address: `r…` in the XRPL base58 alphabet.
    Xrpl,
    /// Solana: 32–44 base58 characters.
    Solana,
    /// Tron: `T` + 33 base58 characters.
    Tron,
}

/// Whether a network uses a memo / destination tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoRule {
    /// Refused: the network has no memo.
    #[default]
    None,
    /// Accepted when present.
    Optional,
    /// Exchanges' shared deposit addresses need it: refused without.
    Required,
}

const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const XRPL_BASE58: &str = "rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz";
const BECH32: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn all_in(s: &str, alphabet: &str) -> bool {
    s.chars().all(|c| alphabet.contains(c))
}

/// Check an address's form for a network.
///
/// # Errors
/// A sentence saying what is wrong, for the `request.bad_address` error.
pub fn check_address(format: AddressFormat, address: &str) -> Result<(), String> {
    let ok = match format {
        AddressFormat::Evm => return check_evm(address),
        AddressFormat::Bitcoin => {
            let lower = address.to_ascii_lowercase();
            let one_case = address == lower || address == address.to_ascii_uppercase();
            if let Some(data) = lower.strip_prefix("bc1") {
                one_case && (11..=71).contains(&data.len()) && all_in(data, BECH32)
            } else {
                (address.starts_with('1') || address.starts_with('3'))
                    && (26..=35).contains(&address.len())
                    && all_in(address, BASE58)
            }
        }
        AddressFormat::Xrpl => {
            address.starts_with('r') && (25..=35).contains(&address.len()) && all_in(address, XRPL_BASE58)
        }
        AddressFormat::Solana => (32..=44).contains(&address.len()) && all_in(address, BASE58),
        AddressFormat::Tron => address.starts_with('T') && address.len() == 34 && all_in(address, BASE58),
    };
    if ok { Ok(()) } else { Err(format!("not a valid {format:?} address")) }
}

fn check_evm(address: &str) -> Result<(), String> {
    let hex = address
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| "not a valid Evm address: expected 0x and 40 hex digits".to_owned())?;
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    if !(has_lower && has_upper) {
        return Ok(()); // all one case: no checksum to check
    }
    let hash = Keccak256::digest(hex.to_ascii_lowercase().as_bytes());
    for (i, c) in hex.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        let want_upper = nibble >= 8;
        if c.is_ascii_alphabetic() && c.is_ascii_uppercase() != want_upper {
            return Err("EVM address fails its EIP-55 checksum (a typo?)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evm_checksums_are_checked() {
        // EIP-55's own examples.
        for a in ["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"]
        {
            check_address(AddressFormat::Evm, a).unwrap();
        }
        check_address(AddressFormat::Evm, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").unwrap();
        assert!(check_address(AddressFormat::Evm, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD").is_err());
        assert!(check_address(AddressFormat::Evm, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA").is_err());
        assert!(check_address(AddressFormat::Evm, "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed00").is_err());
    }

    #[test]
    fn other_networks_check_alphabet_and_length() {
        check_address(AddressFormat::Bitcoin, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq").unwrap();
        check_address(AddressFormat::Bitcoin, "1BoatSLRHtKNngkdXEeobR76b53LETtpyT").unwrap();
        assert!(check_address(AddressFormat::Bitcoin, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdb").is_err()); // 'b' not bech32
        assert!(check_address(AddressFormat::Bitcoin, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_err());
        check_address(AddressFormat::Xrpl, "rPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY").unwrap();
        assert!(check_address(AddressFormat::Xrpl, "xPEPPER7kfTD9w2To4CQk6UCfuHM9c6GDY").is_err());
        check_address(AddressFormat::Tron, "TLsV52sRDL79HXGGm9yzwKibb6BeruhUzy").unwrap();
        check_address(AddressFormat::Solana, "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV").unwrap();
        assert!(check_address(AddressFormat::Solana, "0OIl").is_err());
    }
}
