package server

import (
	"sync"
	"time"
)

// Per-stream call rates the service documents and enforces with
// ClientLimitExceededException (Kinesis Video Streams quotas: GetMedia and
// GetDataEndpoint, 5 TPS per stream, both hard limits).
const (
	getMediaTPS        = 5
	getDataEndpointTPS = 5
)

// limiter is a token bucket per key (operation and stream): rate tokens a
// second, at most rate in the bucket, so a burst of rate calls passes and
// the next one within the same second does not.
type limiter struct {
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, buckets: map[string]*bucket{}}
}

// allow takes a token for key; false when the bucket is empty.
func (l *limiter) allow(key string, rate float64) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) > 10_000 {
			l.forgetFull(now, rate)
		}
		b = &bucket{tokens: rate, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(rate, b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forgetFull drops buckets that have refilled: they hold no state a new
// bucket would not.
func (l *limiter) forgetFull(now time.Time, rate float64) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*rate >= rate {
			delete(l.buckets, k)
		}
	}
}
