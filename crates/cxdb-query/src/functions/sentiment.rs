//! `sentiment(text) -> DOUBLE` in [-1, 1] (SPEC §3 Sentiment): VADER, the
//! lexicon- and rule-based model of Hutto & Gilbert (ICWSM 2014), ported from
//! the reference implementation `vaderSentiment` 3.3.2 (PyPI).
//!
//! Vendored data, both MIT-licensed (`VADER-LICENSE.txt`, © 2016 C.J. Hutto),
//! unchanged from the `vaderSentiment==3.3.2` wheel:
//! `vader_lexicon.txt` (7,520 words, emoticons and slang with a mean valence
//! of -4..4) and `emoji_utf8_lexicon.txt` (emoji → English description).
//!
//! Rules, as in VADER: emoji are replaced by their descriptions; tokens are
//! whitespace-separated with leading/trailing punctuation stripped (unless
//! that leaves ≤ 2 characters, which keeps emoticons such as `:)`); the
//! valence of a lexicon word is scaled by the three preceding words —
//! intensifiers and dampeners (`very`, `slightly`, ±0.293, fading with
//! distance), negations (`not`, `never`, `…n't`, ×-0.74), `no`, `least`,
//! `never so`, idioms (`kiss of death`); a word in ALL CAPS among non-caps
//! words adds ±0.733; after the first `but` earlier words count half, later
//! ones 1.5×; `!` (up to 4, +0.292 each) and `??`+ add emphasis; the sum is
//! normalised with `x / sqrt(x² + 15)`. Empty or word-less text scores 0,
//! NULL gives NULL. English only.
//!
//! Deviations from the Python reference, both fixes of evident bugs: the
//! `but` rule scales by position (the reference looks each score up by value
//! with `list.index`, so equal scores are scaled repeatedly), and the
//! three-words-back `never so/this` rule is applied only after `never` (an
//! operator-precedence slip made it fire on any `so`/`this`). Scores are not
//! rounded to 4 decimals.
//!
//! Speed: one hash lookup per token in a map built once (lexicon, boosters
//! and negations together, with an Fx-style hash), lower-casing into a
//! reused buffer, and no allocation per message once a [`SentimentScorer`]
//! is warm; the UDF uses one scorer per batch.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, Float64Builder};
use arrow::datatypes::DataType;
use datafusion::common::cast::{as_large_string_array, as_string_array, as_string_view_array};
use datafusion::common::{Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

const NAME: &str = "sentiment";

static LEXICON_TXT: &str = include_str!("vader_lexicon.txt");
static EMOJI_TXT: &str = include_str!("emoji_utf8_lexicon.txt");

/// Empirically derived increase for booster words.
const B_INCR: f32 = 0.293;
const B_DECR: f32 = -0.293;
/// Increase for an ALL-CAPS word among non-caps ones.
const C_INCR: f64 = 0.733;
/// Scaling of a negated word.
const N_SCALAR: f64 = -0.74;
/// Normalisation constant: x / sqrt(x² + ALPHA).
const ALPHA: f64 = 15.0;

const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

/// Single-token boosters and dampeners ("degree adverbs").
const BOOSTERS: &[(&str, f32)] = &[
    ("absolutely", B_INCR),
    ("amazingly", B_INCR),
    ("awfully", B_INCR),
    ("completely", B_INCR),
    ("considerable", B_INCR),
    ("considerably", B_INCR),
    ("decidedly", B_INCR),
    ("deeply", B_INCR),
    ("effing", B_INCR),
    ("enormous", B_INCR),
    ("enormously", B_INCR),
    ("entirely", B_INCR),
    ("especially", B_INCR),
    ("exceptional", B_INCR),
    ("exceptionally", B_INCR),
    ("extreme", B_INCR),
    ("extremely", B_INCR),
    ("fabulously", B_INCR),
    ("flipping", B_INCR),
    ("flippin", B_INCR),
    ("frackin", B_INCR),
    ("fracking", B_INCR),
    ("fricking", B_INCR),
    ("frickin", B_INCR),
    ("frigging", B_INCR),
    ("friggin", B_INCR),
    ("fully", B_INCR),
    ("fuckin", B_INCR),
    ("fucking", B_INCR),
    ("fuggin", B_INCR),
    ("fugging", B_INCR),
    ("greatly", B_INCR),
    ("hella", B_INCR),
    ("highly", B_INCR),
    ("hugely", B_INCR),
    ("incredible", B_INCR),
    ("incredibly", B_INCR),
    ("intensely", B_INCR),
    ("major", B_INCR),
    ("majorly", B_INCR),
    ("more", B_INCR),
    ("most", B_INCR),
    ("particularly", B_INCR),
    ("purely", B_INCR),
    ("quite", B_INCR),
    ("really", B_INCR),
    ("remarkably", B_INCR),
    ("so", B_INCR),
    ("substantially", B_INCR),
    ("thoroughly", B_INCR),
    ("total", B_INCR),
    ("totally", B_INCR),
    ("tremendous", B_INCR),
    ("tremendously", B_INCR),
    ("uber", B_INCR),
    ("unbelievably", B_INCR),
    ("unusually", B_INCR),
    ("utter", B_INCR),
    ("utterly", B_INCR),
    ("very", B_INCR),
    ("almost", B_DECR),
    ("barely", B_DECR),
    ("hardly", B_DECR),
    ("kinda", B_DECR),
    ("kindof", B_DECR),
    ("kind-of", B_DECR),
    ("less", B_DECR),
    ("little", B_DECR),
    ("marginal", B_DECR),
    ("marginally", B_DECR),
    ("occasional", B_DECR),
    ("occasionally", B_DECR),
    ("partly", B_DECR),
    ("scarce", B_DECR),
    ("scarcely", B_DECR),
    ("slight", B_DECR),
    ("slightly", B_DECR),
    ("somewhat", B_DECR),
    ("sorta", B_DECR),
    ("sortof", B_DECR),
    ("sort-of", B_DECR),
];

/// Multi-word dampeners ("kind of"), matched on token sequences.
const BOOSTER_PHRASES: &[(&[&str], f64)] = &[
    (&["just", "enough"], B_DECR as f64),
    (&["kind", "of"], B_DECR as f64),
    (&["sort", "of"], B_DECR as f64),
];

/// Idioms containing lexicon words; the idiom's valence replaces the word's.
const SPECIAL_CASES: &[(&[&str], f64)] = &[
    (&["the", "shit"], 3.0),
    (&["the", "bomb"], 3.0),
    (&["bad", "ass"], 1.5),
    (&["bus", "stop"], 0.0),
    (&["yeah", "right"], -2.0),
    (&["kiss", "of", "death"], -1.5),
    (&["to", "die", "for"], 3.0),
    (&["beating", "heart"], 3.5),
];

/// What the rules need to know about a lower-cased token.
#[derive(Debug, Clone, Copy, Default)]
struct Word {
    /// Lexicon valence, when the token is in the lexicon.
    valence: Option<f32>,
    /// Booster/dampener increment, 0 when not one.
    booster: f32,
    negation: bool,
}

/// The FxHash mix (rustc's): a few cycles per 8 bytes, plenty for a fixed
/// set of 7,600 short keys that no user controls.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The lexicon with boosters and negations folded in: one lookup per token.
static WORDS: LazyLock<FxMap<&'static str, Word>> = LazyLock::new(|| {
    let mut words: FxMap<&'static str, Word> = FxMap::default();
    words.reserve(7_700);
    for line in LEXICON_TXT.lines() {
        let mut fields = line.trim().split('\t');
        if let (Some(word), Some(Ok(valence))) = (fields.next(), fields.next().map(str::parse))
            && !word.is_empty()
        {
            words.entry(word).or_default().valence = Some(valence);
        }
    }
    for &(word, booster) in BOOSTERS {
        words.entry(word).or_default().booster = booster;
    }
    for &word in NEGATE {
        words.entry(word).or_default().negation = true;
    }
    words
});

