package output

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/media"
)

// AnnexB writes the first video track as a raw H.264 or H.265 elementary
// stream (ITU-T H.264 Annex B): start codes, an access unit delimiter
// before every picture, and the parameter sets from the codec private data
// before every key frame, so that a decoder can start at any key frame
// and `ffmpeg -i -` or a detector can read it from a pipe. Audio is left
// out; frames before the first key frame too, since nothing can decode
// them. One Write per frame.
type AnnexB struct {
	w       io.Writer
	track   uint8
	cpd     []byte
	codec   codec.Codec
	cfg     codec.DecoderConfig
	started bool
	nalus   [][]byte
	buf     []byte
}

// NewAnnexB returns an Annex-B writer to w.
func NewAnnexB(w io.Writer) *AnnexB { return &AnnexB{w: w} }

// ErrNotH26x: the stream's video is not H.264 or H.265.
var ErrNotH26x = errors.New("Annex-B output needs H.264 or H.265 video")

var startCode = []byte{0, 0, 0, 1}

// WriteFrame implements Writer.
func (a *AnnexB) WriteFrame(f *kvs.Frame) error {
	t := f.Fragment.Track(f.Track)
	if t == nil || t.Kind != media.KindVideo || (a.track != 0 && f.Track != a.track) {
		return nil
	}
	a.track = f.Track
	if a.cpd == nil || !bytes.Equal(t.CodecPrivate, a.cpd) {
		if err := a.setCodec(t); err != nil {
			return err
		}
	}
	if !a.started && !f.Key {
		return nil
	}
	a.started = true
	var err error
	if a.nalus, err = codec.SplitLengthPrefixed(a.nalus[:0], f.Data, a.cfg.LengthSize); err != nil {
		return fmt.Errorf("a frame at %v: %w", f.PTS, err)
	}
	b := append(a.buf[:0], startCode...)
	if a.codec == codec.H265 {
		b = append(b, 0x46, 0x01, 0x50) // AUD, pic_type 2: any slice type
	} else {
		b = append(b, 0x09, 0xf0) // AUD, primary_pic_type 7: any
	}
	if f.Key {
		for _, p := range a.cfg.NALUs() {
			b = append(append(b, startCode...), p...)
		}
	}
	for _, n := range a.nalus {
		if a.isAUD(n) {
			continue
		}
		b = append(append(b, startCode...), n...)
	}
	a.buf = b
	_, err = a.w.Write(b)
	return err
}

func (a *AnnexB) setCodec(t *media.Track) error {
	var err error
	switch t.CodecID {
	case media.CodecH264:
		a.codec = codec.H264
		a.cfg, err = codec.ParseAVCC(t.CodecPrivate)
	case media.CodecH265:
		a.codec = codec.H265
		a.cfg, err = codec.ParseHVCC(t.CodecPrivate)
	default:
		return fmt.Errorf("%w; track %d is %s (use --format mkv)", ErrNotH26x, t.Number, t.CodecID)
	}
	if err != nil {
		return fmt.Errorf("the stream's codec private data: %w", err)
	}
	a.cpd = append([]byte(nil), t.CodecPrivate...)
	return nil
}

func (a *AnnexB) isAUD(n []byte) bool {
	if len(n) == 0 {
		return false
	}
	if a.codec == codec.H265 {
		return (n[0]>>1)&0x3f == 35
	}
	return n[0]&0x1f == 9
}
