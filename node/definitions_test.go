package node

import (
	"strings"
	"testing"

	"github.com/kanade-go/kanade/services/api"
)

// Every endpoint a node can run declares a tier the gateway knows, and
// every route that changes something names its audit action: the gateway
// refuses an unknown tier, and a mutation without an action leaves no
// record. One subject is defined once.
func TestEveryEndpointDeclaresTierAndAudit(t *testing.T) {
	// POSTs that change nothing, or record themselves.
	noAudit := map[string]bool{
		"kanade.auth.login":    true, // its handler records success and failure
		"kanade.auth.mfa_init": true, // offers a secret, stores nothing
		// Public (a link's token, a username): their handlers record
		// what they change, as the login does.
		"kanade.auth.password_setup":  true,
		"kanade.auth.forgot_password": true,
	}
	subjects := map[string]string{}
	for _, d := range Definitions() {
		for _, ep := range d.Endpoints {
			where := d.Service + "." + ep.Name
			if api.TierRank(ep.Tier) < 0 {
				t.Errorf("%s: tier %q", where, ep.Tier)
			}
			if s, dup := subjects[ep.Subject]; dup {
				t.Errorf("%s: subject %s already defined by %s", where, ep.Subject, s)
			}
			subjects[ep.Subject] = where
			method, _, _ := strings.Cut(ep.HTTP, " ")
			mutates := ep.HTTP != "" && method != "GET" && method != "HEAD"
			if mutates && ep.Audit == "" && !noAudit[ep.Subject] {
				t.Errorf("%s (%s) changes something but names no audit action", where, ep.HTTP)
			}
			if ep.Audit != "" && ep.Tier == api.TierPublic {
				t.Errorf("%s: a public endpoint with an audit action", where)
			}
		}
	}
}
