//! Where the reading and discovery threads learn of a config a reload accepted: the
//! agent's reloader publishes each one, and each thread takes the newest at its next look
//! (see `reload.rs` for what each does with it).

use crate::config;
use std::sync::Arc;
use tokio::sync::watch;

/// Where a stage learns of a new config: the agent's reloader publishes each one it accepted.
pub type Reloads = watch::Receiver<Arc<config::Config>>;

/// The newest config, if one was published since the last look.
pub(super) fn newer(reloads: &mut Option<Reloads>) -> Option<Arc<config::Config>> {
    let r = reloads.as_mut()?;
    // An error: the reloader is gone (shutdown), and nothing new will come.
    if !r.has_changed().unwrap_or(false) {
        return None;
    }
    Some(r.borrow_and_update().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_sees_each_accepted_config_once_and_nothing_without_a_reloader() {
        let cfg = Arc::new(config::Config::default());
        let (tx, rx) = watch::channel(cfg.clone());
        let mut reloads = Some(rx);
        // The config the stage was built with is not news.
        assert!(newer(&mut reloads).is_none());
        let next = config::Config {
            log_level: "debug".into(),
            ..Default::default()
        };
        tx.send(Arc::new(next)).unwrap();
        assert_eq!(newer(&mut reloads).unwrap().log_level, "debug");
        assert!(newer(&mut reloads).is_none(), "taken once");
        // The reloader gone (shutdown), or never there: nothing, and no panic.
        drop(tx);
        assert!(newer(&mut reloads).is_none());
        assert!(newer(&mut None).is_none());
    }
}
