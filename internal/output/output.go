// Package output writes the frames `kvsgo get` reads into the formats
// programs downstream take: a Matroska stream for players and recorders,
// and a raw H.264/H.265 elementary stream for decoders and detectors that
// read a pipe.
package output

import (
	"fmt"
	"io"
	"strings"

	"github.com/kvsgo/kvsgo/kvs"
)

// Writer takes the frames of a kvs.Reader in order.
type Writer interface {
	WriteFrame(f *kvs.Frame) error
}

// Formats lists the names New accepts.
const Formats = "mkv, annexb"

// New returns the writer for a format name.
func New(format string, w io.Writer) (Writer, error) {
	switch strings.ToLower(format) {
	case "mkv", "matroska":
		return NewMatroska(w), nil
	case "annexb", "h264", "h265":
		return NewAnnexB(w), nil
	}
	return nil, fmt.Errorf("unknown format %q: use %s", format, Formats)
}
