//! Prometheus metrics at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::store::OpState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// The gateway's counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    withdrawals: Family<OutcomeLabel, Counter>,
    refusals: Family<CodeLabel, Counter>,
    expired: Counter,
    sweep_failures: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("countersign");
        let withdrawals = Family::<OutcomeLabel, Counter>::default();
        let refusals = Family::<CodeLabel, Counter>::default();
        let expired = Counter::default();
        let sweep_failures = Counter::default();
        registry.register("withdrawals", "Withdrawal requests accepted, by outcome", withdrawals.clone());
        registry.register("refusals", "Requests refused, by error code", refusals.clone());
        registry.register("operations_expired", "Pending operations that expired", expired.clone());
        registry.register(
            "sweep_failures",
            "Background sweep steps or items that failed (each retried on the next sweep)",
            sweep_failures.clone(),
        );
        Metrics { registry: Arc::new(registry), withdrawals, refusals, expired, sweep_failures }
    }
}

impl Metrics {
    /// Count an accepted withdrawal.
    pub fn withdrawal(&self, state: OpState) {
        self.withdrawals.get_or_create(&OutcomeLabel { outcome: state.as_str() }).inc();
    }

    /// Count a refused request.
    pub fn refusal(&self, code: &'static str) {
        self.refusals.get_or_create(&CodeLabel { code }).inc();
    }

    /// Count an expiry.
    pub fn expired(&self) {
        self.expired.inc();
    }

    /// Count a failed sweep step or item.
    pub fn sweep_failure(&self) {
        self.sweep_failures.inc();
    }

    /// The text exposition format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
