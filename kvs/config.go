package kvs

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// ProducerConfig configures a Producer. Zero values take the defaults in
// brackets.
type ProducerConfig struct {
	Stream       StreamSetup
	ControlPlane ControlPlane
	Credentials  aws.CredentialsProvider
	Region       string
	HTTPClient   *http.Client
	Logger       *slog.Logger
	Now          func() time.Time
	// OnEvent is called for everything worth telling the user; it must not
	// block.
	OnEvent func(Event)

	// Buffer holds the fragments until the service has persisted them [a
	// MemoryBuffer]. A DiskBuffer keeps them across restarts: what it holds
	// from an earlier run is sent first, oldest first, and the new video
	// after it.
	Buffer Buffer
	// BufferDuration and BufferBytes bound the buffer: past them the
	// oldest whole fragments are dropped, each one reported.
	BufferDuration time.Duration // oldest to newest fragment held [120 s]
	BufferBytes    int64         // bytes held [128 MiB]
	// AckTimeout: a fragment sent without an acknowledgement of its own
	// (BUFFERING once its first bytes are sent, PERSISTED once it is sent
	// whole) for this long makes the connection stale [10 s].
	AckTimeout time.Duration
	// MaxFragmentRate and MaxBytesPerSecond are the service's limits per
	// stream, which the producer keeps when it catches up on a backlog
	// [5 fragments a second, 12.5 MB/s].
	MaxFragmentRate   int
	MaxBytesPerSecond int64
	MaxConnectionAge  time.Duration // rotate before the service's 45 min [40 min]
	GiveUpAfter       time.Duration // fail after this long without a working connection [never]
	CloseTimeout      time.Duration // at Close, give up after this long connected without progress [30 s]
	RetryMin          time.Duration // first reconnect delay [500 ms]
	RetryMax          time.Duration // longest reconnect delay [10 s]

	// InterleaveWindow bounds how long a frame waits for the other
	// tracks' frames of the same time, and a key frame for its leading
	// pictures, in media time [1 s].
	InterleaveWindow time.Duration
	// DiscontinuityThreshold: a timestamp this far ahead of the stream, or
	// half of it behind its own track, is a jump of the source's clock
	// that the producer re-bases [1 s].
	DiscontinuityThreshold time.Duration
	// AudioFragmentDuration is the fragment length of a stream without
	// video, which has no key frames to start fragments at [2 s].
	AudioFragmentDuration time.Duration
}

func (c *ProducerConfig) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.OnEvent == nil {
		c.OnEvent = func(Event) {}
	}
	if c.BufferDuration == 0 {
		c.BufferDuration = 120 * time.Second
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = 128 << 20
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 10 * time.Second
	}
	if c.MaxFragmentRate == 0 {
		c.MaxFragmentRate = 5
	}
	if c.MaxBytesPerSecond == 0 {
		c.MaxBytesPerSecond = 12_500_000
	}
	if c.Buffer == nil {
		c.Buffer = &MemoryBuffer{}
	}
	if c.MaxConnectionAge == 0 {
		c.MaxConnectionAge = 40 * time.Minute
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 500 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.InterleaveWindow == 0 {
		c.InterleaveWindow = time.Second
	}
	if c.DiscontinuityThreshold == 0 {
		c.DiscontinuityThreshold = time.Second
	}
	if c.AudioFragmentDuration == 0 {
		c.AudioFragmentDuration = 2 * time.Second
	}
}