/// Emoji (one code point) → description, as VADER matches them.
static EMOJI: LazyLock<HashMap<char, &'static str>> = LazyLock::new(|| {
    EMOJI_TXT
        .lines()
        .filter_map(|line| {
            let (emoji, description) = line.trim().split_once('\t')?;
            let mut chars = emoji.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some((c, description.trim())),
                _ => None,
            }
        })
        .collect()
});

/// One token: its lower-cased text (a range of the scorer's buffer), whether
/// it is ALL CAPS (Python's `str.isupper`), and its dictionary entry.
#[derive(Debug, Clone, Copy)]
struct Token {
    start: u32,
    end: u32,
    upper: bool,
    word: Word,
}

/// Scores texts, reusing its buffers: no allocation per message once warm.
#[derive(Debug, Default)]
pub struct SentimentScorer {
    /// The text with emoji replaced (only for non-ASCII input).
    expanded: String,
    /// Lower-cased tokens, back to back.
    lower: String,
    tokens: Vec<Token>,
    valences: Vec<f64>,
}

/// The sentiment of one text; for many, reuse a [`SentimentScorer`].
pub fn score(text: &str) -> f64 {
    SentimentScorer::new().score(text)
}

impl SentimentScorer {
    pub fn new() -> Self {
        // Build the tables now rather than inside the first timed call.
        LazyLock::force(&WORDS);
        LazyLock::force(&EMOJI);
        Self::default()
    }

