//go:build !linux

package kvs

import "net"

// rawWriter writes straight to a socket's descriptor on Linux; elsewhere
// the connection's goroutine writes every chunk.
type rawWriter struct{}

func newRawWriter(net.Conn) *rawWriter { return nil }

func (w *rawWriter) write([][]byte, bool) (int, error) { panic("unreachable") }
