//! The pool's tests: URLs with a path prefix, the round robin, the set-aside backoff and its
//! trial requests, and what sniffing learns from a `_nodes/http` answer.

use super::host::BULK_QUERY;
use super::sniff::learned_hosts;
use super::*;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

const QUICK: SetAside = SetAside {
    first: Duration::from_secs(1),
    max: Duration::from_secs(8),
    trial: Duration::from_secs(40),
};

fn pool(urls: &[&str]) -> HostPool {
    let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
    HostPool::new(&urls, QUICK, Arc::new(Metrics::new()))
}

fn names(hosts: impl IntoIterator<Item = Host>) -> Vec<String> {
    hosts.into_iter().map(|h| h.name()).collect()
}

#[test]
fn a_path_prefix_is_kept_with_or_without_its_trailing_slash() {
    for url in [
        "http://h:9200/es",
        "http://h:9200/es/",
        "http://h:9200/es/?x=1",
    ] {
        let host = Host::parse(url).unwrap();
        assert_eq!(host.bulk_url().path(), "/es/_bulk", "{url}");
        assert_eq!(host.bulk_url().query(), Some(BULK_QUERY), "{url}");
        assert_eq!(host.url("_nodes/http").unwrap().path(), "/es/_nodes/http");
    }
    let gateway = Host::parse("https://gw.example/elasticsearch").unwrap();
    assert_eq!(
        gateway.bulk_url().as_str(),
        format!("https://gw.example/elasticsearch/_bulk?{BULK_QUERY}")
    );
    for url in ["http://h:9200", "http://h:9200/"] {
        assert_eq!(Host::parse(url).unwrap().bulk_url().path(), "/_bulk");
    }
    assert!(Host::parse("ftp://h/").is_none());
}

#[test]
fn requests_go_round_robin_over_the_hosts() {
    let p = pool(&["http://a:9200", "http://b:9200", "http://c:9200"]);
    let seen: Vec<Host> = (0..6).filter_map(|_| p.next()).collect();
    assert_eq!(
        names(seen),
        ["a:9200", "b:9200", "c:9200", "a:9200", "b:9200", "c:9200"]
    );
}

#[test]
fn a_failed_host_is_set_aside_and_returns_after_its_backoff() {
    let p = pool(&["http://a:9200", "http://b:9200"]);
    let t0 = Instant::now();
    let a = p.next_at(t0).unwrap();
    p.failed_at(&a, "connection refused", t0);
    // Only b, for at least half the first backoff.
    let during: Vec<Host> = (0..4).filter_map(|_| p.next_at(t0)).collect();
    assert_eq!(names(during), ["b:9200"; 4]);
    assert_eq!(p.set_aside_hosts(), ["a:9200 (1 failures in a row)"]);
    // Past the longest first backoff, a gets one request on trial...
    let later = t0 + QUICK.first;
    let round: Vec<Host> = (0..4).filter_map(|_| p.next_at(later)).collect();
    assert_eq!(
        names(round.clone())
            .iter()
            .filter(|n| *n == "a:9200")
            .count(),
        1,
        "one trial request, not every request: {:?}",
        names(round)
    );
    // ...and once it answers, its share again.
    p.succeeded(&a);
    let back: Vec<Host> = (0..4).filter_map(|_| p.next_at(later)).collect();
    assert_eq!(names(back).iter().filter(|n| *n == "a:9200").count(), 2);
    assert!(p.set_aside_hosts().is_empty());
}

#[test]
fn a_trial_request_that_never_reports_back_does_not_keep_its_host_out() {
    let p = pool(&["http://a:9200", "http://b:9200"]);
    let t0 = Instant::now();
    let a = p.next_at(t0).unwrap();
    p.failed_at(&a, "timeout", t0);
    let later = t0 + QUICK.first;
    let a_in = |round: Vec<Host>| round.iter().filter(|h| **h == a).count();
    let trial: Vec<Host> = (0..2).filter_map(|_| p.next_at(later)).collect();
    assert_eq!(a_in(trial), 1, "the trial request");
    // That request's task ended without a word: a is not handed out while it may still
    // be running, and is tried again once it cannot be.
    let during: Vec<Host> = (0..4).filter_map(|_| p.next_at(later)).collect();
    assert_eq!(a_in(during), 0);
    let after = later + QUICK.trial;
    let again: Vec<Host> = (0..4).filter_map(|_| p.next_at(after)).collect();
    assert_eq!(a_in(again), 1, "a new trial");
}

