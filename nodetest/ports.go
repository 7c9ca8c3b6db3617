package nodetest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// FreeAddrs reserves n loopback "host:port" addresses and releases them for
// the caller: a cluster's routes must name fixed ports before any of its
// servers starts.
//
// The ports come from below Linux's ephemeral range (32768 and up), not
// from port 0: between the release here and the cluster's bind, every
// other test's server that listens on port 0 draws from the ephemeral
// range, and one of them took a reserved port under a parallel
// `go test ./...` (a node then failed with "already in use").
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for tries := 0; len(out) < n; tries++ {
		if tries == 1000 {
			t.Fatalf("no free loopback port in 20000-31999 after %d tries", tries)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: draw again
		}
		ls = append(ls, l)
		out = append(out, addr)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
