//! The tiny model the testbed generates itself: a byte-level BPE tokenizer
//! (vocabulary 4096, so the mocker's token ids 1000–1999 decode to text)
//! trained on generated text, a llama-style `config.json`, a
//! `tokenizer_config.json` with a chat template, and `model.safetensors`:
//! randomly initialised float32 Llama weights from a fixed seed, which a
//! real engine (vLLM) loads; the mocker ignores them. Deterministic,
//! offline, made once and cached under a key of its recipe.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// Bumped whenever the recipe below changes: part of the cache key.
const RECIPE_VERSION: &str = "tiny-llama-v2";
/// The vocabulary size; the mocker emits ids in [1000, 2000).
pub const VOCAB_SIZE: usize = 4096;
/// Special tokens, ids 0, 1, 2.
pub const BOS: &str = "<|begin_of_text|>";
/// End of sequence.
pub const EOS: &str = "<|end_of_text|>";
/// Padding.
pub const PAD: &str = "<|pad|>";
/// The chat template: `<role>content` per message, then `<assistant>`.
pub const CHAT_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
/// The CPU attention kernel's accepted head sizes (vLLM on CPU).
pub const CPU_HEAD_SIZES: [usize; 11] = [32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512];

/// Shape of the generated model (what `config.json` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    /// Hidden size.
    pub hidden: usize,
    /// Layers.
    pub layers: usize,
    /// Attention heads (head size = hidden / heads).
    pub heads: usize,
}

impl ModelShape {
    /// The MLP's inner size.
    pub fn intermediate(&self) -> usize {
        self.hidden * 2
    }

    /// 2 layers, hidden 64, 2 heads of 32: accepted by the CPU kernel.
    pub const TINY: ModelShape = ModelShape {
        hidden: 64,
        layers: 2,
        heads: 2,
    };

    /// Rejects a shape the CPU attention kernel cannot run, naming the
    /// accepted head sizes.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.heads > 0 && self.hidden.is_multiple_of(self.heads),
            "hidden size {} is not divisible by {} heads",
            self.hidden,
            self.heads
        );
        let head = self.hidden / self.heads;
        anyhow::ensure!(
            CPU_HEAD_SIZES.contains(&head),
            "head size {head} (hidden {} / {} heads) is not supported by vLLM's CPU attention kernel; use one of {CPU_HEAD_SIZES:?}",
            self.hidden,
            self.heads
        );
        Ok(())
    }
}

/// A generated model folder.
#[derive(Debug, Clone)]
pub struct TinyModel {
    /// The folder (`tokenizer.json`, `config.json`, `tokenizer_config.json`,
    /// `generation_config.json`, `model.safetensors`).
    pub dir: PathBuf,
}

impl TinyModel {
    /// The cached model, generated on first use (under a file lock, so
    /// parallel tests make it once).
    pub fn ensure() -> anyhow::Result<TinyModel> {
        Self::ensure_in(
            &testbed_harness::Layout::from_env().cache_dir.join("models"),
            ModelShape::TINY,
        )
    }

    /// The model of `shape` cached in `root`.
    pub fn ensure_in(root: &Path, shape: ModelShape) -> anyhow::Result<TinyModel> {
        shape.check()?;
        let key = recipe_key(shape);
        let dir = root.join(format!("{RECIPE_VERSION}-{key}"));
        if dir.join(".complete").is_file() {
            return Ok(TinyModel { dir });
        }
        testbed_harness::Layout::ensure_dir(root)?;
        let lock_path = root.join(format!("{RECIPE_VERSION}-{key}.lock"));
        let mut lock = testbed_harness::file_lock::open(&lock_path)?;
        let _guard = lock.write()?;
        if !dir.join(".complete").is_file() {
            generate(&dir, shape)?;
            std::fs::write(dir.join(".complete"), key)?;
        }
        Ok(TinyModel { dir })
    }

    /// Loads the tokenizer.
    pub fn tokenizer(&self) -> anyhow::Result<Tokenizer> {
        Tokenizer::from_file(self.dir.join("tokenizer.json"))
            .map_err(|e| anyhow::anyhow!("load tokenizer: {e}"))
    }
}

