package natsauth

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/wire"
)

// RoleInboxPrefix is a reply-subject prefix callers' clients may use
// besides plain _INBOX (scripts written when callers shared the backend's
// account had to).
const RoleInboxPrefix = OperatorInboxPrefix

// Caller is a NATS-native caller of the API: a user alone in
// CallerAccount(Name), which imports exactly the endpoints of its tier.
type Caller struct {
	Name     string
	Password string // plain or a bcrypt hash (`nats server passwd`)
	Comment  string
	Tier     string // viewer, operator or admin
	// Permissions nil = Role(Tier, …): the same subjects as the imports,
	// a second wall.
	Permissions *Permissions
}

// endpointWait is how long, beyond the endpoint's declared wait, the
// server keeps the way back for a caller's request across its import (an
// endpoint that declares none answers within a service's default 9 s).
// nats-server's own default is 2 minutes for all; the shorter, the sooner
// an unanswered request's entry is dropped.
const endpointWait = 30 * time.Second

// srvWait bounds the way back for $SRV discovery: many answers to one
// request, so an entry is never closed by an answer, only by this.
const srvWait = "10s"

// apiSubject is one endpoint subject a tier reaches and the longest its
// answer may take.
type apiSubject struct {
	Subject string
	Wait    time.Duration
}

// tierSubjects are the subjects of every endpoint whose tier is at most
// tier (public ones included), from the definitions the services
// register, sorted. Endpoints acting on the caller's own account are left
// out (selfService), and so is anything under kanade.> that is not an
// endpoint (the nodes' own traffic).
func tierSubjects(tier string, defs []api.Definition) ([]apiSubject, error) {
	rank := api.TierRank(tier)
	if rank < 1 {
		return nil, fmt.Errorf("role %q: want viewer, operator or admin", tier)
	}
	var out []apiSubject
	for _, d := range defs {
		for _, ep := range d.Endpoints {
			r := api.TierRank(ep.Tier)
			if selfService(ep) || r < 0 || r > rank {
				continue
			}
			wait := max(ep.Timeout+endpointWait, endpointWait)
			if i := slices.IndexFunc(out, func(s apiSubject) bool { return s.Subject == ep.Subject }); i >= 0 {
				out[i].Wait = max(out[i].Wait, wait)
				continue
			}
			out = append(out, apiSubject{Subject: ep.Subject, Wait: wait})
		}
	}
	slices.SortFunc(out, func(a, b apiSubject) int { return strings.Compare(a.Subject, b.Subject) })
	return out, nil
}

// Role is the rights of a NATS-native caller of the kanade.> API at a
// tier, as the gateway grants them on HTTP: the subjects of every endpoint
// whose tier is at most this one, from the same definitions the services
// register (so a route's tier is written once), plus $SRV discovery. No
// role may publish Commands.
//
// The user lives in an account of its own (Layout.Callers), which reaches
// the backend only through its imports of those same subjects: the server
// names the user on each request, and that name is the audit record's
// actor, whatever the request says.
func Role(tier string, defs []api.Definition) (Permissions, error) {
	subjects, err := tierSubjects(tier, defs)
	if err != nil {
		return Permissions{}, err
	}
	var allow []string
	for _, s := range subjects {
		allow = append(allow, s.Subject)
	}
	allow = append(allow, "$SRV.>")
	return Permissions{
		PublishAllow:   allow,
		PublishDeny:    []string{wire.SubjectCommandsAny},
		SubscribeAllow: []string{"_INBOX.>", RoleInboxPrefix + ".>"},
	}, nil
}

// selfService tells the endpoints that act on the caller's own account
// (me, change-password, MFA): the account is the one the gateway names, and
// a NATS user has none.
func selfService(ep api.Endpoint) bool {
	return strings.HasPrefix(ep.Subject, "kanade.auth.") && ep.Tier != api.TierPublic
}

// RoleUsers lists one API caller per name at a tier, each with a new
// random password.
func RoleUsers(tier string, names []string) ([]Caller, error) {
	if api.TierRank(tier) < 1 {
		return nil, fmt.Errorf("role %q: want viewer, operator or admin", tier)
	}
	var out []Caller
	for _, n := range names {
		out = append(out, Caller{Name: n, Password: NewPassword(), Tier: tier,
			Comment: tier + ": nats --user " + n + " --password ... req kanade.results.list '{}'"})
	}
	return out, nil
}
