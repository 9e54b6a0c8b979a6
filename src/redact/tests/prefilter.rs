//! The prefilter (`scan.rs`): an ordinary line flags no rule, and the gate that passes over
//! digit-free stretches flags the digit shapes the byte-by-byte look finds, no fewer, no more.

use super::*;

#[test]
fn an_ordinary_line_flags_no_rule_in_the_prefilter() {
    for line in [
        "GET /healthz 200 3ms",
        "2024-05-06T07:08:09Z INFO listening on :8080",
        "connection reset by peer (retry 3 of 5)",
        "{\"level\":\"info\",\"msg\":\"done\",\"took\":12}",
        // Logback's and log4j's default timestamp: ten digits through separators, no phone.
        "2026-12-07 10:15:57.123 WARN pool exhausted",
    ] {
        assert_eq!(scan::candidates(line.as_bytes()), 0, "{line:?}");
    }
    assert_ne!(scan::candidates(b"x 10.0.0.1"), 0);
    assert_ne!(scan::candidates(b"call (415) 555-2671"), 0);
}

static DIGIT_RULES: std::sync::LazyLock<Vec<(BuiltIn, regex::Regex)>> =
    std::sync::LazyLock::new(|| {
        [BuiltIn::Phone, BuiltIn::UsSsn, BuiltIn::Card, BuiltIn::Ipv4]
            .into_iter()
            .map(|r| (r, regex::Regex::new(&r.pattern()).unwrap()))
            .collect()
    });

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// The prefilter may say yes in vain, never no in vain: wherever a digit rule's regex
    /// finds a value the rule accepts, the prefilter flagged the rule.
    #[test]
    fn the_prefilter_flags_every_digit_value_the_rules_accept(
        parts in proptest::collection::vec("[0-9]{1,5}|[-. ()+]{1,2}|[a-c_\"]{1,2}", 0..24)
    ) {
        let text = parts.concat();
        let flagged = scan::candidates(text.as_bytes());
        for (rule, re) in DIGIT_RULES.iter() {
            let rule = *rule;
            let accepted = re.find_iter(&text).find(|m| rule.accept(&text, m.range()).is_some());
            if let Some(m) = accepted {
                proptest::prop_assert_ne!(
                    flagged & scan::bit(rule), 0,
                    "{:?} accepts {:?} in {:?}", rule, m.as_str(), text
                );
            }
        }
    }

    /// The prefilter's gate (a table automaton that passes over digit-free stretches, handing
    /// over to the byte-by-byte look only where it opens) must flag exactly the digit shapes
    /// that a byte-by-byte look over the whole text flags, wherever the stretches fall (an SSN
    /// cut by a stretch's end, a `+` or `(` just before one, a dotted quad across two, a
    /// second shape after the first).
    #[test]
    fn passing_over_digit_free_stretches_never_misses_a_shape(
        parts in proptest::collection::vec("[a-x]{1,20}|[0-9]{1,6}|[-.() +]{1,3}", 0..40)
    ) {
        // Words of up to 20 letters make digit-free stretches, cut anywhere by the lanes.
        let text = parts.concat().into_bytes();
        let every = scan::shapes_bytewise(&text);
        let gated = scan::digit_shapes(&text);
        proptest::prop_assert_eq!(every, gated, "{:?}", String::from_utf8_lossy(&text));
    }
}

