//! The built-in rules: for each, a regular expression that finds candidates and a validator
//! that keeps only the real thing (Luhn and issuer prefixes for cards, the SSA's invalid SSN
//! ranges, octets for IPv4, a JSON header for JWTs, …), so IDs, timestamps, UUIDs and version
//! numbers survive. The regex is deliberately loose where a check in code is clearer than a
//! pattern; the validator also looks at the characters around a match, which the `regex`
//! crate cannot (no look-around): a digit group that is part of a longer dashed or dotted run
//! is an identifier, not a card, an SSN or an address.

use std::ops::Range;

/// A rule built in; `ALL` is in the order of `config::BUILT_IN_REDACTIONS`, which is also the
/// order ties are broken in when two rules match the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BuiltIn {
    Email,
    Card,
    UsSsn,
    Phone,
    Jwt,
    Bearer,
    AwsKey,
    Ipv4,
}

/// File extensions that follow `@` in asset names (`logo@2x.png`) and are no top-level domain.
const NOT_TLDS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "json", "html", "htm", "txt",
    "log", "xml", "yaml", "yml", "jar", "class", "php", "jsp", "tgz", "gz",
];

impl BuiltIn {
    pub(super) const ALL: [BuiltIn; 8] = [
        BuiltIn::Email,
        BuiltIn::Card,
        BuiltIn::UsSsn,
        BuiltIn::Phone,
        BuiltIn::Jwt,
        BuiltIn::Bearer,
        BuiltIn::AwsKey,
        BuiltIn::Ipv4,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            BuiltIn::Email => "email",
            BuiltIn::Card => "card",
            BuiltIn::UsSsn => "us_ssn",
            BuiltIn::Phone => "phone",
            BuiltIn::Jwt => "jwt",
            BuiltIn::Bearer => "bearer",
            BuiltIn::AwsKey => "aws_key",
            BuiltIn::Ipv4 => "ipv4",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<BuiltIn> {
        BuiltIn::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The candidate finder, ASCII only (`(?-u)`: an Arabic-Indic digit is no card digit, and
    /// an ASCII `\b` keeps the regex crate on its fast DFA for non-ASCII lines too). Loose on
    /// purpose: [`BuiltIn::accept`] decides.
    pub(super) fn pattern(self) -> String {
        format!("(?-u){}", self.loose_pattern())
    }

    fn loose_pattern(self) -> &'static str {
        match self {
            // The practical RFC 5322 subset, without the local-part characters that delimit
            // things in log lines (`=`, `/`, `?`, quotes, braces, `|`): `user=bob@x.org` keeps
            // its `user=`. The top-level domain is letters, so `lodash@4.17.21` is no address.
            BuiltIn::Email => {
                r"[A-Za-z0-9!#$%&*+^_~-]+(?:\.[A-Za-z0-9!#$%&*+^_~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}\b"
            }
            // 13 to 19 digits, single spaces or dashes between them.
            BuiltIn::Card => r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
            // Only the written form: a bare 9-digit run is far more often an ID than an SSN.
            BuiltIn::UsSsn => r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
            // E.164 (`+` and 9 to 15 digits, optionally grouped), or NANP with its separators
            // or parentheses: a bare 10-digit run is epoch seconds far more often than a phone.
            BuiltIn::Phone => {
                r"\+[1-9](?:[ .-]?[0-9]){8,14}|(?:\+?1[ .-])?(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}\b"
            }
            // Three base64url parts, the first two JSON objects (`{"` is `eyJ`).
            BuiltIn::Jwt => r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
            // The scheme word and its token; only the token is replaced.
            BuiltIn::Bearer => r"\b(?:[Bb]earer|BEARER)[ \t]+[A-Za-z0-9._~+/-]+=*",
            BuiltIn::AwsKey => r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            BuiltIn::Ipv4 => r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b",
        }
    }

    /// Whether the rule also applies to bare digits: a JSON number, or a string of nothing
    /// but digits (a card, an SSN or a phone number logged without its separators).
    pub(super) fn applies_to_numbers(self) -> bool {
        matches!(self, BuiltIn::Card | BuiltIn::UsSsn | BuiltIn::Phone)
    }

    /// Whether bare `digits` are this rule's value when they are the value of `key` (the
    /// nearest key above them). A card is known by its own digits (issuer and Luhn); nine or
    /// ten bare digits are far more often an id, a count or epoch seconds than an SSN or a
    /// phone number, so those two need the key to say so (`ssn`, `patientSSN`, `phone`,
    /// `mobile`, `tel`, …).
    pub(super) fn accepts_bare(self, digits: &str, key: &str) -> bool {
        let b = digits.as_bytes();
        match self {
            BuiltIn::Card => (13..=19).contains(&b.len()) && card(digits).is_some(),
            BuiltIn::UsSsn => {
                b.len() == 9 && key_says(key, &["ssn", "socialsecurity"], &[]) && {
                    let dashed = [&b[..3], b"-", &b[3..5], b"-", &b[5..]].concat();
                    ssn(&dashed)
                }
            }
            BuiltIn::Phone => {
                let national = match b.len() {
                    10 => b,
                    11 if b[0] == b'1' => &b[1..],
                    _ => return false,
                };
                key_says(key, &["phone", "mobile", "msisdn", "fax", "cell"], &["tel"])
                    && (b'2'..=b'9').contains(&national[0])
                    && (b'2'..=b'9').contains(&national[3])
            }
            _ => false,
        }
    }

    /// The part of the candidate `m` in `hay` that is the sensitive value, or None when the
    /// candidate is not one.
    pub(super) fn accept(self, hay: &str, m: Range<usize>) -> Option<Range<usize>> {
        let b = hay.as_bytes();
        match self {
            BuiltIn::Email => email(&hay[m.clone()]).then_some(m),
            BuiltIn::Card => {
                if in_longer_run(b, &m, b"-.") {
                    return None;
                }
                card(&hay[m.clone()]).map(|r| m.start + r.start..m.start + r.end)
            }
            BuiltIn::UsSsn => (!in_longer_run(b, &m, b"-.") && ssn(&b[m.clone()])).then_some(m),
            BuiltIn::Phone => phone(b, m.clone()).then_some(m),
            BuiltIn::Jwt => jwt(&hay[m.clone()]).then_some(m),
            BuiltIn::Bearer => bearer_token(b, m),
            BuiltIn::AwsKey => Some(m),
            BuiltIn::Ipv4 => (!in_longer_run(b, &m, b".") && ipv4(&hay[m.clone()])).then_some(m),
        }
    }

    /// The value as hashed: the same card, SSN or phone number written differently gives the
    /// same tag, and so does an address in another case.
    pub(super) fn normalize(self, value: &str) -> String {
        match self {
            BuiltIn::Card | BuiltIn::UsSsn => digits(value),
            BuiltIn::Phone => {
                let d = digits(value);
                // +1 415 555 2671 and (415) 555-2671 are one number (country code 1 is NANP).
                match d.strip_prefix('1') {
                    Some(rest) if d.len() == 11 => rest.to_owned(),
                    _ => d,
                }
            }
            BuiltIn::Email => value.to_ascii_lowercase(),
            _ => value.to_owned(),
        }
    }
}

/// Whether `key`, in lower case without `_`, `-`, `.` or spaces, contains one of `parts` or
/// has one of `words` as a whole word (`tel` in `home_tel`, not in `hotel`).
fn key_says(key: &str, parts: &[&str], words: &[&str]) -> bool {
    let squashed: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    parts.iter().any(|p| squashed.contains(p))
        || key
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| words.iter().any(|x| w.eq_ignore_ascii_case(x)))
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Whether the match continues, through one of `seps`, into more letters or digits on either
/// side: `55072811-2305-4461-…` or `1.2.3.4.5` are identifiers, not values.
fn in_longer_run(b: &[u8], m: &Range<usize>, seps: &[u8]) -> bool {
    let before =
        m.start >= 2 && seps.contains(&b[m.start - 1]) && b[m.start - 2].is_ascii_alphanumeric();
    let after =
        m.end + 1 < b.len() && seps.contains(&b[m.end]) && b[m.end + 1].is_ascii_alphanumeric();
    before || after
}

fn email(s: &str) -> bool {
    let tld = s.rsplit('.').next().unwrap_or_default();
    !NOT_TLDS.iter().any(|t| t.eq_ignore_ascii_case(tld))
}

/// The card number inside a candidate, as a range of it: the first run of whole digit groups
/// (leftmost, then longest) that is shaped like a card, has a known issuer prefix and passes
/// Luhn. Trying sub-runs finds `4111 1111 1111 1111` in `qty 12 4111 1111 1111 1111`.
pub(super) fn card(s: &str) -> Option<Range<usize>> {
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut start = None;
    for (i, c) in s.bytes().enumerate() {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                groups.push(st..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(st) = start {
        groups.push(st..s.len());
    }
    let b = s.as_bytes();
    for i in 0..groups.len() {
        for j in (i..groups.len()).rev() {
            let window = &groups[i..=j];
            let span = window[0].start..window[window.len() - 1].end;
            // One kind of separator, one character wide, throughout.
            let seps_agree = window
                .windows(2)
                .all(|w| w[1].start - w[0].end == 1 && b[w[0].end] == b[window[0].end]);
            let digits: Vec<u8> = b[span.clone()]
                .iter()
                .filter(|c| c.is_ascii_digit())
                .map(|c| c - b'0')
                .collect();
            if (13..=19).contains(&digits.len())
                && seps_agree
                && card_shape(window)
                && known_issuer(&digits)
                && luhn(&digits)
            {
                return Some(span);
            }
        }
    }
    None
}

/// One run, groups of four (the last may be shorter), or the 4-6-5 / 4-6-4 of Amex and Diners.
fn card_shape(groups: &[Range<usize>]) -> bool {
    let lens: Vec<usize> = groups.iter().map(ExactSizeIterator::len).collect();
    match lens.split_last() {
        None => false,
        Some((_, [])) => true,
        Some((last, head)) => {
            (head.iter().all(|&l| l == 4) && (1..=4).contains(last))
                || lens == [4, 6, 5]
                || lens == [4, 6, 4]
        }
    }
}

/// Visa, Mastercard (51–55, 2221–2720), Amex, Discover, Diners, JCB, UnionPay: prefixes no
/// epoch timestamp (1…) or date-like run (20…, 19…) has.
fn known_issuer(d: &[u8]) -> bool {
    let prefix = |n: usize| {
        d.iter()
            .take(n)
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x))
    };
    let (p2, p3, p4) = (prefix(2), prefix(3), prefix(4));
    d[0] == 4
        || (51..=55).contains(&p2)
        || (2221..=2720).contains(&p4)
        || p2 == 34
        || p2 == 37
        || p4 == 6011
        || (644..=649).contains(&p3)
        || p2 == 65
        || p2 == 62
        || (300..=305).contains(&p3)
        || p2 == 36
        || p2 == 38
        || p2 == 39
        || (3528..=3589).contains(&p4)
}

pub(super) fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `AAA-GG-SSSS` outside the ranges never issued: area 000, 666 and 900–999, group 00,
/// serial 0000.
fn ssn(s: &[u8]) -> bool {
    let num = |r: Range<usize>| {
        s[r].iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
    };
    let (area, group, serial) = (num(0..3), num(4..6), num(7..11));
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// E.164 needs its digits not to run on; NANP needs real area and exchange codes (2–9 first).
/// Neither may be glued to a word or be part of a longer dashed or dotted run.
fn phone(b: &[u8], m: Range<usize>) -> bool {
    if m.start > 0 && (b[m.start - 1].is_ascii_alphanumeric() || b"_-.+".contains(&b[m.start - 1]))
    {
        return false;
    }
    if m.end < b.len() && (b[m.end].is_ascii_digit() || b[m.end] == b'_') {
        return false;
    }
    if in_longer_run(b, &m, b"-.") {
        return false;
    }
    if b[m.start] == b'+' && b.get(m.start + 1) != Some(&b'1') {
        return true;
    }
    let d: Vec<u8> = b[m.clone()]
        .iter()
        .filter(|c| c.is_ascii_digit())
        .copied()
        .collect();
    let national = match d.len() {
        10 => &d[..],
        11 if d[0] == b'1' => &d[1..],
        // An international number in E.164 form (+1 and 8–13 more digits): no NANP check.
        _ => return b[m.start] == b'+',
    };
    (b'2'..=b'9').contains(&national[0]) && (b'2'..=b'9').contains(&national[3])
}

/// The header decodes to a JSON object naming its algorithm (every JWS header has `alg`).
fn jwt(s: &str) -> bool {
    use base64::Engine;
    let header = s.split('.').next().unwrap_or_default();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    engine
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|h| String::from_utf8(h).ok())
        .is_some_and(|h| h.starts_with('{') && h.contains("\"alg\""))
}

/// The token after `Bearer ` when it looks like one: 8 characters or more with a digit in them
/// (`Bearer authentication failed` keeps its words).
fn bearer_token(b: &[u8], m: Range<usize>) -> Option<Range<usize>> {
    let word = "bearer".len();
    let start = m.start
        + word
        + b[m.start + word..m.end]
            .iter()
            .take_while(|c| **c == b' ' || **c == b'\t')
            .count();
    let token = &b[start..m.end];
    (token.len() >= 8 && token.iter().any(u8::is_ascii_digit)).then_some(start..m.end)
}

/// Four octets of at most 255, none with a leading zero (`01.02.03.04` is a version or a date).
fn ipv4(s: &str) -> bool {
    s.split('.')
        .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255) && (o.len() == 1 || !o.starts_with('0')))
}
