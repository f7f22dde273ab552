// Package model describes a FlexTok checkpoint: its configuration tree, the
// typed architecture it denotes, and the names and shapes of its weights.
//
// # Overview
//
// A checkpoint carries its config either in the safetensors "__metadata__"
// (one Python-literal repr per top-level key, as the official
// save_safetensors writes it) or in a Hugging Face config.json. Both are read
// into one ordered tree, because module order is key order: the official
// SequentialModuleDictWrapper runs its module_dict in insertion order.
//
// [ParseTree] interprets the tree in order (vae, encoder.module_dict,
// regularizer, decoder.module_dict, pipeline), dispatching on the hydra
// `_target_` class names the official code defines. Unknown classes, missing
// keys and wrong types are errors naming the key path, for example
// `decoder.module_dict.dec_transformer.depth`. The result is a validated
// [Config]: plain values, no tree.
//
// [Config.CheckWeights] compares a checkpoint's tensors with the names and
// shapes the config implies ([Config.ExpectedTensors], built from the one
// name table in names.go), strips a `_checkpoint_wrapped_module.` infix and
// accepts old diffusers attention names (query/key/value/proj_attn).
//
// [LoadFile] (a path), [LoadBytes] (memory) and [LoadReaderAt] do both.
// [Model.Identity] is what payloads carry: the content digest of the tensors
// and the canonicalised config (the same whatever the file's name, directory
// or metadata order; docs/payload.md, "Model identity"), with the name from
// the config's top-level "name" key. The config's "decode_hints" key gives
// [Model.Hints]. Both keys are SDK extensions that the official loaders
// ignore. [Summarize] gives the architecture, parameter counts per part and
// the licence notice for `flextok inspect-model`.
//
// [Config.EncoderArch] and [Config.DecoderArch] give the compact [Arch] of
// each transformer part (the packed sequence, the trunk, the head) that an
// executor builds from; the part-specific fields stay in [EncoderConfig] and
// [DecoderConfig].
//
// # Files
//
//   - config.go: the entry points ([ParseTree], [ParseConfigJSON],
//     [TreeFromMetadata]), the order of the sections, the module_dict reader,
//     and the FSQ and pipeline sections.
//   - config_types.go: [Config] and the types of its sections, the sentinel
//     errors.
//   - config_vae.go: the VAE wrapper and the diffusers VAE config.json.
//   - config_layers.go: what the encoder and the decoder share: the trunk, norm
//     layers, patch embedder, position embeddings, heads' readout checks.
//   - config_encoder.go, config_decoder.go: the two module_dicts.
//   - config_keys.go: the data_dict wiring checks, within a part and between
//     the parts (checkKeys).
//   - config_arch.go: [Arch].
//   - tree.go: the ordered tree, its typed accessors with key paths for errors,
//     the limits, and the field tables (a list of keys with defaults and
//     ranges, read in order) that the sections are written in.
//   - size.go: [Geometry] and the top-level image_size; supported.go: what the
//     executors run; names.go: the weight names; load.go, part_reader.go,
//     vae_weights.go: loading; identity.go, summary.go: identity and summary.
//
// Official FlexTok weights are released under the Apple ML Research Model
// licence (research use only). This package never downloads or bundles them.
package model
