use super::*;

#[test]
fn jitter_stays_within_the_cap() {
    let cap = Duration::from_secs(2);
    let waits: Vec<Duration> = (0..200).map(|_| full_jitter(cap)).collect();
    assert!(
        waits
            .iter()
            .all(|w| *w <= cap && *w >= Duration::from_millis(10))
    );
    let distinct: std::collections::HashSet<_> = waits.iter().collect();
    assert!(
        distinct.len() > 100,
        "waits must be spread, got {}",
        distinct.len()
    );
}
