//! "Excluded is excluded" (issue 25): every path by which a file can come to be followed asks
//! the globs the same question — a file rotated while the agent was down (from a checkpoint of
//! this version or of one before it, which kept no matched path), a Fluentd pos_file entry, a
//! file waiting for its first line, a reload that excludes and at once re-includes — and a
//! reload that changes a multiline rule's pattern under the same name applies it.

mod support;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;
use support::*;

fn lines(w: &mut LogWriter, seqs: std::ops::Range<u64>) {
    for seq in seqs {
        w.json_line(seq).unwrap();
    }
}

fn seqs_of(es: &Osmem, pod: &str) -> HashSet<u64> {
    docs_of(es, pod)
        .iter()
        .filter_map(|d| d["seq"].as_u64())
        .collect()
}

fn with_exclude(node: &Node, es: &Osmem, exclude: &str) -> std::path::PathBuf {
    node.config(&es.url, &format!("exclude = [{exclude:?}]"), "")
}

fn reloaded(agent: &Agent, times: usize) {
    wait_until(20, "the reload", || {
        agent.logs().matches("config reloaded").count() >= times
    });
}

/// Removes the matched paths from the checkpoints file, as an agent before them wrote it.
fn as_an_older_version_wrote_it(node: &Node) {
    let path = node.data().join("checkpoints.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let files = v["files"].as_array_mut().expect("files");
    assert!(
        files.iter().any(|f| f.get("matched").is_some()),
        "this version keeps the matched path: {v}"
    );
    for f in files {
        f.as_object_mut().unwrap().remove("matched");
    }
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn a_namespace_excluded_while_the_agent_was_down_is_not_shipped_after_restarts() {
    for older_checkpoints in [false, true] {
        let es = osmem();
        let node = Node::new();
        let mut noisy = node.writer("noisy", "chatty-1", "app", Format::Cri);
        let mut quiet = node.writer("shop", "cart-1", "app", Format::Cri);
        lines(&mut noisy, 0..10);
        lines(&mut quiet, 0..10);
        let agent = Agent::start(&node.config(&es.url, "", ""));
        wait_until(30, "both followed and shipped", || {
            seqs_of(&es, "chatty-1").len() == 10 && seqs_of(&es, "cart-1").len() == 10
        });
        assert!(agent.stop().success());
        if older_checkpoints {
            as_an_older_version_wrote_it(&node);
        }
        // The operator excludes the namespace for privacy and restarts the agent.
        let config = with_exclude(&node, &es, "*_noisy_*");
        let agent = Agent::start(&config);
        lines(&mut noisy, 10..110);
        lines(&mut quiet, 10..20);
        wait_until(30, "the quiet pod's new lines", || {
            seqs_of(&es, "cart-1").len() == 20
        });
        assert!(agent.stop().success());
        // One more restart: the rotated-while-down rescue looks at every checkpoint.
        let agent = Agent::start(&config);
        lines(&mut quiet, 20..25);
        wait_until(30, "the quiet pod's last lines", || {
            seqs_of(&es, "cart-1").len() == 25
        });
        // A rotation of the excluded file while the agent is down is not rescued either.
        assert!(agent.stop().success());
        noisy.rotate("20261206-120000").unwrap();
        lines(&mut noisy, 110..120);
        let agent = Agent::start(&config);
        lines(&mut quiet, 25..30);
        wait_until(30, "the quiet pod's lines after the rotation", || {
            seqs_of(&es, "cart-1").len() == 30
        });
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            seqs_of(&es, "chatty-1"),
            (0..10).collect(),
            "only what was written before the exclusion (older checkpoints: {older_checkpoints})"
        );
        assert!(agent.stop().success());
    }
}

fn pos_line(path: &Path, pos: u64, ino: u64) -> String {
    format!("{}\t{pos:016x}\t{ino:016x}\n", path.display())
}

#[test]
fn an_excluded_file_in_fluentds_pos_file_is_not_shipped_even_rotated() {
    let es = osmem();
    let node = Node::new();
    let mut pos = String::new();
    let mut noisy = node.writer("noisy", "chatty-1", "app", Format::Cri);
    lines(&mut noisy, 0..10);
    let ino = std::fs::metadata(&noisy.path).unwrap().ino();
    pos += &pos_line(&noisy.link, 0, ino);
    // Rotated since Fluentd read it: found by inode next to its path, unless excluded.
    let mut rotated = node.writer("noisy", "chatty-2", "app", Format::Cri);
    lines(&mut rotated, 0..10);
    let ino = std::fs::metadata(&rotated.path).unwrap().ino();
    pos += &pos_line(&rotated.link, 0, ino);
    rotated.rotate("20261206-110000").unwrap();
    let mut quiet = node.writer("shop", "cart-1", "app", Format::Cri);
    lines(&mut quiet, 0..10);
    let ino = std::fs::metadata(&quiet.path).unwrap().ino();
    pos += &pos_line(&quiet.link, 0, ino);
    let pos_file = node.dir.path().join("fluentd-containers.log.pos");
    std::fs::write(&pos_file, pos).unwrap();
    let config = node.config(
        &es.url,
        &format!(
            "fluentd_pos_file = {:?}\nexclude = [\"*_noisy_*\"]",
            pos_file.display().to_string()
        ),
        "",
    );
    let agent = Agent::start(&config);
    wait_until(30, "the included file", || {
        seqs_of(&es, "cart-1").len() == 10
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(seqs_of(&es, "chatty-1").is_empty());
    assert!(seqs_of(&es, "chatty-2").is_empty());
    assert_eq!(
        agent.metric("logferry_fluentd_positions_total{outcome=\"excluded\"}"),
        2,
        "each excluded position is counted as such"
    );
    assert!(agent.stop().success());
}

#[test]
fn a_file_waiting_for_its_first_line_is_not_read_once_a_reload_excludes_it() {
    let es = osmem();
    let node = Node::new();
    let mut waiting = node.writer("noisy", "chatty-1", "app", Format::Cri);
    // Half a first line: the file has no identity yet and is held open, waiting.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&waiting.path)
        .unwrap();
    f.write_all(b"2026-12-06T10:00:00.000000000Z stdout F {\"seq\":0")
        .unwrap();
    let mut quiet = node.writer("shop", "cart-1", "app", Format::Cri);
    let config = node.config(&es.url, "", "");
    let plain = std::fs::read_to_string(&config).unwrap();
    let agent = Agent::start(&config);
    lines(&mut quiet, 0..1);
    wait_until(30, "the agent is shipping", || {
        seqs_of(&es, "cart-1").len() == 1
    });
    std::fs::write(
        &config,
        plain.replace("[input]\n", "[input]\nexclude = [\"*_noisy_*\"]\n"),
    )
    .unwrap();
    agent.signal("HUP");
    reloaded(&agent, 1);
    f.write_all(b"}\n").unwrap();
    lines(&mut waiting, 1..5);
    // Past a few rescans (200 ms each), with the quiet pod as the positive control.
    std::thread::sleep(Duration::from_secs(1));
    lines(&mut quiet, 1..5);
    wait_until(30, "the quiet pod's lines", || {
        seqs_of(&es, "cart-1").len() == 5
    });
    assert!(seqs_of(&es, "chatty-1").is_empty());
    assert!(agent.stop().success());
}

#[test]
fn a_reload_that_excludes_and_at_once_re_includes_a_file_keeps_following_it() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "cart-1", "app", Format::Cri);
    let config = node.config(&es.url, "", "");
    let plain = std::fs::read_to_string(&config).unwrap();
    let excluding = plain.replace("[input]\n", "[input]\nexclude = [\"*_shop_*\"]\n");
    let agent = Agent::start(&config);
    lines(&mut w, 0..5);
    wait_until(30, "the first lines", || seqs_of(&es, "cart-1").len() == 5);
    for round in 0..5u64 {
        let before = agent.logs().matches("config reloaded").count();
        std::fs::write(&config, &excluding).unwrap();
        agent.signal("HUP");
        std::thread::sleep(Duration::from_millis(50 * round));
        std::fs::write(&config, &plain).unwrap();
        agent.signal("HUP");
        // Two signals close together may be taken as one reload (of the file as it is then,
        // re-included): at least one.
        reloaded(&agent, before + 1);
        let from = 5 + round * 5;
        lines(&mut w, from..from + 5);
        wait_until(30, "the lines after the re-inclusion", || {
            seqs_of(&es, "cart-1").len() == (from + 5) as usize
        });
    }
    assert!(agent.stop().success());
}

#[test]
fn a_reload_that_changes_a_multiline_pattern_under_the_same_name_applies_it() {
    let es = osmem();
    let node = Node::new();
    let mut w = node.writer("shop", "api-1", "app", Format::Cri);
    let rule = |start: &str| {
        format!(
            "[multiline]\nrules = [\"block\"]\nflush_timeout = \"200ms\"\n\
             [[multiline.custom]]\nname = \"block\"\nstart_pattern = '{start}'\ncontinue_pattern = '^\\s'\n"
        )
    };
    let config = node.config_with(&es.url, &rule("^BEGIN"));
    let agent = Agent::start(&config);
    w.line("START one").unwrap();
    w.line("  more").unwrap();
    w.line("after one").unwrap();
    wait_until(30, "three separate lines", || {
        docs_of(&es, "api-1").len() == 3
    });
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("'^BEGIN'", "'^START'")).unwrap();
    agent.signal("HUP");
    reloaded(&agent, 1);
    w.line("START two").unwrap();
    w.line("  more").unwrap();
    w.line("after two").unwrap();
    wait_until(30, "the joined trace and the line after it", || {
        docs_of(&es, "api-1").len() == 5
    });
    let joined = docs_of(&es, "api-1")
        .into_iter()
        .find(|d| {
            d["log"]
                .as_str()
                .is_some_and(|l| l.starts_with("START two"))
        })
        .expect("the trace");
    assert_eq!(joined["log"], "START two\n  more", "{joined}");
    assert!(agent.stop().success());
}
