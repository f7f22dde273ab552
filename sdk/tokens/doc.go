// Package tokens holds ordered FlexTok token sequences.
//
// # Overview
//
// A FlexTok image is an ordered sequence of 1 to MaxLen token ids (256 for the released
// models), coarse to fine: any prefix is itself a valid, coarser description of the image. A
// Sequence carries its ids together with the limits of the model that made them (codebook size
// and maximum length), so every operation can validate against them.
package tokens
