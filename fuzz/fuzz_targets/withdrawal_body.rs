//! Every `POST /v1/withdrawals` body goes through strict parsing and validation
//! against the listed assets (ids, amounts, precision, addresses per network,
//! memos): must never panic, and an accepted amount is never zero.
#![no_main]

use countersign_gateway::config::Config;
use countersign_gateway::intake::{parse_request, validate};
use libfuzzer_sys::fuzz_target;

static CONFIG: std::sync::LazyLock<Config> = std::sync::LazyLock::new(|| {
    Config::from_toml(include_str!("../../countersign.example.toml"), std::path::Path::new("fuzz"))
        .expect("the example configuration loads")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = parse_request(data)
        && let Ok((_, _, _, amount, _, _)) = validate(&CONFIG, &request)
    {
        assert!(!amount.is_zero());
    }
});
