//go:build !camera

package main

import (
	"net"
	"testing"
)

// The live view's WebRTC host candidates follow --listen: loopback only
// on loopback, the listening address (and loopback) on one address, every
// address on all of them.
func TestWebRTCHostIPs(t *testing.T) {
	lo, lan, other := net.ParseIP("127.0.0.1"), net.ParseIP("192.168.1.20"), net.ParseIP("10.0.0.7")
	if f := webrtcHostIPs("127.0.0.1:4567"); f != nil {
		t.Fatal("on loopback, serve offers more than loopback candidates")
	}
	if f := webrtcHostIPs("localhost:4567"); f != nil {
		t.Fatal("on localhost, serve offers more than loopback candidates")
	}
	one := webrtcHostIPs("192.168.1.20:4567")
	if one == nil || !one(lan) || !one(lo) || one(other) {
		t.Fatal("on one LAN address, serve must offer it and loopback, not others")
	}
	for _, listen := range []string{"0.0.0.0:4567", ":4567", "[::]:4567"} {
		all := webrtcHostIPs(listen)
		if all == nil || !all(lan) || !all(other) {
			t.Fatalf("on %s, serve must offer every address", listen)
		}
	}
}
