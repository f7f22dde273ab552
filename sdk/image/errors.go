package image

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns starts with "flextok/image: ", names the
// problem and wraps one of these, so callers can test it with errors.Is.
var (
	// ErrFormat: the bytes are not an image in one of the supported formats (png, jpeg, gif,
	// webp, bmp, tiff).
	ErrFormat = errors.New("not an image or unsupported format")
	// ErrTooLarge: the encoded image or its pixel count exceeds a limit.
	ErrTooLarge = errors.New("image too large")
	// ErrEmpty: the input or the image has no pixels (zero width or height, or no bytes).
	ErrEmpty = errors.New("empty image")
	// ErrCorrupt: the header was valid but the image data is corrupt or truncated.
	ErrCorrupt = errors.New("corrupt or truncated image")
	// ErrArgument: an invalid argument (a preprocessing option, a tensor shape, a grid).
	ErrArgument = errors.New("invalid argument")
)

// errf builds "flextok/image: <sentinel>: <detail>" wrapping sentinel.
func errf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("flextok/image: %w: %s", sentinel, fmt.Sprintf(format, args...))
}
