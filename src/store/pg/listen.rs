//! Other writers' swaps, heard at once: every swap of this store sends a
//! notification on [`CHANNEL`] in its own transaction (so it goes out only if
//! the swap commits), and a watch ([`AnchorGetter::watch`]) listens on a
//! connection of its own.
//!
//! One thread per store, started by the first watch: it connects, runs
//! `LISTEN`, and wakes every watch ([`ChangeSignal`]) on each notification but
//! those of the store's own swaps (the new ref is that of one of the store's
//! latest swaps), whose writer shows them itself. When
//! the connection fails (the server restarted, the network dropped) it connects
//! again, once a second, and wakes the watches once it listens again, since
//! changes made while it was deaf were not heard. A writer that does not notify
//! (Go's store) is still seen by the mount's poll.
//!
//! Locks: none of its own; the signal's (see [`crate::store::watch`]) and the
//! store's own swap, each taken alone and briefly.
//!
//! [`AnchorGetter::watch`]: crate::store::AnchorGetter::watch

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use super::pool::{describe, ConnConfig};
use super::OwnSwaps;
use crate::blob::Ref;
use crate::store::watch::ChangeSignal;

/// The notification channel of anchor map swaps; the payload is the new ref in hex.
pub const CHANNEL: &str = "anchorfs_anchor_map";

/// How long the listening thread waits for a notification before it looks at
/// whether it should stop.
const TICK: Duration = Duration::from_millis(250);

/// How long it waits before connecting again after a failure.
const RECONNECT: Duration = Duration::from_secs(1);

/// The listening thread of one store: stopped when dropped.
pub(super) struct Listener {
    signal: ChangeSignal,
    stop: Arc<AtomicBool>,
}

impl Listener {
    /// Starts listening with the settings `config`.
    /// `own`: the new refs of the store's latest swaps, whose notifications wake
    /// nobody.
    pub fn start(config: ConnConfig, own: OwnSwaps) -> std::io::Result<Listener> {
        let signal = ChangeSignal::new();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (signal.clone(), stop.clone());
        std::thread::Builder::new()
            .name("anchorfs-pg-listen".into())
            .spawn(move || listen(&config, &s, &st, &own))?;
        Ok(Listener { signal, stop })
    }

    /// The signal every notification raises.
    pub fn signal(&self) -> &ChangeSignal {
        &self.signal
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The thread's loop: listen until told to stop, reconnecting after failures.
fn listen(config: &ConnConfig, signal: &ChangeSignal, stop: &AtomicBool, own: &OwnSwaps) {
    let mut failed_before = false;
    while !stop.load(Ordering::Acquire) {
        let mut client = match config.connect() {
            Ok(c) => c,
            Err(e) => {
                if !failed_before {
                    log::warn!(
                        "listening for changes on {}: {}",
                        config.label(),
                        describe(&e)
                    );
                }
                failed_before = true;
                std::thread::sleep(RECONNECT);
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            log::warn!(
                "listening for changes on {}: {}",
                config.label(),
                describe(&e)
            );
            std::thread::sleep(RECONNECT);
            continue;
        }
        if failed_before {
            log::info!("listening for changes on {} again", config.label());
        }
        failed_before = false;
        // Whatever changed while nobody listened.
        signal.notify();
        while !stop.load(Ordering::Acquire) {
            let heard = {
                let mut notifications = client.notifications();
                let mut iter = notifications.timeout_iter(TICK);
                iter.next()
            };
            match heard {
                Ok(Some(n)) => {
                    let new = Ref::from_hex(n.payload()).ok();
                    if new.is_some_and(|r| own.lock().contains(&r)) {
                        log::trace!("heard this store's own swap to {}", n.payload());
                    } else {
                        signal.notify();
                    }
                }
                Ok(None) if client.is_closed() => break,
                Ok(None) => {}
                Err(e) => {
                    log::warn!(
                        "listening for changes on {}: {}",
                        config.label(),
                        describe(&e)
                    );
                    failed_before = true;
                    break;
                }
            }
        }
    }
}
