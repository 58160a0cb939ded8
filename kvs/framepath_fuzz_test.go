package kvs

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/kvsgo/kvsgo/media"
)

// FuzzFramePath drives the producer's frame path (timeline, interleaver,
// fragmenter, Matroska writer) with arbitrary timestamp sequences on a
// video and an audio track, occasionally switching to a new header.
// Nothing may panic; every fragment's timecode is above the previous one;
// every block is at or after its fragment's start and within Matroska's
// relative range (the recorder checks both); and every frame put is either
// written once or counted lost.
func FuzzFramePath(f *testing.F) {
	// Each frame is 6 bytes: flags (track, key, new header), PTS step and
	// PTS-DTS offset in milliseconds (signed 16 bit).
	seed := func(frames ...[3]int) []byte {
		var b []byte
		for _, fr := range frames {
			b = append(b, byte(fr[0]), 0)
			b = binary.BigEndian.AppendUint16(b, uint16(int16(fr[1])))
			b = binary.BigEndian.AppendUint16(b, uint16(int16(fr[2])))
		}
		return b
	}
	var camera, openGOP, jumps [][3]int
	for i := range 90 {
		camera = append(camera, [3]int{boolInt(i%30 == 0) << 1, 33, 0}, [3]int{1, 0, 0})
		openGOP = append(openGOP, [3]int{boolInt(i%12 == 0) << 1, []int{100, -66, 33, 33}[i%4], -33})
	}
	for i := range 40 {
		step := 33
		switch i {
		case 15:
			step = -3000
		case 30:
			step = 30000
		}
		jumps = append(jumps, [3]int{boolInt(i%10 == 0)<<1 | i%2, step, 0})
	}
	f.Add(seed(camera...))
	f.Add(seed(openGOP...))
	f.Add(seed(jumps...))
	f.Add(seed([3]int{4, 0, 0}, [3]int{2, 33, 0}, [3]int{1, -500, 0}, [3]int{6, 0, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		tp := newTestPath(t, videoTrack, audioTrack)
		var pts [3]time.Duration
		in := 0
		for len(data) >= 6 {
			flags := data[0]
			step := time.Duration(int16(binary.BigEndian.Uint16(data[2:]))) * ms
			off := time.Duration(int16(binary.BigEndian.Uint16(data[4:]))) * ms
			data = data[6:]
			track := uint8(1 + flags&1)
			if flags&4 != 0 {
				v := videoTrack
				v.Width = int(flags) * 16
				if err := tp.setTracks([]media.Track{v, audioTrack}, [16]byte{1}); err != nil {
					t.Fatal(err)
				}
			}
			pts[track] += step
			f := media.Frame{Track: track, PTS: pts[track], DTS: pts[track] - max(off, 0), Key: track == 2 || flags&2 != 0, Data: []byte{byte(in)}}
			if err := tp.put(f); err != nil {
				t.Fatal(err)
			}
			in++
		}
		if err := tp.end(); err != nil {
			t.Fatal(err)
		}
		out := len(tp.rec.blocks(t))
		if int64(in) != tp.stats.Frames || int64(out) != tp.stats.Frames-tp.stats.Lost.Total() {
			t.Fatalf("%d frames put, %d counted, %d written, %d lost (%+v)", in, tp.stats.Frames, out, tp.stats.Lost.Total(), tp.stats.Lost)
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
