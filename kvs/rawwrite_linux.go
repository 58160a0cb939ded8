package kvs

import (
	"net"
	"syscall"
	"unsafe"
)

// rawWriter writes a chunk's pieces to a TCP socket with one writev, and
// can try without blocking: Put hands a frame to the socket itself and
// leaves to the connection's goroutine only what the socket cannot take.
type rawWriter struct {
	rc    syscall.RawConn
	iov   [3]syscall.Iovec
	first int // iov[first:niov] is still to write
	niov  int
	block bool
	n     int
	err   error
	fn    func(fd uintptr) bool // w.do, made once: no allocation per write
}

func newRawWriter(c net.Conn) *rawWriter {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &rawWriter{rc: rc}
	w.fn = w.do
	return w
}

// write writes bufs (at most 3), all of them when block is set, or what
// the socket takes now; it returns the bytes written.
func (w *rawWriter) write(bufs [][]byte, block bool) (int, error) {
	w.first, w.niov, w.n, w.err, w.block = 0, 0, 0, nil, block
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		w.iov[w.niov].Base = &b[0]
		w.iov[w.niov].SetLen(len(b))
		w.niov++
	}
	if w.niov == 0 {
		return 0, nil
	}
	err := w.rc.Write(w.fn)
	w.iov = [3]syscall.Iovec{} // hold no frame for the collector
	if err == nil {
		err = w.err
	}
	return w.n, err
}

// do runs with the socket's descriptor; returning false makes the poller
// wait until it can be written.
func (w *rawWriter) do(fd uintptr) bool {
	for w.first < w.niov {
		r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[w.first])), uintptr(w.niov-w.first))
		switch e {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return !w.block
		default:
			w.err = e
			return true
		}
		n := int(r)
		w.n += n
		for n > 0 && w.first < w.niov {
			v := &w.iov[w.first]
			if uint64(n) < uint64(v.Len) {
				v.Base = (*byte)(unsafe.Add(unsafe.Pointer(v.Base), n))
				v.SetLen(int(v.Len) - n)
				n = 0
				break
			}
			n -= int(v.Len)
			w.first++
		}
	}
	return true
}
