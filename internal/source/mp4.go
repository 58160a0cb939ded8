package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/kvsgo/kvsgo/internal/codec"
	"github.com/kvsgo/kvsgo/media"
)

// MP4 reads a (progressive) MP4 file with H.264 or H.265 video and
// optionally AAC audio, or AAC audio alone, through its edit lists, as
// players show it. It
// reads the index, then one sample at a time: memory does not grow with
// the file.
type MP4 struct {
	// R is the input. A regular file (or anything with ReadAt and Size) is
	// read in place; anything else, a pipe, is first copied to a temporary
	// file, because an MP4's index may come after its samples.
	R io.Reader
	// TempDir holds that copy; the system's when empty.
	TempDir string
	Pace    bool
	Now     func() time.Time
	Logger  *slog.Logger
	sleep   func(context.Context, time.Duration) error // the pacer's, in tests
}

// sizedReaderAt is a bytes.Reader or the like.
type sizedReaderAt interface {
	io.ReaderAt
	Size() int64
}

// Run implements Source.
func (m *MP4) Run(ctx context.Context, sink Sink) error {
	now, log := defaults(m.Now, m.Logger)
	ra, size, release, err := m.input(log)
	if err != nil {
		return err
	}
	defer release()
	top, err := readMP4Top(ra, size)
	if err != nil {
		return err
	}
	movie, err := parseMoov(top.moov)
	if err != nil {
		return err
	}
	if top.fragmented || movie.fragmented {
		return errors.New("fragmented MP4 (movie fragments) is not supported yet: remux it into a plain MP4 (ffmpeg -i in.mp4 -c copy out.mp4) or send it as Matroska (ffmpeg -i in.mp4 -c copy -f matroska - | kvsgo put --source -)")
	}
	var (
		tracks  []media.Track
		readers []*mp4Reader
		vtrack  *mp4Track
		vconfig codec.DecoderConfig
		vcodec  codec.Codec
		atrack  *mp4Track
		acfg    mpeg4audio.AudioSpecificConfig
	)
	for _, t := range movie.tracks {
		switch {
		case vtrack == nil && t.handler == "vide" && isMP4Video(t.entry.format):
			vcodec = codec.H264
			if t.entry.format == "hvc1" || t.entry.format == "hev1" {
				vcodec = codec.H265
			}
			vtrack = t
		case atrack == nil && t.handler == "soun" && t.entry.format == "mp4a" && isAAC(t.entry.objectType):
			if err := acfg.Unmarshal(t.entry.config); err != nil {
				log.Warn("dropping an AAC track whose configuration cannot be read", "track", t.id, "err", err)
				continue
			}
			atrack = t
		case t.handler == "vide" || t.handler == "soun":
			log.Warn("dropping an MP4 track Kinesis Video Streams players cannot use", "track", t.id, "codec", printable(t.entry.format))
		}
	}
	if vtrack == nil && atrack == nil {
		return errors.New("the MP4 file has no H.264, H.265 or AAC track")
	}
	// The sample tables are checked before anything walks them (the
	// video track's first samples may hold its parameter sets).
	for _, t := range []*mp4Track{vtrack, atrack} {
		if t == nil {
			continue
		}
		if t.timescale == 0 {
			return fmt.Errorf("%w: track %d has a time scale of 0", errMP4, t.id)
		}
		if err := t.table.check(size); err != nil {
			return fmt.Errorf("track %d: %w", t.id, err)
		}
	}
	if vtrack != nil {
		vt, cfg, err := mp4VideoTrack(vtrack, vcodec, ra, size)
		if err != nil {
			return err
		}
		vconfig = cfg
		tracks = append(tracks, vt)
	}
	for _, t := range []*mp4Track{vtrack, atrack} {
		if t == nil {
			continue
		}
		segs, notes := mp4Segments(t, movie.timescale)
		for _, n := range notes {
			log.Warn("MP4 edit list: "+n, "track", t.id)
		}
		readers = append(readers, newMP4Reader(uint8(len(readers)+1), t == vtrack, t, segs))
	}
	if atrack != nil {
		tracks = append(tracks, media.Track{Number: uint8(len(tracks) + 1), Kind: media.KindAudio, CodecID: media.CodecAAC, CodecPrivate: atrack.entry.config,
			SampleRate: float64(acfg.SampleRate), Channels: aacChannels(acfg.ChannelConfig)})
	}
	return m.send(ctx, sink, log, now, ra, size, tracks, readers, vcodec, vconfig.LengthSize)
}

