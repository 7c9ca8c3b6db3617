package commandsigning

import (
	"testing"
	"time"

	"github.com/kanade-go/kanade/nodetest"
	"github.com/kanade-go/kanade/signing"
)

func TestInfo(t *testing.T) {
	n := nodetest.Start(t)
	seed, _ := signing.ParseSeed("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	s, err := signing.New(seed, "backend-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		signer *signing.Signer
		want   string
	}{
		{"signing", s, `{"kid":"backend-1","fingerprint":"34750f98bd59fcfc"}`},
		{"not signing", nil, `{"kid":null,"fingerprint":null}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Start(Options{Conn: n.Conn(t), Signer: tc.signer, Logger: n.Logger})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Stop()
			// The gateway sends a GET's query parameters as a JSON object.
			for _, body := range []string{"", `{"_":"1"}`} {
				m, err := n.Conn(t).Request(Subject, []byte(body), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if string(m.Data) != tc.want {
					t.Fatalf("got %s, want %s", m.Data, tc.want)
				}
			}
			if tier := r.Info().Endpoints[0].Metadata["tier"]; tier != "viewer" {
				t.Fatalf("tier %q", tier)
			}
			if md := r.Info().Metadata; md["kid"] != tc.signer.Kid() || md["fingerprint"] != tc.signer.Fingerprint() {
				t.Fatalf("service metadata %v", md)
			}
		})
	}
}
