// Package metrics measures how close a reconstruction is to its original: PSNR and SSIM on
// RGB images.
//
// Colour: both metrics work on the three RGB channels of 8-bit images. An image.Image is read
// as straight (non-premultiplied) 8-bit RGB; alpha is ignored, as PIL's convert("RGB") and
// sdk/image's preprocessing drop it. Images of other depths keep the high byte of each channel.
// The two images must have the same width and height (their bounds may be offset).
//
// PSNR = 10·log10(peak² / MSE), MSE the mean squared difference over every pixel and all three
// channels together (one MSE, not a mean of per-channel PSNRs); peak is 255 for 8-bit images
// (PSNR) and whatever the caller gives for floats (PSNRFloat: 1 for [0, 1], 2 for [-1, 1]).
// Identical inputs give +Inf.
//
// SSIM is Wang, Bovik, Sheikh and Simoncelli (2004), "Image quality assessment: from error
// visibility to structural similarity": an 11×11 Gaussian window with σ = 1.5 (normalised to
// sum 1), K1 = 0.01, K2 = 0.03, L = 255, population (biased) local statistics, the SSIM map
// computed at every position where the window lies wholly inside the image ("valid", as the
// authors' MATLAB code) and averaged; this is done on each RGB channel separately and the three
// means are averaged. It equals scikit-image's
//
//	structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True,
//	                      sigma=1.5, use_sample_covariance=False)
//
// Images narrower or shorter than 11 pixels use the largest odd window that fits
// (min(width, height), made odd), the same σ = 1.5 Gaussian truncated to it and renormalised;
// a 1×1 image reduces to the luminance term. The SSIM of identical images is 1.
//
// The package is pure Go and has no dependencies beyond the standard library.
package metrics
