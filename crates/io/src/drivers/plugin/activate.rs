//! Activation once per plugin per shim, as dockerd activates a plugin on first use: the first
//! container that needs a plugin calls `/Plugin.Activate` and `/LogDriver.Capabilities`; later
//! ones reuse the answer until the plugin is seen to restart ([`forget`]).

use std::time::Duration;

use crate::plugin::client::{call, call_json, CallError, CallErrorKind};
use crate::plugin::discovery::PluginAddr;
use crate::plugin::proto::{
    ActivateResponse, Capabilities, CapabilitiesResponse, ACTIVATE, CAPABILITIES,
};

/// The plugins activated by this shim, by address. A tokio mutex: two containers starting at
/// once activate a plugin once, the second waiting for the first's answer.
static ACTIVE: tokio::sync::Mutex<Vec<(PluginAddr, Capabilities)>> =
    tokio::sync::Mutex::const_new(Vec::new());

/// How many `/Plugin.Activate` calls this shim made (tests, reports).
static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Activates the plugin at `addr` unless this shim already did; returns its capabilities. A
/// plugin that does not implement `LogDriver` (or `LoggingDriver`) is an error saying so.
pub async fn activate(addr: &PluginAddr, timeout: Duration) -> Result<Capabilities, CallError> {
    let mut active = ACTIVE.lock().await;
    if let Some((_, caps)) = active.iter().find(|(a, _)| a == addr) {
        return Ok(*caps);
    }
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // dockerd sends Activate with an empty body.
    let body = call(addr, ACTIVATE, b"", timeout).await?;
    let a: ActivateResponse = serde_json::from_slice(&body).map_err(|e| CallError {
        method: ACTIVATE.into(),
        addr: addr.to_string(),
        kind: CallErrorKind::Transport(format!("reply is not the expected JSON: {e}")),
    })?;
    if !a.is_log_driver() {
        return Err(CallError {
            method: ACTIVATE.into(),
            addr: addr.to_string(),
            kind: CallErrorKind::Plugin(format!(
                "implements {:?}, not LogDriver: not a logging plugin",
                a.implements
            )),
        });
    }
    // A plugin without the Capabilities endpoint has none (dockerd treats a failure alike).
    let caps = match call_json::<_, CapabilitiesResponse>(addr, CAPABILITIES, &(), timeout).await {
        Ok(c) => c.cap,
        Err(e) if e.is_connect() => return Err(e),
        Err(e) => {
            log::info!("{e}; assuming no capabilities");
            Capabilities::default()
        }
    };
    active.push((addr.clone(), caps));
    Ok(caps)
}

/// The plugin at `addr` restarted (or went away): the next use activates it again.
pub async fn forget(addr: &PluginAddr) {
    ACTIVE.lock().await.retain(|(a, _)| a != addr);
}

/// `/Plugin.Activate` calls made by this process so far.
pub fn activate_calls() -> u64 {
    CALLS.load(std::sync::atomic::Ordering::Relaxed)
}
