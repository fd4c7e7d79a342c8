//! Multi-document YAML files edited one document at a time.
//!
//! A config directory file may hold many documents separated by `---`
//! lines. Editing an ApiKey must leave every other document byte for byte as
//! it was, so the file is split at document markers without parsing, and
//! only the edited document is serialized again.

use std::ops::Range;

/// A YAML stream split into documents at `---` marker lines.
#[derive(Debug)]
pub struct YamlStream<'a> {
    text: &'a str,
    documents: Vec<DocumentSpan>,
}

#[derive(Debug, Clone)]
struct DocumentSpan {
    /// Bytes of the document, including its `---` line if it has one.
    range: Range<usize>,
    /// Whether the document starts with a `---` marker line.
    has_marker: bool,
    /// Line ending of the marker line, reused when the document is replaced.
    line_ending: &'static str,
}

impl<'a> YamlStream<'a> {
    /// Splits `text` before each line that is a YAML document start marker:
    /// `---` at the start of a line, followed by whitespace or the end of
    /// the line. YAML forbids such lines inside a document's content, so the
    /// split needs no parser.
    pub fn split(text: &'a str) -> Self {
        let mut documents = Vec::new();
        let mut start = 0;
        let mut start_marker = None;
        let mut offset = 0;

        for line in text.split_inclusive('\n') {
            if let Some(line_ending) = marker_line_ending(line) {
                if offset > start || start_marker.is_some() {
                    documents.push(span(start..offset, start_marker));
                }
                start = offset;
                start_marker = Some(line_ending);
            }
            offset += line.len();
        }
        if offset > start || start_marker.is_some() {
            documents.push(span(start..offset, start_marker));
        }

        YamlStream { text, documents }
    }

    /// Returns the documents' text in file order, each with its `---` line.
    pub fn documents(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.documents.iter().map(|d| &self.text[d.range.clone()])
    }

    /// Returns the stream with document `index` replaced by `body`, a YAML
    /// document without a `---` line. Every other byte stays as it was.
    ///
    /// NOTE: comments inside the replaced document and text after its `---`
    /// marker are not carried over, because `body` is a fresh serialization.
    pub fn replace(&self, index: usize, body: &str) -> String {
        let document = &self.documents[index];
        let mut out = String::with_capacity(self.text.len() + body.len());

        out.push_str(&self.text[..document.range.start]);
        if document.has_marker {
            out.push_str("---");
            out.push_str(document.line_ending);
        }
        out.push_str(body);
        if !body.ends_with('\n') {
            out.push_str(document.line_ending);
        }
        out.push_str(&self.text[document.range.end..]);
        out
    }
}

fn span(range: Range<usize>, marker: Option<&'static str>) -> DocumentSpan {
    DocumentSpan {
        range,
        has_marker: marker.is_some(),
        line_ending: marker.unwrap_or("\n"),
    }
}

/// Returns the line ending of `line` if it is a document start marker.
fn marker_line_ending(line: &str) -> Option<&'static str> {
    let rest = line.strip_prefix("---")?;
    match rest.chars().next() {
        None | Some(' ' | '\t' | '\n') => Some(if rest.ends_with("\r\n") { "\r\n" } else { "\n" }),
        Some('\r') => Some("\r\n"),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# routes and keys for the demo
apiVersion: portcullis.dev/v1alpha1
kind: GatewayRoute
metadata: {name: hello}   # flow style kept
spec:
  method: GET
---
apiVersion: portcullis.dev/v1alpha1
kind: ApiKey
metadata:
  name: partner
spec:
  keyHash: old
--- # trailing comment on a marker
kind: EndpointSlice
description: |
  text with --- inside
  ---not a marker either
";

    #[test]
    fn split_finds_documents_at_markers() {
        let stream = YamlStream::split(FILE);
        let documents: Vec<&str> = stream.documents().collect();

        assert_eq!(documents.len(), 3);
        assert!(documents[0].starts_with("# routes and keys"));
        assert!(documents[1].starts_with("---\napiVersion"));
        assert!(documents[2].starts_with("--- # trailing comment"));
        assert_eq!(documents.concat(), FILE);
    }

    #[test]
    fn split_ignores_dashes_inside_content() {
        let stream = YamlStream::split(FILE);
        let last = stream.documents().last().unwrap();
        assert!(last.contains("---not a marker either"));
    }

    #[test]
    fn replace_keeps_other_documents_byte_identical() {
        let stream = YamlStream::split(FILE);
        let before: Vec<&str> = stream.documents().collect();

        let edited = stream.replace(1, "kind: ApiKey\nspec:\n  keyHash: new\n");
        let after_stream = YamlStream::split(&edited);
        let after: Vec<&str> = after_stream.documents().collect();

        assert_eq!(after.len(), 3);
        assert_eq!(after[0], before[0]);
        assert_eq!(after[1], "---\nkind: ApiKey\nspec:\n  keyHash: new\n");
        assert_eq!(after[2], before[2]);
    }

    #[test]
    fn replace_first_document_without_marker() {
        let stream = YamlStream::split("kind: ApiKey\n---\nkind: Other\n");
        let edited = stream.replace(0, "kind: ApiKey\nx: 1\n");
        assert_eq!(edited, "kind: ApiKey\nx: 1\n---\nkind: Other\n");
    }

    #[test]
    fn replace_last_document_without_final_newline() {
        let stream = YamlStream::split("kind: Other\n---\nkind: ApiKey");
        let edited = stream.replace(1, "kind: ApiKey\nx: 1");
        assert_eq!(edited, "kind: Other\n---\nkind: ApiKey\nx: 1\n");
    }

    #[test]
    fn replace_keeps_crlf_line_endings_of_others() {
        let text = "kind: Other\r\n---\r\nkind: ApiKey\r\n---\r\nkind: Last\r\n";
        let stream = YamlStream::split(text);
        let edited = stream.replace(1, "kind: ApiKey\n");
        assert_eq!(
            edited,
            "kind: Other\r\n---\r\nkind: ApiKey\n---\r\nkind: Last\r\n"
        );
    }

    #[test]
    fn split_leading_marker_and_empty_documents() {
        let stream = YamlStream::split("---\nkind: A\n---\n---\nkind: B\n");
        let documents: Vec<&str> = stream.documents().collect();
        assert_eq!(documents, vec!["---\nkind: A\n", "---\n", "---\nkind: B\n"]);
    }

    #[test]
    fn split_empty_text_has_no_documents() {
        assert_eq!(YamlStream::split("").documents().count(), 0);
    }

    #[test]
    fn marker_requires_whitespace_or_end() {
        assert_eq!(marker_line_ending("---\n"), Some("\n"));
        assert_eq!(marker_line_ending("---\r\n"), Some("\r\n"));
        assert_eq!(marker_line_ending("--- !tag\n"), Some("\n"));
        assert_eq!(marker_line_ending("---"), Some("\n"));
        assert_eq!(marker_line_ending("----\n"), None);
        assert_eq!(marker_line_ending("---x\n"), None);
        assert_eq!(marker_line_ending(" ---\n"), None);
    }
}