#[test]
fn shapes_split_by_a_digit_free_stretch_are_each_found() {
    // A `+` phone number, an SSN and a dotted quad, each right after 16 digit-free bytes (one
    // passed-over stretch) and cut across stretches.
    for (text, rule) in [
        ("abcdefghijklmn +415555267", BuiltIn::Phone),
        ("abcdefghijklmn (415) 555-2671", BuiltIn::Phone),
        ("abcdefghijklmnop-078-05-1120", BuiltIn::UsSsn),
        ("abcdefghijklmn 10.0.0.1", BuiltIn::Ipv4),
        (
            "abcdefghijklmnopqrstuvwxyzabcd 4111 1111 1111 1111",
            BuiltIn::Card,
        ),
    ] {
        assert_ne!(
            scan::candidates(text.as_bytes()) & scan::bit(rule),
            0,
            "{text:?}"
        );
    }
    // Nine of one digit, alone in their stretch: each digit is seen as one.
    for d in '0'..='9' {
        let text = format!("abcdefghijklmnopqrstuvw {}", d.to_string().repeat(9));
        let found = scan::candidates(text.as_bytes());
        assert_ne!(found & scan::bit(BuiltIn::UsSsn), 0, "{text:?}");
    }
}

#[test]
fn the_shortest_shape_of_each_rule_between_letters_is_found() {
    for (text, rule) in [
        ("ip1.1.1.1x", BuiltIn::Ipv4),
        ("n078-05-1120x", BuiltIn::UsSsn),
        ("t+441234567x", BuiltIn::Phone),
        ("c-4111111111111.", BuiltIn::Card),
        ("4111 1111 1111 1", BuiltIn::Card),
        // Bare digits only count as a whole JSON value (an `ssn` or `phone` key's).
        ("id\"123456789\"x", BuiltIn::UsSsn),
        ("t:4155552671,x", BuiltIn::Phone),
        ("[4155552671]", BuiltIn::Phone),
        ("123456789", BuiltIn::UsSsn),
    ] {
        assert_ne!(
            scan::candidates(text.as_bytes()) & scan::bit(rule),
            0,
            "{text:?}"
        );
    }
    // Inside a token they are no value: a UUID's last group, an id with a prefix.
    for text in [
        "e4c0ece1-000d-4069-a2df-269469512975",
        "order-4155552671",
        "id123456789x",
        "v1.4155552671",
    ] {
        let flagged = scan::candidates(text.as_bytes());
        assert_eq!(
            flagged & (scan::bit(BuiltIn::Phone) | scan::bit(BuiltIn::UsSsn)),
            0,
            "{text:?}"
        );
    }
    // Nor is a card-length run a card where the rule's `\b` cannot be on both sides of 13
    // digits: a UUID's digits from after a letter, a run that ends in one.
    for text in [
        "1434ff6c-0019-40cc-a594-9419072157dc",
        "c4111111111111x",
        "x4111-1111-1111-1",
        "4111-1111-1111-1x",
    ] {
        assert_eq!(
            scan::candidates(text.as_bytes()) & scan::bit(BuiltIn::Card),
            0,
            "{text:?}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Wherever a message holds a JSON string or number of bare digits that a rule catching
    /// numbers accepts under its key, the prefilter flags a rule that makes the walk look at
    /// it: whatever comes before the member, whatever key, spacing and quoting it has.
    #[test]
    fn bare_digits_a_rule_accepts_under_their_key_are_always_flagged(
        before in "[a-c0-9 :,\"{\\[.+()-]{0,12}",
        key in proptest::sample::select(vec!["phone", "ssn", "mobile", "home_tel", "customer_phone", "SocialSecurity", "id"]),
        space in proptest::sample::select(vec!["", " ", "\t", "  "]),
        quoted in proptest::bool::ANY,
        digits in "[0-9]{9,12}",
        after in "[a-c0-9 ,\"}\\].-]{0,6}",
    ) {
        let value = if quoted { format!("\"{digits}\"") } else { digits.clone() };
        let text = format!("{before}\"{key}\":{space}{value}{after}");
        let accepted = [BuiltIn::Phone, BuiltIn::UsSsn]
            .into_iter()
            .any(|r| r.accepts_bare(&digits, key));
        if accepted {
            let flagged = scan::candidates(text.as_bytes());
            proptest::prop_assert_ne!(
                flagged & (scan::bit(BuiltIn::Phone) | scan::bit(BuiltIn::UsSsn)),
                0,
                "{:?}", text
            );
        }
    }
}
