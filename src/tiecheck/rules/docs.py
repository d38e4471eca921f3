"""Long-form rule documentation, keyed by rule code: ``tiecheck explain`` and the SARIF help text.

A rule without an entry here still works everywhere; ``explain`` then prints its summary only.
Adding a rule means adding a :class:`RuleDoc` here (a test lists the rules that lack one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiecheck.rules.catalog import Rule


@dataclass(frozen=True)
class RuleDoc:
    detects: str
    """What the rule detects, precisely."""
    why: str
    """Why it matters: what goes wrong for whoever loads the checkpoint."""
    example: str
    """A concrete case, as a user would meet it."""
    fix: str
    """How ``tiecheck fix`` handles it (or why it does not)."""


_BLOCKS_FIX = "`tiecheck fix` refuses to rewrite a checkpoint while this finding stands."
_NO_FIX_REEXPORT = (
    f"Not fixed automatically: the bytes are not there to repair; re-export from the source weights. {_BLOCKS_FIX}"
)

_SHAPES_NOT_FIXED = (
    "`tiecheck fix` does not change shapes or counts; its other repairs (duplicates, ties, the index) still run."
)

DOCS: dict[str, RuleDoc] = {
    "TC001": RuleDoc(
        detects="A .safetensors file whose header breaks the format: a bad length prefix, invalid JSON, an unknown "
        "dtype, a shape that disagrees with the byte range, overlapping or out-of-bounds offsets, or a truncated file.",
        why="safetensors loaders validate the header and refuse the whole file, so every tensor in it is lost, "
        "often only when a user first loads the model.",
        example="model-00002-of-00002.safetensors was cut short by an interrupted upload: its last tensor ends "
        "beyond the end of the file.",
        fix=_NO_FIX_REEXPORT,
    ),
    "TC002": RuleDoc(
        detects="The shard index (model.safetensors.index.json) maps tensors to a shard file that is not in the "
        "checkpoint.",
        why="from_pretrained opens every shard the index names; a missing one makes loading fail outright.",
        example="A checkpoint was re-sharded into 3 files but only 2 were uploaded; the index still names "
        "model-00003-of-00003.safetensors.",
        fix="Not fixed automatically: restore the shard, or regenerate the index if the tensors live elsewhere. "
        + _BLOCKS_FIX,
    ),
    "TC003": RuleDoc(
        detects="The index maps a tensor to a shard that exists but does not hold that tensor.",
        why="Loaders look the tensor up only in the shard the index names and fail with missing keys, even when "
        "the tensor is stored in another shard.",
        example="After a manual re-shard, model.norm.weight moved to shard 3 but the index still points at shard 2.",
        fix="Not fixed automatically: the message says where the tensor is actually stored so the index can be "
        "regenerated. " + _BLOCKS_FIX,
    ),
    "TC004": RuleDoc(
        detects="A shard holds a tensor that the index does not list.",
        why="Loaders only read tensors the index lists, so the tensor is downloaded and stored but never used: "
        "either dead weight or a weight the model silently goes without.",
        example="A LoRA merge script appended merged tensors to a shard without updating weight_map.",
        fix="`tiecheck fix` adds the tensor to the index, or drops it when it is a tied copy of an identical tensor; "
        "it never drops a tensor a loader cannot restore.",
    ),
    "TC005": RuleDoc(
        detects="The same tensor name is stored in more than one weight file.",
        why="A loader reads one copy (the one the index names); the others cost download and disk, and when they "
        "differ it is unclear which one was meant.",
        example="model.embed_tokens.weight is in both model-00001-of-00002.safetensors and "
        "model-00002-of-00002.safetensors after two shards were concatenated by hand.",
        fix="`tiecheck fix` keeps the copy loaders read and drops the identical others. Copies the scan already "
        "sees differ (their sampled bytes do) are not fixable: which one is right is the user's call, and the fix "
        "refuses to choose.",
    ),
    "TC006": RuleDoc(
        detects="The index's metadata.total_size or metadata.total_parameters disagrees with what the shards hold.",
        why="Tools that size downloads, disk or memory from the index (hub UIs, accelerate's device maps) get it "
        "wrong; it also shows the index was not regenerated after the shards changed.",
        example="lm_head.weight was dropped from the shards but total_size still counts its 500 MB.",
        fix="`tiecheck fix` rewrites the index with totals computed from the shard headers.",
    ),
    "TC007": RuleDoc(
        detects="A file named like a weight shard (model-0000N-of-0000M.safetensors) that the index does not "
        "reference.",
        why="Loaders ignore it: it is a leftover of an earlier sharding that wastes storage, or shards of a newer "
        "export whose index was never uploaded.",
        example="model-00001-of-00002.safetensors next to a 3-shard index from a later save_pretrained call.",
        fix="`tiecheck fix` deletes an orphan whose tensors are stored elsewhere and indexes one whose tensors are "
        "stored nowhere else; anything else is kept for a decision by hand.",
    ),
    "TC008": RuleDoc(
        detects="The shard index is not valid JSON, lacks a weight_map, or several shards exist without an index.",
        why="Without a usable index loaders cannot map tensors to shards and refuse the checkpoint.",
        example="model.safetensors.index.json was truncated to 0 bytes by a failed write.",
        fix="Not fixed automatically: regenerate the index from the shards (tiecheck still reads every shard "
        "so the other rules run). " + _BLOCKS_FIX,
    ),
    "TC009": RuleDoc(
        detects="config.json is unreadable or invalid. A missing config.json is TC010.",
        why="Without the config, loaders cannot build the model, and tiecheck cannot know whether embeddings are "
        "tied or which dtype is declared (ties are guessed from tensor names).",
        example="config.json has a trailing comma left by a hand edit.",
        fix="Not fixed automatically: correct or restore config.json.",
    ),
    "TC010": RuleDoc(
        detects="There is no config.json beside the weights (a bare weight file, or a folder of weights only).",
        why="tiecheck cannot know whether embeddings are tied or which dtype is declared: ties are guessed from "
        "tensor names and the dtype rules do not run. Loaders need a config from somewhere else.",
        example="A single model.safetensors downloaded without the rest of its repository.",
        fix="Not fixed automatically: add the model's config.json, or ignore TC010 for bare weight files. A PEFT "
        "adapter (adapter_config.json beside the weights) has no config.json by design: the finding says so.",
    ),
    "TC011": RuleDoc(
        detects="A weight file that is a Git LFS pointer (a small text file starting `version "
        "https://git-lfs.github.com/spec/v1`, with the real file's sha256 and size) instead of the weights.",
        why="The repo was cloned without Git LFS (or with GIT_LFS_SKIP_SMUDGE): every loader fails on the file, "
        "with errors about a header too large or an invalid pickle that send users to re-export the model.",
        example="`git clone https://huggingface.co/org/model` on a machine without git-lfs: model.safetensors is "
        "134 bytes.",
        fix="Not fixed automatically: run `git lfs install && git lfs pull` in the clone, or download the files "
        "again with `hf download`. " + _BLOCKS_FIX,
    ),
    "TC012": RuleDoc(
        detects="A safetensors file whose header is complete and valid but declares more tensor data than the "
        "file holds; the finding says how many bytes are missing.",
        why="Loaders refuse the file. The header being whole means the model was exported correctly and the "
        "transfer stopped: a new download or upload of this one file repairs it.",
        example="model-00003-of-00004.safetensors stopped at 2.1 GB of 4.9 GB when the connection dropped.",
        fix="Not fixed automatically: download (or upload) the file again. " + _BLOCKS_FIX,
    ),
    "TC013": RuleDoc(
        detects="Tensors with a zero-size dimension (no elements). When half or more of the tensors are empty, "
        "the checkpoint is a DeepSpeed ZeRO-3 save of partitioned parameters (error); a few empty ones are "
        "information, since a config can ask for a zero size (DINOv3 without register tokens).",
        why="ZeRO-3 keeps each parameter partitioned across ranks; saving the module's state dict without "
        "gathering writes empty placeholders. Loaders fail on the shapes or initialise the weights at random.",
        example="`torch.save(model.state_dict())` inside a ZeRO-3 run writes `model.layers.0.mlp.up_proj.weight` "
        "with shape [0].",
        fix="Not fixed automatically: rebuild the weights with `zero_to_fp32.py` from the ZeRO checkpoint, or "
        "save with `stage3_gather_16bit_weights_on_model_save: true`.",
    ),
    "TC014": RuleDoc(
        detects="A vocabulary-sized tensor (input embedding, output head, a logits bias) whose rows disagree with "
        "the config's vocab_size (at the level where it lives: text_config.vocab_size for a multimodal model). "
        "Which tensors follow which key, and with which offset, is generated from transformers for every class; "
        "for an architecture transformers does not know, the common embedding names are checked (a warning).",
        why="transformers sizes the embedding from the config: from_pretrained refuses the load with a size "
        "mismatch, and with ignore_mismatched_sizes=True initialises the embedding and head at random.",
        example="Tokens were added and the model resized with resize_token_embeddings(32010), but the saved "
        "config.json still says vocab_size 32000; or a merge took the config of one model and the embedding of "
        "another with a different tokenizer.",
        fix="Not fixed automatically: when the rows are right (tokens added), set vocab_size to the stored rows "
        "(the message names it); when the config is right, the weights come from another vocabulary. "
        + _SHAPES_NOT_FIXED,
    ),
    "TC015": RuleDoc(
        detects="An embedding or head whose columns disagree with the config's hidden_size (GPT-2's n_embd, "
        "T5's d_model...).",
        why="The whole model is built at the config's width: from_pretrained refuses the load with a size "
        "mismatch on every such tensor.",
        example="The config.json of a 7B model was copied beside the weights of its 1B sibling.",
        fix="Not fixed automatically: use the config.json the weights were saved with. " + _SHAPES_NOT_FIXED,
    ),
    "TC016": RuleDoc(
        detects="The layers stored disagree with the config's layer count (num_hidden_layers, n_layer, "
        "encoder_layers...): layers missing at the end, a gap in the numbering, or layers beyond the count. The "
        "layer lists that follow each key are generated from transformers; for an unknown architecture the "
        "common prefixes (model.layers., transformer.h.) are checked as a guess.",
        why="Missing layers load without an error: from_pretrained initialises them at random with the "
        '"newly initialized" warning, and the model produces garbage. Extra layers are ignored as unexpected '
        "keys: the weights are silently dropped (a warning). Layers of multi-token-prediction heads "
        "(num_nextn_predict_layers) and names the class ignores on load are not counted as extra.",
        example="A pruning script removed model.layers.30 and model.layers.31 but left num_hidden_layers at 32; a "
        "shard holding layers 12-15 was lost and the index regenerated without it.",
        fix="Not fixed automatically: restore the missing tensors, or renumber the layers from 0 and set the "
        "count to match. " + _SHAPES_NOT_FIXED,
    ),
    "TC017": RuleDoc(
        detects="A mixture-of-experts checkpoint whose experts disagree with the config's num_local_experts / "
        "num_experts / n_routed_experts: experts missing or extra in a layer, or router rows of another count.",
        why="transformers 5 stacks each layer's experts into one tensor: a different number of experts fails "
        "the load with a size mismatch. Loaders that keep experts apart initialise missing ones at random.",
        example="An expert-pruning script kept 6 of 8 experts per layer of a Mixtral and did not update "
        "num_local_experts.",
        fix="Not fixed automatically: restore the experts, or set the count to the number stored (renumbered "
        "from 0, router rows to match). " + _SHAPES_NOT_FIXED,
    ),
    "TC018": RuleDoc(
        detects="Every tensor name starts with the prefix a training wrapper adds (module. for DistributedDataParallel "
        "or DataParallel, _orig_mod. for torch.compile, base_model.model. for a PeftModel's own state dict saved as "
        "the model's; not PEFT's adapter_model files, which PEFT reads so), or names hold a wrapper's inner name "
        "(torch.compile of each layer: model.layers.0._orig_mod.; activation checkpointing's "
        "_checkpoint_wrapped_module.; PEFT's base_layer. when the model inside a PeftModel is saved unmerged; FSDP's "
        "_fsdp_wrapped_module.), and without it the names are the ones the config's architecture uses (from the "
        "generated shape data; an unknown architecture is not judged).",
        why="Loaders strip a model's own prefix (model.), not a wrapper's: they match none of the names, and "
        "initialise every parameter at random. transformers only warns (missing and unexpected keys).",
        example="A training script saved model.state_dict() of the DDP-wrapped model: module.model.layers.0...; "
        "or compiled each decoder layer with torch.compile(layer), which save_pretrained writes as "
        "model.layers.0._orig_mod.self_attn... (layer.compile() keeps the names).",
        fix="Not fixed automatically: save the unwrapped model (model.module, model._orig_mod), or strip the "
        "prefix from the names.",
    ),
    "TC019": RuleDoc(
        detects="Parameters stored as torch.nn.utils.prune's <name>_orig and <name>_mask with no <name>, where the "
        "names put back together are the ones the config's architecture uses (generated shape data).",
        why="Pruning makes a parameter a product recomputed before each forward; until prune.remove, state_dict and "
        "save_pretrained write the two parts. Loaders find no <name> and initialise it at random, with a warning.",
        example="A Llama with every down_proj pruned by prune.l1_unstructured and saved with save_pretrained: "
        "model.layers.0.mlp.down_proj.weight_orig and .weight_mask, no .weight.",
        fix="Not fixed automatically (the weight is a product of two tensors, not bytes to copy): call "
        "prune.remove(module, name) before saving, or store <name>_orig * <name>_mask under <name>.",
    ),
    "TC020": RuleDoc(
        detects="The folder holds .tiecheck-fix.json (the journal of a fix interrupted after its commit point) or "
        ".tiecheck-tmp-*.part files (staged by a fix interrupted before it).",
        why="Loaders ignore these files, so the checkpoint loads, but it may be half-way between its old and new "
        "layout, and the temp files can be as large as a shard. A journal shipped with a downloaded repo is not "
        "to be trusted: it says which files to move and delete.",
        example="A `tiecheck fix` was killed by an out-of-memory killer while switching shards.",
        fix="`tiecheck fix` validates the journal (it may only move its own temp files onto plain names in the "
        "folder, or delete plain files in it; anything else is refused whole), shows the steps (`--dry-run`), "
        "asks, then completes the interrupted fix and removes the temp files. A scan of a local folder validates "
        "them the same way: what the fix would refuse is reported as not fixable, to be inspected and deleted "
        "by hand.",
    ),
    "TC021": RuleDoc(
        detects="Tokens the tokenizer saved beside the weights adds (tokenizer.json's added_tokens, "
        "tokenizer_config.json's added_tokens_decoder, added_tokens.json) whose ids are not below the row count of "
        "the input embedding the architecture's class declares (generated tie data). Ids config.json names under a "
        "token key, embeddings with a second table, encoder-decoder pairs of separate models and custom code are "
        "left alone: there the model may not look every id up in that table.",
        why="Both load without a warning; the first text containing such a token fails inside the embedding lookup "
        "(IndexError on CPU, a device-side assert on CUDA), typically in production, on the chat markers a "
        "fine-tune added.",
        example="A fine-tune adds <|im_start|> and <|im_end|> with tokenizer.add_special_tokens, saves tokenizer "
        "and model, and never calls model.resize_token_embeddings(len(tokenizer)).",
        fix="Not fixed automatically (new rows need values, and training): resize the embeddings before saving, "
        "or save the tokenizer without the tokens.",
    ),
    "TC101": RuleDoc(
        detects="A tensor stored although the config (or the architecture) ties it to another, and the two are "
        "byte-identical: typically lm_head.weight next to model.embed_tokens.weight with tie_word_embeddings true.",
        why="Loaders restore the tied tensor from the one it is tied to, so the stored copy is dead weight: "
        "downloads, disk and upload time pay for it (often hundreds of MB).",
        example="A mergekit merge of Gemma 2 writes lm_head.weight into its own shard although Gemma always ties "
        "it to the embedding.",
        fix="`tiecheck fix --drop-duplicates` removes the copy and updates the index; the loader restores it from "
        "the tie, so the loaded model is unchanged (a pickle is rewritten as safetensors: add `--to-safetensors`). "
        "Without the flag, fix keeps it and says so.",
    ),
    "TC102": RuleDoc(
        detects="The config ties two tensors, but their stored values differ.",
        why="transformers < 5 overwrites the head with the embedding at load (the stored head is ignored); "
        "transformers >= 5 sees they differ and unties them. The same checkpoint loads as two different models.",
        example="A fine-tune trained the head untied but kept tie_word_embeddings: true in config.json.",
        fix="Not fixed automatically: the right model depends on how it was trained. Set the tie flag to false to "
        "keep both tensors, or drop the head to keep the tie.",
    ),
    "TC103": RuleDoc(
        detects="The config says the output head is not tied, a task head is expected, and it is not stored.",
        why="The loader initialises the head at random and the model generates gibberish, with only a warning in "
        "the load log.",
        example="A Llama fine-tune saved with tie_word_embeddings: false but lm_head.weight filtered out as a "
        "'duplicate' by a conversion script.",
        fix="Not fixed automatically: set the tie flag to true if the model was trained tied, otherwise restore "
        "the head from the source checkpoint.",
    ),
    "TC104": RuleDoc(
        detects="The config does not tie the head, yet the stored head is byte-identical to the embedding.",
        why="The model could be tied with no change in behaviour, saving the head's size in downloads and memory.",
        example="A Qwen2 export with tie_word_embeddings: false whose lm_head.weight is an exact copy of "
        "model.embed_tokens.weight.",
        fix="`tiecheck fix --tie-head` drops the copy and sets the tie flag in config.json (pickles: add "
        "`--to-safetensors`). Without a config.json there is no flag to set: the finding is then not fixable.",
    ),
    "TC105": RuleDoc(
        detects="config.json names a base architecture (e.g. LlamaModel) with no task head. Information, unless "
        "the folder says the model generates text (a generation_config.json, a chat template, a model card with "
        "a generation pipeline_tag) and the config does not tie the head: then a warning.",
        why="Right for embedding and feature-extraction models; loaded as a causal LM it gets a randomly "
        "initialised head (or the embedding, when tied). Often a checkpoint saved from the wrong class "
        "(AutoModel instead of AutoModelForCausalLM).",
        example="architectures: [\"LlamaModel\"] and keys without the 'model.' prefix, uploaded with a chat template.",
        fix="Not fixed automatically: save the task model, or set tie_word_embeddings if the head was tied.",
    ),
    "TC106": RuleDoc(
        detects="The tied head is stored but the embedding it is tied to is not.",
        why="transformers >= 5 ties symmetrically and restores the embedding from the head; transformers 4.57 "
        "leaves the embedding without weights (on the meta device: the model cannot run), and vLLM and llama.cpp "
        "refuse to load a model without its embedding (docs/loaders.md).",
        example="A GPT-2 export that kept lm_head.weight and dropped transformer.wte.weight as the 'duplicate'.",
        fix="Not fixed automatically: store the tensor under the embedding's name instead.",
    ),
    "TC107": RuleDoc(
        detects="A parameter that transformers 4 kept as one Parameter with a partner whatever tie_word_embeddings "
        "says (so its save_pretrained wrote only the partner), which transformers 5 restores from the partner only "
        "when the config ties them, is missing while the partner is stored and the config does not tie them. The "
        "pairs come from building every class under 4.57 with every tie flag false "
        "(scripts/derive_unconditional_ties.py); the masked-LM decoder biases (BERT, RoBERTa and their kin).",
        why="transformers 5 reports the name missing and initialises it (a zero bias for BERT), so the logits "
        "change: the same checkpoint predicts differently under 4.x and 5.x, with only a line in the load log.",
        example="An untied BertForMaskedLM saved by transformers 4.57 stores cls.predictions.bias but not "
        "cls.predictions.decoder.bias.",
        fix="Not fixed automatically yet: write the partner's bytes under the missing name as well "
        "(cls.predictions.decoder.bias = cls.predictions.bias); every version then loads the same model.",
    ),
    "TC108": RuleDoc(
        detects="The head and the embedding are both stored and differ; transformers 5 does not tie them for this "
        "config, but transformers 4.57 does (its config class read another level's flag or a default that 5.x "
        "changed, e.g. a config without tie_word_embeddings; or 5.x's class declares no tie for the head at all, "
        "as BigBird-Pegasus's causal LM, LUKE, Reformer, Qwen2-Audio and Voxtral, where 4.57's tied it).",
        why="transformers 4 overwrites the stored head with the embedding at load, so the trained head is "
        "discarded there while transformers 5 uses it: two different models from one checkpoint.",
        example="A LLaVA checkpoint whose config.json carries no tie_word_embeddings: 4.57's LlavaConfig defaulted "
        "the flag to true, 5.x to false.",
        fix="Not fixed automatically: write tie_word_embeddings: false explicitly (and in text_config, if "
        "present) so every version keeps the stored head. Information only when config.json already sets the "
        "flag transformers 5 reads (what 5.x's save_pretrained writes for an untied Gemma 3, or a tie 5.x's class "
        "ignores): 5.x loads it right.",
    ),
    "TC301": RuleDoc(
        detects="Most floating weights are stored in another floating dtype than config.json declares "
        "(torch_dtype / dtype), for non-quantised checkpoints.",
        why="Stored wider than declared, downloads, disk and load memory are larger than needed (float32 for a "
        "bfloat16 model doubles them); stored narrower, the declared precision was never there.",
        example="A bfloat16 model saved after .float() for evaluation: 4 bytes per parameter instead of 2.",
        fix="Not fixed automatically: convert the weights to the declared dtype, or correct the config.",
    ),
    "TC302": RuleDoc(
        detects="Floating tensors are stored in more than one dtype.",
        why="Often intended (quantisation scales, float32 norms); otherwise the sign of a partial conversion.",
        example="All weights bfloat16 except three float32 layer norms left by a mixed-precision save.",
        fix="Not fixed automatically: informational.",
    ),
    "TC202": RuleDoc(
        detects="Byte-identical tensors under different names that no tie rule pairs: found by content (grouped by "
        "dtype and size, fingerprinted from sampled blocks, confirmed by a full xxh3-128 hash).",
        why="Each copy is downloaded, stored and loaded separately. In a passthrough merge the repeated layers are "
        "intended but still cost their full size; in other checkpoints a tensor saved twice is a saver bug. "
        "In a PEFT adapter it is information only: PEFT saves each module of modules_to_save on its own, also an "
        "embedding and a head that the base model (whose config is not there) ties.",
        example="A frankenmerge that repeats decoder layers: 'layers 12-15 repeat layers 8-11'.",
        fix="Kept: no loader restores a tensor from an untied duplicate, so dropping it would lose it. The plan "
        "says so.",
    ),
    "TC203": RuleDoc(
        detects="A tensor whose elements all have the same value (+0 and -0 count as one zero).",
        why="An all-zero weight matrix is a common sign of a broken save or merge (LoRA B matrices all zero: an "
        "adapter that changes nothing); all-ones norms are normal in an "
        "untrained model, which is why this is info.",
        example="model.layers.7.mlp.down_proj.weight is all zeros after a merge with a 0 weight.",
        fix="Not fixed: only the source weights can say what the values should be.",
    ),
    "TC204": RuleDoc(
        detects="NaN or Inf values in a floating tensor (bfloat16, float16, float32, float64, float8), decoded from "
        "the raw bits chunk by chunk. Only with --deep, which reads every tensor.",
        why="One NaN propagates through every activation it touches: the model outputs garbage or the loss diverges.",
        example="A fine-tune that overflowed in float16 saved model.layers.3.self_attn.o_proj.weight with Inf values.",
        fix="Not fixed: re-export from a checkpoint before the values went non-finite.",
    ),
    "TC205": RuleDoc(
        detects="A safetensors file whose data stops part-way through a tensor and is zero from there to the end "
        "of the file. It names the tensor and the offset where the data stops. Zeros that start at a tensor's "
        "first byte (a zero-initialised parameter) or at a row boundary (zeroed padding rows) are not a cut: "
        "TC203 lists such tensors.",
        why="Parallel downloaders (hf_transfer, aria2) and some copy tools allocate the file at its full size "
        "first and fill it as data arrives; an interrupted transfer, a full disk or a killed save leaves the rest "
        "as zeros (or holes), with a valid header and the right size, so every size check passes and loaders "
        "load zeros without a word.",
        example="model-00002-of-00004.safetensors declares 3.7 GB; its data stops inside "
        "model.layers.17.mlp.down_proj.weight, at offset 1,932,735,283, and every byte after it is zero.",
        fix="Not fixed automatically: download (or copy) the file again and compare its sha256 with the source's "
        "(the Hub shows it on the file's page; `hf download --force-download`).",
    ),
    "TC201": RuleDoc(
        detects="Tensors in a pickle (.bin) checkpoint that point at one storage: the pickle's own way of "
        "writing tied weights (torch.save of a tied model's state_dict stores lm_head.weight and "
        "model.embed_tokens.weight once, under two names).",
        why="Nothing is stored twice, so it costs no bytes; but safetensors cannot alias storages, so any "
        "conversion must keep one name and rely on the tie to restore the other.",
        example="pytorch_model.bin of a tied GPT-2: lm_head.weight and transformer.wte.weight share storage 0.",
        fix="`tiecheck fix --to-safetensors` stores the group once, under the name the tie table keeps (the "
        "embedding), as save_pretrained does.",
    ),
    "TC303": RuleDoc(
        detects="A config.json with neither `dtype` nor `torch_dtype` (at the top or in `text_config`).",
        why="Loaders then guess the precision to load in, and they guess differently: transformers 5 uses the "
        "stored dtype (the first floating tensor's), transformers 4 loads float32 unless told `dtype='auto'`, "
        "doubling the memory of a bfloat16 model.",
        example='A hand-written config.json for a converted checkpoint, without `"dtype": "bfloat16"`.',
        fix="Not fixed automatically: add the dtype the weights are stored in to config.json.",
    ),
    "TC304": RuleDoc(
        detects="quantization_config names GPTQ, AWQ or MXFP4 but no tensor is stored in that layout; tensors in "
        "a quantised layout (qweight, weight_packed, absmax, SCB...) with no quantization_config; or a tied head "
        "stored quantised while its embedding is not. Formats that loaders can quantise at load time "
        "(bitsandbytes, fp8) are never flagged for plain weights.",
        why="Loaders read the layout the config names: plain weights under a GPTQ config are missing keys, "
        "initialised at random; quantised tensors without a config are unexpected keys, ignored, and the layers "
        "they stand for are random.",
        example="A merge of a GPTQ model with a plain one keeps the GPTQ config.json over bfloat16 weights.",
        fix="Not fixed automatically: restore the quantiser's config, or remove it, to match the weights.",
    ),
    "TC401": RuleDoc(
        detects="A pickle that imports a global outside what torch.load(weights_only=True) accepts: anything but "
        "OrderedDict, torch storages and tensor rebuild functions, dtypes, torch.Size and a few builtins.",
        why="Unpickling such a file can run arbitrary code (os.system in a __reduce__); transformers with "
        "weights_only refuses it, and older loaders execute it. tiecheck never unpickles: it walks the opcodes.",
        example="pytorch_model.bin whose data.pkl imports posix.system through a memoised STACK_GLOBAL.",
        fix="Not fixed: the file must not be loaded or converted. Rebuild the checkpoint from a trusted source.",
    ),
    "TC402": RuleDoc(
        detects="The weights are only available as pickle files (pytorch_model*.bin), with no safetensors copy.",
        why="Loading a pickle can execute code, it is slower to load than a memory-mapped safetensors file, and "
        "the Hub and transformers prefer safetensors.",
        example="A 2021 BERT fine-tune with pytorch_model.bin and config.json only.",
        fix="`tiecheck fix --to-safetensors` converts it without unpickling and without torch: shards close to the "
        "original sizes, an index, shared storages resolved to one name per tie rules, every byte verified.",
    ),
    "TC403": RuleDoc(
        detects="A pickle checkpoint that cannot be read: a truncated or corrupt zip, a compressed record or one of "
        "the wrong size, a tensor reaching past its storage, or a format tiecheck names but does not read "
        "(legacy tar, TorchScript archive, big-endian). Beside the weights, a pickle too long to walk whole "
        "(past the opcode budget or the size limit) is a warning: its imports could not all be checked.",
        why="torch.load fails on it, or reads garbage; the message says which part is broken. A pickle that "
        "was not walked to its end may import anything past that point.",
        example="pytorch_model-00002-of-00003.bin was cut off during upload: the zip's central directory is missing.",
        fix="Not fixed automatically: re-export from the source weights.",
    ),
}


def explain_text(rule: Rule) -> str:
    """Plain text for ``tiecheck explain`` and SARIF ``help.text``."""
    head = f"{rule.code} {rule.name} ({rule.severity.label}{', fixable' if rule.fixable else ''})"
    parts = [head, "", rule.summary]
    doc = DOCS.get(rule.code)
    if doc is not None:
        for title, body in _sections(doc):
            parts += ["", title, f"  {body}"]
    return "\n".join(parts) + "\n"


def explain_markdown(rule: Rule) -> str:
    """Markdown for SARIF ``help.markdown`` (GitHub shows it beside each alert)."""
    parts = [
        f"**{rule.code} {rule.name}** ({rule.severity.label}{', fixable' if rule.fixable else ''})",
        "",
        rule.summary,
    ]
    doc = DOCS.get(rule.code)
    if doc is not None:
        for title, body in _sections(doc):
            parts += ["", f"**{title}**", "", body]
    return "\n".join(parts) + "\n"


def _sections(doc: RuleDoc) -> tuple[tuple[str, str], ...]:
    return (
        ("What it detects", doc.detects),
        ("Why it matters", doc.why),
        ("Example", doc.example),
        ("How `tiecheck fix` handles it", doc.fix),
    )