fn recipe_key(shape: ModelShape) -> String {
    // The corpus is code: RECIPE_VERSION covers its content, its size is a
    // constant (building it costs ~40 ms unoptimised, on every start).
    let text = format!(
        "{RECIPE_VERSION}|{VOCAB_SIZE}|{CHAT_TEMPLATE}|{shape:?}|{CORPUS_LINES}|{WEIGHT_SEED}|{INIT_STD}"
    );
    testbed_harness::hash::short_hex(text.as_bytes(), 8)
}

/// A small deterministic generator (xorshift), so the corpus is the same on
/// every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// English-ish words and random letter runs: enough distinct pairs for
/// 4096 BPE merges.
/// Lines of the tokenizer's training corpus.
const CORPUS_LINES: usize = 6000;

fn corpus() -> Vec<String> {
    const ONSETS: [&str; 24] = [
        "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y",
        "z", "st", "tr", "ch", "sh", "pl",
    ];
    const VOWELS: [&str; 10] = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io", "ee"];
    const CODAS: [&str; 12] = [
        "", "n", "r", "s", "t", "l", "m", "nd", "rt", "st", "ng", "ck",
    ];
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut lines = Vec::new();
    for _ in 0..CORPUS_LINES {
        let mut line = String::new();
        for w in 0..(6 + rng.next() % 10) {
            if w > 0 {
                line.push(' ');
            }
            for _ in 0..(1 + rng.next() % 3) {
                line.push_str(rng.pick(&ONSETS));
                line.push_str(rng.pick(&VOWELS));
                line.push_str(rng.pick(&CODAS));
            }
        }
        line.push_str(". ");
        for _ in 0..3 {
            let len = 2 + rng.next() % 4;
            for _ in 0..len {
                line.push((b'a' + (rng.next() % 26) as u8) as char);
            }
            line.push(' ');
        }
        lines.push(line);
    }
    lines
}

fn generate(dir: &Path, shape: ModelShape) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let specials = vec![
        AddedToken::from(BOS, true),
        AddedToken::from(EOS, true),
        AddedToken::from(PAD, true),
    ];
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(VOCAB_SIZE)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
    .with_post_processor(None)
    .with_decoder(Some(ByteLevelDecoder::default().into()))
    .build()
    .map_err(|e| anyhow::anyhow!("build tokenizer: {e}"))?;
    tokenizer
        .train(&mut trainer, corpus().into_iter())
        .map_err(|e| anyhow::anyhow!("train tokenizer: {e}"))?;
    let vocab = tokenizer.get_vocab_size(true);
    anyhow::ensure!(
        vocab >= 2000,
        "the trained vocabulary has {vocab} tokens; the mocker needs at least 2000"
    );
    let tokenizer: Tokenizer = tokenizer.into();
    tokenizer
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| anyhow::anyhow!("save tokenizer: {e}"))?;
    let bos = tokenizer.token_to_id(BOS).context("BOS in vocabulary")?;
    let eos = tokenizer.token_to_id(EOS).context("EOS in vocabulary")?;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate(),
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.heads,
        "head_dim": shape.hidden / shape.heads,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": false,
        "torch_dtype": "float32",
        "bos_token_id": bos,
        "eos_token_id": eos,
    });
    let tokenizer_config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "model_max_length": 2048,
        "chat_template": CHAT_TEMPLATE,
    });
    let generation_config = serde_json::json!({ "bos_token_id": bos, "eos_token_id": eos });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_vec_pretty(&tokenizer_config)?,
    )?;
    std::fs::write(
        dir.join("generation_config.json"),
        serde_json::to_vec_pretty(&generation_config)?,
    )?;
    std::fs::write(
        dir.join("model.safetensors"),
        weights(shape, vocab, WEIGHT_SEED)?,
    )?;
    Ok(())
}

/// The seed of the weights.
const WEIGHT_SEED: u64 = 0x2545f4914f6cdd1d;
/// Standard deviation of the initial weights (Llama's `initializer_range`).
const INIT_STD: f32 = 0.02;

/// The tensors of a Hugging Face `LlamaForCausalLM` of `shape` (name,
/// `[rows, columns]` or `[len]`), in a fixed order.
pub fn weight_shapes(shape: ModelShape, vocab: usize) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (shape.hidden, shape.intermediate());
    let mut tensors = vec![("model.embed_tokens.weight".to_owned(), vec![vocab, h])];
    for layer in 0..shape.layers {
        let p = format!("model.layers.{layer}");
        for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            tensors.push((format!("{p}.self_attn.{proj}.weight"), vec![h, h]));
        }
        tensors.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        tensors.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        tensors.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        tensors.push((format!("{p}.input_layernorm.weight"), vec![h]));
        tensors.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    tensors.push(("model.norm.weight".to_owned(), vec![h]));
    tensors.push(("lm_head.weight".to_owned(), vec![vocab, h]));
    tensors
}

