package servicetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/hookline/hookline/pkg/httpapi"
)

// The API's OpenAPI document, loaded once per test process.
var spec struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// OpenAPI returns the API's OpenAPI 3.1 document (httpapi.OpenAPI), loaded and validated, and a
// router over its operations.
func OpenAPI(tb testing.TB) (*openapi3.T, routers.Router) {
	tb.Helper()
	spec.once.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(httpapi.OpenAPI())
		if err == nil {
			err = doc.Validate(loader.Context)
		}
		if err != nil {
			spec.err = err
			return
		}
		doc.Servers = nil // match every host: the test systems listen on random ports
		spec.doc = doc
		spec.router, spec.err = gorillamux.NewRouter(doc)
	})
	if spec.err != nil {
		tb.Fatalf("servicetest: pkg/httpapi/openapi.yaml: %v", spec.err)
	}
	return spec.doc, spec.router
}

// unmatchedStatuses are what a request no operation of the document matches can get: an
// unknown route, a method the path does not serve (Fiber's 404 and 405), refused before that
// by the key check or the rate limiter, or a body over Fiber's BodyLimit.
var unmatchedStatuses = []int{http.StatusUnauthorized, http.StatusNotFound, http.StatusMethodNotAllowed,
	http.StatusRequestEntityTooLarge, http.StatusTooManyRequests}

// CheckResponse fails the test unless the answer to req is one the OpenAPI document allows:
// its status is documented for the operation, and its headers and body match the response's
// schema. An answer to a request that matches no operation must be the error envelope. Do and
// Upload call it on every answer; call it on answers got another way.
func CheckResponse(tb testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	tb.Helper()
	doc, router := OpenAPI(tb)
	if req.Method == http.MethodHead { // Fiber answers HEAD beside every GET, without a body
		get := req.Clone(req.Context())
		get.Method = http.MethodGet
		if _, _, err := router.FindRoute(get); err != nil {
			tb.Errorf("openapi: HEAD %s: no GET operation in pkg/httpapi/openapi.yaml", req.URL.Path)
		}
		return
	}
	route, params, err := router.FindRoute(req)
	if errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) {
		var v any
		if !slices.Contains(unmatchedStatuses, status) || json.Unmarshal(body, &v) != nil {
			tb.Errorf("openapi: %s %s matches no operation of pkg/httpapi/openapi.yaml, and was answered %d %q",
				req.Method, req.URL.Path, status, body)
			return
		}
		if err := doc.Components.Schemas["ErrorEnvelope"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			tb.Errorf("openapi: %s %s = %d: not the error envelope: %v\n%s", req.Method, req.URL.Path, status, err, body)
		}
		return
	}
	if err != nil {
		tb.Fatalf("openapi: find the operation of %s %s: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		tb.Errorf("openapi: %s %s = %d does not match pkg/httpapi/openapi.yaml: %v\n%.2000s", req.Method, req.URL.Path, status, err, body)
	}
}
