//go:build !noweights

// Package defaultmodel gives the wasm front ends the checkpoint an "open" without weights
// opens: the SDK's embedded default model (models.Default), or none when the module is built
// with -tags noweights (a module about 7.6 MB smaller gzipped, for pages that always bring
// their own weights).
package defaultmodel

import (
	"github.com/flextok-sdk/flextok/models"
	"github.com/flextok-sdk/flextok/sdk/service"
)

// Checkpoint returns the embedded default model.
func Checkpoint() *service.Checkpoint {
	d := models.Default()
	return &service.Checkpoint{Name: d.Name, Weights: d.Weights, Config: d.Config, VAEConfig: d.VAEConfig}
}
