package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/flextok-sdk/flextok/sdk/engine"
	ftimage "github.com/flextok-sdk/flextok/sdk/image"
	"github.com/flextok-sdk/flextok/sdk/payload"
)

// Error codes of the HTTP API. The first group are sdk/service's codes (and so the
// TypeScript package's); payload errors keep their payload.Code ("truncated", "range",
// "too_large", ...; docs/payload.md). The second group are the HTTP layer's own.
const (
	CodeBadRequest    = "bad_request"    // malformed request or option value (400)
	CodeBadImage      = "bad_image"      // image bytes that do not decode (422)
	CodeUnsupported   = "unsupported"    // a valid input this executor cannot run (422)
	CodeModelMismatch = "model_mismatch" // a payload made by another model (422)
	CodeCanceled      = "canceled"       // the request's time limit passed (408)
	CodeInternal      = "internal"       // a bug: a recovered panic or an unexpected error (500)

	CodeTooLarge         = "too_large"          // a body, image or payload over a size limit (413)
	CodeLimit            = "limit"              // an option over a configured limit: k, steps, size (422)
	CodeNotFound         = "not_found"          // no such route (404)
	CodeUnknownModel     = "unknown_model"      // ?model= names no served model (404)
	CodeMethodNotAllowed = "method_not_allowed" // (405, with Allow)
	CodeMediaType        = "unsupported_media_type"
	CodeOverloaded       = "overloaded"  // the admission queue is full (429, with Retry-After)
	CodeUnavailable      = "unavailable" // draining for shutdown, or no model (503)
)

// apiError is an error with its HTTP status and stable code; Limit names the configured
// limit a request went over ("max_body_bytes", "max_pixels", ...).
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	Limit   string `json:"limit,omitempty"`
	// retryAfter, when set, is sent as Retry-After (seconds).
	retryAfter int
}

func (e *apiError) Error() string { return e.Message }

func errf(status int, code, format string, a ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, a...)}
}

func limitErr(status int, code, limit, format string, a ...any) *apiError {
	e := errf(status, code, format, a...)
	e.Limit = limit
	return e
}

// classify maps an error of the SDK to an apiError.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var pe *payload.Error
	if errors.As(err, &pe) {
		st := http.StatusUnprocessableEntity
		if errors.Is(err, payload.ErrTooLarge) {
			st = http.StatusRequestEntityTooLarge
		}
		return &apiError{Status: st, Code: pe.Code(), Message: err.Error(), Field: pe.Field}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusRequestTimeout, Code: CodeCanceled, Limit: "request_timeout", Message: "the request's time limit passed: " + err.Error()}
	case errors.Is(err, context.Canceled):
		return &apiError{Status: statusClientClosed, Code: CodeCanceled, Message: err.Error()}
	case errors.Is(err, payload.ErrModelMismatch):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: CodeModelMismatch, Message: err.Error()}
	case errors.Is(err, engine.ErrUnsupported):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: CodeUnsupported, Message: err.Error()}
	case errors.Is(err, engine.ErrArgument):
		return &apiError{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: err.Error()}
	case errors.Is(err, ftimage.ErrTooLarge):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Limit: "max_pixels", Message: err.Error()}
	case errors.Is(err, ftimage.ErrFormat), errors.Is(err, ftimage.ErrEmpty), errors.Is(err, ftimage.ErrCorrupt):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: CodeBadImage, Message: err.Error()}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
}

// statusClientClosed is what the metrics and logs record for a request whose client went
// away (nginx's 499); nothing is written to the closed connection.
const statusClientClosed = 499

// writeError writes e as {"error": {...}}.
func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Del("Content-Disposition")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	st := e.Status
	if st == statusClientClosed {
		st = http.StatusRequestTimeout // never seen: the client is gone
	}
	w.WriteHeader(st)
	b, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{e})
	w.Write(append(b, '\n'))
}
