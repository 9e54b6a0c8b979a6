//! The harness's reading of osmem-server, which every end-to-end test's "all there, once" rests on.

use logferry_harness::{Osmem, http};

/// `all_documents` paged with `from` + `size`, and the page past the 10,000-hit result window
/// came back as an error, read as "no more documents": a demo of 10,011 records missed eleven,
/// silently. It must read every document, however many.
#[test]
fn every_document_is_read_past_the_ten_thousand_hit_window() {
    let es = Osmem::start(true).expect("start osmem-server");
    let mut body = String::new();
    for i in 0..10_050 {
        body.push_str(&format!(
            "{{\"create\":{{\"_index\":\"logs-a\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n"
        ));
    }
    body.push_str("{\"create\":{\"_index\":\"audit-b\",\"_id\":\"x\"}}\n{\"n\":-1}\n");
    let (status, answer) = http(
        "POST",
        &format!("{}/_bulk", es.url),
        "application/x-ndjson",
        body.as_bytes(),
    )
    .expect("bulk");
    assert_eq!(status, 200, "{answer:.300}");
    let docs = es
        .all_documents("logs-*,audit-*")
        .expect("read every document");
    assert_eq!(docs.len(), 10_051);
    let mut ids: Vec<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10_051, "a document read twice");
}
