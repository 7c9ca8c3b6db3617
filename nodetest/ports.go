package nodetest

import (
	"net"
	"testing"
)

// FreeAddrs reserves n loopback "host:port" addresses and releases them for
// the caller: a cluster's routes must name fixed ports before any of its
// servers starts.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