    /// VADER's compound score of `text`, in [-1, 1].
    pub fn score(&mut self, text: &str) -> f64 {
        let Self {
            expanded,
            lower,
            tokens,
            valences,
        } = self;
        let text = if text.is_ascii() {
            text
        } else {
            expand_emoji(text, expanded);
            expanded.as_str()
        };
        tokenize(text, lower, tokens);
        if tokens.is_empty() {
            return 0.0;
        }
        let caps = tokens.iter().filter(|t| t.upper).count();
        let doc = Doc {
            lower: lower.as_str(),
            tokens: tokens.as_slice(),
            cap_differential: caps > 0 && caps < tokens.len(),
        };
        valences.clear();
        valences.extend((0..tokens.len()).map(|i| doc.valence(i)));
        if let Some(but) = (0..tokens.len()).find(|&i| doc.is(i, "but")) {
            for (i, v) in valences.iter_mut().enumerate() {
                if i < but {
                    *v *= 0.5;
                } else if i > but {
                    *v *= 1.5;
                }
            }
        }
        let mut sum: f64 = valences.iter().sum();
        let emphasis = punctuation_emphasis(text);
        if sum > 0.0 {
            sum += emphasis;
        } else if sum < 0.0 {
            sum -= emphasis;
        }
        (sum / (sum * sum + ALPHA).sqrt()).clamp(-1.0, 1.0)
    }
}

/// VADER's emoji expansion: each emoji becomes its description, preceded by
/// a space unless one is there already.
fn expand_emoji(text: &str, out: &mut String) {
    out.clear();
    let mut prev_space = true;
    for c in text.chars() {
        if let Some(description) = EMOJI.get(&c) {
            if !prev_space {
                out.push(' ');
            }
            out.push_str(description);
            prev_space = false;
        } else {
            out.push(c);
            prev_space = c == ' ';
        }
    }
}

fn tokenize(text: &str, lower: &mut String, tokens: &mut Vec<Token>) {
    lower.clear();
    tokens.clear();
    let mut push = |raw: &str| {
        let stripped = raw.trim_matches(|c: char| c.is_ascii_punctuation());
        // ≤ 2 characters left: an emoticon such as ":)" or ":-(", keep it whole.
        let token = if stripped.len() <= 2 || stripped.chars().nth(2).is_none() {
            raw
        } else {
            stripped
        };
        let start = lower.len();
        let upper = push_lowercase(token, lower);
        let word = WORDS.get(&lower[start..]).copied().unwrap_or_default();
        let word = Word {
            negation: word.negation || lower[start..].contains("n't"),
            ..word
        };
        tokens.push(Token {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(lower.len()).unwrap_or(u32::MAX),
            upper,
            word,
        });
    };
    if text.is_ascii() {
        text.split_ascii_whitespace().for_each(&mut push);
    } else {
        text.split_whitespace().for_each(&mut push);
    }
}

