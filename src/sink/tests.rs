use super::*;

#[test]
fn the_log_names_what_came_back_for_the_items_sent_again() {
    let mut again = BTreeMap::new();
    again.insert((429, "es_rejected_execution_exception"), 2);
    again.insert((503, ""), 1);
    assert_eq!(
        refused_for_now(3, 100, &again),
        "3 of 100 items refused for now: 2 × 429 es_rejected_execution_exception, 1 × 503"
    );
    for (i, kind) in ["a", "b", "c", "d"].into_iter().enumerate() {
        again.insert((500, kind), i);
    }
    let said = refused_for_now(9, 9, &again);
    assert!(said.ends_with(", …"), "at most four answers: {said}");
}

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