func isMP4Video(format string) bool {
	switch format {
	case "avc1", "avc3", "hvc1", "hev1":
		return true
	}
	return false
}

// isAAC tells MPEG-4 audio and MPEG-2 AAC (main, LC, SSR) object types.
func isAAC(objectType byte) bool {
	return objectType == 0x40 || (objectType >= 0x66 && objectType <= 0x68)
}

// send merges the tracks' samples in decoding order and hands them on.
func (m *MP4) send(ctx context.Context, sink Sink, log *slog.Logger, now func() time.Time, ra io.ReaderAt, size int64,
	tracks []media.Track, readers []*mp4Reader, vcodec codec.Codec, lengthSize int) error {
	heads := make([]mp4Out, len(readers))
	live := make([]bool, len(readers))
	for i, r := range readers {
		var err error
		if heads[i], live[i], err = r.next(); err != nil {
			return err
		}
	}
	v := readers[0]
	if !live[0] {
		what := "video"
		if !v.video {
			what = "audio"
		}
		return fmt.Errorf("the MP4 file has no %s frame to send: its %s track is empty, or its edit list shows none of it", what, what)
	}
	if v.hidden > 0 {
		log.Info("not sending the frames the MP4's edit list hides (the pre-roll before a cut, as players do)", "frames", v.hidden)
	}
	if v.video {
		reportDrop(sink, log, 1, v.lost, LossUndecodable, "the video frames shown between the MP4 edit's start and the next key frame: they need the hidden frames before the cut to decode, and Kinesis Video Streams cannot carry frames that are decoded but not shown; cut at a key frame, or re-encode, to keep them",
			"from", v.lostFrom, "to", v.lostTo)
	}
	if err := sink.Start(tracks); err != nil {
		return err
	}
	var (
		pace      = &pacer{enabled: m.Pace, now: now, log: log, sleep: m.sleep}
		buf, conv []byte
		nalus     [][]byte
	)
	for {
		i := -1
		for j := range readers {
			if live[j] && (i < 0 || heads[j].dts < heads[i].dts) {
				i = j
			}
		}
		if i < 0 {
			break
		}
		o := heads[i]
		var err error
		if heads[i], live[i], err = readers[i].next(); err != nil {
			return err
		}
		if o.size > maxSample {
			return fmt.Errorf("%w: a sample of %d MB", errMP4, o.size>>20)
		}
		if o.offset < 0 || o.offset > size-int64(o.size) {
			return fmt.Errorf("%w: the file is truncated: a sample of track %d lies past its end (an unfinished recording or download?)", errMP4, o.track)
		}
		if cap(buf) < int(o.size) {
			buf = make([]byte, o.size)
		}
		data := buf[:o.size]
		if _, err := ra.ReadAt(data, o.offset); err != nil && !(errors.Is(err, io.EOF) && o.offset+int64(o.size) == size) {
			return fmt.Errorf("reading an MP4 sample: %w", err)
		}
		if readers[i].video && lengthSize != 4 {
			// The Frame contract is 4-byte NAL lengths.
			if nalus, err = codec.SplitLengthPrefixed(nalus[:0], data, lengthSize); err != nil {
				return fmt.Errorf("%w: a video sample: %w", errMP4, err)
			}
			conv = vcodec.AppendLengthPrefixed(conv[:0], nalus)
			data = conv
		}
		if err := pace.wait(ctx, o.dts); err != nil {
			return err
		}
		if err := sink.Frame(media.Frame{Track: o.track, PTS: o.pts, DTS: o.dts, Key: o.key, Data: data}); err != nil {
			return err
		}
	}
	return nil
}

