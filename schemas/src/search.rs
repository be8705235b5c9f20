//! How text becomes searchable, the same for what fanout indexes and what the reader asks
//! (docs/search-research.md has the evidence behind the choice).
//!
//! Text is folded (NFKC — full-width letters and digits become ASCII — then lower case) and cut into
//! runs of letters and digits. A run of Chinese, Japanese or Korean characters, which has no spaces
//! between its words, becomes its overlapping two-character pieces (`会议室` → `会议`, `议室`) and its
//! last character, at consecutive positions: any word of two or more characters is a phrase of pieces,
//! so a two-character word such as `你好` is found in the middle of a sentence, which a dictionary
//! segmenter may cut differently. Any other run is one word, found by prefix (`meet` finds `meetings`).
//!
//! Both sides are built here as `tsvector` / `tsquery` *literals* of lexemes made only of letters and
//! digits: no user text ever reaches Postgres's query syntax.

use unicode_normalization::UnicodeNormalization;

use crate::ids::ValidationError;

/// The longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Words are indexed and searched by their first this many characters (a longer query word still finds
/// its word: by prefix).
pub const MAX_WORD_CHARS: usize = 64;
/// Positions above this are stored as this (Postgres's own limit).
const MAX_POSITION: usize = 16_383;

/// Whether `c` belongs to a script written without spaces between words.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x3FFFF) // CJK Extensions B and later
}

/// A run of letters and digits, and whether it is written without spaces.
struct Run {
    chars: Vec<char>,
    cjk: bool,
}

/// The folded runs of `text`, in order.
fn runs(text: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for c in text.nfkc().flat_map(char::to_lowercase) {
        if !c.is_alphanumeric() {
            if runs.last().is_some_and(|r| !r.chars.is_empty()) {
                runs.push(Run {
                    chars: Vec::new(),
                    cjk: false,
                });
            }
            continue;
        }
        let cjk = is_cjk(c);
        match runs.last_mut() {
            Some(run) if run.chars.is_empty() => {
                run.cjk = cjk;
                run.chars.push(c);
            }
            Some(run) if run.cjk == cjk => run.chars.push(c),
            _ => runs.push(Run {
                chars: vec![c],
                cjk,
            }),
        }
    }
    runs.retain(|r| !r.chars.is_empty());
    runs
}

/// The lexemes of one run: the word (its first [`MAX_WORD_CHARS`] characters: Postgres refuses
/// lexemes over 2047 bytes, and nobody types more of a word), or a CJK run's pieces and its last
/// character.
fn lexemes(run: &Run) -> Vec<String> {
    if !run.cjk || run.chars.len() == 1 {
        return vec![run.chars.iter().take(MAX_WORD_CHARS).collect()];
    }
    let mut pieces: Vec<String> = run.chars.windows(2).map(|w| w.iter().collect()).collect();
    pieces.push(run.chars[run.chars.len() - 1].to_string());
    pieces
}

/// The `tsvector` literal of `text` (empty when it has no letters or digits).
pub fn document(text: &str) -> String {
    let mut out = String::new();
    let mut position = 0usize;
    for run in runs(text) {
        for lexeme in lexemes(&run) {
            position = (position + 1).min(MAX_POSITION);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('\'');
            out.push_str(&lexeme);
            out.push_str("':");
            out.push_str(&position.to_string());
        }
    }
    out
}

/// The `tsquery` literal of a search query: every word must occur (a CJK word as a phrase of its
/// pieces, a single character or any other word as a prefix). `field` names the parameter in errors.
pub fn query(field: &'static str, text: &str) -> Result<String, ValidationError> {
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let terms: Vec<String> = runs(text)
        .iter()
        .map(|run| {
            let lexemes = lexemes(run);
            if run.cjk && run.chars.len() > 1 {
                // The run's last character is not a piece of its own here: the phrase of pieces.
                let pieces: Vec<String> = lexemes[..lexemes.len() - 1]
                    .iter()
                    .map(|p| format!("'{p}'"))
                    .collect();
                format!("( {} )", pieces.join(" <-> "))
            } else {
                format!("'{}':*", lexemes[0])
            }
        })
        .collect();
    if terms.is_empty() {
        return Err(ValidationError::new(
            field,
            "must contain a letter or a digit to search for",
        ));
    }
    Ok(terms.join(" & "))
}

/// The folded form of `text`, for finding where a query's words occur in it (snippets).
pub fn fold(text: &str) -> String {
    text.nfkc().flat_map(char::to_lowercase).collect()
}

/// The query's words, folded, for highlighting: each run of letters and digits.
pub fn words(text: &str) -> Vec<String> {
    runs(text)
        .into_iter()
        .map(|run| run.chars.into_iter().collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_runs_become_overlapping_pieces_and_words_stay_whole() {
        assert_eq!(
            document("明天的会议 Meetings！"),
            "'明天':1 '天的':2 '的会':3 '会议':4 '议':5 'meetings':6"
        );
        assert_eq!(document("你"), "'你':1");
        assert_eq!(document("…!!"), "");
    }

    #[test]
    fn long_words_are_cut_to_a_length_postgres_takes_on_both_sides() {
        let word = "é".repeat(3000);
        let cut = "é".repeat(MAX_WORD_CHARS);
        assert_eq!(document(&word), format!("'{cut}':1"));
        assert_eq!(query("q", &word[..200]).unwrap(), format!("'{cut}':*"));
    }

    #[test]
    fn full_width_and_case_fold_to_the_same_lexemes() {
        assert_eq!(document("ＨＥＬＬＯ　１２３"), document("hello 123"));
        assert_eq!(query("q", "Ｈｅｌｌｏ").unwrap(), "'hello':*");
    }

    #[test]
    fn queries_are_phrases_of_pieces_and_prefixes_joined_by_and() {
        assert_eq!(query("q", "你好").unwrap(), "( '你好' )");
        assert_eq!(
            query("q", "会议室 meet").unwrap(),
            "( '会议' <-> '议室' ) & 'meet':*"
        );
        assert_eq!(query("q", "会").unwrap(), "'会':*");
        assert_eq!(query("q", "hello你好").unwrap(), "'hello':* & ( '你好' )");
    }

    #[test]
    fn query_syntax_never_passes_and_empty_or_long_queries_are_refused() {
        // Quotes, operators and backslashes are not letters: they only separate words.
        assert_eq!(
            query("q", "a' | b & !c <-> \\d:*").unwrap(),
            "'a':* & 'b':* & 'c':* & 'd':*"
        );
        for bad in ["", "   ", "?!…", "' & |"] {
            assert_eq!(query("q", bad).unwrap_err().field, "q", "{bad:?}");
        }
        assert!(query("q", &"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
    }
}
