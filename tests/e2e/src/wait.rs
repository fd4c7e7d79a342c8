//! Polling until the system reaches an expected state.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits for a change to reach the data plane or a status.
/// Generous, because a kind cluster on a loaded CI machine can be slow.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Delay between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Ok`, and returns
/// that value.
///
/// # Panics
///
/// Panics after `timeout`, naming `condition` and the last `Err` value,
/// which describes what was seen instead.
pub async fn eventually<T, F, Fut>(timeout: Duration, condition: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                assert!(
                    started.elapsed() < timeout,
                    "timed out after {} s waiting for {condition}; last seen: {last}",
                    timeout.as_secs()
                );
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
