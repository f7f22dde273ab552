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
package models
