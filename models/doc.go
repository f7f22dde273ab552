// Package models embeds the SDK's default FlexTok model, so that the CLI and the WebAssembly
// module work with nothing downloaded.
//
// # Overview
//
// The default model is a small FlexTok (32×32 RGB images, 32 tokens, 2.1 M parameters) trained
// by the project's own recipe (train/) on procedurally generated images of coloured shapes; see
// default/MODEL_CARD.md for its data, recipe, metrics, licence and limits. It uses the official
// checkpoint format and the same code path as the released FlexTok models.
//
// [LoadDefault] builds its engine in one call; [Default] gives the files (for package native,
// or a WebAssembly module). Its name and decode hints are keys of default/config.json, so
// payloads it makes carry them whichever surface loads it.
//
// # The default AR model
//
// Beside it is a class-conditional autoregressive (AR) generator of its tokens
// (default/ar: docs/ar-checkpoint.md; LlamaGen's GPT, width 64, 6 layers, 8.5 M parameters,
// 17 MB in BF16), trained by train/train_ar.py on the tokenizer's tokens of the training
// images, for the eight classes of default/labels.json. [LoadDefaultGenerator] gives the
// tokenizer and a generator in one call; [DefaultGenerator] a generator beside a tokenizer
// already loaded; [DefaultAR] the files. Its config names the tokenizer's content digest, so
// it is refused beside any other tokenizer. It is a separate embed.FS: a program that never
// calls these (the decode-only wasm module) does not carry its bytes.
package models