// input returns the file to read samples from: R itself when it can be
// read in place, else a temporary copy, removed when release is called.
func (m *MP4) input(log *slog.Logger) (io.ReaderAt, int64, func(), error) {
	if f, ok := m.R.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return f, fi.Size(), func() {}, nil
		}
	}
	if r, ok := m.R.(sizedReaderAt); ok {
		return r, r.Size(), func() {}, nil
	}
	tmp, err := os.CreateTemp(m.TempDir, "kvsgo-mp4-")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("an MP4 from a pipe needs a temporary file: %w", err)
	}
	// Unlinked at once: the space is freed when the file is closed, even
	// if kvsgo is killed.
	_ = os.Remove(tmp.Name())
	log.Info("MP4 from a pipe: copying it to a temporary file first, because an MP4's index may come after its samples; sending starts when the input ends (for live video, pipe MPEG-TS or Matroska instead: ffmpeg … -f mpegts -)",
		"dir", dirOf(tmp.Name()))
	n, err := io.Copy(tmp, m.R)
	if err != nil {
		tmp.Close()
		return nil, 0, nil, fmt.Errorf("buffering the MP4: %w", err)
	}
	log.Info("MP4 buffered", "bytes", n)
	return tmp, n, func() { tmp.Close() }, nil
}

func dirOf(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if os.IsPathSeparator(path[i]) {
			return path[:max(i, 1)]
		}
	}
	return "."
}

// mp4VideoTrack builds the video track from the sample entry's parameter
// sets, or, for avc3/hev1 entries that carry them in band, from the first
// samples.
func mp4VideoTrack(t *mp4Track, c codec.Codec, ra io.ReaderAt, size int64) (media.Track, codec.DecoderConfig, error) {
	var (
		cfg codec.DecoderConfig
		err error
	)
	if c == codec.H265 {
		cfg, err = codec.ParseHVCC(t.entry.config)
	} else {
		cfg, err = codec.ParseAVCC(t.entry.config)
	}
	if err != nil {
		return media.Track{}, cfg, fmt.Errorf("the MP4's %s configuration: %w", c, err)
	}
	params := &codec.Params{Codec: c}
	if _, err := params.Update(cfg.NALUs()); err != nil {
		return media.Track{}, cfg, fmt.Errorf("the MP4's %s parameter sets: %w", c, err)
	}
	if !params.Ready() {
		// In band: look at the first few samples.
		cur := newMP4Cursor(&t.table)
		var nalus [][]byte
		for range 10 {
			s, ok, err := cur.next()
			if err != nil || !ok || s.size > maxSample || s.offset < 0 || s.offset > size-int64(s.size) {
				break
			}
			b := make([]byte, s.size)
			if _, err := ra.ReadAt(b, s.offset); err != nil && !errors.Is(err, io.EOF) {
				break
			}
			nalus, _ = codec.SplitLengthPrefixed(nalus[:0], b, cfg.LengthSize)
			if _, err := params.Update(nalus); err == nil && params.Ready() {
				break
			}
		}
	}
	cpd, err := params.CodecPrivate()
	if err != nil {
		return media.Track{}, cfg, fmt.Errorf("the MP4's %s parameter sets (SPS/PPS): %w", c, err)
	}
	id := media.CodecH264
	if c == codec.H265 {
		id = media.CodecH265
	}
	info := params.Info()
	return media.Track{Number: 1, Kind: media.KindVideo, CodecID: id, CodecPrivate: cpd, Name: "kinesis_video", Width: info.Width, Height: info.Height}, cfg, nil
}
