package gateway

import (
	"net/http/httptest"
	"testing"
)

// X-Forwarded-For counts only from a proxy on this host: a remote client
// setting it must not choose the address the throttle and audit see.
func TestClientAddrTrustsOnlyALocalProxy(t *testing.T) {
	cases := []struct{ remote, xff, want string }{
		{"203.0.113.9:5000", "198.51.100.1", "203.0.113.9"},
		{"127.0.0.1:5000", "198.51.100.1, 198.51.100.2", "198.51.100.2"},
		{"[::1]:5000", "198.51.100.3", "198.51.100.3"},
		{"127.0.0.1:5000", "", "127.0.0.1"},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/api/results", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := clientAddr(r); got != c.want {
			t.Errorf("remote %s xff %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
}
