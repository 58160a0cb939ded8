package server

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (ack writers, GetMedia followers, the
// store's sweeper) must be gone when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}
