// Package commandsigning answers which key this backend signs Commands
// with: GET /api/command-signing, {kid, fingerprint} as upstream, nulls
// when the node does not sign. Operators compare it with the agents'
// command_keys ("kid:fingerprint") to find hosts that miss the key.
package commandsigning

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/signing"
)

// Subject is the micro endpoint's subject.
const Subject = "kanade.command_signing.get"

// Info is the reply: both null when the backend is not signing (a normal
// state, not an error).
type Info struct {
	Kid         *string `json:"kid"`
	Fingerprint *string `json:"fingerprint"`
}

// Describe is the Info of s (nil: not signing).
func Describe(s *signing.Signer) Info {
	if s == nil {
		return Info{}
	}
	kid, fp := s.Kid(), s.Fingerprint()
	return Info{Kid: &kid, Fingerprint: &fp}
}

// Definitions are the service's endpoints.
func Definitions() []api.Definition {
	return []api.Definition{{Service: "command-signing", Endpoints: []api.Endpoint{
		{Name: "get", Subject: Subject, HTTP: "GET /api/command-signing", Tier: api.TierViewer},
	}}}
}

// Options configure the service.
type Options struct {
	Conn     *nats.Conn
	Signer   *signing.Signer // nil: this node publishes unsigned
	NodeName string
	Logger   *slog.Logger
}

// Start registers the service.
func Start(o Options) (*api.Running, error) {
	if o.Conn == nil {
		return nil, errors.New("command signing: no NATS connection")
	}
	info := Describe(o.Signer)
	// Each node's key in its service info (nats micro info command-signing),
	// so that a node of a cluster with another key stands out.
	meta := map[string]string{"node": o.NodeName, "kid": o.Signer.Kid(), "fingerprint": o.Signer.Fingerprint()}
	return api.Start(o.Conn, api.Service{
		Name:        Definitions()[0].Service,
		Description: "the key id and fingerprint this backend signs Commands with",
		Metadata:    meta,
		Logger:      o.Logger,
		Workers:     2,
		Endpoints: Definitions()[0].Bind(map[string]api.Handler{
			"get": func(ctx context.Context, r api.Request) (any, error) {
				if err := api.Decode(r.Data, &struct{}{}); err != nil {
					return nil, err
				}
				return info, nil
			},
		}),
	})
}
