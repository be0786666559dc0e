package api

// This file serves the token page (CONTRACT.md §8): plain HTML, CSS and a
// JavaScript module, embedded in the binary, under a Content-Security-Policy
// that lets it load and call nothing but its own origin.

import (
	"embed"
	"net/http"
	"path"
)

//go:embed page/index.html page/app.js page/style.css
var page embed.FS

// PageCSP is the token page's Content-Security-Policy: no inline script or
// style, nothing from another origin, no framing.
const PageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var pageTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// servePage answers GET / and GET /assets/{name}.
func servePage(w http.ResponseWriter, r *http.Request) {
	name := "index.html"
	if r.URL.Path != "/" {
		name = r.PathValue("name")
	}
	b, err := page.ReadFile(path.Join("page", path.Base(name)))
	if err != nil || (r.URL.Path != "/" && name == "index.html") {
		writeError(w, http.StatusNotFound, "not_found", "no such page")
		return
	}
	h := w.Header()
	h.Set("Content-Type", pageTypes[path.Ext(name)])
	h.Set("Content-Security-Policy", PageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	_, _ = w.Write(b)
}
