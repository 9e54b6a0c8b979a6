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
