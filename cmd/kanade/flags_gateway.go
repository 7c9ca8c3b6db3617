package main

import (
	"strings"
	"time"

	"github.com/kanade-go/kanade/node"
)

// gatewayFlags declares the gateway flags of serve.
func gatewayFlags(f *flags) func(*node.Options) {
	timeout := f.Duration("api-timeout", 10*time.Second, "how long the gateway waits for a service's reply before answering 504")
	token := f.String("api-token", "", "static bearer token that acts as an admin (upstream's service token); with it set, /api/* needs a token even before any account exists; prefer the env var, flags show in ps")
	origins := f.String("cors-origins", "", "comma list of browser origins allowed to call the API cross-origin (default none: same-origin dashboard only)")
	maxBody := f.Int("max-body", 1<<20, "largest request body the gateway accepts, in bytes (413 past it)")
	return func(o *node.Options) {
		o.Gateway.APITimeout = *timeout
		o.Gateway.APIToken = *token
		o.Gateway.MaxBody = int64(*maxBody)
		for _, s := range strings.Split(*origins, ",") {
			if s = strings.TrimSpace(s); s != "" {
				o.Gateway.CORSOrigins = append(o.Gateway.CORSOrigins, s)
			}
		}
	}
}
