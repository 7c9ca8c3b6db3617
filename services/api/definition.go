package api

import (
	"fmt"
	"slices"
)

// Definition is one service's endpoints as they are written once: name,
// subject, HTTP route, tier and audit action, without handlers. The
// service binds its handlers to it (Bind); the gateway's fallback routes
// and the NATS role permissions read the same list, so a route, its tier
// and its subject never have a second copy.
type Definition struct {
	Service   string
	Endpoints []Endpoint
}

// Bind returns d's endpoints, each with the handler of its name. A
// definition without a handler, or a handler without a definition, is a
// programming error: it panics, which any test of the service shows.
func (d Definition) Bind(handlers map[string]Handler) []Endpoint {
	out := make([]Endpoint, 0, len(d.Endpoints))
	for _, ep := range d.Endpoints {
		h, ok := handlers[ep.Name]
		if !ok || h == nil {
			panic(fmt.Sprintf("api: endpoint %s.%s has no handler", d.Service, ep.Name))
		}
		ep.Handler = h
		out = append(out, ep)
	}
	for name := range handlers {
		if !slices.ContainsFunc(d.Endpoints, func(e Endpoint) bool { return e.Name == name }) {
			panic(fmt.Sprintf("api: handler %s.%s has no endpoint definition", d.Service, name))
		}
	}
	return out
}

// Tiers lists the known tiers, lowest first.
var Tiers = []string{TierPublic, TierViewer, TierOperator, TierAdmin}

// TierRank orders the tiers (public 0 … admin 3); -1 for an unknown one.
func TierRank(tier string) int { return slices.Index(Tiers, tier) }