/// Appends `token` lower-cased to `out`; returns Python's `token.isupper()`
/// (some cased character and no lower-case one).
fn push_lowercase(token: &str, out: &mut String) -> bool {
    let (mut has_upper, mut has_lower) = (false, false);
    if token.is_ascii() {
        for b in token.bytes() {
            has_upper |= b.is_ascii_uppercase();
            has_lower |= b.is_ascii_lowercase();
        }
        let start = out.len();
        out.push_str(token);
        if has_upper {
            out[start..].make_ascii_lowercase();
        }
    } else {
        for c in token.chars() {
            has_upper |= c.is_uppercase();
            has_lower |= c.is_lowercase();
            out.extend(c.to_lowercase());
        }
    }
    has_upper && !has_lower
}

/// `!` (up to 4) and repeated `?` add emphasis in the direction of the sum.
fn punctuation_emphasis(text: &str) -> f64 {
    let (mut bangs, mut questions) = (0u32, 0u32);
    for b in text.bytes() {
        bangs += u32::from(b == b'!');
        questions += u32::from(b == b'?');
    }
    let ep = f64::from(bangs.min(4)) * 0.292;
    let qm = match questions {
        0 | 1 => 0.0,
        2 | 3 => f64::from(questions) * 0.18,
        _ => 0.96,
    };
    ep + qm
}

/// The tokens of one text, for the rules.
struct Doc<'a> {
    lower: &'a str,
    tokens: &'a [Token],
    /// Some but not all tokens are ALL CAPS: caps then mark emphasis.
    cap_differential: bool,
}

impl Doc<'_> {
    fn text(&self, i: usize) -> &str {
        let t = &self.tokens[i];
        self.lower
            .get(t.start as usize..t.end as usize)
            .unwrap_or("")
    }

    fn is(&self, i: usize, word: &str) -> bool {
        self.text(i) == word
    }

    fn is_any(&self, i: usize, words: &[&str]) -> bool {
        words.contains(&self.text(i))
    }

    fn in_lexicon(&self, i: usize) -> bool {
        self.tokens[i].word.valence.is_some()
    }

    /// Tokens `at..` spell `phrase`.
    fn spells(&self, at: usize, phrase: &[&str]) -> bool {
        at + phrase.len() <= self.tokens.len()
            && phrase.iter().enumerate().all(|(k, w)| self.is(at + k, w))
    }

    /// The valence token `i` contributes (VADER's `sentiment_valence`).
    fn valence(&self, i: usize) -> f64 {
        let n = self.tokens.len();
        let token = self.tokens[i];
        if token.word.booster != 0.0 || (self.is(i, "kind") && i + 1 < n && self.is(i + 1, "of")) {
            return 0.0;
        }
        let Some(lexicon) = token.word.valence else {
            return 0.0;
        };
        let lexicon = f64::from(lexicon);
        let mut v = lexicon;
        // "no" right before a lexicon word negates it rather than counting itself.
        if self.is(i, "no") && i + 1 < n && self.in_lexicon(i + 1) {
            v = 0.0;
        }
        if (i > 0 && self.is(i - 1, "no"))
            || (i > 1 && self.is(i - 2, "no"))
            || (i > 2 && self.is(i - 3, "no") && self.is_any(i - 1, &["or", "nor"]))
        {
            v = lexicon * N_SCALAR;
        }
        let cap_differential = self.cap_differential;
        if token.upper && cap_differential {
            v += if v > 0.0 { C_INCR } else { -C_INCR };
        }
        for back in 0..3 {
            if i <= back || self.in_lexicon(i - back - 1) {
                continue;
            }
            let mut s = self.booster_scalar(i - back - 1, v, cap_differential);
            s *= [1.0, 0.95, 0.9][back];
            v += s;
            v = self.negation_check(v, back, i);
            if back == 2 {
                v = self.special_idioms(v, i);
            }
        }
        self.least_check(v, i)
    }

    /// How booster token `j` shifts valence `v` (VADER's `scalar_inc_dec`).
    fn booster_scalar(&self, j: usize, v: f64, cap_differential: bool) -> f64 {
        let t = self.tokens[j];
        if t.word.booster == 0.0 {
            return 0.0;
        }
        let mut s = f64::from(t.word.booster);
        if v < 0.0 {
            s = -s;
        }
        if t.upper && cap_differential {
            s += if v > 0.0 { C_INCR } else { -C_INCR };
        }
        s
    }

    /// Negation `back + 1` words before token `i`.
    fn negation_check(&self, v: f64, back: usize, i: usize) -> f64 {
        let negated = |j: usize| self.tokens[j].word.negation;
        let so_this = |j: usize| self.is_any(j, &["so", "this"]);
        match back {
            0 if negated(i - 1) => v * N_SCALAR,
            1 if self.is(i - 2, "never") && so_this(i - 1) => v * 1.25,
            1 if self.is(i - 2, "without") && self.is(i - 1, "doubt") => v,
            1 if negated(i - 2) => v * N_SCALAR,
            2 if self.is(i - 3, "never") && (so_this(i - 2) || so_this(i - 1)) => v * 1.25,
            2 if self.is(i - 3, "without")
                && (self.is(i - 2, "doubt") || self.is(i - 1, "doubt")) =>
            {
                v
            }
            2 if negated(i - 3) => v * N_SCALAR,
            _ => v,
        }
    }

    /// Idioms around token `i` (`i >= 3`) replace its valence; "kind of"
    /// style dampeners before it lower it.
    fn special_idioms(&self, mut v: f64, i: usize) -> f64 {
        let n = self.tokens.len();
        let idiom = |at: usize, len: usize| {
            SPECIAL_CASES
                .iter()
                .find(|(phrase, _)| phrase.len() == len && self.spells(at, phrase))
                .map(|&(_, value)| value)
        };
        // (start, length) of: w[i-1..=i], w[i-2..=i], w[i-2..i], w[i-3..i], w[i-3..i-1].
        let before = [(i - 1, 2), (i - 2, 3), (i - 2, 2), (i - 3, 3), (i - 3, 2)];
        if let Some(value) = before.iter().find_map(|&(at, len)| idiom(at, len)) {
            v = value;
        }
        if n - 1 > i
            && let Some(value) = idiom(i, 2)
        {
            v = value;
        }
        if n - 1 > i + 1
            && let Some(value) = idiom(i, 3)
        {
            v = value;
        }
        for (at, len) in [(i - 3, 3), (i - 3, 2), (i - 2, 2)] {
            if let Some(&(_, value)) = BOOSTER_PHRASES
                .iter()
                .find(|(phrase, _)| phrase.len() == len && self.spells(at, phrase))
            {
                v += value;
            }
        }
        v
    }

    /// "least" before a word negates it, except in "at least" / "very least".
    fn least_check(&self, v: f64, i: usize) -> f64 {
        let least_before = i > 0 && !self.in_lexicon(i - 1) && self.is(i - 1, "least");
        if !least_before {
            return v;
        }
        if i > 1 && self.is_any(i - 2, &["at", "very"]) {
            v
        } else {
            v * N_SCALAR
        }
    }
}

