package source

import (
	"encoding/binary"
)

// A small MP4 writer for tests: it makes files with whatever timestamps,
// edit lists and sample tables a test wants, which encoders never would.

func box(typ string, payload ...[]byte) []byte {
	n := 8
	for _, p := range payload {
		n += len(p)
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, n), uint32(n))
	b = append(b, typ...)
	for _, p := range payload {
		b = append(b, p...)
	}
	return b
}

func u32s(v ...uint32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.BigEndian.AppendUint32(b, x)
	}
	return b
}

// fullBox is a box with version and flags.
func fullBox(typ string, version byte, payload ...[]byte) []byte {
	return box(typ, append([][]byte{{version, 0, 0, 0}}, payload...)...)
}

type testSample struct {
	delta uint32 // stts: the time to the next sample
	cto   int32  // ctts: the composition offset
	sync  bool
	data  []byte
}

type testTrack struct {
	handler   string // "vide" or "soun"
	timescale uint32
	entry     []byte // the stsd sample entry box
	samples   []testSample
	edits     []mp4Edit // nil: no edts box
	elstV1    bool
	perChunk  int // samples per chunk; 1 when 0
	noStss    bool
}

// avc1Entry is an avc1 sample entry with the given avcC.
func avc1Entry(avcC []byte) []byte {
	fixed := make([]byte, 78)
	binary.BigEndian.PutUint16(fixed[6:], 1)    // data reference index
	binary.BigEndian.PutUint16(fixed[24:], 640) // width
	binary.BigEndian.PutUint16(fixed[26:], 480) // height
	return box("avc1", fixed, box("avcC", avcC))
}

// mp4aEntry is an mp4a sample entry whose esds carries asc.
func mp4aEntry(asc []byte) []byte {
	fixed := make([]byte, 28)
	binary.BigEndian.PutUint16(fixed[6:], 1)
	binary.BigEndian.PutUint16(fixed[16:], 1)  // channels
	binary.BigEndian.PutUint16(fixed[18:], 16) // sample size
	binary.BigEndian.PutUint32(fixed[24:], 48000<<16)
	dsi := append([]byte{5, byte(len(asc))}, asc...)
	dc := append([]byte{4, byte(13 + len(dsi)), 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, dsi...)
	es := append([]byte{3, byte(3 + len(dc)), 0, 1, 0}, dc...)
	return box("mp4a", fixed, fullBox("esds", 0, es))
}

// buildMP4 lays out a file: ftyp, then moov and mdat in either order.
func buildMP4(movieScale uint32, tracks []testTrack, moovFirst bool) []byte {
	ftyp := box("ftyp", []byte("isom"), u32s(0x200), []byte("isomiso2avc1mp41"))
	// The moov's size does not depend on the chunk offsets' values: lay it
	// out once to learn where mdat's payload starts.
	layout := func(mdatStart uint32) (moov, mdat []byte) {
		off := mdatStart
		var traks [][]byte
		for i, t := range tracks {
			per := max(t.perChunk, 1)
			var stts, ctts, stss, stsz, stco []byte
			var nStts, nCtts, nStss, nChunks uint32
			for j, s := range t.samples {
				stts = append(stts, u32s(1, s.delta)...)
				ctts = append(ctts, u32s(1, uint32(s.cto))...)
				nStts++
				nCtts++
				if s.sync {
					stss = append(stss, u32s(uint32(j+1))...)
					nStss++
				}
				stsz = append(stsz, u32s(uint32(len(s.data)))...)
				if j%per == 0 {
					stco = append(stco, u32s(off)...)
					nChunks++
				}
				off += uint32(len(s.data))
				mdat = append(mdat, s.data...)
			}
			stbl := [][]byte{
				fullBox("stsd", 0, u32s(1), t.entry),
				fullBox("stts", 0, u32s(nStts), stts),
				fullBox("ctts", 1, u32s(nCtts), ctts),
				fullBox("stsc", 0, u32s(1, 1, uint32(per), 1)),
				fullBox("stsz", 0, u32s(0, uint32(len(t.samples))), stsz),
				fullBox("stco", 0, u32s(nChunks), stco),
			}
			if !t.noStss {
				stbl = append(stbl, fullBox("stss", 0, u32s(nStss), stss))
			}
			parts := [][]byte{fullBox("tkhd", 0, u32s(0, 0, uint32(i+1), 0, 0), make([]byte, 60))}
			if t.edits != nil {
				var e []byte
				for _, ed := range t.edits {
					if t.elstV1 {
						e = binary.BigEndian.AppendUint64(e, ed.duration)
						e = binary.BigEndian.AppendUint64(e, uint64(ed.mediaTime))
					} else {
						e = append(e, u32s(uint32(ed.duration), uint32(ed.mediaTime))...)
					}
					e = append(e, u32s(uint32(ed.rate))...)
				}
				v := byte(0)
				if t.elstV1 {
					v = 1
				}
				parts = append(parts, box("edts", fullBox("elst", v, u32s(uint32(len(t.edits))), e)))
			}
			parts = append(parts, box("mdia",
				fullBox("mdhd", 0, u32s(0, 0, t.timescale, 0, 0)),
				fullBox("hdlr", 0, u32s(0), []byte(t.handler), make([]byte, 13)),
				box("minf", box("stbl", stbl...))))
			traks = append(traks, box("trak", parts...))
		}
		moov = box("moov", append([][]byte{fullBox("mvhd", 0, u32s(0, 0, movieScale, 0), make([]byte, 80))}, traks...)...)
		return moov, mdat
	}
	moov, _ := layout(0)
	var mdat []byte
	if moovFirst {
		moov, mdat = layout(uint32(len(ftyp) + len(moov) + 8))
		return append(append(ftyp, moov...), box("mdat", mdat)...)
	}
	moov, mdat = layout(uint32(len(ftyp) + 8))
	return append(append(ftyp, box("mdat", mdat)...), moov...)
}
