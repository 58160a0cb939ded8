package source

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a source starts ends with it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
