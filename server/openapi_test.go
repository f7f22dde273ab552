package server

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// errorCase is one request and the status and code it must get. setup picks the server's
// state: "" the default, "timeout" a 1 ns time limit, "genlimits" small generate limits (n 4,
// 40 tokens, k 16), "full" every work slot and queue place
// taken, "draining" after Drain.
type errorCase struct {
	name, setup, method, target, ct string
	body                            func(t testing.TB) []byte
	status                          int
	code, limit                     string
}

func genBody(s string) func(testing.TB) []byte { return bytesOf([]byte(s)) }

func bytesOf(b []byte) func(testing.TB) []byte { return func(testing.TB) []byte { return b } }

func errorCases() []errorCase {
	png := func(t testing.TB) []byte { return samplePNG(t) }
	pl := func(t testing.TB) []byte { return samplePayload(t) }
	truncated := func(t testing.TB) []byte { b := samplePayload(t); return b[:len(b)/2] }
	mp := func(fields map[string]string, img bool) (string, func(testing.TB) []byte) {
		f := func(t testing.TB) []byte {
			var im []byte
			if img {
				im = samplePNG(t)
			}
			_, b := multipartBodyBoundary(fields, im)
			return b
		}
		return "multipart/form-data; boundary=" + testBoundary, f
	}
	mpCT, mpNoImage := mp(map[string]string{"k": "4"}, false)
	_, mpUnknown := mp(map[string]string{"colour": "red"}, true)
	_, mpK := mp(map[string]string{"k": "5000"}, true)
	return []errorCase{
		{"encode ok", "", "POST", "/v1/encode", "image/png", png, 200, "", ""},
		{"encode multipart ok", "", "POST", "/v1/encode", mpCT, func(t testing.TB) []byte { _, b := multipartBodyBoundary(nil, samplePNG(t)); return b }, 200, "", ""},
		{"decode ok", "", "POST", "/v1/decode?steps=1", MsgpackType, pl, 200, "", ""},
		{"models", "", "GET", "/v1/models", "", nil, 200, "", ""},
		{"web manifest", "web", "GET", "/v1/web-package/manifest.json", "", nil, 200, "", ""},
		{"web chunk", "web", "GET", "/v1/web-package/decoder.onnx.data.part001?sha256=" + testWebChunkSHA, "", nil, 200, "", ""},
		{"web chunk unknown", "web", "GET", "/v1/web-package/nope.part000", "", nil, 404, CodeNotFound, ""},
		{"web chunk path", "web", "GET", "/v1/web-package/../manifest.json", "", nil, 404, CodeNotFound, ""},
		{"web chunk stale hash", "web", "GET", "/v1/web-package/decoder.onnx?sha256=" + strings.Repeat("0", 64), "", nil, 404, CodeNotFound, ""},
		{"web no package", "", "GET", "/v1/web-package/manifest.json", "", nil, 404, CodeNotFound, ""},
		{"openapi", "", "GET", "/v1/openapi.json", "", nil, 200, "", ""},
		{"healthz", "", "GET", "/healthz", "", nil, 200, "", ""},
		{"readyz", "", "GET", "/readyz", "", nil, 200, "", ""},
		{"metrics", "", "GET", "/metrics", "", nil, 200, "", ""},

		{"encode bad k", "", "POST", "/v1/encode?k=-1", "image/png", png, 400, CodeBadRequest, ""},
		{"encode k over model", "", "POST", "/v1/encode?k=33", "image/png", png, 400, CodeBadRequest, ""},
		{"encode unknown option", "", "POST", "/v1/encode?colour=red", "image/png", png, 400, CodeBadRequest, ""},
		{"encode repeated option", "", "POST", "/v1/encode?k=1&k=2", "image/png", png, 400, CodeBadRequest, ""},
		{"encode bad filter", "", "POST", "/v1/encode?filter=nearest", "image/png", png, 400, CodeBadRequest, ""},
		{"encode bad exif", "", "POST", "/v1/encode?exif_orientation=maybe", "image/png", png, 400, CodeBadRequest, ""},
		{"encode size the model lacks", "", "POST", "/v1/encode?size=33", "image/png", png, 400, CodeBadRequest, ""},
		{"encode multipart no image", "", "POST", "/v1/encode", mpCT, mpNoImage, 400, CodeBadRequest, ""},
		{"encode multipart unknown field", "", "POST", "/v1/encode", mpCT, mpUnknown, 400, CodeBadRequest, ""},
		{"encode multipart truncated", "", "POST", "/v1/encode", mpCT, func(t testing.TB) []byte { _, b := multipartBodyBoundary(nil, samplePNG(t)); return b[:len(b)-40] }, 400, CodeBadRequest, ""},
		{"encode multipart no boundary", "", "POST", "/v1/encode", "multipart/form-data", png, 400, CodeBadRequest, ""},
		{"encode unknown model", "", "POST", "/v1/encode?model=nope", "image/png", png, 404, CodeUnknownModel, ""},
		{"encode timeout", "timeout", "POST", "/v1/encode", "image/png", png, 408, CodeCanceled, "request_timeout"},
		{"encode body over limit", "", "POST", "/v1/encode", "image/png", bytesOf(make([]byte, 9<<20)), 413, CodeTooLarge, "max_body_bytes"},
		{"encode pixel bomb", "", "POST", "/v1/encode", "image/png", bytesOf(bombPNG(8000, 6000)), 413, CodeTooLarge, "max_pixels"},
		{"encode huge side", "", "POST", "/v1/encode", "image/png", bytesOf(bombPNG(1<<30, 1)), 413, CodeTooLarge, "max_pixels"},
		{"encode wrong type", "", "POST", "/v1/encode", "text/plain", png, 415, CodeMediaType, ""},
		{"encode form-urlencoded", "", "POST", "/v1/encode", "application/x-www-form-urlencoded", png, 415, CodeMediaType, ""},
		{"encode no type", "", "POST", "/v1/encode", "", png, 200, "", ""},
		{"encode json type", "", "POST", "/v1/encode", "application/json", png, 415, CodeMediaType, ""},
		{"encode not an image", "", "POST", "/v1/encode", "image/png", bytesOf([]byte("hello, world")), 422, CodeBadImage, ""},
		{"encode empty", "", "POST", "/v1/encode", "image/png", bytesOf(nil), 422, CodeBadImage, ""},
		{"encode truncated image", "", "POST", "/v1/encode", "image/png", func(t testing.TB) []byte { b := samplePNG(t); return b[:len(b)/2] }, 422, CodeBadImage, ""},
		{"encode k over limit", "", "POST", "/v1/encode", mpCT, mpK, 422, CodeLimit, "max_k"},
		{"encode size over limit", "", "POST", "/v1/encode?size=4096", "image/png", png, 422, CodeLimit, "max_size"},
		{"encode full", "full", "POST", "/v1/encode", "image/png", png, 429, CodeOverloaded, "max_queue"},
		{"encode draining", "draining", "POST", "/v1/encode", "image/png", png, 503, CodeUnavailable, ""},
		{"encode GET", "", "GET", "/v1/encode", "", nil, 405, CodeMethodNotAllowed, ""},

		{"decode bad steps", "", "POST", "/v1/decode?steps=x", MsgpackType, pl, 400, CodeBadRequest, ""},
		{"decode guidance 0 is the hint", "", "POST", "/v1/decode?guidance=0&steps=1&seed=0", MsgpackType, pl, 200, "", ""},
		{"decode guidance negative", "", "POST", "/v1/decode?guidance=-1", MsgpackType, pl, 400, CodeBadRequest, ""},
		{"decode guidance NaN", "", "POST", "/v1/decode?guidance=NaN", MsgpackType, pl, 400, CodeBadRequest, ""},
		{"decode bad seed", "", "POST", "/v1/decode?seed=-1", MsgpackType, pl, 400, CodeBadRequest, ""},
		{"decode bad apg", "", "POST", "/v1/decode?apg=2", MsgpackType, pl, 400, CodeBadRequest, ""},
		{"decode unknown model", "", "POST", "/v1/decode?model=nope", MsgpackType, pl, 404, CodeUnknownModel, ""},
		{"decode timeout", "timeout", "POST", "/v1/decode", MsgpackType, pl, 408, CodeCanceled, "request_timeout"},
		{"decode body over limit", "", "POST", "/v1/decode", MsgpackType, bytesOf(make([]byte, 9<<20)), 413, CodeTooLarge, "max_body_bytes"},
		{"decode wrong type", "", "POST", "/v1/decode", "image/png", pl, 415, CodeMediaType, ""},
		{"decode truncated msgpack", "", "POST", "/v1/decode", MsgpackType, truncated, 422, "truncated", ""},
		{"decode not msgpack", "", "POST", "/v1/decode", "application/x-msgpack", bytesOf([]byte("{}")), 422, "format", ""},
		{"decode empty", "", "POST", "/v1/decode", MsgpackType, bytesOf(nil), 422, "truncated", ""},
		{"decode huge declared array", "", "POST", "/v1/decode", MsgpackType, bytesOf([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}), 422, "", ""},
		{"decode other model", "", "POST", "/v1/decode", MsgpackType, func(t testing.TB) []byte { return otherModelPayload(t) }, 422, CodeModelMismatch, ""},
		{"decode k over payload", "", "POST", "/v1/decode?k=32", MsgpackType, func(t testing.TB) []byte { return shortPayload(t) }, 400, CodeBadRequest, ""},
		{"decode k over limit", "", "POST", "/v1/decode?k=1000", MsgpackType, pl, 422, CodeLimit, "max_k"},
		{"decode steps over limit", "", "POST", "/v1/decode?steps=101", MsgpackType, pl, 422, CodeLimit, "max_steps"},
		{"decode size over limit", "", "POST", "/v1/decode?size=2048", MsgpackType, pl, 422, CodeLimit, "max_size"},
		{"decode full", "full", "POST", "/v1/decode", MsgpackType, pl, 429, CodeOverloaded, "max_queue"},
		{"decode draining", "draining", "POST", "/v1/decode", MsgpackType, pl, 503, CodeUnavailable, ""},
		{"decode GET", "", "GET", "/v1/decode", "", nil, 405, CodeMethodNotAllowed, ""},

		{"readyz draining", "draining", "GET", "/readyz", "", nil, 503, CodeUnavailable, ""},
		{"models POST", "", "POST", "/v1/models", "", nil, 405, CodeMethodNotAllowed, ""},
		{"unknown v1 route", "", "GET", "/v1/nope", "", nil, 404, CodeNotFound, ""},

		{"generate ok", "", "POST", "/v1/generate", "application/json", genBody(`{"class": "star", "k": 4, "seed": 1}`), 200, "", ""},
		{"generate no type", "", "POST", "/v1/generate", "", genBody(`{"class": 1, "n": 2, "k": 2, "cfg": 2, "top_k": 5, "top_p": 0.9}`), 200, "", ""},
		{"generate unknown class", "", "POST", "/v1/generate", "application/json", genBody(`{"class": "dodecahedron"}`), 400, CodeBadRequest, ""},
		{"generate class index out of range", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 3}`), 400, CodeBadRequest, ""},
		{"generate no class", "", "POST", "/v1/generate", "application/json", genBody(`{"k": 3}`), 400, CodeBadRequest, ""},
		{"generate k 0", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "k": 0}`), 400, CodeBadRequest, ""},
		{"generate k over model", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "k": 33}`), 400, CodeBadRequest, ""},
		{"generate temperature negative", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "temperature": -0.5}`), 400, CodeBadRequest, ""},
		{"generate top_p 0", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "top_p": 0}`), 400, CodeBadRequest, ""},
		{"generate top_p over 1", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "top_p": 1.5}`), 400, CodeBadRequest, ""},
		{"generate top_k negative", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "top_k": -1}`), 400, CodeBadRequest, ""},
		{"generate cfg negative", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "cfg": -1}`), 400, CodeBadRequest, ""},
		{"generate n 0", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "n": 0}`), 400, CodeBadRequest, ""},
		{"generate unknown field", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "colour": "red"}`), 400, CodeBadRequest, ""},
		{"generate not JSON", "", "POST", "/v1/generate", "application/json", genBody(`class=0`), 400, CodeBadRequest, ""},
		{"generate two models", "", "POST", "/v1/generate?model=second", "application/json", genBody(`{"class": 0, "model": "default"}`), 400, CodeBadRequest, ""},
		{"generate unknown query option", "", "POST", "/v1/generate?k=3", "application/json", genBody(`{"class": 0}`), 400, CodeBadRequest, ""},
		{"generate unknown model", "", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "model": "nope"}`), 404, CodeUnknownModel, ""},
		{"generate timeout", "timeout", "POST", "/v1/generate", "application/json", genBody(`{"class": 0}`), 408, CodeCanceled, "request_timeout"},
		{"generate body over limit", "", "POST", "/v1/generate", "application/json", bytesOf(make([]byte, 65<<10)), 413, CodeTooLarge, "max_body_bytes"},
		{"generate wrong type", "", "POST", "/v1/generate", "text/plain", genBody(`{"class": 0}`), 415, CodeMediaType, ""},
		{"generate n over limit", "genlimits", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "n": 5, "k": 1}`), 422, CodeLimit, "max_n"},
		{"generate tokens over limit", "genlimits", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "n": 3, "k": 16}`), 422, CodeLimit, "max_tokens"},
		{"generate k over limit", "genlimits", "POST", "/v1/generate", "application/json", genBody(`{"class": 0, "k": 20}`), 422, CodeLimit, "max_k"},
		{"generate model without AR", "", "POST", "/v1/generate?model=second", "application/json", genBody(`{"class": 0}`), 422, CodeUnsupported, ""},
		{"generate full", "full", "POST", "/v1/generate", "application/json", genBody(`{"class": 0}`), 429, CodeOverloaded, "max_queue"},
		{"generate draining", "draining", "POST", "/v1/generate", "application/json", genBody(`{"class": 0}`), 503, CodeUnavailable, ""},
		{"generate GET", "", "GET", "/v1/generate", "", nil, 405, CodeMethodNotAllowed, ""},
	}
}

const testBoundary = "flextoktestboundary"

func multipartBodyBoundary(fields map[string]string, img []byte) (string, []byte) {
	var b strings.Builder
	for k, v := range fields {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", testBoundary, k, v)
	}
	if img != nil {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n%s\r\n", testBoundary, img)
	}
	fmt.Fprintf(&b, "--%s--\r\n", testBoundary)
	return "multipart/form-data; boundary=" + testBoundary, []byte(b.String())
}

// caseServer returns a server in the state setup names, and a function that undoes it.
func caseServer(t testing.TB, setup string) (*Server, func()) {
	s, undo := caseServer1(t, setup)
	s.LegacyEncode("/encode") // as flextok serve does
	return s, undo
}

func caseServer1(t testing.TB, setup string) (*Server, func()) {
	switch setup {
	case "":
		return newTest(t, Config{}), func() {}
	case "timeout":
		return newTest(t, Config{Limits: Limits{Timeout: time.Nanosecond}}), func() {}
	case "full":
		s := newTest(t, Config{MaxConcurrent: 1, MaxQueue: -1})
		s.adm.enter()
		if err := s.adm.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s, func() { s.adm.release(); s.adm.leave() }
	case "web":
		return newTest(t, Config{WebPackage: testWebPackage(t)}), func() {}
	case "genlimits":
		return newTest(t, Config{Limits: Limits{MaxN: 4, MaxGenTokens: 40, MaxK: 16}}), func() {}
	case "draining":
		s := newTest(t, Config{})
		s.Drain()
		return s, func() {}
	}
	t.Fatalf("setup %q", setup)
	return nil, nil
}

// runCases runs the table; it returns the statuses seen by "METHOD /path".
func runCases(t *testing.T) map[string]map[int]bool {
	seen := map[string]map[int]bool{}
	cases := errorCases()
	// Every /v1/encode case again on the demo's alias, POST /encode.
	for _, c := range cases {
		if strings.HasPrefix(c.target, "/v1/encode") {
			c.name += " (alias)"
			c.target = strings.TrimPrefix(c.target, "/v1")
			cases = append(cases, c)
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, undo := caseServer(t, c.setup)
			defer undo()
			var body []byte
			if c.body != nil {
				body = c.body(t)
			}
			rec := do(s, c.method, c.target, c.ct, body, nil)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			path := strings.SplitN(c.target, "?", 2)[0]
			if strings.HasPrefix(path, WebPackagePrefix) {
				path = webPackageRoute
			}
			key := c.method + " " + path
			if seen[key] == nil {
				seen[key] = map[int]bool{}
			}
			seen[key][rec.Code] = true
			if c.status < 400 {
				return
			}
			if rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("error Content-Type %q", rec.Header().Get("Content-Type"))
			}
			var eb apiErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("error body %s (%v)", rec.Body, err)
			}
			if c.code != "" && eb.Error.Code != c.code {
				t.Fatalf("code %q, want %q: %s", eb.Error.Code, c.code, eb.Error.Message)
			}
			if eb.Error.Limit != c.limit {
				t.Fatalf("limit %q, want %q: %s", eb.Error.Limit, c.limit, eb.Error.Message)
			}
			if c.status == 429 {
				if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
					t.Fatalf("429 without Retry-After: %v", rec.Header())
				}
			}
			if c.status == 405 && rec.Header().Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	return seen
}

// TestOpenAPI checks the document against the handlers: every documented route is served
// and every served route documented, and every documented status of a route is produced by a
// request of the table (which also checks the error codes and limits).
func TestOpenAPI(t *testing.T) {
	var doc struct {
		OpenAPI string                                                   `json:"openapi"`
		Paths   map[string]map[string]struct{ Responses map[string]any } `json:"paths"`
	}
	s, _ := caseServer(t, "")
	rec := do(s, "GET", "/v1/openapi.json", "", nil, nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("document: %v (%q)", err, doc.OpenAPI)
	}
	var documented []string
	for p, ops := range doc.Paths {
		for m := range ops {
			documented = append(documented, strings.ToUpper(m)+" "+p)
		}
	}
	slices.Sort(documented)
	if served := s.Routes(); !slices.Equal(documented, served) {
		t.Fatalf("documented routes %v, served %v", documented, served)
	}
	seen := runCases(t)
	for p, ops := range doc.Paths {
		for m, op := range ops {
			key := strings.ToUpper(m) + " " + p
			for st := range op.Responses {
				n, err := strconv.Atoi(st)
				if err != nil {
					t.Errorf("%s: response %q is not a status", key, st)
					continue
				}
				if !seen[key][n] {
					t.Errorf("%s: documented status %d is produced by no test request", key, n)
				}
			}
			for n := range seen[key] {
				if _, ok := op.Responses[strconv.Itoa(n)]; !ok {
					t.Errorf("%s: status %d is served but not documented", key, n)
				}
			}
		}
	}
}
