// Package web holds the page `kvsgo serve` shows at /: plain HTML, CSS and
// JavaScript, with hls.js vendored, embedded in the binary so that it works
// without internet and needs no build step.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// HLSJSVersion is the version of the vendored hls.js (static/vendor/hls.js).
const HLSJSVersion = "1.7.4"

// Files returns the page's files: index.html, login.html, app.js,
// style.css and vendor/.
func Files() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
