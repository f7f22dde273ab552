// Package defaultmodel gives the wasm front ends the checkpoint an "open" without weights
// opens: the SDK's embedded default model (models.Default), or none when the module is built
// with -tags noweights (a module about 7.6 MB smaller gzipped, for pages that always bring
// their own weights).
package defaultmodel
