package kvs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvsgo/kvsgo/mkv"
)

// A disk buffer keeps each fragment in a file of its own, in a directory
// per stream:
//
//	DIR/<stream>/lock                    held (flock) by the process sending the stream
//	DIR/<stream>/000000000000002a.part   the fragment being written
//	DIR/<stream>/0000000000000029.frag   a complete fragment: synced, then renamed
//
// A file is: a prefix (magic "KVSGOBUF", version, cluster timecode, the
// stream header the fragment belongs to), the fragment's Matroska bytes as
// sent, and a trailer (magic "KVSGOEND", the data's length, frames, the
// latest frame's timecode, and a CRC-32C of everything before the CRC). A fragment
// is written as its frames come; when it ends, the trailer is written, the
// file synced and renamed to .frag, and the directory synced. Only then
// does it count as buffered. So a .part file is one the program or the
// machine stopped while writing (torn: skipped and reported, never sent),
// and a .frag is whole unless the disk changed it (its checksum says so
// before it is sent). A fragment's file is deleted once the service has
// persisted it.
const (
	bufMagic    = "KVSGOBUF"
	endMagic    = "KVSGOEND"
	bufVersion  = 1
	prefixFixed = 8 + 4 + 8 + 4 // magic, version, timecode, header length
	trailerSize = 8 + 8 + 4 + 8 + 4
	maxHeader   = 1 << 20
	partExt     = ".part"
	fragExt     = ".frag"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks a fragment file that is not whole.
var errTorn = errors.New("not a whole fragment")

// DiskBufferConfig configures OpenDiskBuffer.
type DiskBufferConfig struct {
	// Dir holds a directory per stream.
	Dir    string
	Stream string
	// MemoryBytes is how much of the newest fragments is kept in memory
	// as well, so that a connection that keeps up never reads the disk
	// [8 MiB].
	MemoryBytes int64
	// MemoryLimit bounds the fragments kept in memory only, because the
	// disk could not take them (full, or failing); past it the producer
	// drops the oldest fragments [128 MiB].
	MemoryLimit int64
	// OnProblem is told, in plain words, when the disk cannot be written
	// and when it can again; it must not block.
	OnProblem func(msg string)
	Logger    *slog.Logger

	fs fileSystem // the real file system unless a test puts one in
}

// TornFile is a fragment file a disk buffer found incomplete or damaged
// when it opened: skipped and deleted, never sent.
type TornFile struct {
	Name   string
	Bytes  int64
	Frames int // complete frames found in it
	Why    string
}

// Recovery is what a disk buffer found when it opened: fragments buffered
// by an earlier run and not yet persisted, which go out first.
type Recovery struct {
	Dir               string
	Fragments, Frames int
	Bytes             int64
	// Oldest and Newest are the first and the last fragment's timecodes.
	Oldest, Newest time.Time
	Torn           []TornFile
}

// TornFrames counts the frames of the torn files.
func (r Recovery) TornFrames() int64 {
	n := 0
	for _, t := range r.Torn {
		n += t.Frames
	}
	return int64(n)
}

// DiskBuffer is a Buffer that keeps every fragment on disk until the
// service has persisted it, so that a crash, a kill -9 or a power cut
// loses nothing that was buffered, and memory stays bounded however long
// the service cannot be reached. Open it with OpenDiskBuffer; one process
// at a time may use a stream's directory.
type DiskBuffer struct {
	cfg  DiskBufferConfig
	fs   fileSystem
	dir  string
	lock io.Closer

	frags   []*Fragment
	nextID  uint64
	nextSeq uint64 // file number of the next fragment
	bytes   int64
	headers map[string][]byte // one slice per distinct header

	// the fragment being written
	cur    bufferFile
	curCRC uint32
	failed bool // the disk refused the current fragment: it is in memory only

	cached      []*Fragment // fragments with Data in memory, oldest first
	memBytes    int64       // their bytes
	memOnly     int64       // bytes of fragments not on disk
	spare       [][]byte
	readBuf     []byte // the file of fragment readID, read whole
	readAt      int    // where its data starts
	readID      uint64
	readOK      bool
	diskProblem bool // the last write failed (said once until it works)
}

// OpenDiskBuffer opens (creating it if needed) the buffer of a stream in
// dir, locks it for this process, and reads what an earlier run left:
// whole fragments become the buffer's first ones, torn files are deleted
// and reported.
func OpenDiskBuffer(cfg DiskBufferConfig) (*DiskBuffer, Recovery, error) {
	if cfg.MemoryBytes == 0 {
		cfg.MemoryBytes = 8 << 20
	}
	if cfg.MemoryLimit == 0 {
		cfg.MemoryLimit = 128 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnProblem == nil {
		cfg.OnProblem = func(string) {}
	}
	fs := cfg.fs
	if fs == nil {
		fs = osFS{}
	}
	if cfg.Stream == "" {
		return nil, Recovery{}, errors.New("kvs: a disk buffer needs the stream's name")
	}
	dir := filepath.Join(cfg.Dir, url.PathEscape(cfg.Stream))
	rec := Recovery{Dir: dir}
	if err := fs.MkdirAll(dir); err != nil {
		return nil, rec, fmt.Errorf("buffer directory: %w", err)
	}
	lock, err := fs.Lock(dir)
	if err != nil {
		if errors.Is(err, ErrBufferInUse) {
			return nil, rec, fmt.Errorf("another kvsgo put is sending stream %q from %s (%w): one process per stream and buffer directory", cfg.Stream, cfg.Dir, err)
		}
		return nil, rec, fmt.Errorf("locking the buffer directory %s: %w", dir, err)
	}
	b := &DiskBuffer{cfg: cfg, fs: fs, dir: dir, lock: lock, headers: map[string][]byte{}}
	if err := b.recover(&rec); err != nil {
		lock.Close()
		return nil, rec, err
	}
	return b, rec, nil
}

type fileName struct {
	seq  uint64
	name string
	part bool
}

// recover reads the fragments an earlier run left.
func (b *DiskBuffer) recover(rec *Recovery) error {
	names, err := b.fs.List(b.dir)
	if err != nil {
		return fmt.Errorf("reading the buffer directory: %w", err)
	}
	var files []fileName
	for _, n := range names {
		ext := filepath.Ext(n)
		if ext != partExt && ext != fragExt {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(n, ext), 16, 64)
		if err != nil {
			continue
		}
		files = append(files, fileName{seq, n, ext == partExt})
	}
	slices.SortFunc(files, func(a, c fileName) int {
		switch {
		case a.seq < c.seq:
			return -1
		case a.seq > c.seq:
			return 1
		}
		return 0
	})
	removed := false
	for i, fn := range files {
		b.nextSeq = max(b.nextSeq, fn.seq+1)
		path := filepath.Join(b.dir, fn.name)
		var f *Fragment
		why := "the program or the machine stopped while writing it"
		if !fn.part {
			// Only the newest file can have been cut short by a power cut
			// (each is synced before the next is made): its checksum is
			// read now, the others' before they are sent.
			f, err = b.parse(path, i == len(files)-1)
			if err != nil {
				why = err.Error()
			}
			if f != nil && len(b.frags) > 0 && f.Timecode <= b.frags[len(b.frags)-1].Timecode {
				f, why = nil, "its timecode is not after the fragment before it"
			}
		}
		if f == nil {
			data, err := readAll(b.fs, path, nil)
			if err != nil {
				return fmt.Errorf("reading %s: %w", path, err)
			}
			rec.Torn = append(rec.Torn, TornFile{Name: path, Bytes: int64(len(data)), Frames: countFrames(data), Why: why})
			if err := b.fs.Remove(path); err != nil {
				return fmt.Errorf("removing the torn fragment file %s: %w", path, err)
			}
			removed = true
			continue
		}
		f.ID, f.file = b.nextID, fn.seq
		b.nextID++
		b.frags = append(b.frags, f)
		b.bytes += int64(f.Size)
		rec.Fragments++
		rec.Frames += f.Frames
		rec.Bytes += int64(f.Size)
	}
	if removed {
		if err := b.fs.SyncDir(b.dir); err != nil {
			return fmt.Errorf("syncing the buffer directory: %w", err)
		}
	}
	if len(b.frags) > 0 {
		rec.Oldest = time.UnixMilli(b.frags[0].Timecode)
		rec.Newest = time.UnixMilli(b.frags[len(b.frags)-1].Timecode)
	}
	return nil
}

// parse reads a fragment file's prefix and trailer, and when check is set
// its whole content, to check its checksum; the fragment's bytes stay on
// disk.
func (b *DiskBuffer) parse(path string, check bool) (*Fragment, error) {
	r, err := b.fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	size := r.Size()
	head := make([]byte, min(size, prefixFixed+4096))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(head) >= prefixFixed {
		if hl := int64(binary.BigEndian.Uint32(head[20:])); hl <= maxHeader && prefixFixed+hl > int64(len(head)) && prefixFixed+hl <= size {
			head = make([]byte, prefixFixed+hl)
			if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
		}
	}
	p, err := parsePrefix(head)
	if err != nil {
		return nil, err
	}
	if size < int64(p.dataAt+trailerSize) {
		return nil, fmt.Errorf("%w: no trailer", errTorn)
	}
	t := make([]byte, trailerSize)
	if _, err := r.ReadAt(t, size-trailerSize); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if string(t[:8]) != endMagic {
		return nil, fmt.Errorf("%w: no trailer", errTorn)
	}
	dataLen := binary.BigEndian.Uint64(t[8:])
	if held := uint64(size) - trailerSize - uint64(p.dataAt); dataLen != held {
		return nil, fmt.Errorf("%w: its trailer says %d bytes, it holds %d", errTorn, dataLen, held)
	}
	if check {
		whole := make([]byte, size)
		if _, err := r.ReadAt(whole, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if err := checkSum(whole); err != nil {
			return nil, err
		}
	}
	header, ok := b.headers[string(p.header)]
	if !ok {
		header = bytes.Clone(p.header)
		b.headers[string(header)] = header
	}
	return &Fragment{Timecode: p.timecode, End: int64(binary.BigEndian.Uint64(t[20:])), Header: header, Size: int(dataLen),
		Frames: int(binary.BigEndian.Uint32(t[16:])), Complete: true, Recovered: true}, nil
}

type prefix struct {
	timecode int64
	header   []byte
	dataAt   int
}

func parsePrefix(file []byte) (prefix, error) {
	if len(file) < prefixFixed || string(file[:8]) != bufMagic {
		return prefix{}, fmt.Errorf("%w: not a kvsgo fragment file", errTorn)
	}
	if v := binary.BigEndian.Uint32(file[8:]); v != bufVersion {
		return prefix{}, fmt.Errorf("fragment file version %d: this kvsgo reads version %d", v, bufVersion)
	}
	hl := binary.BigEndian.Uint32(file[20:])
	if hl > maxHeader || len(file) < prefixFixed+int(hl) {
		return prefix{}, fmt.Errorf("%w: its header is cut short", errTorn)
	}
	return prefix{timecode: int64(binary.BigEndian.Uint64(file[12:])), header: file[prefixFixed : prefixFixed+int(hl)], dataAt: prefixFixed + int(hl)}, nil
}

func checkSum(file []byte) error {
	body := file[:len(file)-4]
	want := binary.BigEndian.Uint32(file[len(file)-4:])
	if got := crc32.Checksum(body, crcTable); got != want {
		return fmt.Errorf("%w: its checksum does not match (the disk changed it)", errTorn)
	}
	return nil
}

// countFrames counts the whole frames in what is left of a fragment file.
func countFrames(file []byte) int {
	p, err := parsePrefix(file)
	if err != nil {
		return 0
	}
	end := len(file)
	if len(file) >= p.dataAt+trailerSize && string(file[len(file)-trailerSize:len(file)-trailerSize+8]) == endMagic {
		end -= trailerSize
	}
	d := mkv.NewDemuxer(io.MultiReader(bytes.NewReader(p.header), bytes.NewReader(file[p.dataAt:end])))
	n := 0
	for {
		ev, err := d.Next()
		if err != nil {
			return n
		}
		if ev.Type == mkv.EventBlock {
			n += len(ev.Block.Frames)
		}
	}
}

func (b *DiskBuffer) path(seq uint64, ext string) string {
	return filepath.Join(b.dir, fmt.Sprintf("%016x%s", seq, ext))
}

// Start implements Buffer: the previous fragment is finished on disk
// first.
func (b *DiskBuffer) Start(tc int64, header []byte) *Fragment {
	var want int
	if l := b.Last(); l != nil {
		b.finish(l)
		want = l.Size + l.Size/4
	}
	f := &Fragment{ID: b.nextID, Timecode: tc, End: tc, Header: header, file: b.nextSeq, Data: takeSpare(&b.spare, want)}
	b.nextID++
	b.nextSeq++
	b.frags = append(b.frags, f)
	b.cached = append(b.cached, f)
	b.trimMemory()
	b.open(f)
	return f
}

// open starts the fragment's file.
func (b *DiskBuffer) open(f *Fragment) {
	b.failed = false
	file, err := b.fs.Create(b.path(f.file, partExt))
	if err != nil {
		b.fail(f, err)
		return
	}
	b.cur = file
	var p [prefixFixed]byte
	copy(p[:], bufMagic)
	binary.BigEndian.PutUint32(p[8:], bufVersion)
	binary.BigEndian.PutUint64(p[12:], uint64(f.Timecode))
	binary.BigEndian.PutUint32(p[20:], uint32(len(f.Header)))
	b.curCRC = crc32.Update(crc32.Update(0, crcTable, p[:]), crcTable, f.Header)
	b.write(f, p[:])
	b.write(f, f.Header)
}

func (b *DiskBuffer) write(f *Fragment, p []byte) {
	if b.failed || b.cur == nil {
		return
	}
	if _, err := b.cur.Write(p); err != nil {
		b.fail(f, err)
	}
}

// fail keeps the fragment in memory only: the disk cannot take it.
func (b *DiskBuffer) fail(f *Fragment, err error) {
	b.failed = true
	if !f.memOnly {
		f.memOnly = true
		b.memOnly += int64(f.Size)
	}
	if b.cur != nil {
		_ = b.cur.Close()
		b.cur = nil
	}
	_ = b.fs.Remove(b.path(f.file, partExt))
	_ = b.fs.Remove(b.path(f.file, fragExt))
	if !b.diskProblem {
		b.diskProblem = true
		b.cfg.OnProblem(fmt.Sprintf("cannot write the buffer in %s (%v): fragments are kept in memory only (at most %d MB) until the disk can be written again; a crash would lose them",
			b.dir, err, b.cfg.MemoryLimit>>20))
	}
}

// Append implements Buffer.
func (b *DiskBuffer) Append(p []byte) {
	l := b.Last()
	if l == nil {
		return
	}
	l.Data = append(l.Data, p...)
	l.Size += len(p)
	b.bytes += int64(len(p))
	b.memBytes += int64(len(p))
	if b.failed {
		b.memOnly += int64(len(p))
		return
	}
	b.curCRC = crc32.Update(b.curCRC, crcTable, p)
	b.write(l, p)
}

// End implements Buffer.
func (b *DiskBuffer) End() {
	if l := b.Last(); l != nil && !l.Complete {
		b.finish(l)
	}
}

// finish ends the fragment's file: trailer, sync, rename, sync of the
// directory. Only then is the fragment complete.
func (b *DiskBuffer) finish(f *Fragment) {
	if f.Complete {
		return
	}
	f.Complete = true
	if b.failed || b.cur == nil {
		return
	}
	var t [trailerSize]byte
	copy(t[:], endMagic)
	binary.BigEndian.PutUint64(t[8:], uint64(f.Size))
	binary.BigEndian.PutUint32(t[16:], uint32(f.Frames))
	binary.BigEndian.PutUint64(t[20:], uint64(f.End))
	b.curCRC = crc32.Update(b.curCRC, crcTable, t[:28])
	binary.BigEndian.PutUint32(t[28:], b.curCRC)
	b.write(f, t[:])
	if b.failed {
		return
	}
	cur := b.cur
	b.cur = nil
	err := cur.Sync()
	if cerr := cur.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = b.fs.Rename(b.path(f.file, partExt), b.path(f.file, fragExt))
	}
	if err == nil {
		err = b.fs.SyncDir(b.dir)
	}
	if err != nil {
		b.fail(f, err)
		return
	}
	if b.diskProblem {
		b.diskProblem = false
		b.cfg.OnProblem(fmt.Sprintf("the buffer in %s can be written again", b.dir))
	}
}

// trimMemory drops from memory the oldest fragments that are on disk,
// down to MemoryBytes.
func (b *DiskBuffer) trimMemory() {
	keep := b.cached[:0]
	for i, f := range b.cached {
		over := b.memBytes > b.cfg.MemoryBytes
		if f.Data == nil {
			continue // released or dropped meanwhile
		}
		if over && f.Complete && !f.memOnly && i < len(b.cached)-1 {
			// The connection may be writing these bytes: they are only
			// let go of, never reused.
			b.memBytes -= int64(len(f.Data))
			f.Data = nil
			continue
		}
		keep = append(keep, f)
	}
	clear(b.cached[len(keep):])
	b.cached = keep
}

// Read implements Buffer: from memory if the fragment is there, else its
// file is read whole and its checksum checked before any of it is sent.
func (b *DiskBuffer) Read(f *Fragment, off int) ([]byte, error) {
	if f.Data != nil {
		return f.Data[off:], nil
	}
	if !b.readOK || b.readID != f.ID {
		b.readOK = false
		// Reading a large fragment grows the buffer; a much smaller one
		// does not keep it.
		if cap(b.readBuf) > 4*f.Size && cap(b.readBuf) > 8<<20 {
			b.readBuf = nil
		}
		path := b.path(f.file, fragExt)
		file, err := readAll(b.fs, path, b.readBuf)
		if err != nil {
			return nil, err
		}
		b.readBuf = file
		p, err := parsePrefix(file)
		if err == nil && len(file) != p.dataAt+f.Size+trailerSize {
			err = fmt.Errorf("%w: it holds %d bytes, %d were written", errTorn, len(file)-p.dataAt-trailerSize, f.Size)
		}
		if err == nil {
			err = checkSum(file)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		b.readAt, b.readID, b.readOK = p.dataAt, f.ID, true
	}
	return b.readBuf[b.readAt+off : b.readAt+f.Size], nil
}

// Get implements Buffer.
func (b *DiskBuffer) Get(id uint64) *Fragment { return getByID(b.frags, id) }

// ByTimecode implements Buffer.
func (b *DiskBuffer) ByTimecode(tc int64) *Fragment { return byTimecode(b.frags, tc) }

// First implements Buffer.
func (b *DiskBuffer) First() *Fragment {
	if len(b.frags) == 0 {
		return nil
	}
	return b.frags[0]
}

// Last implements Buffer.
func (b *DiskBuffer) Last() *Fragment {
	if len(b.frags) == 0 {
		return nil
	}
	return b.frags[len(b.frags)-1]
}

// Release implements Buffer: the files of the fragments released are
// deleted.
func (b *DiskBuffer) Release(done func(*Fragment) bool, inFlight uint64) int {
	n := 0
	for len(b.frags) > 0 && done(b.frags[0]) {
		f := b.frags[0]
		if reusable(f, inFlight) && len(b.spare) < 4 {
			b.spare = append(b.spare, f.Data)
		}
		b.dropFirst()
		n++
	}
	if n > 0 {
		b.syncRemovals()
	}
	return n
}

// DropOldest implements Buffer.
func (b *DiskBuffer) DropOldest() *Fragment {
	if len(b.frags) == 0 {
		return nil
	}
	f := b.frags[0]
	b.dropFirst()
	b.syncRemovals()
	return f
}

func (b *DiskBuffer) dropFirst() {
	f := b.frags[0]
	b.bytes -= int64(f.Size)
	if f.Data != nil {
		b.memBytes -= int64(len(f.Data))
		if f.memOnly {
			b.memOnly -= int64(f.Size)
		}
		f.Data = nil
	}
	if f.Complete && !f.memOnly {
		if err := b.fs.Remove(b.path(f.file, fragExt)); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.cfg.Logger.Warn("removing a persisted fragment's file", "err", err)
		}
	}
	if b.readID == f.ID {
		b.readOK = false
	}
	b.frags[0] = nil
	b.frags = b.frags[1:]
}

// syncRemovals makes deletions durable, so that a power cut does not bring
// back a fragment the service has (it would be sent twice).
func (b *DiskBuffer) syncRemovals() {
	if err := b.fs.SyncDir(b.dir); err != nil {
		b.cfg.Logger.Warn("syncing the buffer directory", "err", err)
	}
}

// Size implements Buffer.
func (b *DiskBuffer) Size() (int, int64) { return len(b.frags), b.bytes }

// overMemory implements memoryBound.
func (b *DiskBuffer) overMemory() bool { return b.memOnly > b.cfg.MemoryLimit }

// Dir returns the stream's buffer directory.
func (b *DiskBuffer) Dir() string { return b.dir }

// Close finishes the fragment being written (so that what was buffered
// is whole on disk for the next run) and lets go of the directory.
func (b *DiskBuffer) Close() error {
	if l := b.Last(); l != nil && !l.Complete {
		b.finish(l)
	}
	if b.lock == nil {
		return nil
	}
	err := b.lock.Close()
	b.lock = nil
	return err
}
