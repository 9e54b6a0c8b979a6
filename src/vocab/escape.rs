//! JSON's two-byte escapes (`\n`, `\"`, `\\`, …): what each stands for, for the stages that
//! decode JSON text by hand (docker's `log`, redaction's strings).

/// The byte each two-byte escape stands for, by the byte after its backslash; 0 for `u` (four
/// hex digits follow) and for what JSON has no escape for. A table, not a `match`: the escape
/// after every few bytes of a JSON message in a docker line would cost an indirect jump each.
pub const UNESCAPED: [u8; 256] = {
    let mut t = [0; 256];
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'/' as usize] = b'/';
    t[b'b' as usize] = 0x08;
    t[b'f' as usize] = 0x0c;
    t[b'n' as usize] = b'\n';
    t[b'r' as usize] = b'\r';
    t[b't' as usize] = b'\t';
    t
};