#[test]
fn each_failure_in_a_row_sets_a_host_aside_longer_up_to_the_cap() {
    for failures in 1..=10u32 {
        let full = (QUICK.first * 2u32.pow(failures - 1)).min(QUICK.max);
        for _ in 0..20 {
            let w = QUICK.after(failures);
            assert!(w >= full / 2 && w <= full, "{failures}: {w:?} vs {full:?}");
        }
    }
    assert!(QUICK.after(u32::MAX) <= QUICK.max);
}

#[test]
fn when_every_host_is_set_aside_the_one_due_first_is_handed_out() {
    let p = pool(&["http://a:9200", "http://b:9200"]);
    let t0 = Instant::now();
    let (a, b) = (p.next_at(t0).unwrap(), p.next_at(t0).unwrap());
    // b has failed three times in a row, a once: a's backoff ends first.
    for _ in 0..3 {
        p.failed_at(&b, "timeout", t0);
    }
    p.failed_at(&a, "timeout", t0);
    for _ in 0..3 {
        assert_eq!(p.next_at(t0), Some(a.clone()), "never no host");
    }
    let gauge = |state| {
        p.metrics
            .elasticsearch_hosts
            .get_or_create(&[("state", state)])
            .get()
    };
    assert_eq!((gauge("alive"), gauge("set_aside")), (0, 2));
    p.succeeded(&b);
    assert_eq!((gauge("alive"), gauge("set_aside")), (1, 1));
}

#[test]
fn sniffing_is_off_by_default_and_its_interval_is_a_duration() {
    use crate::config::Config;
    let none = |_: &str| None;
    let c = Config::from_toml("", none).unwrap();
    assert!(!c.elasticsearch.sniff);
    assert_eq!(c.elasticsearch.sniff_interval.0, Duration::from_secs(300));
    let c = Config::from_toml(
        "[elasticsearch]\nsniff = true\nsniff_interval = \"30s\"\n",
        none,
    )
    .unwrap();
    assert!(c.elasticsearch.sniff);
    assert_eq!(c.elasticsearch.sniff_interval.0, Duration::from_secs(30));
    // A zero interval would ask the cluster in a loop.
    let problems = Config::from_toml(
        "[elasticsearch]\nsniff = true\nsniff_interval = \"0s\"\n",
        none,
    )
    .unwrap_err();
    assert_eq!(
        problems[0].key.as_deref(),
        Some("elasticsearch.sniff_interval"),
        "{problems:?}"
    );
}

#[test]
fn sniffed_nodes_keep_the_scheme_and_prefix_and_skip_dedicated_masters() {
    let like = Host::parse("https://gw.example/es").unwrap();
    let body = br#"{"_nodes":{"total":4},"cluster_name":"c","nodes":{
        "n1":{"name":"es-1","roles":["data","ingest"],"http":{"bound_address":["[::]:9200"],"publish_address":"10.0.0.1:9200"}},
        "n2":{"name":"es-2","http":{"publish_address":"es-2.example/10.0.0.2:9201"}},
        "n3":{"name":"m","roles":["master"],"http":{"publish_address":"10.0.0.3:9200"}},
        "n4":{"name":"v6","roles":["data"],"http":{"publish_address":"[fd00::4]:9200"}},
        "n5":{"name":"no-http","roles":["data"]}}}"#;
    let hosts = learned_hosts(body, &like).unwrap();
    let urls: Vec<String> = hosts.iter().map(|h| h.bulk_url().to_string()).collect();
    assert_eq!(
        urls,
        [
            format!("https://10.0.0.1:9200/es/_bulk?{BULK_QUERY}"),
            format!("https://[fd00::4]:9200/es/_bulk?{BULK_QUERY}"),
            format!("https://es-2.example:9201/es/_bulk?{BULK_QUERY}"),
        ]
    );
    assert!(learned_hosts(b"{\"nodes\": 3}", &like).is_err());
}

#[test]
fn a_sniffed_set_replaces_the_members_and_keeps_a_set_aside_host_aside() {
    let p = pool(&["http://seed:9200"]);
    let t0 = Instant::now();
    p.replace(vec![
        Host::parse("http://a:9200").unwrap(),
        Host::parse("http://b:9200").unwrap(),
    ]);
    let a = Host::parse("http://a:9200").unwrap();
    p.failed_at(&a, "refused", t0);
    p.replace(vec![a.clone(), Host::parse("http://c:9200").unwrap()]);
    let seen: Vec<Host> = (0..3).filter_map(|_| p.next_at(t0)).collect();
    assert_eq!(names(seen), ["c:9200"; 3]);
    // An empty answer is no reason to forget every host.
    p.replace(Vec::new());
    assert_eq!(names(p.hosts()), ["a:9200", "c:9200"]);
}
