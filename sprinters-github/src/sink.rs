//! [`DeliverySink`]: where verified deliveries go (the engine).

use async_trait::async_trait;
use sprinters_core::Result;
use sprinters_core::engine::{Engine, Handled};
use sprinters_core::events::Delivery;

/// Takes in a verified delivery and returns once it is durable (the
/// engine records it; any launch runs in the background).
#[async_trait]
pub trait DeliverySink: Send + Sync + 'static {
    /// Records `delivery`.
    async fn accept(&self, delivery: Delivery) -> Result<Handled>;
}

#[async_trait]
impl DeliverySink for Engine {
    async fn accept(&self, delivery: Delivery) -> Result<Handled> {
        self.handle(delivery).await
    }
}
