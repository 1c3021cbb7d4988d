//! A line reader that never buffers more than a limit: a child process that
//! writes an endless line costs moat a bounded amount of memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};

/// How many bytes of an oversize line's start and end are kept, enough to
/// find a top-level `"id"` written first or last.
const KEEP: usize = 256;

/// One line read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line within the limit, without its terminator (`\n` or `\r\n`).
    Full(Vec<u8>),
    /// A line over the limit: its length, and its first and last bytes.
    TooLong {
        /// Total length in bytes.
        len: usize,
        /// The first bytes.
        head: Vec<u8>,
        /// The last bytes.
        tail: Vec<u8>,
    },
}

/// Reads lines of at most `max` bytes.
pub(crate) struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    overflow: Option<(usize, Vec<u8>)>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Wraps a buffered reader.
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max, buf: Vec::new(), overflow: None }
    }

    /// The next line, or `None` at end of input. A last line without a
    /// terminator is returned too.
    pub(crate) async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if self.buf.is_empty() && self.overflow.is_none() {
                    return Ok(None);
                }
                return Ok(Some(self.finish()));
            }
            let (chunk, used, done) = match available.iter().position(|&b| b == b'\n') {
                Some(pos) => (&available[..pos], pos + 1, true),
                None => (available, available.len(), false),
            };
            match &mut self.overflow {
                Some((len, _)) => {
                    *len += chunk.len();
                    self.buf.extend_from_slice(chunk);
                    if self.buf.len() > KEEP {
                        let cut = self.buf.len() - KEEP;
                        self.buf.drain(..cut);
                    }
                }
                None => {
                    self.buf.extend_from_slice(chunk);
                    if self.buf.len() > self.max {
                        let head = self.buf[..KEEP.min(self.buf.len())].to_vec();
                        let len = self.buf.len();
                        let cut = self.buf.len().saturating_sub(KEEP);
                        self.buf.drain(..cut);
                        self.overflow = Some((len, head));
                    }
                }
            }
            self.inner.consume(used);
            if done {
                return Ok(Some(self.finish()));
            }
        }
    }

    fn finish(&mut self) -> Line {
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match self.overflow.take() {
            Some((len, head)) => Line::TooLong { len, head, tail: line },
            None => Line::Full(line),
        }
    }
}

/// Finds the top-level numeric `id` of a JSON-RPC message from the start or
/// end of its text, as common serialisers write it: `{"jsonrpc":"2.0","id":N`
/// first, or `"id":N}` last.
pub(crate) fn find_id(head: &[u8], tail: &[u8]) -> Option<u64> {
    let compact = |b: &[u8]| -> String { String::from_utf8_lossy(b).chars().filter(|c| !c.is_whitespace()).collect() };
    let head = compact(head);
    let digits = |s: &str| -> Option<u64> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    for prefix in [r#"{"jsonrpc":"2.0","id":"#, r#"{"id":"#] {
        if let Some(rest) = head.strip_prefix(prefix)
            && let Some(id) = digits(rest)
        {
            return Some(id);
        }
    }
    let tail = compact(tail);
    let body = tail.strip_suffix('}')?;
    let start = body.rfind(r#""id":"#)? + 5;
    let candidate = &body[start..];
    if candidate.chars().all(|c| c.is_ascii_digit()) { candidate.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(7, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().await.unwrap() {
            out.push(l);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_strips_terminators() {
        let lines = read_all(b"one\r\ntwo\n\nlast", 100).await;
        assert_eq!(
            lines,
            vec![
                Line::Full(b"one".to_vec()),
                Line::Full(b"two".to_vec()),
                Line::Full(Vec::new()),
                Line::Full(b"last".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn oversize_lines_are_reported_not_buffered() {
        let mut input = b"{\"jsonrpc\":\"2.0\",\"id\":12,\"result\":\"".to_vec();
        input.extend(std::iter::repeat_n(b'x', 5000));
        input.extend(b"\"}\nok\n");
        let lines = read_all(&input, 1000).await;
        assert_eq!(lines.len(), 2);
        match &lines[0] {
            Line::TooLong { len, head, tail } => {
                assert_eq!(*len, input.len() - 4);
                assert!(head.len() <= KEEP && tail.len() <= KEEP);
                assert_eq!(find_id(head, tail), Some(12));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lines[1], Line::Full(b"ok".to_vec()));
    }

    #[test]
    fn finds_ids_first_or_last_only_at_top_level() {
        assert_eq!(find_id(br#"{"jsonrpc": "2.0", "id": 5, "result": {"#, b""), Some(5));
        assert_eq!(find_id(br#"{"result":{"#, br#"xx"}],"jsonrpc":"2.0","id":77}"#), Some(77));
        assert_eq!(find_id(br#"{"result":{"#, br#"{"id":3}]}}"#), None);
        assert_eq!(find_id(br#"{"result":{"#, br#""id":"abc"}"#), None);
        assert_eq!(find_id(b"garbage", b"garbage"), None);
    }
}
