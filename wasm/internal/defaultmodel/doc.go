// Package defaultmodel gives the wasm front ends the checkpoints that requests without files
// open: the SDK's embedded default model (models.Default) for "open" without weights, or none
// when the module is built with -tags noweights (a module about 7.6 MB smaller gzipped, for
// pages that always bring their own weights); and the embedded default AR model
// (models.DefaultAR, 17 MB) for "ar_open" without config and weights.
//
// The AR model is in the GOOS=wasip1 module (a server-side module, compiled once by its host,
// where 17 MB more costs little) and not in the GOOS=js module, whose download every page of
// the decode demo pays: the TypeScript package ships the AR files beside the module and sends
// them with "ar_open" when a page generates (RATIONALE: "Why does the browser get the AR model
// as separate files"). -tags arweights embeds it in the GOOS=js module too (one file for Node
// scripts); -tags noweights leaves out both models.
package defaultmodel