/// How a tensor's values are made.
#[derive(Debug, Clone, Copy)]
enum Init {
    /// Normal-ish with this standard deviation: the mean of four uniforms,
    /// rescaled.
    Normal(f32),
    /// All ones (norms).
    Ones,
}

/// A safetensors file (`format: pt`, as transformers' and PEFT's
/// `save_pretrained` write and their loaders check) of float32 tensors
/// from one xorshift stream seeded with `seed`: the same bytes on every
/// machine.
fn seeded_safetensors(
    tensors: &[(String, Vec<usize>, Init)],
    seed: u64,
) -> anyhow::Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let mut rng = Rng(seed);
    // The sum of 4 uniforms on [0, 1) has variance 4/12: centre and scale
    // it to unit variance.
    let unit = (4.0f32 / 12.0).sqrt();
    let mut bytes: Vec<Vec<u8>> = Vec::with_capacity(tensors.len());
    for (_, dims, init) in tensors {
        let len: usize = dims.iter().product();
        let mut out = Vec::with_capacity(len * 4);
        for _ in 0..len {
            let value = match init {
                Init::Ones => 1.0f32,
                Init::Normal(std) => {
                    let mut sum = 0.0f32;
                    for _ in 0..4 {
                        sum += (rng.next() >> 40) as f32 / (1u64 << 24) as f32;
                    }
                    (sum - 2.0) * (std / unit)
                }
            };
            out.extend_from_slice(&value.to_le_bytes());
        }
        bytes.push(out);
    }
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, dims, _), bytes)| {
            TensorView::new(Dtype::F32, dims.clone(), bytes)
                .map(|view| (name.as_str(), view))
                .map_err(|e| anyhow::anyhow!("tensor {name}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let metadata = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|e| anyhow::anyhow!("serialize safetensors: {e}"))
}

/// `model.safetensors`: float32 weights, normal-ish times [`INIT_STD`];
/// norms 1.0.
fn weights(shape: ModelShape, vocab: usize, seed: u64) -> anyhow::Result<Vec<u8>> {
    let tensors: Vec<(String, Vec<usize>, Init)> = weight_shapes(shape, vocab)
        .into_iter()
        .map(|(name, dims)| {
            let init = if name.ends_with("norm.weight") {
                Init::Ones
            } else {
                Init::Normal(INIT_STD)
            };
            (name, dims, init)
        })
        .collect();
    seeded_safetensors(&tensors, seed)
}

/// The rank of the generated LoRA adapters.
pub const LORA_RANK: usize = 4;

/// The tensors of a PEFT LoRA adapter of `shape` on every layer's q and v
/// projections, rank [`LORA_RANK`], in a fixed order.
pub fn lora_shapes(shape: ModelShape) -> Vec<(String, Vec<usize>)> {
    let mut tensors = Vec::new();
    for layer in 0..shape.layers {
        for proj in ["q_proj", "v_proj"] {
            let p = format!("base_model.model.model.layers.{layer}.self_attn.{proj}");
            tensors.push((format!("{p}.lora_A.weight"), vec![LORA_RANK, shape.hidden]));
            tensors.push((format!("{p}.lora_B.weight"), vec![shape.hidden, LORA_RANK]));
        }
    }
    tensors
}

impl TinyModel {
    /// A LoRA adapter for this model, generated from `seed` (PEFT's layout:
    /// `adapter_config.json` and `adapter_model.safetensors`, rank 4, alpha
    /// 8, on q_proj and v_proj, weights normal-ish times 0.5 so that the
    /// tiny model's greedy output visibly changes), made once and cached
    /// beside the model.
    pub fn lora_adapter(&self, seed: u64) -> anyhow::Result<PathBuf> {
        let dir = self.dir.with_file_name(format!(
            "{}-lora-{seed}",
            self.dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("model")
        ));
        if dir.join(".complete").is_file() {
            return Ok(dir);
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": LORA_RANK,
            "lora_alpha": 2 * LORA_RANK,
            "lora_dropout": 0.0,
            "bias": "none",
            "fan_in_fan_out": false,
            "target_modules": ["q_proj", "v_proj"],
            "base_model_name_or_path": self.dir.display().to_string(),
        });
        std::fs::write(
            dir.join("adapter_config.json"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        let tensors: Vec<(String, Vec<usize>, Init)> = lora_shapes(ModelShape::TINY)
            .into_iter()
            .map(|(name, dims)| (name, dims, Init::Normal(0.5)))
            .collect();
        std::fs::write(
            dir.join("adapter_model.safetensors"),
            seeded_safetensors(&tensors, seed)?,
        )?;
        std::fs::write(dir.join(".complete"), seed.to_string())?;
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("testbed-model-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generation_is_deterministic_and_mocker_ids_decode_to_text() {
        // A fresh generation against the cached one (made by an earlier
        // process, usually an earlier build): the cache key is honest. The
        // tokenizer's BPE training is most of this test's ~2 s.
        let a = scratch("a");
        let ma = TinyModel::ensure_in(&a, ModelShape::TINY).unwrap();
        let mb = TinyModel::ensure().unwrap();
        for file in [
            "tokenizer.json",
            "config.json",
            "tokenizer_config.json",
            "generation_config.json",
            "model.safetensors",
        ] {
            assert_eq!(
                std::fs::read(ma.dir.join(file)).unwrap(),
                std::fs::read(mb.dir.join(file)).unwrap(),
                "{file} differs between two generations"
            );
        }
        let tok = ma.tokenizer().unwrap();
        assert_eq!(tok.get_vocab_size(true), VOCAB_SIZE);
        let text = tok
            .decode(&(1000..1010).collect::<Vec<u32>>(), true)
            .unwrap();
        assert!(
            text.trim().len() >= 10,
            "ids 1000..1010 decode to text, got {text:?}"
        );
        let _ = std::fs::remove_dir_all(a);
    }

    #[test]
    fn lora_adapters_are_peft_shaped_and_differ_by_seed() {
        let model = TinyModel::ensure().unwrap();
        let (a, b) = (
            model.lora_adapter(1).unwrap(),
            model.lora_adapter(2).unwrap(),
        );
        assert_eq!(model.lora_adapter(1).unwrap(), a, "made once, then reused");
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(a.join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(
            (config["peft_type"].as_str(), config["r"].as_u64()),
            (Some("LORA"), Some(4))
        );
        let read = |dir: &Path| std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
        let (bytes_a, bytes_b) = (read(&a), read(&b));
        assert_ne!(bytes_a, bytes_b, "another seed, other weights");
        let file = safetensors::SafeTensors::deserialize(&bytes_a).unwrap();
        for (name, dims) in lora_shapes(ModelShape::TINY) {
            let t = file.tensor(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.shape(), dims.as_slice(), "{name}");
        }
        assert_eq!(file.len(), 2 * 2 * 2, "A and B for q and v in 2 layers");
    }

    #[test]
    fn weights_match_the_config_as_hugging_face_names_them() {
        let model = TinyModel::ensure().unwrap();
        let bytes = std::fs::read(model.dir.join("model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let expected = weight_shapes(ModelShape::TINY, VOCAB_SIZE);
        assert_eq!(file.len(), expected.len(), "tensor count");
        assert_eq!(
            expected.len(),
            3 + 9 * 2,
            "embed, norm, lm_head and 9 per layer"
        );
        let mut params = 0;
        for (name, dims) in &expected {
            let t = file.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
            assert_eq!(t.shape(), dims.as_slice(), "{name}");
            let values: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            params += values.len();
            if name.ends_with("norm.weight") {
                assert!(values.iter().all(|v| *v == 1.0), "{name} is all ones");
            } else {
                let mean = values.iter().sum::<f32>() / values.len() as f32;
                let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>()
                    / values.len() as f32)
                    .sqrt();
                assert!(mean.abs() < 0.002, "{name}: mean {mean}");
                assert!((0.017..0.023).contains(&std), "{name}: std {std}");
            }
        }
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(model.dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["intermediate_size"], 128);
        assert_eq!(config["vocab_size"], VOCAB_SIZE);
        assert_eq!(
            params,
            2 * 4096 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64
        );
    }

    #[test]
    fn unsupported_head_size_is_rejected_by_the_fixture() {
        let err = ModelShape {
            hidden: 64,
            layers: 2,
            heads: 4,
        }
        .check()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "head size 16 (hidden 64 / 4 heads) is not supported by vLLM's CPU attention kernel; use one of [32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512]"
        );
    }
}
