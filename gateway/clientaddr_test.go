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

// TestLogPathKeepsNoLinkToken: a mailed link's token never reaches the
// access log or the refusal log.
func TestLogPathKeepsNoLinkToken(t *testing.T) {
	tok := "0b9c6d0e-8f3a-4c1e-9d2b-5a7e3f1c2b4d"
	for in, want := range map[string]string{
		"/api/auth/password-setup/" + tok: "/api/auth/password-setup/***",
		"/password-setup/" + tok:          "/password-setup/***",
		"/api/results":                    "/api/results",
	} {
		if got := logPath(in); got != want {
			t.Errorf("logPath(%q) = %q, want %q", in, got, want)
		}
	}
}
