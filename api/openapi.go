package api

// This file serves the API's OpenAPI 3 document (openapi.json, beside it).

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the API's OpenAPI 3 document; the tests validate every
// request and answer against it.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}
