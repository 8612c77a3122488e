//! The tokenizer, built from the GGUF file's own vocabulary and merges with the `tokenizers`
//! crate: byte-level BPE, control tokens as special added tokens, and llama.cpp's `smollm`
//! pre-tokenizer (every digit on its own, then the GPT-2 split, no prefix space). candle's GGUF
//! helper would fall back to a prefix-space byte-level split for `smollm`, which gives wrong ids.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::config::get_str;
use super::error::{LlmError, Result};

/// No token of a llama vocabulary is near this many bytes long: a text longer than
/// `n * MAX_TOKEN_BYTES` bytes cannot be `n` tokens.
pub const MAX_TOKEN_BYTES: usize = 32;

/// Whether `text` is more than `tokens` tokens by its length alone (`MAX_TOKEN_BYTES`): the
/// check a front end makes before it tokenizes what it was sent (a pasted book would hold the
/// tokenizer for seconds to be refused anyway).
pub fn too_many_bytes_for(text: &str, tokens: usize) -> bool {
    text.len() > tokens.saturating_mul(MAX_TOKEN_BYTES)
}

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

#[derive(Debug, Clone)]
pub struct LlmTokenizer {
    inner: Tokenizer,
    pieces: Vec<String>,
    special: Vec<bool>,
    pub bos: Option<u32>,
    pub eos: u32,
    /// Tokens that end a reply: EOS, `<|im_end|>`, `<|endoftext|>` where present.
    pub stop: Vec<u32>,
    pub pre: String,
    /// The default system line of the file's chat template, if it has one.
    pub default_system: Option<String>,
}

fn tok_err(e: impl std::fmt::Display) -> LlmError {
    LlmError::Tokenizer(e.to_string())
}

fn string_array(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>> {
    let Some(Value::Array(values)) = md.get(key) else {
        return Err(LlmError::Metadata {
            key: key.into(),
            reason: "missing or not an array".into(),
        });
    };
    values
        .iter()
        .map(|v| v.to_string().cloned().map_err(tok_err))
        .collect()
}

fn u32_value(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

impl LlmTokenizer {
    pub fn from_gguf(content: &Content) -> Result<Self> {
        let md = &content.metadata;
        let model = get_str(md, "tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(LlmError::Tokenizer(format!(
                "tokenizer.ggml.model is {model:?}; only byte-level BPE (\"gpt2\") is supported"
            )));
        }
        let pre = get_str(md, "tokenizer.ggml.pre")
            .unwrap_or("default")
            .to_string();
        let tokens = string_array(md, "tokenizer.ggml.tokens")?;
        let merges = string_array(md, "tokenizer.ggml.merges")?;
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(v)) => v.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| LlmError::Tokenizer(format!("bad merge {m:?}")))
            })
            .collect::<Result<_>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, true, true);
        let pre_tokenizer = match pre.as_str() {
            // llama.cpp: "\p{N}" first, then the GPT-2 expression.
            "smollm" => Sequence::new(vec![
                Split::new(
                    SplitPattern::Regex(r"\p{N}".into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(tok_err)?
                .into(),
                byte_level.into(),
            ]),
            "default" | "gpt2" | "gpt-2" => Sequence::new(vec![byte_level.into()]),
            other => {
                return Err(LlmError::Tokenizer(format!(
                    "pre-tokenizer {other:?} is not supported (supported: smollm, gpt2)"
                )));
            }
        };
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let mut special = vec![false; tokens.len()];
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, ty))| **ty == TOKEN_TYPE_CONTROL || **ty == TOKEN_TYPE_USER_DEFINED)
            .map(|(i, (t, ty))| {
                special[i] = *ty == TOKEN_TYPE_CONTROL;
                AddedToken::from(t.clone(), *ty == TOKEN_TYPE_CONTROL)
            })
            .collect();
        inner.add_special_tokens(added).map_err(tok_err)?;
        let eos = u32_value(md, "tokenizer.ggml.eos_token_id").unwrap_or(0);
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos = add_bos
            .then(|| u32_value(md, "tokenizer.ggml.bos_token_id"))
            .flatten();
        let mut stop = vec![eos];
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Some(id) = tokens.iter().position(|t| t == name) {
                stop.push(id as u32);
            }
        }
        stop.sort_unstable();
        stop.dedup();
        let default_system = get_str(md, "tokenizer.chat_template")
            .ok()
            .and_then(extract_default_system);
        Ok(Self {
            inner,
            pieces: tokens,
            special,
            bos,
            eos,
            stop,
            pre,
            default_system,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        ids.extend(self.bos);
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, special tokens included, so `decode(encode(s)) == s`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let ids: Vec<u32> = match self.bos {
            Some(b) if ids.first() == Some(&b) => ids[1..].to_vec(),
            _ => ids.to_vec(),
        };
        self.inner.decode(&ids, false).map_err(tok_err)
    }

    /// What one token stands for, as text (lossy for partial UTF-8 bytes).
    pub fn piece(&self, id: u32) -> String {
        if self.is_special(id) {
            return self.pieces.get(id as usize).cloned().unwrap_or_default();
        }
        self.inner.decode(&[id], false).unwrap_or_default()
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    pub fn is_stop(&self, id: u32) -> bool {
        self.stop.contains(&id)
    }

    /// The ChatML prompt for one user message, with the template's default system line.
    /// ChatML for a conversation of `(role, content)` messages, ending with the assistant's
    /// turn; the template's default system line first unless the first message is a system one.
    pub fn chat_messages(&self, messages: &[(String, String)]) -> String {
        let mut s = String::new();
        if messages.first().is_none_or(|(r, _)| r != "system")
            && let Some(system) = &self.default_system
        {
            s.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
        }
        for (role, content) in messages {
            s.push_str(&format!("<|im_start|>{role}\n{content}<|im_end|>\n"));
        }
        s.push_str("<|im_start|>assistant\n");
        s
    }

    pub fn chat_prompt(&self, user: &str) -> String {
        let mut s = String::new();
        if let Some(system) = &self.default_system {
            s.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
        }
        s.push_str(&format!(
            "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        ));
        s
    }
}

/// The template's literal system message (`<|im_start|>system\n...<|im_end|>`), if any.
fn extract_default_system(template: &str) -> Option<String> {
    let start = template.find("<|im_start|>system\n")? + "<|im_start|>system\n".len();
    let rest = &template[start..];
    let end = rest.find("<|im_end|>")?;
    let system = &rest[..end];
    (!system.contains("{{") && !system.is_empty()).then(|| system.to_string())
}

/// Decodes a growing token sequence into text deltas, holding back the tokens of a character
/// whose bytes are not complete yet. Only those held-back tokens are decoded again, so each
/// push costs the same however long the reply grows (byte-level BPE: the text of a run of
/// tokens is the concatenation of their bytes).
#[derive(Debug, Default, Clone)]
pub struct TextStream {
    pending: Vec<u32>,
}

impl TextStream {
    pub fn push(&mut self, tokenizer: &LlmTokenizer, id: u32) -> String {
        self.pending.push(id);
        let text = tokenizer.decode(&self.pending).unwrap_or_default();
        if text.ends_with('\u{FFFD}') {
            return String::new();
        }
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::extract_default_system;

    #[test]
    fn finds_the_default_system_line() {
        let t = "{% if x %}{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}";
        assert_eq!(
            extract_default_system(t).as_deref(),
            Some("You are helpful.")
        );
        assert_eq!(extract_default_system("{{ messages }}"), None);
    }
}