/// The `sentiment(text)` scalar function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Sentiment {
    signature: Signature,
}

impl Default for Sentiment {
    fn default() -> Self {
        Self::new()
    }
}

impl Sentiment {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Sentiment {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t @ (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)] => {
                Ok(vec![t.clone()])
            }
            [DataType::Null] => Ok(vec![DataType::Utf8]),
            [DataType::Dictionary(_, v)]
                if matches!(
                    v.as_ref(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                Ok(vec![v.as_ref().clone()])
            }
            [other] => plan_err!("{NAME}: text must be a string, got {other}"),
            _ => plan_err!("{NAME} takes 1 argument (text), got {}", arg_types.len()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [array] = arrays.as_slice() else {
            return exec_err!("{NAME} takes 1 argument, got {}", arrays.len());
        };
        super::output(&args.args, score_array(array)?)
    }
}

/// Scores every string of `array` (Utf8, LargeUtf8 or Utf8View).
fn score_array(array: &ArrayRef) -> Result<ArrayRef> {
    let mut scorer = SentimentScorer::new();
    let mut out = Float64Builder::with_capacity(array.len());
    let mut push = |text: Option<&str>| out.append_option(text.map(|t| scorer.score(t)));
    match array.data_type() {
        DataType::Utf8 => as_string_array(array)?.iter().for_each(&mut push),
        DataType::LargeUtf8 => as_large_string_array(array)?.iter().for_each(&mut push),
        DataType::Utf8View => as_string_view_array(array)?.iter().for_each(&mut push),
        other => return exec_err!("{NAME}: text must be a string, got {other}"),
    }
    Ok(Arc::new(out.finish()))
}
