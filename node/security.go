package node

import (
	"net"
	"strings"

	"github.com/kanade-go/kanade/embedded"
)

// securityWarnings says what the node's NATS lets in that its operator may
// not expect: an embedded server taking clients without credentials on a
// non-loopback address (anyone who reaches it can publish Commands to
// every agent and call every kanade.> service), and --api-token with NATS
// open (the token guards HTTP only). Logged at start and reported in the
// node's status (GET /api/cluster).
func securityWarnings(o Options, srv *embedded.Server) []string {
	var w []string
	if srv != nil {
		if !srv.OpenToAnonymous() {
			return nil
		}
		host := srv.ListenHost()
		if !loopback(host) {
			w = append(w, "NATS listens on "+host+" and accepts clients without credentials: any of them can publish "+
				"Commands to every agent and call every kanade.> service. Start with --nats-config (see kanade nats-users)")
		}
		if o.Gateway.APIToken != "" {
			w = append(w, "--api-token protects HTTP only: NATS accepts clients without credentials, who call every "+
				"kanade.> service directly. Start with --nats-config (see kanade nats-users)")
		}
		return w
	}
	if o.Gateway.APIToken != "" && o.NATSCreds == "" && o.NATSUser == "" && o.NATSToken == "" {
		w = append(w, "--api-token protects HTTP only, and this node connects to "+o.NATSURL+" without credentials: "+
			"if that NATS takes clients without them, they call every kanade.> service directly")
	}
	return w
}

// loopback reports whether host only listens on the loopback interface.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
